"""The chapter's statements on Sec. 4.2.1, in words, from the values it computed.

Each function returns one markdown paragraph of the chapter (book page "04 · The 1D density
demo"): the step-size spread, which checks hold, how much p < 0 amplifies the density
sensitivity, how far Eq. (14) is from the simulation, and what holds for Fig. 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nsf.density1d.checks import DensityChecks
from nsf.density1d.setup import DensityDemo
from nsf.density1d.simulate import DensityResult, density_ratio
from nsf.verdicts import Check

__all__ = [
    "amplification_note",
    "closed_form_note",
    "findings_note",
    "rate_note",
    "rate_spread",
    "run_note",
]

#: What each check says in the chapter's conclusion.
_FINDINGS = {
    "D-1": "p = 0.5 is insensitive to the density slope (the top row's panels are identical)",
    "D-2": "at p = 0 a denser boundary region converges faster",
    "D-3": "p < 0 amplifies that density sensitivity",
    "D-4": "the closed form (14) matches the early decay",
}


def rate_spread(med: np.ndarray) -> float:
    """The largest over the smallest median local rate at the last checkpoint (``med`` of
    :func:`~nsf.density1d.median_rate`, shape (P, C)): how far apart one eta puts the steps."""
    return float(med[:, -1].max() / med[:, -1].min())


def rate_note(demo: DensityDemo, med: np.ndarray) -> str:
    """The step-size confound in numbers: the fastest and slowest median local rate at the last
    and the first checkpoint, and why it does not touch the comparisons within a row."""
    lo, hi = int(np.argmin(med[:, -1])), int(np.argmax(med[:, -1]))
    return (
        f"At iteration {demo.checkpoints[-1]} the median local rate is {med[hi, -1]:.3g} at "
        f"p = {demo.p_values[hi]:g} and {med[lo, -1]:.3g} at p = {demo.p_values[lo]:g}: the same "
        f"$\\eta$ = {demo.eta:g} gives steps {med[hi, -1] / med[lo, -1]:.3g} times apart. At the "
        f"first checkpoint (n = {demo.checkpoints[0]}) the ratio is "
        f"{med[:, 0].max() / med[:, 0].min():.3g}. The density ranking within a row (the paper's "
        f"claim) is not affected by this, since every column of a row shares its $p$; comparisons "
        f"*across rows* are comparisons at different step sizes."
    )


def run_note(checks: Sequence[Check]) -> str:
    """Which checks hold, which do not, and which are undecided (with why)."""
    held = [c.name for c in checks if c.passed is True]
    failed = [c.name for c in checks if c.passed is False]
    other = [f"{c.name} ({c.verdict})" for c in checks if c.passed is None]
    fails = f"; {', '.join(failed)} {'do' if len(failed) != 1 else 'does'} not hold"
    return (
        f"**In this run:** {', '.join(held) or 'none'} "
        f"{'hold' if len(held) != 1 else 'holds'}"
        + (fails if failed else "")
        + (f"; {', '.join(other)}" if other else "")
        + "."
    )


def amplification_note(result: DensityResult, checkpoint: int) -> str | None:
    """The misaligned/aligned fRMSE ratio (:func:`~nsf.density1d.density_ratio`) at p = 0 and
    every p < 0, and whether it grows steadily as p becomes more negative; None without p = 0 and
    two negative p or when ``checkpoint`` is not recorded."""
    cfg = result.config
    negs = sorted((p for p in cfg.p_values if p < 0), reverse=True)
    if 0.0 not in cfg.p_values or len(negs) < 2 or checkpoint not in cfg.checkpoints:
        return None
    ratio = density_ratio(result, checkpoint)
    r0 = ratio[cfg.p_values.index(0.0)]
    r = [ratio[cfg.p_values.index(p)] for p in negs]
    monotone = bool(np.all(np.diff(r) > 0))
    return (
        f"How much p < 0 amplifies the density sensitivity, at n = {checkpoint}: the "
        f"misaligned/aligned fRMSE ratio is {r0:.3g} at p = 0 and "
        + ", ".join(f"{x:.3g} at p = {p:g}" for p, x in zip(negs, r, strict=True))
        + ". "
        + (
            "It grows steadily as p becomes more negative."
            if monotone
            else "The amplification is not monotone in |p|: the paper's bullet says only that "
            "it is amplified relative to p = 0, which D-3 tests; a reader should not read "
            "Fig. 4 as 'more negative is always more density-sensitive'."
        )
    )


def closed_form_note(
    small: Mapping[str, np.ndarray], large: Mapping[str, np.ndarray], checks: DensityChecks
) -> str:
    """Eq. (14) against the simulation at D-4's small learning rate (``small``) and at the
    chapter's (``large``), both from :func:`~nsf.density1d.decay_comparison` with the settings of
    ``checks``."""
    return (
        f"At $\\eta$ = {checks.d4_eta:g} the largest relative error of the discrete closed form is "
        f"{small['rel_error'].max():.2%} (tolerance {checks.d4_tol:.0%}); at the chapter's "
        f"$\\eta$ = {checks.eta:g} it is {large['rel_error'].max():.1%} over the same "
        f"{checks.d4_steps} steps, so Eq. (14) is an early-time statement only, as the paper says."
    )


def findings_note(checks: Sequence[Check]) -> str:
    """The conclusion on Fig. 4: one line per check (what it says, its verdict and statistic),
    and whether the run agrees with every observation of the paper."""
    by_name = {c.name: c for c in checks}
    lines = [
        f"* **{name}** — {sentence}: **{by_name[name].verdict}** ({by_name[name].statistic})."
        for name, sentence in _FINDINGS.items()
        if name in by_name
    ]
    agree = all(c.passed is True for c in checks)
    lines.append(
        "\nOur run "
        + (
            "agrees with every observation the paper states for Fig. 4."
            if agree
            else "disagrees with the paper where a check above does not hold."
        )
    )
    return "\n".join(lines)
