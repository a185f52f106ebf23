"""The decoded-data cache: one ``.pt`` file per split and a JSON sidecar that vouches for it.

The sidecar holds the sha256 of the cached tensors (:func:`tensor_digest`: images, labels and
class names) and a fingerprint of the source files (:func:`source_fingerprint`: relative path,
size, mtime). A cache whose digest does not match is reported with a warning and rebuilt; a
changed source file changes the fingerprint and triggers a rebuild. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nsf.runstore import atomic_write_bytes
from nsf.train.errors import DatasetNotFoundError

__all__ = ["CACHE_DIRNAME", "read_cache", "read_sidecar", "source_fingerprint", "write_cache"]

CACHE_DIRNAME = ".nsf-cache"
CACHE_FORMAT = 1  # bump when the decoded representation changes; old caches are then rebuilt


def source_fingerprint(
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


def tensor_digest(images: Tensor, labels: Tensor, classes: Sequence[str]) -> str:
    h = hashlib.sha256(json.dumps([list(images.shape), list(classes)]).encode())
    h.update(images.contiguous().numpy())
    h.update(labels.contiguous().numpy())
    return h.hexdigest()


def read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_cache(path: Path, meta: dict[str, Any]) -> tuple[Tensor, Tensor, tuple[str, ...]] | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        images, labels, classes = blob["images"], blob["labels"], tuple(blob["classes"])
        ok = tensor_digest(images, labels, classes) == meta["sha256"]
    except Exception:  # unreadable, truncated, wrong keys: treat as corrupt
        ok = False
    if not ok:
        warnings.warn(
            f"decoded cache {path} failed its sha256 check; rebuilding it from the source files",
            stacklevel=4,
        )
        return None
    return images, labels, classes


def write_cache(
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
        "sha256": tensor_digest(images, labels, classes),
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
