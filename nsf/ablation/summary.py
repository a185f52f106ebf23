"""Chapter 02's statements in words, computed from its runs and checks (never typed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pandas as pd

from nsf.ablation.results import best_p
from nsf.verdicts import Check

__all__ = ["best_p_table", "confound_note", "findings_note", "runs_note"]


def runs_note(statuses: Mapping[int, str], store) -> str:
    """How many runs the sweep holds and in what state; raises if any failed (the chapter must
    not draw a curve with a missing point)."""
    counts = Counter(statuses.values())
    if counts["failed"] or counts["pending"] or counts["running"]:
        raise RuntimeError(
            f"the sweep in {store} is incomplete: {dict(counts)}; see failed.json in the failed "
            "runs, fix the cause and execute the chapter again (finished runs are kept)"
        )
    return f"All {len(statuses)} runs of the sweep finished."


def best_p_table(final: pd.DataFrame, *, k_sigma: float) -> pd.DataFrame:
    """Per (dataset, policy): the best p, its mean top-1, and every p within the seed spread."""
    rows = []
    for (dataset, policy), _ in final.groupby(["dataset", "policy"], sort=False):
        best = best_p(final, dataset, policy, k_sigma=k_sigma)
        rows.append(
            {
                "dataset": dataset,
                "policy": policy,
                "best p": best.p,
                "top-1 at best p": round(best.mean, 4),
                "p within the seed spread": ", ".join(f"{p:g}" for p in best.within),
            }
        )
    return pd.DataFrame(rows).set_index(["dataset", "policy"])


def confound_note(sizes: pd.DataFrame) -> str:
    """How far the step size moves with p at one lr (:func:`nsf.ablation.update_size_table`, over
    every epoch), and what rms_matched leaves of it."""
    parts = []
    fixed = sizes[sizes["policy"] == "fixed"]
    if not fixed.empty:
        hi = fixed.loc[fixed["ratio_to_p0"].idxmax()]
        lo = fixed.loc[fixed["ratio_to_p0"].idxmin()]
        parts.append(
            f"Under the fixed policy the mean step ranges from {lo['ratio_to_p0']:.3g}x the p = 0 "
            f"step ({lo['dataset']}, p = {lo['p']:g}) to {hi['ratio_to_p0']:.3g}x "
            f"({hi['dataset']}, p = {hi['p']:g}): at one lr, a comparison across p is also a "
            "comparison across step sizes."
        )
    matched = sizes[sizes["policy"] == "rms_matched"]
    if not matched.empty:
        parts.append(
            f"Under rms_matched the ratio lies within {matched['ratio_to_p0'].min():.3g}-"
            f"{matched['ratio_to_p0'].max():.3g}x: every step has the size of the p = 0 step "
            "from the same state, and the states drift apart as the runs train differently."
        )
    return " ".join(parts)


def findings_note(checks: Sequence[Check], policies: Sequence[str]) -> str:
    """Which checks hold, fail and are undecided, per policy, in one paragraph."""
    lines = []
    for policy in policies:
        mine = [c for c in checks if c.name.endswith(f"· {policy}")]
        short = {id(c): " ".join(c.name.split(" · ")[:2]) for c in mine}
        held = [short[id(c)] for c in mine if c.passed]
        failed = [short[id(c)] for c in mine if c.passed is False]
        open_ = [c for c in mine if c.passed is None]
        lines.append(
            f"**{policy}**: {len(held)} of {len(mine)} hold"
            + (f" ({', '.join(held)})" if held else "")
            + f"; {len(failed)} fail"
            + (f" ({', '.join(failed)})" if failed else "")
            + f"; {len(open_)} are within the seed spread or undecided."
        )
    return "\n\n".join(lines)
