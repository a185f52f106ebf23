"""The paper's decay table (Sec. 4.1.2), and how ours compares with it.

``data/paper_kappa_table.csv`` holds the 48 decay constants exactly as printed, with the row
labels the companion infers (the paper stripped them). Our rows are matched to the paper's by
position. This module gives the cell-by-cell difference, its summary per row and over the table,
the tidal gains of either table, and the sentences that state where the two agree and where the
paper does not reproduce.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import spearmanr

from nsf.spectral.table import schedule_roles

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "distance_note",
    "paper_comparison",
    "paper_kappa_table",
    "paper_p0_value",
    "reproduction_note",
    "row_summary",
    "table_distance",
    "tidal_gains",
]


def paper_kappa_table() -> pd.DataFrame:
    """The paper's kappa table (Sec. 4.1.2) from ``data/paper_kappa_table.csv``, as printed.

    One row per printed row, in print order; the key columns are ``k1 ... k32``. The row labels
    and their p values were stripped from the paper and are inferred (book page "How the paper
    was reconstructed: chapter 03", the row labels): see the columns ``row_label_inferred``,
    ``label_confidence``, ``inferred_p*``. No R^2 is printed.
    """
    return _paper_table().copy()


@functools.cache
def _paper_table() -> pd.DataFrame:
    import pandas as pd

    from nsf.book.provenance import repo_root

    return pd.read_csv(repo_root() / "data" / "paper_kappa_table.csv", dtype={"section": str})


@functools.cache
def _paper_kappa_array(keys: tuple[int, ...]) -> np.ndarray:
    table = _paper_table()
    cols = [f"k{k}" for k in keys]
    missing = [c for c in cols if c not in table]
    if missing:
        raise ValueError(f"the paper prints no kappa for keys {missing}; compare with keys 1..32")
    return table[cols].to_numpy(dtype=float)


def paper_comparison(kappa: pd.DataFrame) -> pd.DataFrame:
    """Ours minus the paper, cell by cell, rows matched by position (the paper's row order).

    Row labels of the paper are inferred (book page "How the paper was reconstructed: chapter
    03"), so the match is by order: our table
    must have the paper's 8 rows (5 constants ascending, tidal widest / upper / lower) and its keys.
    """
    return kappa - paper_aligned(kappa.to_numpy(), tuple(int(k) for k in kappa.columns))


def paper_aligned(kappa: np.ndarray, keys: tuple[int, ...]) -> np.ndarray:
    paper = _paper_kappa_array(keys)
    if kappa.shape[0] != paper.shape[0]:
        raise ValueError(
            f"our table has {kappa.shape[0]} rows, the paper's {paper.shape[0]}; the "
            "comparison matches rows by position, so use the paper's 8 schedules in "
            "its order"
        )
    return paper


def row_summary(kappa: pd.DataFrame) -> pd.DataFrame:
    """Per row, ours vs the paper: RMS and maximum absolute difference, mean kappa, direction in k.

    ``rho_*`` is Spearman's rank correlation of kappa_k with log k (> 0: high-pass, larger kappa at
    high k; < 0: low-pass; NaN for a row flat to 1e-6), ``slope_*`` the OLS slope of kappa_k on
    log2 k. Rows are matched by
    position (:func:`paper_comparison`).
    """
    import pandas as pd

    keys = tuple(int(k) for k in kappa.columns)
    ours = kappa.to_numpy(dtype=float)
    paper = paper_aligned(ours, keys)
    log2k = np.log2(np.asarray(keys, dtype=float))
    out = pd.DataFrame(index=kappa.index)
    out["rms_diff"] = np.sqrt(((ours - paper) ** 2).mean(axis=1))
    out["max_abs_diff"] = np.abs(ours - paper).max(axis=1)
    out["mean_ours"], out["mean_paper"] = ours.mean(axis=1), paper.mean(axis=1)
    flat = lambda r: np.ptp(r) < 1e-6  # noqa: E731  (a constant row has no direction)
    out["rho_ours"] = [np.nan if flat(r) else spearmanr(r, log2k).statistic for r in ours]
    out["rho_paper"] = [np.nan if flat(r) else spearmanr(r, log2k).statistic for r in paper]
    out["slope_ours"] = np.polyfit(log2k, ours.T, 1)[0]
    out["slope_paper"] = np.polyfit(log2k, paper.T, 1)[0]
    return out


def tidal_gains(kappa: pd.DataFrame, schedules: Mapping[str, Callable]) -> pd.DataFrame:
    """kappa(tidal) / kappa(constant of the same mean), per tidal row with such a constant, per key.

    The ratio the Jensen / I0 argument of Sec. 4.1.2's observation 3 speaks about (book page
    "How the paper was reconstructed: chapter 03", the I0 identity). Rows are named
    "tidal ... / p = ...". ``kappa`` may be the paper's table with our index: its gains are then
    *derived* from the paper's printed values under our inferred row labels, not printed by the
    paper.
    """
    import pandas as pd

    pairs = schedule_roles(schedules).same_mean_pairs
    rows = {
        f"{n} / {c}": kappa.loc[n].to_numpy(float) / kappa.loc[c].to_numpy(float) for n, c in pairs
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=kappa.columns)


def table_distance(kappa: pd.DataFrame) -> dict[str, float]:
    """{"rms": ..., "max_abs": ...}: the distance of our kappa table to the paper's, all cells."""
    diff = paper_comparison(kappa).to_numpy()
    return {"rms": float(np.sqrt(np.mean(diff**2))), "max_abs": float(np.abs(diff).max())}


@functools.cache
def paper_p0_value() -> float:
    """The paper's printed p = 0 rate (0.400 in every cell of its p = 0 row): K1's target."""
    table = _paper_table()
    row = table[(table["schedule_kind"] == "constant") & (table["inferred_p"] == 0)]
    return float(row[[c for c in table if c.startswith("k")]].to_numpy().mean())


def _direction(rho: float) -> str:
    return "high-pass" if rho > 0 else "low-pass"


def distance_note(kappa: pd.DataFrame, close: float = 0.06) -> str:
    """The distance of our table to the paper's, in words: RMS and largest difference over all
    cells, the rows within ``close`` of the paper at every key, the worst row, and each row's
    direction in k (Spearman rho of kappa_k with log k) in ours and in the paper."""
    dist, rows = table_distance(kappa), row_summary(kappa)
    worst = rows["rms_diff"].idxmax()
    agree = rows.index[rows["max_abs_diff"] < close].tolist()
    directions = "; ".join(
        f"{n}: {r.rho_ours:+.2f} vs {r.rho_paper:+.2f}".replace("+nan", "flat")
        for n, r in rows.iterrows()
    )
    return (
        f"**Distance to the paper.** Over the {kappa.size} cells, RMS(ours − paper) = "
        f"**{dist['rms']:.3f}** and the largest |difference| is **{dist['max_abs']:.3f}** "
        f"(1/time). Rows within {close:g} of the paper at every key: {', '.join(agree) or 'none'}. "
        f"The worst row is **{worst}** (RMS {rows.loc[worst, 'rms_diff']:.3f}). Per-row direction "
        "in k (Spearman ρ of κ_k with log k; > 0 high-pass, < 0 low-pass), ours vs the paper: "
        f"{directions}."
    )


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a.max() >= b.min() and b.max() >= a.min())


