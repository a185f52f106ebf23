"""Tests of nsf.train.synthetic: the embedded digits and synthetic_bands (Sec. 3.3 stand-ins)."""

from __future__ import annotations

import pytest
import torch

from nsf.train.datasets import load_dataset


def test_digits_split_and_noise():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert train.images.shape == (1347, 1, 8, 8) and test.images.shape == (450, 1, 8, 8)
    assert int(train.images.max()) == 255 and train.num_classes == 10
    assert torch.equal(load_dataset("digits").images, train.images)  # deterministic
    per_class = torch.bincount(torch.cat([train.labels, test.labels])).double()
    assert (torch.bincount(test.labels) - 0.25 * per_class).abs().max() <= 1  # stratified
    assert test.mean == train.mean and train.clean_labels is None
    noisy = load_dataset("digits", "train", label_noise=0.3)
    assert noisy.clean_labels is not None and torch.equal(noisy.clean_labels, train.labels)
    assert abs((noisy.labels != train.labels).float().mean().item() - 0.3) < 1 / 1347


def test_synthetic_bands_shapes_determinism_noise():
    kw = {"n": 500, "n_test": 120, "size": 16, "num_classes": 5, "label_noise": 0.2}
    a = load_dataset("synthetic_bands", "train", **kw)
    b = load_dataset("synthetic_bands", "train", **kw)
    assert a.images.shape == (500, 3, 16, 16) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, load_dataset("synthetic_bands", **kw, seed=1).images)
    assert torch.bincount(a.clean_labels).tolist() == [100] * 5  # balanced
    assert (a.labels != a.clean_labels).float().mean().item() == pytest.approx(0.2)
    test = load_dataset("synthetic_bands", "test", **kw)
    assert test.images.shape == (120, 3, 16, 16) and test.clean_labels is None
    assert test.mean == a.mean


@pytest.mark.parametrize("band", [(1.0, 2.5), (5.0, 7.0)])
def test_synthetic_bands_signal_lies_in_band(band):
    ds = load_dataset("synthetic_bands", n=64, size=32, band=band, noise=0.0)
    x = ds.images.double()
    power = torch.fft.fft2(x - x.mean(dim=(2, 3), keepdim=True)).abs().square().sum(dim=(0, 1))
    f = torch.fft.fftfreq(32, d=1 / 32).abs()
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    inside = (radius >= band[0]) & (radius <= band[1])
    assert power[inside].sum() / power.sum() > 0.97
