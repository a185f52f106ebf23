"""Writers of small dataset fixtures in each official on-disk layout, shared by the train tests.

``make_cifar`` also points torchvision's CIFAR md5 lists at the fixture's files (the real lists
hold the md5s of the real archives), through ``monkeypatch`` so the change ends with the test.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np


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


def make_cifar(root: Path, name: str, monkeypatch, per_batch: int = 4) -> dict:
    """torchvision's python-pickle layout; returns the fixture's md5 table and the data, and
    makes torchvision's md5 lists (``train_list``, ``test_list``, ``meta``) the fixture's."""
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
    cls = _cifar_class(name)
    for attr in ("train_list", "test_list"):
        monkeypatch.setattr(cls, attr, [[f, table[f]] for f, _ in getattr(cls, attr)])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": table[meta_name]})
    return {
        "folder": folder,
        "md5": table,
        "data": data,
        "train": train_files,
        "test": test_files,
        "meta": folder / meta_name,
    }


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


def _cifar_class(name: str):
    from torchvision.datasets import CIFAR10, CIFAR100

    return CIFAR10 if name == "cifar10" else CIFAR100
