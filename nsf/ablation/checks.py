"""The paper's four findings on the p ablation (Sec. 3.3; book chapter 02, "Checks"), made
operational as :class:`nsf.verdicts.Check` records on the final results.

Means are told apart by the seed spread of :mod:`nsf.ablation.results`. A difference within the
spread makes a check undecided (``passed=None``), and so does a grid that lacks what the check
needs. "p > 0" is strict: p = 0 (SGD) counts with the non-positive p. Differences between maxima
(the best p > 0 against the best p <= 0, ...) are judged by the spread of the two selected means;
the selection itself is not corrected for, which favours a pass.

* **C1** noisy labels favour p > 0: max mean over p > 0 minus max mean over p <= 0 exceeds the
  spread (fails when it is below minus the spread).
* **C2** clean data tolerate small or negative p: the overall best mean minus the best mean over
  p <= 0 (the loss g >= 0) is below ``tolerance``. It holds when g + spread < tolerance, fails
  when g - spread > tolerance, and is undecided when the tolerance lies within the spread of g
  (the rule of the others, applied to the difference tolerance - g).
* **C3** one or more distinct peaks at intermediate p: the best interior mean (not at the smallest
  or largest p) exceeds both endpoint means by more than the spread, and at least ``min_peaks``
  interior p are distinct local maxima (the mean exceeds both neighbours' by more than the
  spread). With ``min_peaks = 0`` C3's verdict is C4's.
* **C4** moderate p balances, the extremes degrade: both endpoint means are below the best interior
  mean by more than the spread (fails when an endpoint is above it by more than the spread).

Every check is of strength ``independent``: the criteria and their parameters are fixed before the
runs and nothing compared was fitted to the outcome.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from nsf.ablation.results import K_SIGMA, _Curve, _curve
from nsf.verdicts import Check, all_of

__all__ = [
    "CLAIMS",
    "MIN_PEAKS",
    "ROLES",
    "TOLERANCE",
    "ablation_checks",
    "clean_tolerates_nonpositive_p",
    "extremes_degrade",
    "intermediate_peak",
    "noisy_favours_positive_p",
]

#: Default accuracy loss (absolute top-1) that C2 still calls "without substantial loss".
TOLERANCE = 0.02
#: Default number of distinct interior local maxima C3 asks for.
MIN_PEAKS = 1
#: The paper's findings (Sec. 3.3), in its words.
CLAIMS = {
    "C1": "noisy labels (FER2013) clearly favour p > 0",
    "C2": "clean data (CIFAR-10, RAF-DB) tolerate small or negative p without substantial "
    "accuracy loss",
    "C3": "one or more distinct peaks at intermediate p (TinyImageNet, Chaoyang, CIFAR-100)",
    "C4": "moderate p balances, while the extremes degrade",
}
#: Which checks apply to a dataset of each role.
ROLES = {"noisy": ("C1", "C4"), "clean": ("C2", "C4"), "peaked": ("C3", "C4")}


def _decide(gap: float, spread: float) -> bool | None:
    """True if gap > spread, False if gap < -spread, None within the spread or without one."""
    if math.isnan(spread):
        return None
    if gap > spread:
        return True
    if gap < -spread:
        return False
    return None


def _pp(x: float) -> str:
    return f"{100 * x:.2f} %"


def _gap(gap: float, spread: float) -> str:
    return f"{100 * gap:+.2f} pp (spread {100 * spread:.2f} pp)"


def _check(
    cid: str,
    dataset: str,
    policy: str,
    criterion: str,
    statistic: str,
    passed: bool | None,
    why: str = "within the seed spread",
) -> Check:
    return Check(
        name=f"{cid} · {dataset} · {policy}",
        claim=CLAIMS[cid],
        criterion=criterion,
        statistic=statistic,
        passed=passed,
        undecided=f"undecided ({why})" if passed is None else "not applicable",
        strength="independent",
    )


def _spread_text(k_sigma: float) -> str:
    return f"{k_sigma:g} × pooled seed std × √(1/n₁ + 1/n₂)"


def _missing(
    cid: str, dataset: str, policy: str, criterion: str, c: _Curve | None, need: str | None
) -> Check | None:
    """The undecided check when there are no runs, or the grid lacks ``need``."""
    if c is None:
        return _check(cid, dataset, policy, criterion, "no runs", None, "no runs")
    if need is not None:
        return _check(cid, dataset, policy, criterion, f"p grid {list(c.p)}", None, need)
    return None


def _no_spread(c: _Curve, verdict: bool | None, default: str = "within the seed spread") -> str:
    return (
        "one seed per p: no seed spread"
        if verdict is None and math.isnan(c.pooled_std)
        else default
    )


def noisy_favours_positive_p(
    final: pd.DataFrame, dataset: str, policy: str, *, k_sigma: float = K_SIGMA
) -> Check:
    """C1 (Sec. 3.3, FER2013): the best mean over p > 0 exceeds the best mean over p <= 0 by more
    than the seed spread of the two (module docstring). Undecided without a p > 0 or a p <= 0."""
    crit = f"max mean top-1 over p > 0 − max over p ≤ 0 > {_spread_text(k_sigma)}"
    c = _curve(final, dataset, policy, k_sigma)
    pos = None if c is None else c.p > 0
    need = None if c is None or (pos.any() and (~pos).any()) else "needs p > 0 and p ≤ 0"
    if (early := _missing("C1", dataset, policy, crit, c, need)) is not None:
        return early
    i, j = c.argmax(pos), c.argmax(~pos)
    gap, s = c.mean[i] - c.mean[j], c.spread(i, j)
    stat = (
        f"best p > 0: p = {c.p[i]:g}, {_pp(c.mean[i])}; best p ≤ 0: p = {c.p[j]:g}, "
        f"{_pp(c.mean[j])}; difference {_gap(gap, s)}"
    )
    verdict = _decide(gap, s)
    return _check("C1", dataset, policy, crit, stat, verdict, _no_spread(c, verdict))


def clean_tolerates_nonpositive_p(
    final: pd.DataFrame,
    dataset: str,
    policy: str,
    *,
    tolerance: float = TOLERANCE,
    k_sigma: float = K_SIGMA,
) -> Check:
    """C2 (Sec. 3.3, CIFAR-10, RAF-DB): the loss g = (overall best mean) - (best mean over
    p <= 0) is below ``tolerance`` (absolute top-1): holds when g + spread <= tolerance, fails when
    g - spread > tolerance, undecided in between (module docstring). Undecided without a p <= 0."""
    crit = (
        f"best mean top-1 − best over p ≤ 0 < {100 * tolerance:g} pp, "
        f"told apart by {_spread_text(k_sigma)}"
    )
    c = _curve(final, dataset, policy, k_sigma)
    need = None if c is None or (c.p <= 0).any() else "needs p ≤ 0"
    if (early := _missing("C2", dataset, policy, crit, c, need)) is not None:
        return early
    b, j = c.argmax(np.ones(len(c.p), dtype=bool)), c.argmax(c.p <= 0)
    loss, s = c.mean[b] - c.mean[j], c.spread(b, j)
    stat = (
        f"best: p = {c.p[b]:g}, {_pp(c.mean[b])}; best p ≤ 0: p = {c.p[j]:g}, "
        f"{_pp(c.mean[j])}; loss {_gap(loss, s)}"
    )
    verdict = _decide(tolerance - loss, s)
    why = _no_spread(c, verdict, "the tolerance lies within the seed spread of the loss")
    return _check("C2", dataset, policy, crit, stat, verdict, why)


def _ends_vs_interior(c: _Curve) -> tuple[bool | None, str]:
    """The best interior mean against both endpoint means: (verdict, statistic)."""
    inner = np.zeros(len(c.p), dtype=bool)
    inner[1:-1] = True
    b, last = c.argmax(inner), len(c.p) - 1
    parts, results = [f"best interior p = {c.p[b]:g}, {_pp(c.mean[b])}"], []
    for e in (0, last):
        gap, s = c.mean[b] - c.mean[e], c.spread(b, e)
        parts.append(f"p = {c.p[e]:g}: {_pp(c.mean[e])}, best interior − it {_gap(gap, s)}")
        results.append(_decide(gap, s))
    return all_of(results), "; ".join(parts)


def _local_peaks(c: _Curve) -> list[float]:
    """The interior p whose mean exceeds both neighbours' by more than the seed spread."""
    return [
        float(c.p[i])
        for i in range(1, len(c.p) - 1)
        if _decide(c.mean[i] - c.mean[i - 1], c.spread(i, i - 1)) is True
        and _decide(c.mean[i] - c.mean[i + 1], c.spread(i, i + 1)) is True
    ]


