r"""The six datasets of paper Sec. 3.3 and Sec. 5.1, two embedded stand-ins, and a GPU-side loader.

Every dataset becomes an :class:`ImageDataset`: one ``uint8`` tensor ``[N, C, H, W]`` and one
``int64`` label tensor, decoded once and then kept whole in memory (and on the accelerator, see
:class:`DeviceLoader`). ::

    train = load_dataset("tinyimagenet", "train")          # reads $NSF_DATA_ROOT/tinyimagenet/
    test = load_dataset("tinyimagenet", "test")            # the official (labelled) val set
    loader = DeviceLoader(train, 256, device="cuda", train=True, seed=0)
    for x, y in loader.epoch(0):                           # float32, normalised, augmented on GPU
        ...

On-disk datasets (SPEC Sec. 3.2 table, Appendix B), each under ``<root>/<name>/`` in the layout
its authors distribute (``data/README.md`` gives sources, licences and the layout trees):

============  ====================================================================  ============
name          official layout read                                                  splits
============  ====================================================================  ============
cifar10       ``cifar-10-batches-py/`` (torchvision's pickles, md5-verified)        train, test
cifar100      ``cifar-100-python/`` (fine labels, md5-verified)                     train, test
tinyimagenet  ``tiny-imagenet-200/`` (``wnids.txt``, ``train/<wnid>/images``,       train, test
              ``val/val_annotations.txt``; test = official val)
fer2013       ``fer2013.csv`` or ``icml_face_data.csv`` (Usage column)              train, val,
                                                                                    test
rafdb         ``basic/EmoLabel/list_patition_label.txt``, ``basic/Image/aligned/``  train, test
chaoyang      ``train.json``, ``test.json``, ``train/``, ``test/``                  train, test
============  ====================================================================  ============

Embedded datasets, no root and no download (SPEC Sec. 3.3 "CPU/CI proxy", Appendix B):

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (real data, 1,797 images).
* ``synthetic_bands``: images whose class signal lies in a chosen spatial-frequency band, with a
  label-noise rate as a parameter; see :func:`make_synthetic_bands` for why.

The root is the ``root`` argument, else ``$NSF_DATA_ROOT``. A decoded split is cached as
``<root>/.nsf-cache/<name>-<split>.pt`` (written atomically) with a JSON sidecar holding the sha256
of its tensors and a fingerprint (path, size, mtime) of the source files: a tampered cache is
detected and rebuilt, and a changed source file triggers a rebuild. A missing dataset raises
:class:`DatasetNotFoundError`, a corrupt one :class:`DatasetCorruptError`; both messages name the
dataset, the expected layout, the failing file and where to get the data.

Normalisation statistics (``mean``/``std``) are always those of the *train* split, so train and
test images are normalised identically (SPEC Sec. 8.1 "per-channel normalization (dataset
mean/std)").
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import pickle
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nsf.runstore import atomic_write_bytes

__all__ = [
    "DATASETS",
    "ENV_ROOT",
    "DatasetCorruptError",
    "DatasetNotFoundError",
    "DeviceLoader",
    "ImageDataset",
    "crop_flip",
    "load_dataset",
    "make_synthetic_bands",
]

#: The dataset names :func:`load_dataset` accepts (six on-disk datasets, two embedded).
DATASETS: tuple[str, ...] = (
    "cifar10",
    "cifar100",
    "tinyimagenet",
    "fer2013",
    "rafdb",
    "chaoyang",
    "digits",
    "synthetic_bands",
)
ON_DISK = DATASETS[:6]
ENV_ROOT = "NSF_DATA_ROOT"
CACHE_DIRNAME = ".nsf-cache"
CACHE_FORMAT = 1  # bump when the decoded representation changes; old caches are then rebuilt

FER2013_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
RAFDB_CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
CHAOYANG_CLASSES = ("normal", "serrated", "adenocarcinoma", "adenoma")
FER2013_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}


# --------------------------------------------------------------------------------------------
# The dataset record
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq=False: compare by identity, tensors have no bool ==
class ImageDataset:
    """A whole split in memory: ``uint8`` images ``[N, C, H, W]`` and ``int64`` labels ``[N]``.

    ``mean``/``std`` are the per-channel statistics of the train split's ``images / 255``, used by
    :class:`DeviceLoader` to normalise. ``clean_labels`` is set only where labels were corrupted
    on purpose (the embedded datasets' ``label_noise`` option): it holds the labels before noise.
    """

    name: str
    split: str
    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clean_labels: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels must be int64 [N] with N={self.images.shape[0]}, got "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean and std need {channels} entries, one per channel")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(
            self.classes
        ):
            raise ValueError(f"labels must lie in [0, {len(self.classes)})")
        if not self.images.is_contiguous():
            object.__setattr__(self, "images", self.images.contiguous())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape)
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, images={shape} uint8, "
            f"num_classes={self.num_classes})"
        )


# --------------------------------------------------------------------------------------------
# Errors, with the layout and the source in the message
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    title: str
    where: str
    terms: str
    layout: str


_SOURCES: dict[str, _Source] = {
    "cifar10": _Source(
        "CIFAR-10",
        "https://www.cs.toronto.edu/~kriz/cifar.html (cifar-10-python.tar.gz); or pass "
        "download=True to fetch it with torchvision",
        "no formal licence; cite Krizhevsky (2009), 'Learning Multiple Layers of Features from "
        "Tiny Images'",
        "cifar10/\n└── cifar-10-batches-py/\n    ├── data_batch_1 … data_batch_5\n"
        "    ├── test_batch\n    └── batches.meta",
    ),
    "cifar100": _Source(
        "CIFAR-100",
        "https://www.cs.toronto.edu/~kriz/cifar.html (cifar-100-python.tar.gz); or pass "
        "download=True to fetch it with torchvision",
        "no formal licence; cite Krizhevsky (2009)",
        "cifar100/\n└── cifar-100-python/\n    ├── train\n    ├── test\n    └── meta",
    ),
    "tinyimagenet": _Source(
        "Tiny ImageNet-200",
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip (unzip into <root>/tinyimagenet/)",
        "ImageNet terms of access: non-commercial research and education only",
        "tinyimagenet/\n└── tiny-imagenet-200/\n    ├── wnids.txt\n    ├── words.txt (optional)\n"
        "    ├── train/<wnid>/images/<wnid>_<k>.JPEG\n    └── val/\n"
        "        ├── val_annotations.txt\n        └── images/val_<k>.JPEG",
    ),
    "fer2013": _Source(
        "FER2013",
        "Kaggle, 'Challenges in Representation Learning: Facial Expression Recognition "
        "Challenge' (login required): icml_face_data.csv, or fer2013.csv from fer2013.tar.gz",
        "Kaggle competition rules; research use only",
        "fer2013/\n└── fer2013.csv  (columns emotion, pixels, Usage)\n"
        "    or icml_face_data.csv  (columns emotion, ' Usage', ' pixels')",
    ),
    "rafdb": _Source(
        "RAF-DB (basic)",
        "http://www.whdeng.cn/RAF/model1.html (request access; a signed agreement is required)",
        "RAF-DB agreement: non-commercial research only, no redistribution",
        "rafdb/\n└── basic/\n    ├── EmoLabel/list_patition_label.txt  ('train_00001.jpg 5', "
        "labels 1-7)\n    └── Image/aligned/train_00001_aligned.jpg …",
    ),
    "chaoyang": _Source(
        "Chaoyang (colon histopathology)",
        "https://bupt-ai-cz.github.io/HSA-NRL/ (request the data from the authors)",
        "Chaoyang licence: non-commercial use, no redistribution, cite Zhu et al. (IEEE TMI 2021)",
        "chaoyang/\n├── train.json  ([{'name': 'train/xxx.JPG', 'label': 0-3}, …])\n"
        "├── test.json\n├── train/*.JPG\n└── test/*.JPG",
    ),
}


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _source_note(name: str) -> str:
    src = _SOURCES[name]
    return (
        f"Expected layout under the data root ($NSF_DATA_ROOT or root=):\n{_indent(src.layout)}\n"
        f"Where to get {src.title}: {src.where}.\nTerms: {src.terms}. See data/README.md."
    )


class DatasetNotFoundError(FileNotFoundError):
    """A dataset (or one of its files) is not where the documented layout says it should be."""

    def __init__(self, name: str, root: Path | None, missing: Path | str, detail: str = ""):
        self.dataset, self.root, self.missing = name, root, missing
        where = f"under root '{root}'" if root is not None else "(no data root given)"
        msg = f"Dataset '{name}' not found {where}: missing {missing}."
        if detail:
            msg += f" {detail}"
        super().__init__(f"{msg}\n{_source_note(name)}")

    def __str__(self) -> str:  # FileNotFoundError would format (errno, strerror); keep ours
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (e.g. across torch.multiprocessing)
        return _restore_error, (type(self), self.args, self.__dict__)


class DatasetCorruptError(RuntimeError):
    """A dataset file exists but fails its checksum or cannot be decoded."""

    def __init__(self, name: str, path: Path | str, reason: str):
        self.dataset, self.path = name, path
        super().__init__(
            f"Dataset '{name}': file {path} {reason}. Replace it with a fresh copy.\n"
            f"{_source_note(name)}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore_error, (type(self), self.args, self.__dict__)


def _restore_error(cls: type[Exception], args: tuple[Any, ...], state: dict[str, Any]) -> Exception:
    err = cls.__new__(cls, *args)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str, split: str = "train", root: str | os.PathLike | None = None, **options: Any
) -> ImageDataset:
    """Load one split of a dataset as an :class:`ImageDataset` (SPEC Sec. 3.2, Sec. 8.1, App. B).

    Args:
        name: one of :data:`DATASETS`.
        split: ``"train"`` or ``"test"``; FER2013 also ``"val"`` (PublicTest; ``"test"`` is
            PrivateTest). TinyImageNet's ``"test"`` is the official labelled val set
            (``"val"`` is accepted as an alias and returns the same ``"test"`` split).
        root: the data root holding ``<name>/``; default ``$NSF_DATA_ROOT``. Not used by
            ``digits`` and ``synthetic_bands``. The dataset folder itself (``<root>/<name>``) or
            the official top folder (e.g. ``.../tiny-imagenet-200``, ``.../basic``) is accepted too.
        **options: per dataset:

            * all on-disk datasets: ``cache=True`` (use/write ``<root>/.nsf-cache``),
              ``cache_dir=None`` (another cache folder), ``workers`` (decoding threads),
              ``progress=True`` (tqdm bar for large decodes).
            * ``cifar10``/``cifar100``: ``verify=True`` (torchvision's md5s),
              ``download=False`` (fetch with torchvision into ``<root>/<name>`` when True).
            * ``fer2013``: ``channels=3`` (SPEC Sec. 3.2 "48x48 gray (->3ch)"; 1 keeps gray).
            * ``rafdb``: ``size=112`` (SPEC Sec. 3.2 "Resize 112"; ``None`` keeps 100x100).
            * ``chaoyang``: ``size=224`` (SPEC Sec. 3.2 "Resize 224"; ``None`` keeps 512x512).
            * ``digits``: ``seed=0``, ``test_fraction=0.25``, ``label_noise=0.0``.
            * ``synthetic_bands``: see :func:`make_synthetic_bands`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    splits = ("train", "val", "test") if name == "fer2013" else ("train", "test")
    if name == "tinyimagenet" and split == "val":
        split = "test"  # the official val set is TinyImageNet's (labelled) test split
    if split not in splits:
        raise ValueError(f"dataset {name!r} has splits {splits}, got {split!r}")
    if name == "digits":
        return _load_digits(split, **options)
    if name == "synthetic_bands":
        return make_synthetic_bands(split, **options)
    return _load_on_disk(name, split, root, options)


# --------------------------------------------------------------------------------------------
# On-disk datasets: locate, plan (check layout, list source files), decode, cache
# --------------------------------------------------------------------------------------------

_COMMON_OPTIONS = {"cache": True, "cache_dir": None, "workers": None, "progress": True}
_DATASET_OPTIONS: dict[str, dict[str, Any]] = {
    "cifar10": {"verify": True, "download": False},
    "cifar100": {"verify": True, "download": False},
    "tinyimagenet": {},
    "fer2013": {"channels": 3},
    "rafdb": {"size": 112},
    "chaoyang": {"size": 224},
}
# The folder (or file) that marks the dataset folder, i.e. the official top-level entry.
_MARKERS: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar-10-batches-py",),
    "cifar100": ("cifar-100-python",),
    "tinyimagenet": ("tiny-imagenet-200",),
    "fer2013": ("fer2013.csv", "icml_face_data.csv"),
    "rafdb": ("basic",),
    "chaoyang": ("train.json", "test.json"),
}


def _options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = {**_COMMON_OPTIONS, **_DATASET_OPTIONS[name]}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for {name!r}; allowed: {sorted(allowed)}")
    return {**allowed, **options}


def _resolve_root(name: str, root: str | os.PathLike | None) -> Path:
    if root is None:
        root = os.environ.get(ENV_ROOT) or None
    if root is None:
        raise DatasetNotFoundError(
            name, None, f"a data root (set ${ENV_ROOT} or pass root=)", "Nothing to search."
        )
    return Path(root).expanduser()


def _locate(name: str, root: Path) -> tuple[Path, list[Path]]:
    """The dataset folder: ``root/name``, ``root`` itself, or the parent of an official folder."""
    candidates = [root / name, root]
    if root.name in _MARKERS[name]:
        candidates.append(root.parent)
    for cand in candidates:
        if any((cand / marker).exists() for marker in _MARKERS[name]):
            return cand, candidates
    return root / name, candidates


@dataclass
class _Plan:
    files: list[Path]  # every source file the split depends on (the cache fingerprint)
    decode: Callable[[], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]
    tag: str = ""  # cache-name suffix for decode options (e.g. "-224px")


def _require(name: str, root: Path, path: Path, looked: Sequence[Path] = ()) -> Path:
    if not path.exists():
        detail = ""
        if looked:
            detail = "Looked for the dataset folder in: " + ", ".join(str(p) for p in looked) + "."
        raise DatasetNotFoundError(name, root, path, detail)
    return path


def _load_on_disk(
    name: str, split: str, root: str | os.PathLike | None, options: dict[str, Any]
) -> ImageDataset:
    opts = _options(name, options)
    root_path = _resolve_root(name, root)
    images, labels, classes, (mean, std) = _materialize(name, split, root_path, opts)
    if split != "train":  # normalise every split with the train statistics
        mean, std = _materialize(name, "train", root_path, opts, stats_only=True)[3]
    if name == "fer2013" and opts["channels"] != images.shape[1]:
        if opts["channels"] != 3:
            raise ValueError("fer2013: channels must be 1 or 3")
        images = images.expand(-1, 3, -1, -1).contiguous()
        mean, std = mean * 3, std * 3
    return ImageDataset(name, split, images, labels, tuple(classes), tuple(mean), tuple(std))


def _materialize(
    name: str, split: str, root: Path, opts: dict[str, Any], stats_only: bool = False
) -> tuple[Tensor | None, Tensor | None, tuple[str, ...], tuple[tuple[float, ...], ...]]:
    """Decoded tensors of one split (from the cache when valid) and their channel statistics."""
    base, looked = _locate(name, root)
    if name in ("cifar10", "cifar100") and opts["download"]:
        _cifar_download(name, base, split)
        base, looked = _locate(name, root)
    plan = _PLANNERS[name](name, root, base, looked, split, opts)
    fingerprint = _fingerprint(name, root, base, plan.files, split, plan.tag)
    cache_dir = Path(opts["cache_dir"]) if opts["cache_dir"] else root / CACHE_DIRNAME
    cache_file = cache_dir / f"{name}-{split}{plan.tag}.pt"
    sidecar = cache_file.with_suffix(".json")
    if opts["cache"]:
        meta = _read_json(sidecar)
        if meta is not None and meta.get("fingerprint") == fingerprint:
            stats = (tuple(meta["mean"]), tuple(meta["std"]))
            if stats_only:
                return None, None, tuple(meta["classes"]), stats
            cached = _read_cache(cache_file, meta)
            if cached is not None:
                return (*cached, stats)
    arrays, labels_np, classes = plan.decode()
    images = torch.from_numpy(np.ascontiguousarray(arrays))
    labels = torch.from_numpy(labels_np.astype(np.int64, copy=False))
    stats = _channel_stats(images)
    if opts["cache"]:
        _write_cache(cache_file, sidecar, images, labels, classes, stats, fingerprint)
    return images, labels, tuple(classes), stats


def _fingerprint(
    name: str, root: Path, base: Path, files: Sequence[Path], split: str, tag: str
) -> str:
    h = hashlib.sha256(json.dumps([CACHE_FORMAT, name, split, tag]).encode())
    for f in files:
        try:
            st = f.stat()
        except FileNotFoundError:
            raise DatasetNotFoundError(name, root, f) from None
        rel = os.path.relpath(f, base)
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _tensor_digest(images: Tensor, labels: Tensor, classes: Sequence[str]) -> str:
    h = hashlib.sha256(json.dumps([list(images.shape), list(classes)]).encode())
    h.update(images.contiguous().numpy())
    h.update(labels.contiguous().numpy())
    return h.hexdigest()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_cache(path: Path, meta: dict[str, Any]) -> tuple[Tensor, Tensor, tuple[str, ...]] | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        images, labels, classes = blob["images"], blob["labels"], tuple(blob["classes"])
        ok = _tensor_digest(images, labels, classes) == meta["sha256"]
    except Exception:  # unreadable, truncated, wrong keys: treat as corrupt
        ok = False
    if not ok:
        warnings.warn(
            f"decoded cache {path} failed its sha256 check; rebuilding it from the source files",
            stacklevel=4,
        )
        return None
    return images, labels, classes


def _write_cache(
    path: Path,
    sidecar: Path,
    images: Tensor,
    labels: Tensor,
    classes: Sequence[str],
    stats: tuple[tuple[float, ...], ...],
    fingerprint: str,
) -> None:
    buf = io.BytesIO()
    torch.save({"images": images, "labels": labels, "classes": list(classes)}, buf)
    meta = {
        "format": CACHE_FORMAT,
        "sha256": _tensor_digest(images, labels, classes),
        "fingerprint": fingerprint,
        "shape": list(images.shape),
        "classes": list(classes),
        "mean": list(stats[0]),
        "std": list(stats[1]),
    }
    try:
        atomic_write_bytes(path, buf.getvalue())
        atomic_write_bytes(sidecar, json.dumps(meta, indent=1).encode())
    except OSError as exc:  # a read-only data root: work without a cache
        warnings.warn(f"could not write the decoded cache {path}: {exc}", stacklevel=4)


def _channel_stats(images: Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and (population) std of ``images / 255``, exact, via value histograms."""
    c = images.shape[1]
    hist = torch.zeros(c, 256, dtype=torch.int64)
    for i in range(0, images.shape[0], chunk):
        block = images[i : i + chunk]
        for ch in range(c):
            hist[ch] += torch.bincount(block[:, ch].reshape(-1), minlength=256)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    count = hist.sum(dim=1).clamp_min(1).double()
    mean = (hist.double() * values).sum(dim=1) / count
    var = (hist.double() * values.square()).sum(dim=1) / count - mean.square()
    std = var.clamp_min(0).sqrt().clamp_min(1e-6)
    return tuple(mean.tolist()), tuple(std.tolist())


# ---- image decoding -------------------------------------------------------------------------


def _read_image(
    name: str, path: Path, mode: str, size: int | None, expect: tuple[int, int] | None
) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            img = im.convert(mode) if im.mode != mode else im
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad data
        raise DatasetCorruptError(
            name, path, f"cannot be decoded as an image ({type(exc).__name__}: {exc})"
        ) from exc
    if size is None and expect is not None and (arr.shape[1], arr.shape[0]) != expect:
        raise DatasetCorruptError(
            name, path, f"is {arr.shape[1]}x{arr.shape[0]} pixels, expected {expect[0]}x{expect[1]}"
        )
    return arr[:, :, None] if arr.ndim == 2 else arr


def _decode_images(
    name: str,
    root: Path,
    paths: Sequence[Path],
    *,
    size: int | None,
    expect: tuple[int, int] | None,
    opts: dict[str, Any],
    mode: str = "RGB",
) -> np.ndarray:
    """Decode image files into one ``uint8 [N, C, H, W]`` array (threads; tqdm when many)."""
    if not paths:
        return np.zeros((0, 3, size or 0, size or 0), np.uint8)
    workers = opts["workers"] or min(8, os.cpu_count() or 1)

    def read(path: Path) -> np.ndarray:
        try:
            return _read_image(name, path, mode, size, expect)
        except FileNotFoundError:
            raise DatasetNotFoundError(name, root, path) from None

    first = read(paths[0])
    if size is None and expect is None:
        expect = (first.shape[1], first.shape[0])  # all images of a split must share a size
    out = np.empty((len(paths), *first.shape), np.uint8)
    out[0] = first
    bar = None
    if opts["progress"] and len(paths) >= 2000:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(paths), desc=f"decoding {name}", unit="img")
        except ImportError:  # tqdm is optional; decode silently without it
            bar = None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for k, arr in enumerate(pool.map(read, paths[1:], chunksize=64), start=1):
            out[k] = arr
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out.transpose(0, 3, 1, 2)


# ---- CIFAR-10 / CIFAR-100 -------------------------------------------------------------------


def _cifar_md5s(name: str) -> dict[str, str]:
    """torchvision's official md5 table for the CIFAR python files (file name -> md5)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    table = {f: md5 for f, md5 in (*cls.train_list, *cls.test_list)}
    table[cls.meta["filename"]] = cls.meta["md5"]
    return table


def _cifar_download(name: str, target: Path, split: str) -> None:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    target.mkdir(parents=True, exist_ok=True)
    cls(root=str(target), train=split == "train", download=True)


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plan_cifar(
    name: str, root: Path, base: Path, looked: list[Path], split: str, opts: dict[str, Any]
) -> _Plan:
    if name == "cifar10":
        folder = base / "cifar-10-batches-py"
        data_files = (
            [f"data_batch_{k}" for k in range(1, 6)] if split == "train" else ["test_batch"]
        )
        meta_file, label_key, names_key = "batches.meta", "labels", "label_names"
    else:
        folder = base / "cifar-100-python"
        data_files = ["train"] if split == "train" else ["test"]
        meta_file, label_key, names_key = "meta", "fine_labels", "fine_label_names"
    files = [folder / f for f in (*data_files, meta_file)]
    _require(name, root, folder, looked)
    for f in files:
        _require(name, root, f)
    if opts["verify"]:
        table = _cifar_md5s(name)
        for f in files:
            got = _md5(f)
            if got != table[f.name]:
                raise DatasetCorruptError(
                    name, f, f"failed its md5 checksum (got {got}, expected {table[f.name]})"
                )

    def unpickle(path: Path) -> dict[str, Any]:
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh, encoding="latin1")
        except Exception as exc:
            raise DatasetCorruptError(
                name, path, f"is not a readable CIFAR pickle ({exc})"
            ) from exc

    def decode() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        xs, ys = [], []
        for f in files[:-1]:
            entry = unpickle(f)
            xs.append(np.asarray(entry["data"], np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry[label_key], np.int64))
        classes = tuple(str(c) for c in unpickle(files[-1])[names_key])
        return np.concatenate(xs), np.concatenate(ys), classes

    return _Plan(files, decode)


# ---- TinyImageNet ---------------------------------------------------------------------------


def _plan_tinyimagenet(
    name: str, root: Path, base: Path, looked: list[Path], split: str, opts: dict[str, Any]
) -> _Plan:
    top = base / "tiny-imagenet-200"
    _require(name, root, top, looked)
    wnids_file = _require(name, root, top / "wnids.txt")
    wnids = sorted(line.strip() for line in wnids_file.read_text().splitlines() if line.strip())
    index = {w: k for k, w in enumerate(wnids)}
    meta_files = [wnids_file]
    paths: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for w in wnids:
            folder = _require(name, root, top / "train" / w / "images")
            found = sorted(folder.glob("*.JPEG"))
            if not found:
                raise DatasetNotFoundError(name, root, folder / "*.JPEG", "The folder is empty.")
            paths += found
            labels += [index[w]] * len(found)
    else:
        ann = _require(name, root, top / "val" / "val_annotations.txt")
        meta_files.append(ann)
        for lineno, line in enumerate(ann.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in index:
                raise DatasetCorruptError(
                    name, ann, f"line {lineno} is not 'filename<TAB>wnid<TAB>…' with a known wnid"
                )
            paths.append(top / "val" / "images" / parts[0])
            labels.append(index[parts[1]])
    classes = _tinyimagenet_names(top / "words.txt", wnids)
    if (top / "words.txt").exists():
        meta_files.append(top / "words.txt")

    def decode() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        images = _decode_images(name, root, paths, size=None, expect=(64, 64), opts=opts)
        return images, np.asarray(labels, np.int64), classes

    return _Plan(meta_files + paths, decode)


def _tinyimagenet_names(words: Path, wnids: list[str]) -> tuple[str, ...]:
    """First synonym from ``words.txt`` per wnid (wnid appended where names repeat)."""
    if not words.exists():
        return tuple(wnids)
    table = {}
    for line in words.read_text(encoding="utf-8", errors="replace").splitlines():
        wnid, _, text = line.partition("\t")
        table[wnid.strip()] = text.split(",")[0].strip()
    names = [table.get(w) or w for w in wnids]
    return tuple(
        n if names.count(n) == 1 else f"{n} ({w})" for n, w in zip(names, wnids, strict=True)
    )


# ---- FER2013 --------------------------------------------------------------------------------


def _plan_fer2013(
    name: str, root: Path, base: Path, looked: list[Path], split: str, opts: dict[str, Any]
) -> _Plan:
    candidates = [base / "fer2013.csv", base / "icml_face_data.csv"]
    found = [c for c in candidates if c.exists()]
    if not found:
        detail = "Looked for the dataset folder in: " + ", ".join(str(p) for p in looked) + "."
        raise DatasetNotFoundError(name, root, " or ".join(str(c) for c in candidates), detail)
    path = found[0]
    usage = FER2013_USAGE[split]

    def decode() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        xs, ys = [], []
        with open(path, newline="") as f, warnings.catch_warnings():
            warnings.simplefilter("error")  # np.fromstring warns (-> error) on a bad token
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            try:
                ie, ip, iu = (header.index(c) for c in ("emotion", "pixels", "usage"))
            except ValueError:
                raise DatasetCorruptError(
                    name, path, f"has header {header}, expected emotion, pixels and Usage columns"
                ) from None
            for lineno, row in enumerate(reader, start=2):
                if len(row) <= max(ie, ip, iu):
                    raise DatasetCorruptError(name, path, f"line {lineno} has too few columns")
                if row[iu].strip() != usage:
                    continue
                try:
                    pixels = np.fromstring(row[ip], dtype=np.int16, sep=" ")
                    label = int(row[ie])
                except (ValueError, DeprecationWarning):
                    pixels, label = np.zeros(0, np.int16), -1
                if pixels.size != 48 * 48 or not 0 <= label < 7 or pixels.min() < 0:
                    raise DatasetCorruptError(
                        name,
                        path,
                        f"line {lineno}: expected an emotion in 0-6 and 2304 pixel values 0-255",
                    )
                if pixels.max() > 255:
                    raise DatasetCorruptError(name, path, f"line {lineno}: pixel value > 255")
                xs.append(pixels.astype(np.uint8).reshape(1, 48, 48))
                ys.append(label)
        if not xs:
            raise DatasetCorruptError(name, path, f"has no rows with Usage == {usage}")
        return np.stack(xs), np.asarray(ys, np.int64), FER2013_CLASSES

    return _Plan([path], decode)


# ---- RAF-DB (basic) -------------------------------------------------------------------------


def _plan_rafdb(
    name: str, root: Path, base: Path, looked: list[Path], split: str, opts: dict[str, Any]
) -> _Plan:
    basic = base / "basic"
    _require(name, root, basic, looked)
    label_file = _require(name, root, basic / "EmoLabel" / "list_patition_label.txt")
    paths, labels = [], []
    for lineno, line in enumerate(label_file.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit() or not 1 <= int(parts[1]) <= 7:
            raise DatasetCorruptError(
                name, label_file, f"line {lineno} is not '<image>.jpg <label 1-7>'"
            )
        if parts[0].startswith(f"{split}_"):
            stem = parts[0].rsplit(".", 1)[0]
            paths.append(basic / "Image" / "aligned" / f"{stem}_aligned.jpg")
            labels.append(int(parts[1]) - 1)  # RAF-DB labels are 1-based
    if not paths:
        raise DatasetCorruptError(name, label_file, f"lists no '{split}_*' images")
    size = opts["size"]

    def decode() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        images = _decode_images(name, root, paths, size=size, expect=(100, 100), opts=opts)
        return images, np.asarray(labels, np.int64), RAFDB_CLASSES

    return _Plan([label_file, *paths], decode, f"-{size}px" if size else "")


# ---- Chaoyang -------------------------------------------------------------------------------


def _plan_chaoyang(
    name: str, root: Path, base: Path, looked: list[Path], split: str, opts: dict[str, Any]
) -> _Plan:
    index_file = _require(name, root, base / f"{split}.json", looked)
    try:
        entries = json.loads(index_file.read_text())
        paths = [base / str(e["name"]) for e in entries]
        labels = [int(e["label"]) for e in entries]
    except (ValueError, TypeError, KeyError) as exc:
        raise DatasetCorruptError(
            name, index_file, f"is not a JSON list of {{'name', 'label'}} ({exc})"
        ) from exc
    if not paths or not all(0 <= y < len(CHAOYANG_CLASSES) for y in labels):
        raise DatasetCorruptError(name, index_file, "must list images with labels 0-3")
    size = opts["size"]

    def decode() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        images = _decode_images(name, root, paths, size=size, expect=None, opts=opts)
        return images, np.asarray(labels, np.int64), CHAOYANG_CLASSES

    return _Plan([index_file, *paths], decode, f"-{size}px" if size else "")


_PLANNERS: dict[str, Callable[..., _Plan]] = {
    "cifar10": _plan_cifar,
    "cifar100": _plan_cifar,
    "tinyimagenet": _plan_tinyimagenet,
    "fer2013": _plan_fer2013,
    "rafdb": _plan_rafdb,
    "chaoyang": _plan_chaoyang,
}


# --------------------------------------------------------------------------------------------
# Embedded datasets
# --------------------------------------------------------------------------------------------


def _generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded from a hash of ``parts`` (decorrelated streams per key)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _flip_labels(labels: Tensor, rate: float, num_classes: int, gen: torch.Generator) -> Tensor:
    """Move exactly ``round(rate * N)`` labels, chosen at random, to a different random class."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"label_noise must lie in [0, 1), got {rate}")
    k = round(rate * len(labels))
    noisy = labels.clone()
    idx = torch.randperm(len(labels), generator=gen)[:k]
    noisy[idx] = (labels[idx] + torch.randint(1, num_classes, (k,), generator=gen)) % num_classes
    return noisy


def _load_digits(
    split: str, seed: int = 0, test_fraction: float = 0.25, label_noise: float = 0.0
) -> ImageDataset:
    """scikit-learn's bundled digits: 1,797 8x8 gray images, 10 classes (SPEC Sec. 3.3 proxy).

    Pixel values 0-16 become 0-255. The split is stratified and deterministic in ``seed``
    (75/25 by default: 1,347 train / 450 test). ``label_noise`` moves that fraction of the
    *train* labels to another class (SPEC Sec. 3.3: "optionally 20-40 % symmetric label noise as
    a FER-like proxy"); test labels stay clean.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise must lie in [0, 1), got {label_noise}")

    bunch = load_digits()
    images = torch.from_numpy(np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None])
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    classes = tuple(str(d) for d in range(10))
    mean, std = _channel_stats(images[train_idx])
    idx = train_idx if split == "train" else test_idx
    x, y = images[idx].contiguous(), labels[idx]
    clean = None
    if split == "train" and label_noise > 0:
        clean, y = y, _flip_labels(y, label_noise, 10, _generator("digits-noise", seed))
    return ImageDataset("digits", split, x, y, classes, mean, std, clean)


def make_synthetic_bands(
    split: str = "train",
    *,
    n: int = 4096,
    n_test: int = 1024,
    size: int = 32,
    channels: int = 3,
    num_classes: int = 10,
    band: tuple[float, float] = (4.0, 8.0),
    label_noise: float = 0.0,
    signal: float = 1.0,
    noise: float = 1.0,
    shift: bool = True,
    seed: int = 0,
) -> ImageDataset:
    r"""Images whose class signal lives in one spatial-frequency band, with optional label noise.

    Why: the paper's p ablation (Sec. 3.3, SPEC Sec. 3.4) reads its six datasets through the
    spectral lens of Sec. 3.2: :math:`G_p(\omega)\propto V(\omega)^{-p}`, so p > 0 damps the
    high-variance, high-frequency gradient components and p < 0 amplifies them. It concludes that
    *noisy labels favour p > 0* (FER2013) while *clean, detail-rich data tolerates p <= 0*
    (CIFAR-10, RAF-DB). This generator makes both factors knobs, so the claim can be probed on a
    CPU: ``band`` moves the discriminative detail from coarse (low f) to fine (high f), and
    ``label_noise`` corrupts a known fraction of the train labels.

    Construction (deterministic in ``seed``): each class ``k`` gets a prototype
    :math:`P_k = \mathcal F^{-1}[Z_k \cdot 1\{f_{lo}\le |f| \le f_{hi}\}]` with complex Gaussian
    :math:`Z_k` on the ``size x size`` frequency grid (``|f|`` in cycles per image), scaled to unit
    RMS. A sample of class ``y`` is ``signal * roll(P_y, random shift) + noise * white noise``
    (``shift=False`` keeps the prototype in place), quantised to ``uint8`` as
    ``clip(127.5 + x * 127.5 / (4 sqrt(signal^2 + noise^2)))`` (4 sigma fits the range).
    Labels are balanced. ``label_noise`` moves exactly ``round(label_noise * n)`` train labels to
    a uniformly drawn *other* class (``clean_labels`` keeps the truth); test labels are clean.
    Train and test share the prototypes and draw samples from separate streams.

    Args:
        split: ``"train"`` (``n`` samples) or ``"test"`` (``n_test`` samples).
        size: image side in pixels; channels: >= 1 (3 mimics RGB); num_classes: >= 2.
        band: ``(f_lo, f_hi)`` in cycles per image, 0 <= f_lo <= f_hi <= size/sqrt(2).
        label_noise: fraction of train labels flipped, in [0, 1).
        signal, noise: RMS amplitude of the class pattern and of the broadband noise.
        shift: random circular translation of the pattern per sample.
        seed: the only source of randomness.
    """
    if split not in ("train", "test"):
        raise ValueError(f"synthetic_bands has splits ('train', 'test'), got {split!r}")
    f_lo, f_hi = (float(b) for b in band)
    if not 0 <= f_lo <= f_hi:
        raise ValueError(f"band must satisfy 0 <= f_lo <= f_hi, got {band}")
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise must lie in [0, 1), got {label_noise}")
    if num_classes < 2 or channels < 1 or size < 2 or n < 1 or n_test < 1:
        raise ValueError("need num_classes >= 2, channels >= 1, size >= 2, n >= 1, n_test >= 1")
    fy = torch.fft.fftfreq(size, d=1.0 / size).abs()
    fx = torch.fft.rfftfreq(size, d=1.0 / size)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    mask = (radius >= f_lo) & (radius <= f_hi)
    if not mask.any():
        raise ValueError(f"band {band} contains no frequency of a {size}x{size} grid")
    g = _generator("synthetic_bands-prototypes", seed)
    shape = (num_classes, channels, size, size // 2 + 1)
    z = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g)) * mask
    protos = torch.fft.irfft2(z, s=(size, size))
    protos /= protos.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)

    def sample(which: str, count: int) -> tuple[Tensor, Tensor]:
        gs = _generator("synthetic_bands-samples", seed, which)
        y = (torch.arange(count) % num_classes)[torch.randperm(count, generator=gs)]
        x = protos[y]
        if shift:
            dy, dx = torch.randint(0, size, (2, count), generator=gs)
            rows = (torch.arange(size)[None, :] + dy[:, None]) % size  # [count, size]
            cols = (torch.arange(size)[None, :] + dx[:, None]) % size
            b = torch.arange(count)[:, None, None]
            x = x[b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        x = signal * x + noise * torch.randn(x.shape, generator=gs)
        scale = 127.5 / (4.0 * math.sqrt(signal**2 + noise**2) or 1.0)
        u8 = (127.5 + scale * x).round_().clamp_(0, 255).to(torch.uint8).contiguous()
        return u8, y

    train_x, train_y = sample("train", n)
    mean, std = _channel_stats(train_x)
    classes = tuple(f"class{k}" for k in range(num_classes))
    if split == "test":
        x, y = sample("test", n_test)
        return ImageDataset("synthetic_bands", "test", x, y, classes, mean, std)
    clean = None
    if label_noise > 0:
        gn = _generator("synthetic_bands-noise", seed)
        clean, train_y = train_y, _flip_labels(train_y, label_noise, num_classes, gn)
    return ImageDataset("synthetic_bands", "train", train_x, train_y, classes, mean, std, clean)


# --------------------------------------------------------------------------------------------
# The device-side loader
# --------------------------------------------------------------------------------------------


def crop_flip(
    x: Tensor, offsets: Tensor, hflip: Tensor, vflip: Tensor | None = None, pad: int = 4
) -> Tensor:
    """Batched RandomCrop(H, padding=pad) then horizontal (and vertical) flip, one gather.

    ``x`` is ``[B, C, H, W]``; ``offsets`` is ``[2, B]`` (row, column) in ``[0, 2 pad]``, the
    top-left corner of the crop in the zero-padded image; ``hflip``/``vflip`` are ``[B]`` bools.
    Output pixel ``(i, j)`` is ``padded[i' + dy, j' + dx]`` with ``j' = W-1-j`` when flipped
    (torchvision order: crop, then flip). Pixels read from the padding are 0, as in
    ``transforms.RandomCrop(padding=pad)`` on ``uint8`` data. The result is ``[B, C, H, W]`` with
    channels-last strides.
    """
    b, _, h, w = x.shape
    dev = x.device
    rows = torch.arange(h, device=dev).expand(b, h)
    cols = torch.arange(w, device=dev).expand(b, w)
    if vflip is not None:
        rows = torch.where(vflip[:, None], h - 1 - rows, rows)
    cols = torch.where(hflip[:, None], w - 1 - cols, cols)
    r = rows + offsets[0][:, None] - pad
    c = cols + offsets[1][:, None] - pad
    valid = ((r >= 0) & (r < h))[:, :, None] & ((c >= 0) & (c < w))[:, None, :]
    r, c = r.clamp(0, h - 1), c.clamp(0, w - 1)
    bi = torch.arange(b, device=dev)[:, None, None]
    out = x[bi, :, r[:, :, None], c[:, None, :]]  # [B, H, W, C]
    out = torch.where(valid[..., None], out, torch.zeros((), dtype=x.dtype, device=dev))
    return out.permute(0, 3, 1, 2)


def _fits_on(device: torch.device, nbytes: int) -> bool:
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= 0.4 * free


class DeviceLoader:
    """Batches from an :class:`ImageDataset` held on ``device`` (moved there once).

    The train pipeline of SPEC Sec. 3.2/8.1 (RandomCrop with zero padding ``crop_pad``, random
    horizontal flip, per-channel normalisation) runs in batch on the device, so a GPU never waits
    for JPEG decoding. ``vflip=True`` adds the vertical flip SPEC Sec. 3.2 lists for Chaoyang.

    Determinism and resumption: epoch ``e`` uses one permutation drawn from ``(seed, e)``; the
    augmentation of batch ``i`` comes from a generator seeded with ``(seed, e, i)`` and is drawn
    for the whole global batch, so batch ``i`` of epoch ``e`` is a pure function of
    ``(seed, e, i)`` and ``epoch(e, start_batch=i)`` reproduces an uninterrupted run exactly.

    DDP: the global batch is ``batch_size * world_size`` samples of the shared permutation; rank
    ``r`` takes its contiguous slice. A sample's augmentation depends on its position in the
    global batch, not on the rank, so one process with ``batch_size=2B`` sees exactly the
    concatenation of what two ranks with ``B`` see.

    ``drop_last=None`` keeps the last partial batch (SPEC Sec. 8.1 counts ceil(N/B) iterations)
    unless it would leave a rank fewer than 2 samples (BatchNorm cannot train on one); that rule
    depends on ``world_size``, so pass ``drop_last`` explicitly where the 1-process/2-process
    equivalence must hold for every N. ``train=False`` uses the dataset order, no augmentation,
    and always keeps the last batch (a rank may then get an empty slice). When the images do not
    fit in 40 % of the free GPU memory they stay in pinned host memory and each batch is gathered
    there and copied (``keep_on_device`` overrides the choice).
    """

    def __init__(
        self,
        dataset: ImageDataset,
        batch_size: int,
        *,
        device: str | torch.device,
        train: bool,
        seed: int,
        crop_pad: int = 4,
        flip: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool | None = None,
        channels_last: bool = False,
        vflip: bool = False,
        keep_on_device: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, {world_size=}")
        if crop_pad < 0:
            raise ValueError(f"crop_pad must be >= 0, got {crop_pad}")
        if not train and drop_last:
            raise ValueError("train=False keeps every sample; drop_last=True is not allowed")
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.train, self.seed = train, seed
        self.crop_pad, self.flip, self.vflip = crop_pad, flip, vflip
        self.rank, self.world_size = rank, world_size
        self.channels_last = channels_last
        self.global_batch = batch_size * world_size
        n = len(dataset)
        if drop_last is None:
            rem = n % self.global_batch
            drop_last = train and rem > 0 and n >= self.global_batch and rem // world_size < 2
        self.drop_last = bool(drop_last)
        images = dataset.images
        on_device = keep_on_device
        if on_device is None:
            on_device = _fits_on(self.device, images.numel() * images.element_size())
        self._store = self.device if on_device else torch.device("cpu")
        if on_device:
            self._images = images.to(self.device)
        else:
            self._images = images.pin_memory() if self.device.type == "cuda" else images
        self._labels = dataset.labels.to(self._store)
        mean = torch.tensor(dataset.mean, dtype=torch.float32, device=self.device)
        std = torch.tensor(dataset.std, dtype=torch.float32, device=self.device)
        self._scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
        self._shift = (mean / std).view(1, -1, 1, 1)
        self._perm_epoch: int | None = None
        self._perm: Tensor | None = None

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)

    def _permutation(self, epoch: int) -> Tensor:
        if self._perm_epoch != epoch:
            perm = torch.randperm(len(self.dataset), generator=_generator("perm", self.seed, epoch))
            self._perm, self._perm_epoch = perm.to(self._store), epoch
        assert self._perm is not None
        return self._perm

    def augmentation(self, epoch: int, batch: int, count: int) -> tuple[Tensor, Tensor, Tensor]:
        """Crop offsets ``[2, count]`` and h/v flip masks ``[count]`` of one global batch (CPU)."""
        g = _generator("augment", self.seed, epoch, batch)
        offsets = torch.randint(0, 2 * self.crop_pad + 1, (2, count), generator=g)
        flips = torch.rand((2, count), generator=g) < 0.5
        return offsets, flips[0] & self.flip, flips[1] & self.vflip

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(images float32 [B_local, C, H, W], labels int64 [B_local])`` on the device."""
        total = len(self)
        if not 0 <= start_batch <= total:
            raise ValueError(f"start_batch must lie in [0, {total}], got {start_batch}")
        n = len(self.dataset)
        order = self._permutation(epoch) if self.train else None
        for i in range(start_batch, total):
            g0 = i * self.global_batch
            count = min(self.global_batch, n - g0)
            lo = self.rank * count // self.world_size
            hi = (self.rank + 1) * count // self.world_size
            if order is not None:
                idx = order[g0 + lo : g0 + hi]
            else:
                idx = torch.arange(g0 + lo, g0 + hi, device=self._store)
            x = self._images[idx].to(self.device, non_blocking=True)
            y = self._labels[idx].to(self.device, non_blocking=True)
            if self.train and (self.crop_pad > 0 or self.flip or self.vflip):
                offsets, hflip, vflip = self.augmentation(epoch, i, count)
                params = torch.cat([offsets, hflip[None], vflip[None]])[:, lo:hi]
                params = params.to(self.device, non_blocking=True)
                x = crop_flip(x, params[:2], params[2].bool(), params[3].bool(), self.crop_pad)
            out = torch.addcmul(-self._shift, x.float(), self._scale)  # (x/255 - mean) / std
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            yield out.contiguous(memory_format=fmt), y

    def __repr__(self) -> str:
        return (
            f"DeviceLoader({self.dataset!r}, batch_size={self.batch_size}, device={self.device}, "
            f"train={self.train}, rank={self.rank}/{self.world_size}, batches={len(self)})"
        )
