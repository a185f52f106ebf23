"""The device a run uses and how it computes there: placement, determinism, mixed precision."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["autocast", "determinism", "resolve_device"]


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """``"cuda"`` (GPU ``local_rank``), ``"cpu"``, or for ``"auto"`` CUDA when it is available."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch.cuda.is_available() is False")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


@contextlib.contextmanager
def determinism(deterministic: bool, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms and no cuDNN autotuning (else cuDNN benchmark); undone after."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        torch.backends.cudnn.deterministic = saved[3]


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``amp="bf16"`` on CUDA; nothing otherwise (a CPU run is float32)."""
    if device.type == "cuda" and amp == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
