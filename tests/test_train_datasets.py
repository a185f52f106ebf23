"""Tests of nsf.train.datasets: the six readers on small fixtures written in each official layout,
the checksums and the decoded cache (paper Sec. 3.3 and 5.1; book/datasets.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from train_fixtures import (
    CHAOYANG,
    FER_ROWS,
    _fer_pixels,
    _write_jpeg,
    make_chaoyang,
    make_cifar,
    make_fer,
    make_rafdb,
    make_tinyimagenet,
)

import nsf.train.datasets as nsd
from nsf.train.datasets import load_dataset
from nsf.train.errors import DatasetCorruptError, DatasetNotFoundError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv(nsd.ENV_ROOT, raising=False)


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_layout_shapes_labels(tmp_path, monkeypatch, name):
    fx = make_cifar(tmp_path, name, monkeypatch)
    train = load_dataset(name, "train", root=tmp_path)
    test = load_dataset(name, "test", root=tmp_path)
    n_train = 4 * len(fx["train"])
    assert train.images.shape == (n_train, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (4, 3, 32, 32) and test.labels.dtype == torch.int64
    assert train.num_classes == (10 if name == "cifar10" else 100) and len(train) == n_train
    assert train.classes[:2] == (("c0", "c1") if name == "cifar10" else ("f0", "f1"))
    for k, f in enumerate(fx["train"]):  # batch order kept, CHW pixel order kept
        x, y = fx["data"][f]
        assert torch.equal(
            train.images[4 * k : 4 * k + 4], torch.from_numpy(x.reshape(4, 3, 32, 32))
        )
        assert train.labels[4 * k : 4 * k + 4].tolist() == y
    assert test.labels.tolist() == fx["data"][fx["test"][0]][1]
    assert test.mean == train.mean  # test normalised with the train statistics
    expect = train.images.double().div(255).mean(dim=(0, 2, 3))
    assert np.allclose(train.mean, expect.numpy())


def _flip_a_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def _refused_naming(path: Path, name: str, split: str, root: Path, **options) -> str:
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset(name, split, root=root, **options)
    msg = str(err.value)
    assert str(path) in msg and "md5" in msg and f"'{name}'" in msg
    assert "expected" in msg and "cs.toronto.edu" in msg  # what was expected, where to get it
    return msg


CIFAR_DATA_FILES = [("cifar10", f, "train") for f in [f"data_batch_{k}" for k in range(1, 6)]] + [
    ("cifar10", "test_batch", "test"),
    ("cifar100", "train", "train"),
    ("cifar100", "test", "test"),
]


@pytest.mark.parametrize(("name", "file", "split"), CIFAR_DATA_FILES)
def test_cifar_each_corrupt_data_file_is_refused_by_name(tmp_path, monkeypatch, name, file, split):
    fx = make_cifar(tmp_path, name, monkeypatch)
    bad = fx["folder"] / file
    _flip_a_byte(bad)
    msg = _refused_naming(bad, name, split, tmp_path)
    assert fx["folder"].name in msg  # the layout to put it in
    if split == "train":  # the test split is normalised with the train statistics
        _refused_naming(bad, name, "test", tmp_path)
    else:  # the train split does not read the test file
        assert len(load_dataset(name, "train", root=tmp_path)) == 4 * len(fx["train"])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_corrupt_meta_file_is_refused_by_name_even_with_a_cache(tmp_path, monkeypatch, name):
    fx = make_cifar(tmp_path, name, monkeypatch)
    load_dataset(name, "train", root=tmp_path)  # a valid decoded cache now exists
    _flip_a_byte(fx["meta"])
    for split in ("train", "test"):
        _refused_naming(fx["meta"], name, split, tmp_path)


def test_cifar_verify_false_reads_without_md5_and_names_an_unreadable_folder(tmp_path, monkeypatch):
    fx = make_cifar(tmp_path, "cifar10", monkeypatch)
    meta = fx["meta"]
    meta.write_bytes(meta.read_bytes() + b"\0")  # md5 differs, the pickle still loads
    assert load_dataset("cifar10", "test", root=tmp_path, verify=False).classes[0] == "c0"
    meta.write_bytes(b"not a pickle")
    with pytest.raises(DatasetCorruptError, match="torchvision cannot read") as err:
        load_dataset("cifar10", "test", root=tmp_path, verify=False, cache=False)
    assert "batches.meta" in str(err.value) and str(fx["folder"]) in str(err.value)


def test_cifar_missing_batch_names_it(tmp_path, monkeypatch):
    fx = make_cifar(tmp_path, "cifar10", monkeypatch)
    (fx["folder"] / "data_batch_4").unlink()
    for split in ("train", "test"):  # the test split needs the train statistics
        with pytest.raises(DatasetNotFoundError, match="data_batch_4"):
            load_dataset("cifar10", split, root=tmp_path)


def test_checksums_json_lists_torchvisions_cifar_md5s():
    from torchvision.datasets import CIFAR10, CIFAR100

    listed = json.loads((REPO / "data" / "checksums.json").read_text())
    for name, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        table = dict(cls.train_list + cls.test_list) | {cls.meta["filename"]: cls.meta["md5"]}
        assert listed[name]["files"] == table
        assert listed[name]["archive"]["md5"] == cls.tgz_md5


# --------------------------------------------------------------------------------------------
# TinyImageNet
# --------------------------------------------------------------------------------------------


def test_tinyimagenet_layout_grayscale_and_val(tmp_path):
    make_tinyimagenet(tmp_path)
    train = load_dataset("tinyimagenet", "train", root=tmp_path)
    test = load_dataset("tinyimagenet", "test", root=tmp_path)
    assert train.images.shape == (6, 3, 64, 64)
    assert train.classes == ("goldfish", "bullfrog", "lorry")  # sorted wnids, words.txt names
    # classes follow sorted wnids: n01 -> 0, n02 -> 1, n03 -> 2
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    gray = train.images[5]  # n03000000_1.JPEG was written as a grayscale JPEG
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert not torch.equal(train.images[4][0], train.images[4][1])
    assert test.images.shape == (4, 3, 64, 64)
    assert test.labels.tolist() == [1, 2, 0, 1]
    alias = load_dataset("tinyimagenet", "val", root=tmp_path)  # the official name of that set
    assert alias.split == "test" and torch.equal(alias.images, test.images)
    assert torch.bincount(train.labels, minlength=3).tolist() == [2, 2, 2]


def test_tinyimagenet_dataset_folder_as_root(tmp_path):
    top = make_tinyimagenet(tmp_path)
    a = load_dataset("tinyimagenet", "test", root=top, cache=False)  # the official folder
    b = load_dataset("tinyimagenet", "test", root=top.parent, cache=False)  # <root>/<name>
    assert torch.equal(a.images, b.images)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_jpeg_names_the_file(tmp_path, damage):
    top = make_tinyimagenet(tmp_path)
    bad = top / "train" / "n02000000" / "images" / "n02000000_1.JPEG"
    raw = bad.read_bytes()
    bad.write_bytes(b"not a jpeg" + raw[10:] if damage == "garbage" else raw[: len(raw) // 2])
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset("tinyimagenet", "train", root=tmp_path)
    assert str(bad) in str(err.value) and "decoded" in str(err.value)


def test_tinyimagenet_missing_image_is_named(tmp_path):
    top = make_tinyimagenet(tmp_path)
    (top / "val" / "images" / "val_2.JPEG").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"val_2\.JPEG"):
        load_dataset("tinyimagenet", "test", root=tmp_path)


# --------------------------------------------------------------------------------------------
# FER2013
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["fer2013.csv", "icml_face_data.csv"])
def test_fer2013_both_headers_and_three_splits(tmp_path, variant):
    make_fer(tmp_path, variant)
    got = {
        s: load_dataset("fer2013", s, root=tmp_path, channels=1) for s in ("train", "val", "test")
    }
    for split, usage in nsd.FER2013_USAGE.items():
        rows = [(k, e) for k, (e, u) in enumerate(FER_ROWS) if u == usage]
        ds = got[split]
        assert ds.images.shape == (len(rows), 1, 48, 48) and ds.num_classes == 7
        assert ds.labels.tolist() == [e for _, e in rows]
        for j, (k, _) in enumerate(rows):
            assert torch.equal(ds.images[j, 0].flatten(), torch.from_numpy(_fer_pixels(k)).byte())
        assert ds.mean == got["train"].mean
    rgb = load_dataset("fer2013", "val", root=tmp_path)  # gray -> 3 channels
    assert rgb.images.shape == (2, 3, 48, 48) and len(rgb.mean) == 3
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 2])


def test_fer2013_bad_row_names_file_and_line(tmp_path):
    path = make_fer(tmp_path, "fer2013.csv")
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(" ", " x", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetCorruptError, match="line 3"):
        load_dataset("fer2013", "train", root=tmp_path)


# --------------------------------------------------------------------------------------------
# RAF-DB and Chaoyang
# --------------------------------------------------------------------------------------------


def test_rafdb_one_based_labels_and_splits(tmp_path):
    basic = make_rafdb(tmp_path)
    train = load_dataset("rafdb", "train", root=tmp_path, size=None)
    test = load_dataset("rafdb", "test", root=tmp_path, size=None)
    assert train.images.shape == (4, 3, 100, 100) and test.images.shape == (2, 3, 100, 100)
    assert train.labels.tolist() == [4, 0, 6, 0]  # 1-based in the file
    assert test.labels.tolist() == [3, 6]
    assert train.classes[0] == "Surprise" and train.classes[6] == "Neutral"
    assert torch.bincount(train.labels, minlength=7).tolist() == [2, 0, 0, 0, 1, 0, 1]
    resized = load_dataset("rafdb", "train", root=basic)  # root may be basic/ itself
    assert resized.images.shape == (4, 3, 112, 112)  # the companion's default: Resize 112


def test_chaoyang_json_layout_and_resize(tmp_path):
    make_chaoyang(tmp_path)
    train = load_dataset("chaoyang", "train", root=tmp_path)
    assert train.images.shape == (6, 3, 224, 224)  # the companion's default: Resize 224
    assert train.labels.tolist() == CHAOYANG["train"] and train.num_classes == 4
    test = load_dataset("chaoyang", "test", root=tmp_path, size=None)
    assert test.images.shape == (3, 3, 512, 512) and test.labels.tolist() == CHAOYANG["test"]
    assert test.classes == ("normal", "serrated", "adenocarcinoma", "adenoma")


# --------------------------------------------------------------------------------------------
# Missing data, bad arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "where", "layout"),
    [
        ("cifar10", "cs.toronto.edu", "cifar-10-batches-py"),
        ("cifar100", "cs.toronto.edu", "cifar-100-python"),
        ("tinyimagenet", "tiny-imagenet-200.zip", "val_annotations.txt"),
        ("fer2013", "Kaggle", "icml_face_data.csv"),
        ("rafdb", "whdeng.cn", "list_patition_label.txt"),
        ("chaoyang", "HSA-NRL", "train.json"),
    ],
)
def test_missing_dataset_names_where_to_get_it(tmp_path, name, where, layout):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, root=tmp_path)
    msg = str(err.value)
    assert f"'{name}'" in msg and str(tmp_path) in msg and where in msg and layout in msg
    assert "data/README.md" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_no_root_and_no_env(monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="NSF_DATA_ROOT"):
        load_dataset("cifar10")


def test_env_root_is_used(tmp_path, monkeypatch):
    make_rafdb(tmp_path)
    monkeypatch.setenv(nsd.ENV_ROOT, str(tmp_path))
    assert len(load_dataset("rafdb", "test", size=None)) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="splits"):
        load_dataset("digits", "val")
    with pytest.raises(TypeError, match="unknown option"):
        load_dataset("rafdb", root="/nonexistent", colour=True)
    assert set(nsd.DATASETS) >= set(nsd.ON_DISK) and len(nsd.DATASETS) == 8


# --------------------------------------------------------------------------------------------
# The decoded cache
# --------------------------------------------------------------------------------------------


def test_cache_round_trip_tamper_and_source_change(tmp_path, monkeypatch):
    basic = make_rafdb(tmp_path)
    first = load_dataset("rafdb", "train", root=tmp_path, size=None)
    cache = tmp_path / ".nsf-cache" / "rafdb-train.pt"
    assert cache.exists() and cache.with_suffix(".json").exists()

    real_read = nsd._read_image
    monkeypatch.setattr(nsd, "_read_image", lambda *a: pytest.fail("decoded despite a valid cache"))
    again = load_dataset("rafdb", "train", root=tmp_path, size=None)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    monkeypatch.setattr(nsd, "_read_image", real_read)

    blob = torch.load(cache, weights_only=True)  # tamper with one pixel, keep the sidecar
    blob["images"][0, 0, 0, 0] ^= 1
    torch.save(blob, cache)
    with pytest.warns(UserWarning, match="sha256"):
        rebuilt = load_dataset("rafdb", "train", root=tmp_path, size=None)
    assert torch.equal(rebuilt.images, first.images)

    raw = bytearray(cache.read_bytes())  # flip a raw byte of the cache file
    raw[len(raw) // 2] ^= 0xFF
    cache.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="sha256"):
        rebuilt = load_dataset("rafdb", "train", root=tmp_path, size=None)
    assert torch.equal(rebuilt.images, first.images)

    image = basic / "Image" / "aligned" / "train_00002_aligned.jpg"
    _write_jpeg(image, (100, 100), seed=999)  # a changed source file is picked up
    os.utime(image, ns=(1_000_000_000, 1_000_000_000))
    changed = load_dataset("rafdb", "train", root=tmp_path, size=None)
    assert not torch.equal(changed.images[1], first.images[1])
    assert torch.equal(changed.images[0], first.images[0])


def test_cache_can_be_disabled_or_moved(tmp_path):
    make_rafdb(tmp_path)
    load_dataset("rafdb", "test", root=tmp_path, size=None, cache=False)
    assert not (tmp_path / ".nsf-cache").exists()
    load_dataset("rafdb", "test", root=tmp_path, cache_dir=tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "rafdb-test-112px.pt").exists()


def test_cache_tampered_labels_are_detected_and_rebuilt(tmp_path, monkeypatch):
    """The cache vouches for its labels (sha256 in the sidecar): editing the cached label array
    is reported and the split decoded again from the source files, which are then right."""
    fx = make_cifar(tmp_path, "cifar10", monkeypatch)
    first = load_dataset("cifar10", "train", root=tmp_path)
    cache = tmp_path / ".nsf-cache" / "cifar10-train.pt"
    blob = torch.load(cache, weights_only=True)
    blob["labels"][3] = (blob["labels"][3] + 1) % 10  # still a valid class: only a digest tells
    torch.save(blob, cache)
    with pytest.warns(UserWarning, match=r"sha256.*rebuilding"):
        again = load_dataset("cifar10", "train", root=tmp_path)
    assert again.labels.tolist() == first.labels.tolist()
    assert again.labels[:4].tolist() == fx["data"]["data_batch_1"][1]
    assert torch.load(cache, weights_only=True)["labels"].tolist() == first.labels.tolist()
