"""The ``per_p`` lr policy of chapter 02: an lr chosen for every (case, p) by a search on a
holdout carved from train, then trained on the whole train split and tested.

Paper Sec. 3.3 keeps "everything else fixed" while p moves, so the step size moves with p. The
``rms_matched`` policy removes that confound by construction; ``per_p`` removes it the way a
practitioner would, by tuning the lr at every p. The search is declared as a search wherever its
results appear:

1. :func:`search_sweep`: every case x p x ``lr * factor`` (factor from
   ``AblationSetup.lr_factors``) x ``search_seeds``, trained on the split ``"fit"`` and
   evaluated on ``"holdout"`` (:func:`nsf.train.datasets.holdout_indices`: a stratified
   ``holdout_fraction`` of train; the test split is never seen by the search).
2. :func:`choose_lr`: per (case, p), the lr with the highest mean final holdout top-1 over the
   search seeds; a tie goes to the lr nearest the fixed one (in log scale), then to the smaller.
3. :func:`per_p_sweep`: every case x p at its chosen lr x ``seeds``, trained on ``"train"`` and
   tested like the other policies. A point whose lr is the fixed one is the ``fixed`` run itself
   (the same config, so the run store holds it once).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from nsf.ablation.setup import AblationSetup
    from nsf.train.sweep import Sweep

__all__ = ["SEARCH_COLUMNS", "choose_lr", "per_p_runs", "per_p_sweep", "search_sweep"]

#: The columns of :func:`choose_lr`'s table.
SEARCH_COLUMNS = ("dataset", "p", "lr", "holdout_top1", "n_seeds", "chosen")


def search_sweep(setup: AblationSetup) -> Sweep:
    """Stage 1: case x p x lr grid x search seeds, fit on ``"fit"``, scored on ``"holdout"``."""
    from nsf.train.sweep import Sweep

    base = {
        **setup.base_fields(),
        "train_split": "fit",
        "val_split": "holdout",
        "holdout_fraction": setup.holdout_fraction,
    }
    grid = {
        "p_schedule.kind": ["constant"],
        "p_schedule.p": list(setup.p_values),
        "lr": [float(f"{setup.lr * f:.12g}") for f in setup.lr_factors],
    }
    return Sweep(base=base, cases=setup.cases(), grid=grid, seeds=list(setup.search_seeds))


def choose_lr(collected: pd.DataFrame, fixed_lr: float) -> pd.DataFrame:
    """Per (case, p, lr) of what ``nsf sweep collect`` wrote for :func:`search_sweep`: the mean
    final holdout top-1 over the search seeds, and ``chosen`` on the one lr kept per (case, p).

    The rule: the highest mean; among equal means, the lr nearest ``fixed_lr`` in log scale, then
    the smaller. A run that diverged has a NaN or chance top-1 and so is never chosen over one
    that learned.
    """
    frame = collected.rename(columns={"case": "dataset", "p_schedule.p": "p"})
    last = frame.loc[frame.groupby(["dataset", "p", "lr", "seed"])["epoch"].idxmax()]
    table = (
        last.groupby(["dataset", "p", "lr"], sort=True)["val_top1"]
        .agg(holdout_top1="mean", n_seeds="count")
        .reset_index()
    )
    table["holdout_top1"] = table["holdout_top1"].fillna(-math.inf)
    distance = (table["lr"].map(math.log) - math.log(fixed_lr)).abs()
    table["_distance"] = distance.round(9)  # 10x above and below are equally near
    order = table.sort_values(
        ["dataset", "p", "holdout_top1", "_distance", "lr"],
        ascending=[True, True, False, True, True],
    )
    table["chosen"] = False
    table.loc[order.groupby(["dataset", "p"]).head(1).index, "chosen"] = True
    table["holdout_top1"] = table["holdout_top1"].replace(-math.inf, math.nan)
    return table.drop(columns="_distance")[list(SEARCH_COLUMNS)]


def _point_name(case: str, p: float) -> str:
    return f"{case} @ p={p:g}"


def per_p_sweep(setup: AblationSetup, chosen: pd.DataFrame) -> Sweep:
    """Stage 2: every (case, p) at its chosen lr (``chosen`` is :func:`choose_lr`'s table) x the
    chapter's seeds, on the train and test splits like the other policies."""
    from nsf.train.sweep import Sweep

    picked = chosen[chosen["chosen"]].set_index(["dataset", "p"])["lr"]
    cases = {}
    for case, fields in setup.cases().items():
        for p in setup.p_values:
            if (case, p) not in picked.index:
                raise ValueError(f"no lr was chosen for case {case!r} at p = {p:g}")
            schedule = {"kind": "constant", "p": p}
            cases[_point_name(case, p)] = {**fields, "lr": float(picked[(case, p)]),
                                           "p_schedule": schedule}  # fmt: skip
    return Sweep(base=setup.base_fields(), cases=cases, seeds=list(setup.seeds))


def per_p_runs(collected: pd.DataFrame, setup: AblationSetup, chosen: pd.DataFrame) -> pd.DataFrame:
    """What ``nsf sweep collect`` wrote for :func:`per_p_sweep` as runs of the ``per_p``
    policy, in the columns of :func:`nsf.ablation.setup.runs` plus the ``lr`` each ran at."""
    names = {_point_name(c, p): (c, p) for c in setup.cases() for p in setup.p_values}
    frame = collected.copy()
    frame["dataset"] = frame["case"].map(lambda name: names[name][0])
    frame["p"] = frame["case"].map(lambda name: names[name][1])
    frame["policy"] = "per_p"
    picked = chosen.loc[chosen["chosen"], ["dataset", "p", "lr"]]
    return frame.drop(columns="case").merge(picked, on=["dataset", "p"], how="left")
