"""Tests of nsf.train.loader: determinism, resumption, DDP sharding, crops and flips, and
normalisation of the device-side loader (paper Sec. 3.3 and 5.1)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn.functional import pad as zero_pad

from nsf.train.datasets import load_dataset
from nsf.train.imagedataset import Augmentation, ImageDataset
from nsf.train.loader import DeviceLoader, crop_flip


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _indexed(n: int = 37, c: int = 3, side: int = 8) -> ImageDataset:
    """Random images whose label is their index; mean 0 and std 1/255 make outputs = raw pixels.
    It declares CIFAR's augmentation (pad 4, horizontal flip), so loaders augment by default."""
    images = torch.from_numpy(_rng(7).integers(1, 256, (n, c, side, side), dtype=np.uint8))
    return ImageDataset(
        "indexed", "train", images, torch.arange(n), tuple(map(str, range(n))), (0.0,) * c,
        (1 / 255,) * c, augmentation=Augmentation(crop_pad=4, flip=True),
    )  # fmt: skip


def _collect(loader: DeviceLoader, epoch: int, start: int = 0) -> list:
    return [(x.clone(), y.clone()) for x, y in loader.epoch(epoch, start)]


def test_loader_determinism_and_resume():
    ds = _indexed()
    a = DeviceLoader(ds, 8, device="cpu", train=True, seed=3)
    b = DeviceLoader(ds, 8, device="cpu", train=True, seed=3)
    full = _collect(a, 2)
    assert len(full) == len(a) == 5  # ceil(37 / 8), the last partial batch kept
    for (x1, y1), (x2, y2) in zip(full, _collect(b, 2), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.dtype == torch.float32 and y1.dtype == torch.int64
    assert sorted(torch.cat([y for _, y in full]).tolist()) == list(range(37))
    resumed = _collect(b, 2, start=3)  # a fresh loader resumed at (epoch 2, batch 3)
    assert len(resumed) == 2
    for (x1, y1), (x2, y2) in zip(full[3:], resumed, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    other = torch.cat([y for _, y in _collect(a, 3)])
    assert not torch.equal(other, torch.cat([y for _, y in full]))
    other_seed = DeviceLoader(ds, 8, device="cpu", train=True, seed=4)
    assert not torch.equal(torch.cat([y for _, y in _collect(other_seed, 2)]), other)


def test_loader_one_rank_equals_two_ranks_concatenated():
    ds = _indexed()
    one = _collect(DeviceLoader(ds, 8, device="cpu", train=True, seed=5), 1)
    ranks = [
        _collect(DeviceLoader(ds, 4, device="cpu", train=True, seed=5, rank=r, world_size=2), 1)
        for r in (0, 1)
    ]
    assert len(one) == len(ranks[0]) == len(ranks[1])
    for (x, y), (x0, y0), (x1, y1) in zip(one, *ranks, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_loader_crops_are_translations_and_flips_are_mirrors():
    ds, pad = _indexed(), 4
    loader = DeviceLoader(ds, 16, device="cpu", train=True, seed=0, crop_pad=pad)
    padded = zero_pad(ds.images, (pad, pad, pad, pad))
    seen_flip = seen_shift = False
    for x, y in loader.epoch(0):
        for img, k in zip(x.round().to(torch.uint8), y.tolist(), strict=True):
            matches = [
                (dy, dx, fl)
                for dy in range(2 * pad + 1)
                for dx in range(2 * pad + 1)
                for fl in (False, True)
                if torch.equal(img, _view(padded[k], dy, dx, fl))
            ]
            assert matches, "output is not a crop (+ flip) of its source image"
            seen_flip |= any(fl for *_, fl in matches)
            seen_shift |= all((dy, dx) != (pad, pad) for dy, dx, _ in matches)
    assert seen_flip and seen_shift


def _view(padded: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    h, w = padded.shape[1] - 8, padded.shape[2] - 8
    crop = padded[:, dy : dy + h, dx : dx + w]
    return crop.flip(-1) if flip else crop


def test_crop_flip_matches_reference():
    x = torch.from_numpy(_rng(1).integers(0, 256, (6, 2, 5, 7), dtype=np.uint8))
    offsets = torch.tensor([[0, 8, 3, 4, 1, 7], [8, 0, 4, 2, 6, 5]])
    hflip = torch.tensor([False, True, True, False, True, False])
    vflip = torch.tensor([True, False, True, False, False, True])
    out = crop_flip(x, offsets, hflip, vflip, pad=4)
    padded = zero_pad(x, (4, 4, 4, 4))
    for b in range(6):
        ref = padded[b, :, offsets[0, b] : offsets[0, b] + 5, offsets[1, b] : offsets[1, b] + 7]
        ref = ref.flip(-1) if hflip[b] else ref
        ref = ref.flip(-2) if vflip[b] else ref
        assert torch.equal(out[b], ref)


def test_loader_eval_covers_every_sample_once_in_order():
    ds = _indexed()
    loader = DeviceLoader(ds, 8, device="cpu", train=False, seed=0)
    batches = _collect(loader, 0)
    assert len(batches) == 5 and len(batches[-1][1]) == 5
    assert torch.cat([y for _, y in batches]).tolist() == list(range(37))
    assert torch.equal(torch.cat([x for x, _ in batches]).round().byte(), ds.images)
    shards = [
        torch.cat([y for _, y in _collect(DeviceLoader(ds, 4, device="cpu", train=False, seed=0,
                                                       rank=r, world_size=2), 0)])
        for r in (0, 1)
    ]  # fmt: skip
    assert sorted(torch.cat(shards).tolist()) == list(range(37))


def test_loader_normalisation_drop_last_and_layout():
    ds = load_dataset("synthetic_bands", n=33, size=8, num_classes=3)
    loader = DeviceLoader(ds, 8, device="cpu", train=True, seed=0, channels_last=True)
    assert len(loader) == 4  # the 1-sample remainder is dropped (BatchNorm needs 2)
    assert len(DeviceLoader(ds, 8, device="cpu", train=False, seed=0)) == 5
    assert len(DeviceLoader(ds, 8, device="cpu", train=True, seed=0, drop_last=False)) == 5
    x, _ = next(iter(loader.epoch(0)))
    assert x.shape == (8, 3, 8, 8) and x.is_contiguous(memory_format=torch.channels_last)
    plain = DeviceLoader(ds, 33, device="cpu", train=False, seed=0)
    x, _ = next(iter(plain.epoch(0)))
    mean = torch.tensor(ds.mean).view(1, 3, 1, 1)
    std = torch.tensor(ds.std).view(1, 3, 1, 1)
    assert torch.allclose(x, (ds.images.float() / 255 - mean) / std, atol=1e-5)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4  # train stats normalise train to 0 mean
    with pytest.raises(ValueError, match="start_batch"):
        next(loader.epoch(0, start_batch=5))


def test_loader_takes_the_datasets_augmentation_unless_told_otherwise():
    ds = _indexed()
    assert DeviceLoader(ds, 8, device="cpu", train=True, seed=0).augmentation == ds.augmentation
    told = DeviceLoader(ds, 8, device="cpu", train=True, seed=0, crop_pad=0, vflip=True)
    assert told.augmentation == Augmentation(crop_pad=0, flip=True, vflip=True)
    assert DeviceLoader(ds, 8, device="cpu", train=False, seed=0).augmentation == Augmentation()
    plain = dataclasses.replace(ds, augmentation=Augmentation())  # declares none: batches = data
    (x, y), *_ = DeviceLoader(plain, 37, device="cpu", train=True, seed=0).epoch(0)
    assert torch.equal(x.round().to(torch.uint8), ds.images[y])
    with pytest.raises(ValueError, match="crop_pad"):
        DeviceLoader(ds, 8, device="cpu", train=True, seed=0, crop_pad=-1)
