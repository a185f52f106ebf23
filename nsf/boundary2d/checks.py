"""The paper's observations B-1..B-4 of Sec. 4.2.2 and the abstract, made operational, per panel.

Sec. 4.2.2 reports that a slightly negative p rotates the boundary into place "within the first
few iterations", while the SGD endpoint p = 0 still misclassifies "after several hundred
iterations", and ranks the positive c behind the competitive a and b. With the roles of the
stripped values taken from the parameters (``p_delta``, ``p_ab``, ``p_c``; book chapter 05,
"Checks B-1 ... B-3"):

* **B-1** p = 0 is the slowest to align among {0, p_delta, a, b};
* **B-2** p_delta aligns fastest of all p (uniquely);
* **B-3** p_c is slower than each of a and b.

Each is a :class:`nsf.verdicts.Check`, evaluated on t90 and on the log-time score
(:class:`~nsf.boundary2d.PanelResult`).

* **B-4** (:func:`divergence_checks`) makes "accuracy improves even while loss remains high"
  (abstract, conclusion) comparative: p_delta is ahead of p = 0 in Bayes agreement at most
  iterations, and at most of those its training loss is at least p = 0's. Read per run, the
  phrase holds for nearly any classifier's training (the 0/1 decision moves before the
  cross-entropy), SGD included, so it cannot tell the arms apart; against p = 0 at matched
  iterations it can. Evaluated in every panel, so the step-matched panel says whether what the
  others show survives at SGD's step length.

Strength: every check is ``independent``. The roles and the p values are the companion's
reconstruction, fixed before any run (the chapter's parameter table), the comparisons are
strict, and nothing compared was fitted to the outcome: t90's threshold (``align_threshold``) is
a stated companion choice and the log-time score has no free constant. A comparison of two runs
that both never aligned (t90 = inf for both) is undecided, and so is a check that rests on one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from nsf.verdicts import Check, all_of, checks_table

if TYPE_CHECKING:
    from nsf.boundary2d.results import PanelResult
    from nsf.boundary2d.setup import BoundaryDemo

__all__ = [
    "alignment_checks",
    "checks_frame",
    "divergence_check",
    "divergence_checks",
    "lead_counts",
    "named_checks",
    "panel_checks",
]


def _later(a: float, b: float) -> bool | None:
    """Is a strictly later than b? None when neither was reached (both inf)."""
    if math.isinf(a) and math.isinf(b):
        return None
    return a > b


def alignment_checks(
    demo: BoundaryDemo, times: Mapping[float, float], *, label: str = "t90"
) -> list[Check]:
    """B-1..B-3 of Sec. 4.2.2 on per-p alignment times (lower = earlier).

    ``times`` is :meth:`~nsf.boundary2d.results.PanelResult.t_align` (t90; inf = never
    aligned, ``label="t90"``) or any "time" where lower is better (minus
    :meth:`~nsf.boundary2d.results.PanelResult.scores` for the log-time score, with
    ``label="score"``). Returns three :class:`~nsf.verdicts.Check`, all of strength
    ``independent`` (see the module's docstring for why).
    """
    p0, d, ab, c = 0.0, demo.p_delta, list(demo.p_ab), demo.p_c
    fmt = lambda p: f"{times[p]:g}" if label == "t90" else f"{-times[p]:.3f}"  # noqa: E731
    b1 = all_of([_later(times[p0], times[q]) for q in [d, *ab]])
    b2 = all_of([_later(times[q], times[d]) for q in demo.p_values if q != d])
    b3 = all_of([_later(times[c], times[q]) for q in ab])
    word = "t90" if label == "t90" else "log-time score"
    cmp = "largest" if label == "t90" else "lowest"
    und = f"undecided (runs it compares never reached agreement {demo.align_threshold:g})"
    return [
        Check("B-1", "the SGD endpoint p = 0 is the slowest to align",
              f"{word} of p = 0 {cmp} among p in {[p0, d, *ab]}",
              ", ".join(f"p={q:g}: {fmt(q)}" for q in [p0, d, *ab]), b1, und),
        Check("B-2", f"a slightly negative p (here {d:g}) aligns fastest",
              f"p = {d:g} is the unique best {word} among all p",
              ", ".join(f"p={q:g}: {fmt(q)}" for q in demo.p_values), b2, und),
        Check("B-3", f"the positive c (here {c:g}) is slower than a, b = {ab}",
              f"{word} of p = {c:g} worse than each of {ab}",
              ", ".join(f"p={q:g}: {fmt(q)}" for q in [c, *ab]), b3, und),
    ]  # fmt: skip


def panel_checks(result: PanelResult) -> tuple[list[Check], list[Check]]:
    """B-1..B-3 of one panel: (on t90, on the log-time score). Reads only ``result.demo`` and
    ``result.history``."""
    on_t90 = alignment_checks(result.demo, result.t_align())
    on_score = alignment_checks(
        result.demo, {p: -s for p, s in result.scores().items()}, label="score"
    )
    return on_t90, on_score


def named_checks(results: Sequence[PanelResult]) -> list[Check]:
    """Every panel's checks, each named ``"<panel> · <check> · <t90 | score>"`` (the names the
    chapter's record and the claims ledger use)."""
    return [
        dataclasses.replace(c, name=f"{r.panel.name} · {c.name} · {measure}")
        for r in results
        for measure, checks in zip(("t90", "score"), panel_checks(r), strict=True)
        for c in checks
    ]


def checks_frame(results: Sequence[PanelResult]):
    """:func:`nsf.verdicts.checks_table` of every panel's checks (on t90, then on the log-time
    score), stacked into one DataFrame indexed by (panel, check)."""
    import pandas as pd

    tables = {r.panel.name: checks_table([*on_t90, *on_score])
              for r in results for on_t90, on_score in [panel_checks(r)]}  # fmt: skip
    return pd.concat(tables, names=["panel"])


def lead_counts(result: PanelResult, p: float, reference: float = 0.0) -> tuple[int, int, int]:
    """At matched iterations 1..iters of one panel: (iterations compared, iterations at which p's
    Bayes agreement is strictly above ``reference``'s, those of them at which p's training loss
    is not lower than ``reference``'s). Reads only ``result.history``."""
    h = result.history
    h = h[h.iteration >= 1]
    a = h[h.p == p].set_index("iteration")
    b = h[h.p == reference].set_index("iteration")
    ahead = a["bayes_agreement"] > b["bayes_agreement"]
    lagging = ahead & (a["loss"] >= b["loss"])
    return len(ahead), int(ahead.sum()), int(lagging.sum())


def divergence_check(result: PanelResult) -> Check:
    """B-4 of one panel: is ``p_delta`` ahead of p = 0 in accuracy while not ahead in loss?

    Two clauses, both needed: p_delta's Bayes agreement is strictly above p = 0's at more than
    half of the iterations 1..iters (its accuracy has advanced), and at more than half of those
    its training loss (mean BCE) is at least p = 0's (its loss lags). An arm that is rarely
    ahead has not advanced; one that is ahead in loss too simply trains faster. Undecided only
    without iterations to compare. Strength ``independent``: the arm, the reference and the
    criterion are fixed before any run and nothing is fitted.
    """
    d = result.demo.p_delta
    n, ahead, lagging = lead_counts(result, d)
    return Check(
        "B-4",
        "accuracy improves even while loss remains high (abstract, Sec. 6), as a difference "
        "from the SGD endpoint",
        f"p = {d:g} is ahead of p = 0 in Bayes agreement at more than half of the iterations, "
        "and at more than half of those its training loss is at least p = 0's",
        f"p = {d:g} ahead of p = 0 at {ahead} of {n} iterations; its loss not lower at "
        f"{lagging} of those",
        None if n == 0 else (ahead > n / 2 and lagging > ahead / 2),
        "undecided (no iterations to compare)",
    )


def divergence_checks(results: Sequence[PanelResult]) -> list[Check]:
    """B-4 of every panel, named ``"<panel> · B-4 · vs p=0"`` (the names of the chapter's record
    and the claims ledger)."""
    return [
        dataclasses.replace(divergence_check(r), name=f"{r.panel.name} · B-4 · vs p=0")
        for r in results
    ]
