"""The run store: one directory per configuration, written atomically, never recomputed.

A run is keyed by a hash of its full configuration (canonical JSON), so the same configuration
always maps to the same directory, and any change to it maps to a new one::

    store = RunStore("runs")
    run = store.run({"dataset": "digits", "p": -0.15, "epochs": 5})
    if not run.is_finished:
        ...                                   # train, writing checkpoints with run.save(...)
        run.finish({"top1": 0.97})

Every file goes through :func:`atomic_write_bytes` (write a temporary file beside the target,
fsync, rename), so a run killed at any moment leaves either the old file or the new one, never
half of one. The training engine (chapters 02 and 06) and the book's chapter cache both use it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "Run",
    "RunStore",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "config_hash",
]

CONFIG_FILE = "config.json"
FINISHED_FILE = "finished.json"


def _canonical(value: Any) -> Any:
    """JSON-ready form of a config: tuples become lists, paths and other objects their str."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value) if not isinstance(value, Path) else str(value)


def config_hash(config: Mapping[str, Any], length: int = 16) -> str:
    """SHA-256 of the canonical JSON of ``config``, as ``length`` hex digits."""
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """:func:`atomic_write_bytes` for an indented JSON document."""
    return atomic_write_text(path, json.dumps(_canonical(obj), indent=2) + "\n")


class Run:
    """One run directory: its config, its files, and whether it has finished."""

    def __init__(self, directory: str | os.PathLike, config: Mapping[str, Any]) -> None:
        self.dir = Path(directory)
        self.config = dict(config)

    @property
    def is_finished(self) -> bool:
        return (self.dir / FINISHED_FILE).exists()

    @property
    def summary(self) -> dict[str, Any]:
        """What :meth:`finish` recorded; raises if the run has not finished."""
        if not self.is_finished:
            raise FileNotFoundError(f"run {self.dir} has not finished; no {FINISHED_FILE} yet")
        return json.loads((self.dir / FINISHED_FILE).read_text())

    def path(self, name: str) -> Path:
        return self.dir / name

    def save(self, obj: Any, name: str) -> Path:
        """``torch.save`` ``obj`` to ``name`` inside the run, atomically."""
        import torch

        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return atomic_write_bytes(self.path(name), buffer.getvalue())

    def load(self, name: str) -> Any:
        """``torch.load`` with ``weights_only=True``: checkpoints hold tensors and plain data."""
        import torch

        return torch.load(self.path(name), map_location="cpu", weights_only=True)

    def finish(self, summary: Mapping[str, Any] | None = None) -> None:
        """Mark the run finished; a finished run is never recomputed."""
        atomic_write_json(self.path(FINISHED_FILE), dict(summary or {}))

    def __repr__(self) -> str:
        state = "finished" if self.is_finished else "unfinished"
        return f"Run({str(self.dir)!r}, {state})"


class RunStore:
    """A directory of runs, ``<root>/<prefix>-<hash>``, one per distinct configuration."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def directory(self, config: Mapping[str, Any], prefix: str = "run") -> Path:
        """Where the run for ``config`` lives (nothing is created)."""
        return self.root / f"{prefix}-{config_hash(config)}"

    def run(self, config: Mapping[str, Any], prefix: str = "run") -> Run:
        """The run for ``config``, created (with its ``config.json``) if it does not exist."""
        directory = self.directory(config, prefix)
        config_path = directory / CONFIG_FILE
        if config_path.exists():
            stored = json.loads(config_path.read_text())
            if stored != _canonical(config):
                raise RuntimeError(
                    f"{config_path} holds a different config than its hash says; "
                    "the directory was edited by hand: delete it to recompute"
                )
        else:
            atomic_write_json(config_path, config)
        return Run(directory, config)

    def runs(self) -> list[Run]:
        """Every run under the root, in name order."""
        found = []
        for config_path in sorted(self.root.glob(f"*/{CONFIG_FILE}")):
            found.append(Run(config_path.parent, json.loads(config_path.read_text())))
        return found
