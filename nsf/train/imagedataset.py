"""The in-memory form every dataset takes (paper Sec. 3.3, Sec. 5.1), and what its sources share.

:class:`~nsf.train.imagedataset.ImageDataset` holds a whole split: one ``uint8`` tensor ``[N, C,
H, W]``, one ``int64`` label tensor, and the dataset's train :class:`Augmentation`.
:func:`channel_stats` computes the per-channel normalisation statistics exactly;
:func:`keyed_generator` gives decorrelated, reproducible random streams per key (the embedded
datasets and :class:`nsf.train.loader.DeviceLoader` draw from it).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Augmentation", "ImageDataset", "channel_stats", "keyed_generator"]


@dataclass(frozen=True)
class Augmentation:
    """A train pipeline as :class:`~nsf.train.loader.DeviceLoader` applies it (paper Sec. 3.3,
    Sec. 5.1): RandomCrop with ``crop_pad`` pixels of zero padding (0: no crop), then a random
    horizontal ``flip`` and a random vertical ``vflip``. The default is no augmentation."""

    crop_pad: int = 0
    flip: bool = False
    vflip: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.crop_pad, int) or isinstance(self.crop_pad, bool):
            raise TypeError(f"crop_pad must be an int, got {self.crop_pad!r}")
        if self.crop_pad < 0:
            raise ValueError(f"crop_pad must be >= 0, got {self.crop_pad}")
        if not isinstance(self.flip, bool) or not isinstance(self.vflip, bool):
            raise TypeError(f"flip and vflip must be bools, got {self.flip!r}, {self.vflip!r}")

    @property
    def active(self) -> bool:
        """Whether it changes any image."""
        return self.crop_pad > 0 or self.flip or self.vflip

    def override(
        self, crop_pad: int | None = None, flip: bool | None = None, vflip: bool | None = None
    ) -> Augmentation:
        """This augmentation with the given fields replaced; ``None`` keeps a field."""
        given = {"crop_pad": crop_pad, "flip": flip, "vflip": vflip}
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """``{"crop_pad": ..., "flip": ..., "vflip": ...}``, the fields of a TrainConfig."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)  # eq=False: compare by identity, tensors have no bool ==
class ImageDataset:
    """A whole split in memory: ``uint8`` images ``[N, C, H, W]`` and ``int64`` labels ``[N]``.

    ``mean``/``std`` are the per-channel statistics of the train split's ``images / 255``, used by
    :class:`~nsf.train.loader.DeviceLoader` to normalise. ``clean_labels`` is set only where
    labels were corrupted on purpose (the embedded datasets' ``label_noise`` option): it holds
    the labels before noise. ``augmentation`` is the dataset's declared train augmentation
    (:data:`nsf.train.datasets.TRAIN_AUGMENTATION`), which a training loader applies unless told
    otherwise; every split of a dataset carries it, a loader with ``train=False`` never applies it.
    """

    name: str
    split: str
    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    clean_labels: Tensor | None = None
    augmentation: Augmentation = Augmentation()

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
        if not isinstance(self.augmentation, Augmentation):
            raise TypeError(f"augmentation must be an Augmentation, got {self.augmentation!r}")
        if not self.images.is_contiguous():
            object.__setattr__(self, "images", self.images.contiguous())

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Tensor, split: str) -> ImageDataset:
        """The examples at ``indices`` as the split ``split``, with this split's normalisation
        statistics, classes and augmentation (and its clean labels, where it has them)."""
        clean = None if self.clean_labels is None else self.clean_labels[indices]
        return dataclasses.replace(
            self,
            split=split,
            images=self.images[indices],
            labels=self.labels[indices],
            clean_labels=clean,
        )

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.images.shape)
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, images={shape} uint8, "
            f"num_classes={self.num_classes})"
        )


def channel_stats(images: Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], ...]:
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


def keyed_generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded from a hash of ``parts`` (decorrelated streams per key)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
