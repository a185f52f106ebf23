"""The two errors of the dataset loaders; each names the dataset, the failing file, the layout
the loader expects and where to get the data (the book's Datasets page, ``book/datasets.md``, has
the same in long form, with each dataset's terms and citation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DatasetCorruptError", "DatasetNotFoundError"]


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
        "the competition's rules on Kaggle, accepted when you download; no licence is published "
        "for the images",
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
        "https://bupt-ai-cz.github.io/HSA-NRL/ (the authors' download instructions)",
        "Chaoyang licence: non-commercial use, no redistribution, cite Zhu et al. (IEEE TMI 2022)",
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
        f"Where to get {src.title}: {src.where}.\nTerms: {src.terms}.\n"
        "See the book's Datasets page (book/datasets.md) and data/README.md."
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
