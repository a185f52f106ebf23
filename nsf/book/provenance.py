"""Where a result came from: nsf version, git commit, device, and the repository root."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

__all__ = ["RECORD_FILE", "device_description", "git_commit", "repo_root"]

#: A chapter's record (its checks, figures and glued numbers), written by
#: :class:`nsf.book.figures.Chapter` beside the chapter's store and kept in the executed
#: notebook's metadata by :func:`nsf.book.execute_chapter`.
RECORD_FILE = "record.json"


@functools.cache
def repo_root() -> Path:
    """The nsf-book checkout this package runs from (``NSF_REPO_ROOT`` overrides).

    The book, its chapters and ``data/`` live beside the package, so the package must be
    installed from a checkout (``pip install -e .``, which ``make`` does).
    """
    if "NSF_REPO_ROOT" in os.environ:
        return Path(os.environ["NSF_REPO_ROOT"]).resolve()
    root = Path(__file__).resolve().parents[2]
    if not (root / "notebooks").is_dir():
        raise FileNotFoundError(
            f"{root} is not an nsf-book checkout (no notebooks/ there); install nsf from a clone "
            "with `pip install -e .`, or set NSF_REPO_ROOT to the clone"
        )
    return root


@functools.cache
def git_commit(root: Path | None = None) -> tuple[str, bool]:
    """(short commit, dirty) of the checkout; ("unknown", False) outside git."""
    root = root or repo_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, bool(status)


def device_description() -> str:
    """The accelerator torch would use, or the CPU, in words."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
