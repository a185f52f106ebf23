"""Running chapter 06's arms and reading them back: one row per arm, seed and epoch, the
per-layer step diagnostics, and the p of every iteration.

:func:`run_arms` runs (or reuses from the store) the main sweep, the controls and then the
``sgd_scaled`` control, whose lr needs the step-size ratio measured in the ``pulse_tidal`` runs;
a sweep with a failed or missing run raises, so no curve is drawn with a hole.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from nsf.pulsetidal.setup import PulseTidalSetup, step_ratio
from nsf.train.plog import rle_decode
from nsf.train.results import DIAGNOSTICS_FILE, P_LOG_FILE

__all__ = ["ArmRuns", "arm_table", "run_arms"]


@dataclasses.dataclass(frozen=True)
class ArmRuns:
    """What chapter 06 ran. ``metrics``: one row per arm, seed and epoch (the columns of
    ``metrics.csv`` plus ``arm`` and ``seed``); ``diagnostics``: the rows of every run's
    ``diagnostics.csv`` with ``arm`` and ``seed``; ``p``: arm -> the p of every iteration of its
    first seed; ``ratio``: the mean step-size ratio of the pulse_tidal runs (the lr multiplier
    of ``sgd_scaled``); ``statuses``: sweep name -> index -> status."""

    metrics: pd.DataFrame
    diagnostics: pd.DataFrame
    p: dict[str, list[float]]
    ratio: float
    statuses: dict[str, dict[int, str]]


def run_arms(setup: PulseTidalSetup, store: str | Path, *, progress: bool = False) -> ArmRuns:
    """Run every arm of ``setup`` in ``store`` (finished runs are reused) and read them back."""
    from nsf.ablation.summary import runs_note
    from nsf.train.sweep import collect, run_local

    store = Path(store)
    statuses: dict[str, dict[int, str]] = {}
    metrics, diagnostics, p_logs = [], [], {}

    def run(name: str, sweep) -> None:
        statuses[name] = run_local(sweep, store, workers=setup.workers, progress=progress)
        runs_note(statuses[name], store)  # raises on a hole
        frame = pd.read_csv(collect(sweep, store, store / f"{name}.csv"))
        metrics.append(frame.rename(columns={"case": "arm"}))
        for point in sweep.points:
            arm, seed = point.varied["case"], point.varied["seed"]
            run_dir = point.run_dir(store)
            if (run_dir / DIAGNOSTICS_FILE).exists():
                rows = pd.read_csv(run_dir / DIAGNOSTICS_FILE)
                diagnostics.append(rows.assign(arm=arm, seed=seed))
            if arm not in p_logs:
                p_logs[arm] = rle_decode(json.loads((run_dir / P_LOG_FILE).read_text()))

    run("main", setup.main_sweep())
    controls = setup.control_sweep()
    if controls is not None:
        run("controls", controls)
    every = pd.concat(diagnostics, ignore_index=True) if diagnostics else pd.DataFrame()
    ratio = float("nan")
    if not every.empty:
        ratio = step_ratio(every[every["arm"] == "pulse_tidal"])
    if "sgd_scaled" in setup.controls:
        run("sgd_scaled", setup.scaled_sweep(ratio))
        every = pd.concat(diagnostics, ignore_index=True)
    frame = pd.concat(metrics, ignore_index=True).drop(columns=["index"], errors="ignore")
    return ArmRuns(frame, every, p_logs, ratio, statuses)


def arm_table(runs: ArmRuns) -> pd.DataFrame:
    """Per arm: seeds, its p schedule in words, and its lr (what differs between the arms)."""
    rows: list[dict[str, Any]] = []
    for arm, group in runs.metrics.groupby("arm", sort=False):
        p = runs.p[arm]
        rows.append({"arm": arm, "seeds": group["seed"].nunique(),
                     "p range": f"{min(p):+.3g} .. {max(p):+.3g}",
                     "mean p": round(sum(p) / len(p), 4)})  # fmt: skip
    return pd.DataFrame(rows).set_index("arm")
