"""Final results of the p ablation (Sec. 3.3; book chapter 02), per-p summaries, the best p
and the step-size confound.

The input is a tidy frame, one row per run and epoch, with at least the columns ``dataset``,
``policy``, ``p``, ``seed``, ``epoch`` and ``val_top1`` (a fraction in [0, 1]); ``update_rms``
(the RMS of the parameter update) is used where present. A run is one (dataset, policy, p, seed).

**The seed spread.** Two per-p means are told apart only when their difference exceeds the seed
spread of that difference::

    spread(p, q) = k_sigma * s_pooled * sqrt(1 / n_p + 1 / n_q),

where n_p is the number of seeds at p and s_pooled is the pooled within-p standard deviation of
the final val_top1 over the whole (dataset, policy) grid (each p's ddof=1 variance weighted by its
n_p - 1 degrees of freedom): the standard error of a difference of two group means in a one-way
layout with a common noise level, times ``k_sigma`` (default 2, about a two-sided 95 % normal
band). Pooling is chosen because an ablation has few seeds per p (two or three): one p's own
standard deviation is then too noisy to judge by. With one seed at every p there is no spread
(s_pooled is NaN) and every comparison is undecided; ``k_sigma = 0`` compares the bare means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["K_SIGMA", "RUN_KEYS", "BestP", "best_p", "by_p", "final_results", "update_size_table"]

#: The columns naming one run.
RUN_KEYS = ("dataset", "policy", "p", "seed")
#: Default width of the seed spread, in standard errors of the difference.
K_SIGMA = 2.0


def final_results(frame: pd.DataFrame, *, same_epoch: bool = True) -> pd.DataFrame:
    """The last epoch of each run (dataset, policy, p, seed): one row per run, all columns kept,
    sorted by run.

    Raises ValueError when a column is missing, when a (run, epoch) appears twice (two runs that
    the keys do not tell apart), or, with ``same_epoch``, when the runs of one (dataset, policy)
    end at different epochs (a run that stopped early would be compared at another point).
    """
    keys = list(RUN_KEYS)
    missing = {*keys, "epoch"} - set(frame.columns)
    if missing:
        raise ValueError(f"the frame lacks the columns {sorted(missing)}")
    frame = frame.reset_index(drop=True)
    twice = frame.duplicated([*keys, "epoch"])
    if twice.any():
        raise ValueError(f"{int(twice.sum())} rows repeat a (dataset, policy, p, seed, epoch)")
    last = frame.loc[frame.groupby(keys)["epoch"].idxmax()]
    last = last.sort_values(keys).reset_index(drop=True)
    if same_epoch:
        ends = last.groupby(["dataset", "policy"])["epoch"].nunique()
        if (ends > 1).any():
            raise ValueError(
                f"runs end at different epochs in {list(ends.index[ends > 1])}; "
                "pass same_epoch=False to compare them anyway"
            )
    return last


def by_p(final: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, policy, p): ``top1_mean``, ``top1_std`` (ddof=1, NaN for one seed),
    ``n_seeds`` of the final val_top1, and ``update_rms`` (its mean; only if the column exists).

    The rows are sorted by run first, so the result does not depend on the input's row order.
    Raises ValueError on a NaN val_top1 (a diverged run must not silently drop out of a mean).
    """
    if final["val_top1"].isna().any():
        raise ValueError("val_top1 is NaN in some runs")
    groups = final.sort_values(list(RUN_KEYS)).groupby(["dataset", "policy", "p"])
    out = groups["val_top1"].agg(top1_mean="mean", top1_std="std", n_seeds="count")
    if "update_rms" in final.columns:
        out["update_rms"] = groups["update_rms"].mean()
    return out.reset_index()


@dataclass(frozen=True)
class _Curve:
    """The per-p means of one (dataset, policy), sorted by p, with the seed spread."""

    p: np.ndarray
    mean: np.ndarray
    n: np.ndarray
    pooled_std: float
    k_sigma: float

    def spread(self, i: int, j: int) -> float:
        """The seed spread of mean[i] - mean[j] (the module's docstring); 0 for i == j."""
        if i == j or self.k_sigma == 0:
            return 0.0
        return self.k_sigma * self.pooled_std * math.sqrt(1 / self.n[i] + 1 / self.n[j])

    def argmax(self, mask: np.ndarray) -> int:
        """Index of the largest mean among ``mask`` (the smallest p on a tie)."""
        idx = np.flatnonzero(mask)
        return int(idx[np.argmax(self.mean[idx])])


def _curve(final: pd.DataFrame, dataset: str, policy: str, k_sigma: float) -> _Curve | None:
    if k_sigma < 0:
        raise ValueError(f"k_sigma={k_sigma} must be >= 0")
    rows = final[(final["dataset"] == dataset) & (final["policy"] == policy)]
    if rows.empty:
        return None
    t = by_p(rows).sort_values("p")
    n = t["n_seeds"].to_numpy(dtype=float)
    dof = float((n - 1).sum())
    var = float(((n - 1) * np.nan_to_num(t["top1_std"].to_numpy(dtype=float)) ** 2).sum())
    pooled = math.sqrt(var / dof) if dof > 0 else math.nan
    return _Curve(
        t["p"].to_numpy(dtype=float), t["top1_mean"].to_numpy(dtype=float), n, pooled, k_sigma
    )


@dataclass(frozen=True)
class BestP:
    """The p with the highest mean final val_top1 of one (dataset, policy) and its uncertainty:
    ``within`` are the p whose mean is not below the best by more than the seed spread (the best
    included; every p when there is no spread), ``pooled_std`` the pooled seed std."""

    p: float
    mean: float
    within: tuple[float, ...]
    pooled_std: float
    k_sigma: float


def best_p(final: pd.DataFrame, dataset: str, policy: str, *, k_sigma: float = K_SIGMA) -> BestP:
    """The best p of ``dataset`` under ``policy`` (final results) with the p within the seed spread
    of it (the module's docstring defines the spread). Ties go to the smallest p."""
    c = _curve(final, dataset, policy, k_sigma)
    if c is None:
        raise ValueError(f"no runs of {dataset!r} under policy {policy!r}")
    b = c.argmax(np.ones(len(c.p), dtype=bool))
    within = tuple(
        float(c.p[i]) for i in range(len(c.p)) if not c.mean[b] - c.mean[i] > c.spread(b, i)
    )
    return BestP(float(c.p[b]), float(c.mean[b]), within, c.pooled_std, k_sigma)


def update_size_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, policy, p): the mean ``update_rms`` and ``ratio_to_p0``, its ratio to the
    p = 0 value of the same (dataset, policy) (NaN without a p = 0 run): how much p changes the
    step size at a fixed lr, the confound that the "rms_matched" policy removes (Sec. 3.3).

    Pass the final results for the last epoch's update size, or the per-epoch frame for its mean
    over training (every row of the group is averaged)."""
    keys = ["dataset", "policy", "p"]
    out = frame.sort_values([*keys, *(k for k in ("seed", "epoch") if k in frame)])
    out = out.groupby(keys)["update_rms"].mean().reset_index()
    p0 = out.loc[out["p"] == 0, ["dataset", "policy", "update_rms"]]
    ref = out.merge(p0, on=["dataset", "policy"], how="left", suffixes=("", "_p0"))
    out["ratio_to_p0"] = ref["update_rms"] / ref["update_rms_p0"]
    return out