def reproduction_note(kappa: pd.DataFrame, schedules: Mapping[str, Callable]) -> str:
    """Where the paper does not reproduce, in words: (i) the most negative constant row, the
    paper's against ours (its last two keys, its mean, its direction in k); (ii) the range over
    the keys of each tidal gain (:func:`tidal_gains`) in ours and derived from the paper's table
    under our row labels, and whether the two ranges overlap."""
    paper = kappa - paper_comparison(kappa)
    rows = row_summary(kappa)
    gains_ours, gains_paper = tidal_gains(kappa, schedules), tidal_gains(paper, schedules)
    strong = schedule_roles(schedules).strong_negative
    k_prev, k_hi = kappa.columns[-2], kappa.columns[-1]
    parts = []
    if strong is not None:
        r, p0 = rows.loc[strong], paper_p0_value()
        drops = "drops" if paper.loc[strong, k_hi] < paper.loc[strong, k_prev] else "does not drop"
        below = (
            f"sits below {p0:.3f} at every key"
            if (paper.loc[strong] < p0).all()
            else f"reaches {p0:.3f} at some key"
        )
        parts.append(
            f"(i) The strongly negative row ({strong}, label inferred): the paper's {drops} at "
            f"high k (κ_{k_prev} → κ_{k_hi}: {paper.loc[strong, k_prev]:.3f} → "
            f"{paper.loc[strong, k_hi]:.3f}) and {below} (mean "
            f"{r.mean_paper:.3f}); ours is {_direction(r.rho_ours)} (ρ = {r.rho_ours:+.2f}; "
            f"{kappa.loc[strong, k_prev]:.3f} → {kappa.loc[strong, k_hi]:.3f}, mean "
            f"{r.mean_ours:.3f}). "
        )
    gains = "; ".join(
        f"{n}: ours {gains_ours.loc[n].min():.2f}–{gains_ours.loc[n].max():.2f}, "
        f"derived from the paper's table {gains_paper.loc[n].min():.2f}–"
        f"{gains_paper.loc[n].max():.2f}"
        + (
            " (ranges overlap)"
            if _overlap(gains_ours.loc[n].to_numpy(), gains_paper.loc[n].to_numpy())
            else " (no overlap)"
        )
        for n in gains_ours.index
    )
    parts.append(
        "(ii) The size of the tidal gains, κ(tidal) / κ(same-mean constant), over the keys (the "
        "paper prints no gain: we derive its gains from its table under our row labels, which "
        f"decide which rows are paired): {gains}."
    )
    return "**Where the paper does not reproduce.** " + "".join(parts)