def intermediate_peak(
    final: pd.DataFrame,
    dataset: str,
    policy: str,
    *,
    min_peaks: int = MIN_PEAKS,
    k_sigma: float = K_SIGMA,
) -> Check:
    """C3 (Sec. 3.3, TinyImageNet, Chaoyang, CIFAR-100): the best interior mean exceeds both
    endpoint means by more than the seed spread (so the argmax p is strictly inside the grid), and
    at least ``min_peaks`` interior p are distinct local maxima (above both neighbours by more than
    the spread; their number is reported). Fails when an endpoint is above the best interior mean
    by more than the spread; undecided otherwise, or with fewer than 3 p."""
    crit = (
        f"best interior mean top-1 > both endpoint means, and ≥ {min_peaks} interior p above "
        f"both neighbours, each by > {_spread_text(k_sigma)}"
    )
    c = _curve(final, dataset, policy, k_sigma)
    need = None if c is None or len(c.p) >= 3 else "needs at least 3 p"
    if (early := _missing("C3", dataset, policy, crit, c, need)) is not None:
        return early
    verdict, stat = _ends_vs_interior(c)
    peaks = _local_peaks(c)
    stat = f"argmax p = {c.p[c.argmax(np.ones(len(c.p), dtype=bool))]:g}; {stat}; " + (
        f"{len(peaks)} distinct local maxima" + (f" at p = {peaks}" if peaks else "")
    )
    why = _no_spread(c, verdict)
    if verdict is True and len(peaks) < min_peaks:
        verdict = None
        why = (
            f"fewer than {min_peaks} distinct local maxima" if min_peaks > 1 else "no distinct peak"
        )
    return _check("C3", dataset, policy, crit, stat, verdict, why)


