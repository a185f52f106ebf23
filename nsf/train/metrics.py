"""``metrics.csv``: one row per epoch of a run, every float written exactly (its ``repr``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["METRIC_COLUMNS", "TIMING_COLUMNS", "metrics_csv", "read_metrics_csv"]

#: Columns of ``metrics.csv``, one row per epoch. Accuracies are fractions in [0, 1];
#: ``val_top5`` is top-min(5, C); ``val_ece`` is the 15-bin expected calibration error;
#: ``lr`` is the learning rate of the epoch's last iteration; ``update_rms`` the RMS over all
#: weights of the step lr * u (sampled every 10 batches, the root of the mean square: the step size
#: that p changes at a fixed lr); ``epoch_time_s`` is the wall time of
#: the epoch (training and evaluation) and ``train_images_per_s`` the training throughput (all
#: processes together).
METRIC_COLUMNS = (
    "epoch",
    "iteration",
    "lr",
    "p_mean",
    "update_rms",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "val_ece",
    "epoch_time_s",
    "train_images_per_s",
)
#: Columns that measure the machine, not the training; they differ between identical runs.
TIMING_COLUMNS = ("epoch_time_s", "train_images_per_s")
_INTS = ("epoch", "iteration")


def metrics_csv(rows: Sequence[Mapping[str, float]]) -> str:
    """The CSV text of ``rows`` (keys :data:`METRIC_COLUMNS`); floats round-trip exactly."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(METRIC_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: repr(row[k]) if isinstance(row[k], float) else row[k] for k in METRIC_COLUMNS}
        )
    return buffer.getvalue()


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv``: epoch and iteration as ints, the rest as floats."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: int(v) if k in _INTS else float(v) for k, v in row.items()} for row in rows]
