"""Chapter 02's statements in words, computed from its runs and checks (never typed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import pandas as pd

from nsf.ablation.results import best_p
from nsf.verdicts import Check

__all__ = [
    "best_p_table",
    "confound_note",
    "findings_note",
    "runs_note",
    "search_note",
    "search_table",
    "sweeps_note",
]


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


def sweeps_note(statuses: Mapping[str, Mapping[int, str]], store) -> str:
    """:func:`runs_note` for each sweep of the chapter (sweep name -> its statuses)."""
    names = {"grid": "the grid", "lr_search": "the lr search", "per_p": "the per_p runs"}
    return " ".join(
        f"{names.get(name, name).capitalize()}: {runs_note(s, store)}"
        for name, s in statuses.items()
    )


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
    searched = sizes[sizes["policy"] == "per_p"]
    if not searched.empty:
        parts.append(
            f"Under per_p (an lr searched at every p) the ratio lies within "
            f"{searched['ratio_to_p0'].min():.3g}-{searched['ratio_to_p0'].max():.3g}x (the search "
            "picks each lr by holdout accuracy, not by step size, so it need not undo the spread)."
        )
    return " ".join(parts)


def search_table(chosen: pd.DataFrame, fixed_lr: float) -> pd.DataFrame:
    """The ``per_p`` search at a glance: per (dataset, p), the chosen lr as a multiple of the
    fixed lr, its mean holdout top-1, and the holdout top-1 of every lr tried."""
    tried = chosen.pivot_table(index=["dataset", "p"], columns="lr", values="holdout_top1")
    tried.columns = [f"holdout top-1 at lr {lr:g}" for lr in tried.columns]
    picked = chosen[chosen["chosen"]].set_index(["dataset", "p"])
    out = pd.DataFrame(
        {
            "chosen lr": picked["lr"],
            "x fixed lr": (picked["lr"] / fixed_lr).round(6),
            "seeds searched": picked["n_seeds"],
        }
    )
    return out.join(tried.round(4))


def search_note(chosen: pd.DataFrame, fixed_lr: float, holdout_fraction: float) -> str:
    """How the ``per_p`` lrs were chosen, declared as a search, and how often it kept the fixed
    lr."""
    picked = chosen[chosen["chosen"]]
    kept = int((picked["lr"] == fixed_lr).sum())
    grid = ", ".join(f"{lr:g}" for lr in sorted(chosen["lr"].unique()))
    return (
        f"**Chosen by search.** The per_p lr of every (case, p) was chosen from {{{grid}}} by the "
        f"highest mean final top-1 on a holdout of {holdout_fraction:.0%} of each train class "
        "(its labels as noisy as the rest of train), trained on the remaining train images; the "
        "test split was not seen by the search. The per_p curves are then trained on the whole "
        f"train split at those lrs. The search kept the fixed lr at {kept} of {len(picked)} "
        "(case, p)."
    )


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