def extremes_degrade(
    final: pd.DataFrame, dataset: str, policy: str, *, k_sigma: float = K_SIGMA
) -> Check:
    """C4 (Sec. 3.3): both endpoint means (the smallest and the largest p) are below the best
    interior mean by more than the seed spread. Fails when an endpoint is above it by more than the
    spread; undecided otherwise, or with fewer than 3 p."""
    crit = f"mean top-1 at both endpoints < best interior mean by > {_spread_text(k_sigma)}"
    c = _curve(final, dataset, policy, k_sigma)
    need = None if c is None or len(c.p) >= 3 else "needs at least 3 p"
    if (early := _missing("C4", dataset, policy, crit, c, need)) is not None:
        return early
    verdict, stat = _ends_vs_interior(c)
    return _check("C4", dataset, policy, crit, stat, verdict, _no_spread(c, verdict))


def ablation_checks(
    final: pd.DataFrame,
    roles: Mapping[str, str],
    policy: str,
    *,
    k_sigma: float = K_SIGMA,
    tolerance: float = TOLERANCE,
    min_peaks: int = MIN_PEAKS,
) -> list[Check]:
    """The checks of every dataset under ``policy``, in the order of ``roles`` (dataset -> "noisy",
    "clean" or "peaked"; :data:`~nsf.ablation.checks.ROLES` says which checks each gets), named
    "C1 · dataset · policy". Show them with :func:`nsf.verdicts.checks_table`."""
    run = {
        "C1": lambda d: noisy_favours_positive_p(final, d, policy, k_sigma=k_sigma),
        "C2": lambda d: clean_tolerates_nonpositive_p(
            final, d, policy, tolerance=tolerance, k_sigma=k_sigma
        ),
        "C3": lambda d: intermediate_peak(final, d, policy, min_peaks=min_peaks, k_sigma=k_sigma),
        "C4": lambda d: extremes_degrade(final, d, policy, k_sigma=k_sigma),
    }
    bad = {d: r for d, r in roles.items() if r not in ROLES}
    if bad:
        raise ValueError(f"unknown roles {bad}; roles are {sorted(ROLES)}")
    return [run[cid](d) for d, role in roles.items() for cid in ROLES[role]]
