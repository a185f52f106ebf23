"""Tests of nsf.train.datasets: the six readers on small fixtures written in each official layout,
the checksums and the decoded cache (SPEC Sec. 3.2, 8.1, App. B)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import nsf.train.datasets as nsd
from nsf.train.datasets import load_dataset
from nsf.train.errors import DatasetCorruptError, DatasetNotFoundError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# Fixture writers, one per official layout
# --------------------------------------------------------------------------------------------


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _write_jpeg(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    Image.fromarray(_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode).save(
        path, "JPEG", quality=95
    )


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_cifar(root: Path, name: str, per_batch: int = 4) -> dict:
    """torchvision's python-pickle layout; returns the fixture's md5 table and the data."""
    if name == "cifar10":
        folder = root / "cifar10" / "cifar-10-batches-py"
        train_files, test_files = [f"data_batch_{k}" for k in range(1, 6)], ["test_batch"]
        meta_name, meta = "batches.meta", {"label_names": [f"c{k}" for k in range(10)]}
        key, classes = "labels", 10
    else:
        folder = root / "cifar100" / "cifar-100-python"
        train_files, test_files = ["train"], ["test"]
        meta_name = "meta"
        meta = {"fine_label_names": [f"f{k}" for k in range(100)], "coarse_label_names": ["x"]}
        key, classes = "fine_labels", 100
    folder.mkdir(parents=True)
    data = {}
    for k, f in enumerate(train_files + test_files):
        x = _rng(k).integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [int(v) for v in _rng(100 + k).integers(0, classes, per_batch)]
        entry = {"batch_label": f, "data": x, key: y, "filenames": [f"{i}.png" for i in y]}
        if name == "cifar100":
            entry["coarse_labels"] = [0] * per_batch
        (folder / f).write_bytes(pickle.dumps(entry, protocol=2))
        data[f] = (x, y)
    (folder / meta_name).write_bytes(pickle.dumps(meta, protocol=2))
    table = {p.name: _md5(p) for p in folder.iterdir()}
    return {"folder": folder, "md5": table, "data": data, "train": train_files, "test": test_files}


def make_tinyimagenet(root: Path) -> Path:
    top = root / "tinyimagenet" / "tiny-imagenet-200"
    wnids = ["n03000000", "n01000000", "n02000000"]  # unsorted, as in the real wnids.txt
    top.mkdir(parents=True)
    (top / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (top / "words.txt").write_text(
        "n01000000\tgoldfish, Carassius auratus\nn02000000\tbullfrog\nn03000000\tlorry, truck\n"
        "n09999999\tunused\n"
    )
    for k, w in enumerate(wnids):
        for j in range(2):
            mode = "L" if (k, j) == (0, 1) else "RGB"  # one grayscale JPEG, as in the real set
            _write_jpeg(top / "train" / w / "images" / f"{w}_{j}.JPEG", (64, 64), mode, 10 * k + j)
        (top / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for j, w in enumerate(["n02000000", "n03000000", "n01000000", "n02000000"]):
        _write_jpeg(top / "val" / "images" / f"val_{j}.JPEG", (64, 64), seed=50 + j)
        lines.append(f"val_{j}.JPEG\t{w}\t0\t0\t63\t63")
    (top / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return top


FER_ROWS = [  # (emotion, usage)
    (0, "Training"),
    (3, "Training"),
    (6, "Training"),
    (3, "PublicTest"),
    (4, "PublicTest"),
    (5, "PrivateTest"),
    (1, "PrivateTest"),
    (2, "PrivateTest"),
]


def _fer_pixels(k: int) -> np.ndarray:
    return _rng(200 + k).integers(0, 256, 48 * 48)


def make_fer(root: Path, variant: str) -> Path:
    folder = root / "fer2013"
    folder.mkdir(parents=True)
    if variant == "fer2013.csv":
        lines = ["emotion,pixels,Usage"]
        for k, (e, u) in enumerate(FER_ROWS):
            lines.append(f"{e},{' '.join(map(str, _fer_pixels(k)))},{u}")
    else:  # Kaggle's icml_face_data.csv: other column order, header names with leading spaces
        lines = ["emotion, Usage, pixels"]
        for k, (e, u) in enumerate(FER_ROWS):
            lines.append(f"{e},{u},{' '.join(map(str, _fer_pixels(k)))}")
    path = folder / variant
    path.write_text("\n".join(lines) + "\n")
    return path


RAF_LIST = [("train_00001.jpg", 5), ("train_00002.jpg", 1), ("train_00003.jpg", 7)]
RAF_LIST += [("train_00004.jpg", 1), ("test_0001.jpg", 4), ("test_0002.jpg", 7)]


def make_rafdb(root: Path) -> Path:
    basic = root / "rafdb" / "basic"
    (basic / "EmoLabel").mkdir(parents=True)
    (basic / "EmoLabel" / "list_patition_label.txt").write_text(
        "".join(f"{f} {y}\n" for f, y in RAF_LIST)
    )
    for k, (f, _) in enumerate(RAF_LIST):
        _write_jpeg(basic / "Image" / "aligned" / f"{f[:-4]}_aligned.jpg", (100, 100), seed=300 + k)
    return basic


CHAOYANG = {"train": [0, 1, 2, 3, 2, 0], "test": [3, 1, 0]}


def make_chaoyang(root: Path, side: int = 512) -> Path:
    folder = root / "chaoyang"
    for split, labels in CHAOYANG.items():
        entries = []
        for k, y in enumerate(labels):
            name = f"{split}/5357{k}_1-IMG0{k}x010-{y}.JPG"
            _write_jpeg(folder / name, (side, side), seed=400 + k)
            entries.append({"label": y, "name": name, "label_A": y})
        (folder / f"{split}.json").write_text(json.dumps(entries))
    return folder


@pytest.fixture
def cifar_md5(monkeypatch):
    """Point the md5 table at the fixture's files (the real table is torchvision's)."""
    tables: dict[str, dict[str, str]] = {}
    monkeypatch.setattr(nsd, "_cifar_md5s", lambda name: tables[name])
    return tables


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    monkeypatch.delenv(nsd.ENV_ROOT, raising=False)


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_layout_shapes_labels(tmp_path, cifar_md5, name):
    fx = make_cifar(tmp_path, name)
    cifar_md5[name] = fx["md5"]
    train = load_dataset(name, "train", root=tmp_path)
    test = load_dataset(name, "test", root=tmp_path)
    n_train = 4 * len(fx["train"])
    assert train.images.shape == (n_train, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (4, 3, 32, 32) and test.labels.dtype == torch.int64
    assert train.num_classes == (10 if name == "cifar10" else 100) and len(train) == n_train
    x0, y0 = fx["data"][fx["train"][0]]
    assert torch.equal(train.images[:4], torch.from_numpy(x0.reshape(4, 3, 32, 32)))
    assert train.labels[:4].tolist() == y0
    assert test.labels.tolist() == fx["data"][fx["test"][0]][1]
    assert test.mean == train.mean  # test normalised with the train statistics
    expect = train.images.double().div(255).mean(dim=(0, 2, 3))
    assert np.allclose(train.mean, expect.numpy())


def test_cifar_flipped_byte_fails_md5_naming_file(tmp_path, cifar_md5):
    fx = make_cifar(tmp_path, "cifar10")
    cifar_md5["cifar10"] = fx["md5"]
    bad = fx["folder"] / "data_batch_3"
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    bad.write_bytes(bytes(raw))
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset("cifar10", "train", root=tmp_path)
    msg = str(err.value)
    assert str(bad) in msg and "md5" in msg and "'cifar10'" in msg
    assert "cifar-10-batches-py" in msg and "cs.toronto.edu" in msg


def test_cifar_md5_table_is_torchvisions_and_matches_checksums_json():
    from torchvision.datasets import CIFAR10, CIFAR100

    listed = json.loads((REPO / "data" / "checksums.json").read_text())
    for name, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        table = nsd._cifar_md5s(name)
        assert table == dict(cls.train_list + cls.test_list) | {
            cls.meta["filename"]: cls.meta["md5"]
        }
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
    rgb = load_dataset("fer2013", "val", root=tmp_path)  # SPEC Sec. 3.2: gray -> 3 channels
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
    assert resized.images.shape == (4, 3, 112, 112)  # SPEC Sec. 3.2 default: Resize 112


def test_chaoyang_json_layout_and_resize(tmp_path):
    make_chaoyang(tmp_path)
    train = load_dataset("chaoyang", "train", root=tmp_path)
    assert train.images.shape == (6, 3, 224, 224)  # SPEC Sec. 3.2 default: Resize 224
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
