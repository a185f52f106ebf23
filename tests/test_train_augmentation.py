"""The train augmentation is the dataset's (nsf.train.datasets.TRAIN_AUGMENTATION) unless a
config says otherwise, and a run records the one it applied (paper Sec. 3.3, Sec. 5.1)."""

from __future__ import annotations

import json

import pytest
import torch
from train_fixtures import make_cifar

from nsf.train import TrainConfig, load_dataset, train
from nsf.train.datasets import DATASETS, TRAIN_AUGMENTATION
from nsf.train.imagedataset import Augmentation

# One quick epoch of a tiny GroupNorm CNN: what is checked is the record, not the learning.
QUICK = dict(
    model="small_cnn",
    model_options={"width": 8, "norm": "group"},
    epochs=1,
    batch_size=8,
    deterministic=True,
    device="cpu",
)
NONE = {"crop_pad": 0, "flip": False, "vflip": False}
CIFAR = {"crop_pad": 4, "flip": True, "vflip": False}


def _recorded(result) -> dict:
    """The augmentation as the run wrote it down: finished.json, config.json, RunResult.config."""
    fields = ("crop_pad", "flip", "vflip")
    key = json.loads((result.run_dir / "config.json").read_text())
    as_keyed = {k: key[k] for k in fields}
    as_config = {k: getattr(result.config, k) for k in fields}
    assert result.summary["augmentation"] == as_keyed == as_config
    return as_keyed


def test_every_dataset_declares_one_and_loads_with_it():
    assert set(TRAIN_AUGMENTATION) == set(DATASETS)
    assert TRAIN_AUGMENTATION["digits"] == TRAIN_AUGMENTATION["synthetic_bands"] == Augmentation()
    assert TRAIN_AUGMENTATION["cifar10"] == TRAIN_AUGMENTATION["cifar100"] == Augmentation(4, True)
    assert TRAIN_AUGMENTATION["chaoyang"] == Augmentation(0, True, True)  # tissue: any flip
    for faces in ("fer2013", "rafdb"):  # a mirrored face keeps its expression; upside down: no
        assert TRAIN_AUGMENTATION[faces].flip and not TRAIN_AUGMENTATION[faces].vflip
    for split in ("train", "test"):
        assert load_dataset("digits", split).augmentation == Augmentation()
    bands = load_dataset("synthetic_bands", n=16, n_test=8, size=8)
    assert bands.augmentation == Augmentation()


def test_config_on_a_device_fills_in_only_what_it_left_to_the_dataset():
    cpu = torch.device("cpu")
    left = TrainConfig(dataset="cifar10").on(cpu)
    assert (left.crop_pad, left.flip, left.vflip) == (4, True, False)
    told = TrainConfig(dataset="cifar10", crop_pad=2, vflip=True).on(cpu)
    assert (told.crop_pad, told.flip, told.vflip) == (2, True, True)
    digits = TrainConfig(dataset="digits", flip=True).on(cpu)
    assert (digits.crop_pad, digits.flip, digits.vflip) == (0, True, False)
    with pytest.raises(ValueError, match="crop_pad"):
        Augmentation(crop_pad=-1)


def test_digits_run_records_no_flip_and_no_crop(tmp_path):
    result = train(TrainConfig(dataset="digits", **{**QUICK, "batch_size": 512}), tmp_path)
    assert _recorded(result) == NONE


def test_cifar_run_records_pad_4_and_flip_and_an_override_is_recorded(tmp_path, monkeypatch):
    make_cifar(tmp_path / "data", "cifar10", monkeypatch)
    store = tmp_path / "runs"
    default = train(TrainConfig(dataset="cifar10", **QUICK), store, data_root=tmp_path / "data")
    assert _recorded(default) == CIFAR
    spelled = TrainConfig(dataset="cifar10", **QUICK, **CIFAR)
    spelled = train(spelled, store, data_root=tmp_path / "data")
    assert spelled.from_cache and spelled.run_dir == default.run_dir  # the same computation
    told = TrainConfig(dataset="cifar10", **QUICK, crop_pad=2, flip=False)
    override = train(told, store, data_root=tmp_path / "data")
    assert not override.from_cache and override.run_dir != default.run_dir
    assert _recorded(override) == {"crop_pad": 2, "flip": False, "vflip": False}
