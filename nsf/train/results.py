"""What a run directory holds, and :class:`RunResult`, the view of a finished one.

A run lives in a directory of a :class:`nsf.runstore.RunStore`, keyed by the hash of
``TrainConfig.run_key``: ``config.json`` (that key), ``metrics.csv`` (one row per epoch,
rewritten atomically), ``p_log.json`` (the p of every iteration, run-length encoded),
``diagnostics.csv`` (with ``diagnostics_every``: the per-layer step diagnostics,
:data:`DIAGNOSTIC_COLUMNS`), ``checkpoint.pt`` (everything that training needs to continue),
``model.pt`` (the final weights) and ``finished.json`` (a summary, with the augmentation the run
used).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nsf.runstore import Run
from nsf.train.config import TrainConfig
from nsf.train.metrics import METRIC_COLUMNS, read_metrics_csv

__all__ = [
    "CHECKPOINT_FILE",
    "DIAGNOSTICS_FILE",
    "DIAGNOSTIC_COLUMNS",
    "METRICS_FILE",
    "MODEL_FILE",
    "P_LOG_FILE",
    "RunResult",
    "load_result",
]

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.csv"
P_LOG_FILE = "p_log.json"
DIAGNOSTICS_FILE = "diagnostics.csv"
#: One row per sampled iteration and parameter tensor (paper Sec. 5.1's step-size confound):
#: the iteration (0-based, the step just taken), its p and lr, the tensor's name, the RMS of its
#: step lr * u, that RMS over the RMS of the p = 0 step from the same optimizer state (how much
#: the exponent, not the gradient, scales the step), and the median of its v^.
DIAGNOSTIC_COLUMNS = (
    "iteration", "p", "lr", "layer", "update_rms", "ratio_to_p0", "median_vhat",
)  # fmt: skip


@dataclass
class RunResult:
    """What :func:`nsf.train.loop.train` returns: the run directory and what it holds.

    ``config`` is the config as it ran (device, precision and augmentation filled in),
    ``metrics`` one dict per epoch (keys ``METRIC_COLUMNS``), ``p_log`` the run-length
    encoded p of every iteration (:func:`nsf.train.plog.rle_decode` expands it), ``params_path``
    the final ``state_dict`` (``torch.load(..., weights_only=True)``), ``summary`` the contents
    of ``finished.json``, and ``from_cache`` whether the run had finished before this call.
    """

    run_dir: Path
    config: TrainConfig
    metrics: list[dict[str, float]]
    p_log: list[list]
    params_path: Path
    summary: dict[str, Any]
    from_cache: bool

    @property
    def frame(self):
        """The metrics as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.metrics, columns=list(METRIC_COLUMNS))

    def state_dict(self) -> dict[str, Tensor]:
        """The final weights."""
        return torch.load(self.params_path, map_location="cpu", weights_only=True)


def load_result(run: Run) -> RunResult:
    """The :class:`RunResult` of a finished run, read from its directory."""
    summary = run.summary
    key = json.loads(run.path("config.json").read_text())
    return RunResult(
        run_dir=run.dir,
        config=TrainConfig.from_dict({**key, **summary["augmentation"]}),
        metrics=read_metrics_csv(run.path(METRICS_FILE)),
        p_log=json.loads(run.path(P_LOG_FILE).read_text()),
        params_path=run.path(MODEL_FILE),
        summary=summary,
        from_cache=True,
    )
