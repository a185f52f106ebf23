r"""The six datasets of paper Sec. 3.3 and Sec. 5.1 and the one entry point to all eight.

Every dataset becomes an :class:`~nsf.train.imagedataset.ImageDataset`: one ``uint8`` tensor ``[N,
C, H, W]`` and one ``int64`` label tensor, decoded once and then kept whole in memory (and on the
accelerator, see :class:`~nsf.train.loader.DeviceLoader`), with the dataset's own train
augmentation (:data:`TRAIN_AUGMENTATION`). ::

    train = load_dataset("tinyimagenet", "train")          # reads $NSF_DATA_ROOT/tinyimagenet/
    test = load_dataset("tinyimagenet", "test")            # the official (labelled) val set
    loader = DeviceLoader(train, 256, device="cuda", train=True, seed=0)
    for x, y in loader.epoch(0):                           # float32, normalised, augmented on GPU
        ...

On-disk datasets (paper Sec. 3.3 and Sec. 5.1), each under ``<root>/<name>/`` in the layout
its authors distribute (the book's Datasets page, ``book/datasets.md``, gives sources, terms,
citations and the layout trees):

============  ======================================================================  ===========
name          official layout read                                                    splits
============  ======================================================================  ===========
cifar10       ``cifar-10-batches-py/`` (read by torchvision, md5-verified)            train, test
cifar100      ``cifar-100-python/`` (fine labels, read by torchvision, md5-verified)  train, test
tinyimagenet  ``tiny-imagenet-200/`` (``wnids.txt``, ``train/<wnid>/images``,         train, test
              ``val/val_annotations.txt``; test = official val)
fer2013       ``fer2013.csv`` or ``icml_face_data.csv`` (Usage column)                train, val,
                                                                                      test
rafdb         ``basic/EmoLabel/list_patition_label.txt``, ``basic/Image/aligned/``    train, test
chaoyang      ``train.json``, ``test.json``, ``train/``, ``test/``                    train, test
============  ======================================================================  ===========

Embedded datasets, no root and no download (the CPU proxies of paper Sec. 3.3):

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (real data, 1,797 images).
* ``synthetic_bands``: images whose class signal lies in a chosen spatial-frequency band, with a
  label-noise rate as a parameter; see :func:`~nsf.train.synthetic.make_synthetic_bands` for why.

The root is the ``root`` argument, else ``$NSF_DATA_ROOT``. A decoded split is cached as
``<root>/.nsf-cache/<name>-<split>.pt`` (written atomically) with a JSON sidecar holding the sha256
of its tensors and a fingerprint (path, size, mtime) of the source files: a tampered cache is
detected and rebuilt, and a changed source file triggers a rebuild. A missing dataset raises
:class:`~nsf.train.errors.DatasetNotFoundError`, a corrupt one
:class:`~nsf.train.errors.DatasetCorruptError`; both messages name the
dataset, the expected layout, the failing file and where to get the data.

Normalisation statistics (``mean``/``std``) are always those of the *train* split, so train and
test images are normalised identically (per-channel normalisation with the dataset's mean and std).

Every dataset also has the splits ``"fit"`` and ``"holdout"``, carved from ``"train"`` by
:func:`holdout_indices` (stratified by label, a fixed seed): a validation set for choosing
hyperparameters (chapter 02's ``per_p`` lr policy) that never touches the test split. They keep
the train split's normalisation statistics and its labels, noisy ones included.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nsf.train.cache import (
    CACHE_DIRNAME,
    read_cache,
    read_sidecar,
    source_fingerprint,
    write_cache,
)
from nsf.train.errors import DatasetCorruptError, DatasetNotFoundError
from nsf.train.imagedataset import Augmentation, ImageDataset, channel_stats, keyed_generator
from nsf.train.synthetic import digits, make_synthetic_bands

__all__ = [
    "CARVED",
    "DATASETS",
    "ENV_ROOT",
    "TRAIN_AUGMENTATION",
    "holdout_indices",
    "load_dataset",
]

#: The splits carved from ``"train"``: what is trained on, and what is held out to choose by.
CARVED = ("fit", "holdout")

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

FER2013_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
RAFDB_CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
CHAOYANG_CLASSES = ("normal", "serrated", "adenocarcinoma", "adenoma")
FER2013_USAGE = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}

#: Each dataset's train augmentation (paper Sec. 3.3 and Sec. 5.1; the paddings are the usual
#: ones, the paper does not state them). :class:`~nsf.train.loader.DeviceLoader` and
#: :class:`~nsf.train.config.TrainConfig` take a field from here wherever theirs is ``None``.
#:
#: * CIFAR-10/100 and TinyImageNet: RandomCrop with 4 pixels of padding and a horizontal flip,
#:   the standard pipeline of both (Sec. 5.1 states "random cropping and horizontal flipping" for
#:   TinyImageNet; at 64 px a 4-pixel shift is the same share of the image as 2 px at 32 px,
#:   a mild jitter that keeps the object in view).
#: * FER2013 (48 px, pad 4) and RAF-DB (112 px after the resize, pad 8): crop and horizontal
#:   flip. A mirrored face shows the same expression (the classes are left-right symmetric and
#:   the faces are aligned about a vertical axis), so a horizontal flip keeps the label; an
#:   upside-down face is not an image these datasets contain, so no vertical flip.
#: * Chaoyang: horizontal and vertical flips, no crop. A tissue section has no up, down, left
#:   or right, so every flip keeps the label; the 224-px resize already fixes the field of view.
#: * digits and synthetic_bands: none. A mirrored digit is not the same digit (few digits are
#:   left-right symmetric), and at 8x8 pixels a 1-pixel shift is an eighth of the image;
#:   synthetic_bands translates its class signal at random itself (``shift=True``), so an
#:   augmentation would only blur what the generator controls.
TRAIN_AUGMENTATION: dict[str, Augmentation] = {
    "cifar10": Augmentation(crop_pad=4, flip=True),
    "cifar100": Augmentation(crop_pad=4, flip=True),
    "tinyimagenet": Augmentation(crop_pad=4, flip=True),
    "fer2013": Augmentation(crop_pad=4, flip=True),
    "rafdb": Augmentation(crop_pad=8, flip=True),
    "chaoyang": Augmentation(flip=True, vflip=True),
    "digits": Augmentation(),
    "synthetic_bands": Augmentation(),
}


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    *,
    holdout_fraction: float = 0.1,
    **options: Any,
) -> ImageDataset:
    """Load one split of a dataset as an :class:`~nsf.train.imagedataset.ImageDataset` (paper
    Sec. 3.3, Sec. 5.1), carrying the dataset's :data:`TRAIN_AUGMENTATION`.

    Args:
        name: one of :data:`DATASETS`.
        split: ``"train"`` or ``"test"``; FER2013 also ``"val"`` (PublicTest; ``"test"`` is
            PrivateTest). TinyImageNet's ``"test"`` is the official labelled val set
            (``"val"`` is accepted as an alias and returns the same ``"test"`` split). Every
            dataset also has ``"fit"`` and ``"holdout"``, the two parts of ``"train"`` that
            :func:`holdout_indices` carves (``holdout_fraction`` of each class held out).
        holdout_fraction: the share of every class of ``"train"`` that ``"holdout"`` takes
            (ignored by the other splits).
        root: the data root holding ``<name>/``; default ``$NSF_DATA_ROOT``. Not used by
            ``digits`` and ``synthetic_bands``. The dataset folder itself (``<root>/<name>``) or
            the official top folder (e.g. ``.../tiny-imagenet-200``, ``.../basic``) is accepted too.
        **options: per dataset:

            * all on-disk datasets: ``cache=True`` (use/write ``<root>/.nsf-cache``),
              ``cache_dir=None`` (another cache folder), ``workers`` (decoding threads),
              ``progress=True`` (tqdm bar for large decodes).
            * ``cifar10``/``cifar100``: ``verify=True`` (torchvision's md5s),
              ``download=False`` (fetch with torchvision into ``<root>/<name>`` when True).
            * ``fer2013``: ``channels=3`` (48x48 gray repeated to 3 channels; 1 keeps gray).
            * ``rafdb``: ``size=112`` (resized to 112x112; ``None`` keeps 100x100).
            * ``chaoyang``: ``size=224`` (resized to 224x224; ``None`` keeps 512x512).
            * ``digits``: ``seed=0``, ``test_fraction=0.25``, ``label_noise=0.0``.
            * ``synthetic_bands``: see :func:`~nsf.train.synthetic.make_synthetic_bands`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    splits = ("train", "val", "test") if name == "fer2013" else ("train", "test")
    if name == "tinyimagenet" and split == "val":
        split = "test"  # the official val set is TinyImageNet's (labelled) test split
    if split not in splits + CARVED:
        raise ValueError(f"dataset {name!r} has splits {splits + CARVED}, got {split!r}")
    if split in CARVED:
        train = load_dataset(name, "train", root, **options)
        held = holdout_indices(train.labels, holdout_fraction)
        keep = torch.ones(len(train), dtype=torch.bool)
        keep[held] = False
        return train.subset(held if split == "holdout" else keep.nonzero().flatten(), split)
    if name == "digits":
        data = digits(split, **options)
    elif name == "synthetic_bands":
        data = make_synthetic_bands(split, **options)
    else:
        data = _load_on_disk(name, split, root, options)
    return dataclasses.replace(data, augmentation=TRAIN_AUGMENTATION[name])


def holdout_indices(labels: Tensor, fraction: float, seed: int = 0) -> Tensor:
    """The indices (sorted) of the held-out part of a split: from every class, a random
    ``round(fraction * n_class)`` of its ``n_class`` examples (at least one where the class has
    two or more, so each class keeps a fitted example too), drawn with a generator keyed by
    ``seed`` alone, so the carve is the same for every run, model and seed of training."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout_fraction must lie in (0, 1), got {fraction!r}")
    generator = keyed_generator("holdout", seed)
    held = []
    for label in torch.unique(labels).tolist():
        members = (labels == label).nonzero().flatten()
        n = len(members)
        take = min(max(round(fraction * n), 1), n - 1) if n > 1 else 0
        held.append(members[torch.randperm(n, generator=generator)[:take]])
    return torch.cat(held).sort().values


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
    fingerprint = source_fingerprint(name, root, base, plan.files, split, plan.tag)
    cache_dir = Path(opts["cache_dir"]) if opts["cache_dir"] else root / CACHE_DIRNAME
    cache_file = cache_dir / f"{name}-{split}{plan.tag}.pt"
    sidecar = cache_file.with_suffix(".json")
    if opts["cache"]:
        meta = read_sidecar(sidecar)
        if meta is not None and meta.get("fingerprint") == fingerprint:
            stats = (tuple(meta["mean"]), tuple(meta["std"]))
            if stats_only:
                return None, None, tuple(meta["classes"]), stats
            cached = read_cache(cache_file, meta)
            if cached is not None:
                return (*cached, stats)
    arrays, labels_np, classes = plan.decode()
    images = torch.from_numpy(np.ascontiguousarray(arrays))
    labels = torch.from_numpy(labels_np.astype(np.int64, copy=False))
    stats = channel_stats(images)
    if opts["cache"]:
        write_cache(cache_file, sidecar, images, labels, classes, stats, fingerprint)
    return images, labels, tuple(classes), stats


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
    from tqdm.auto import tqdm

    shown = opts["progress"] and len(paths) >= 2000
    bar = tqdm(total=len(paths), initial=1, desc=f"decoding {name}", unit="img", disable=not shown)
    with ThreadPoolExecutor(max_workers=workers) as pool, bar:
        for k, arr in enumerate(pool.map(read, paths[1:], chunksize=64), start=1):
            out[k] = arr
            bar.update(1)
    return out.transpose(0, 3, 1, 2)


# ---- CIFAR-10 / CIFAR-100 (torchvision's file list, md5s and reader) -----------------------


def _cifar_class(name: str) -> Any:
    from torchvision.datasets import CIFAR10, CIFAR100

    return CIFAR10 if name == "cifar10" else CIFAR100


def _cifar_download(name: str, target: Path, split: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    _cifar_class(name)(root=str(target), train=split == "train", download=True)


def _plan_cifar(
    name: str, root: Path, base: Path, looked: list[Path], split: str, opts: dict[str, Any]
) -> _Plan:
    """The split's batches and the meta file, as torchvision lists them; each is checked against
    torchvision's md5 (``verify``) here, before any decoding, so a failure names its file."""
    from torchvision.datasets.utils import calculate_md5, check_integrity

    cls = _cifar_class(name)
    folder = _require(name, root, base / cls.base_folder, looked)
    batches = cls.train_list if split == "train" else cls.test_list
    md5s = dict(batches) | {cls.meta["filename"]: cls.meta["md5"]}  # file name -> md5
    files = [_require(name, root, folder / f) for f in md5s]
    for f in files if opts["verify"] else ():
        expected = md5s[f.name]
        if not check_integrity(f, expected):
            got = calculate_md5(f)
            raise DatasetCorruptError(
                name, f, f"failed its md5 checksum (got {got}, expected {expected})"
            )
    # torchvision's reader of this split alone, its own md5 check off: the files were checked
    # above (or verify=False asked not to), and its check would also want the other split.
    unchecked = [[f, None] for f, _ in batches]
    reader = type(
        cls.__name__,
        (cls,),
        {
            "train_list": unchecked if split == "train" else [],
            "test_list": unchecked if split == "test" else [],
            "meta": {**cls.meta, "md5": None},
        },
    )

    def decode() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        try:
            data = reader(root=str(base), train=split == "train", download=False)
        except Exception as exc:  # a file that passed no md5 check (verify=False) and is bad
            listing = ", ".join(f.name for f in files)
            raise DatasetCorruptError(
                name, folder, f"holds a file ({listing}) that torchvision cannot read ({exc!r})"
            ) from exc
        images = np.asarray(data.data, np.uint8).transpose(0, 3, 1, 2)  # HWC -> CHW
        classes = tuple(str(c) for c in data.classes)
        return images, np.asarray(data.targets, np.int64), classes

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
