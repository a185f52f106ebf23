"""Metrics of the pulse–tidal experiment (paper Sec. 5.1; book chapter 06), over the tidy results.

The input is the frame that ``nsf sweep collect`` writes (:func:`nsf.train.sweep.collect`): one
row per run and epoch, with a column naming the arm (``arm``, by default the sweep's ``case``),
``seed``, ``epoch`` (1-based: epoch e is the evaluation after e passes over the training set),
``val_top1`` (a fraction in [0, 1]) and ``val_loss``. Every function is pure: it reads the frame
and returns a frame, a number or :class:`nsf.verdicts.Check` records.

**The curve of an arm** is its seed-averaged validation top-1 against epoch (the mean over the
arm's seeds at each epoch, as Fig. 6 draws it). Every seed of an arm must have the same epochs,
otherwise the mean would change its seeds along the curve; that is refused by name.

**Time to accuracy.** t_arm(a) is the first time the arm's curve reaches the level a, in epochs
counted from the start of training. With ``interpolate=True`` (the default) the curve is read as
the polyline through its points, the way Fig. 6 is drawn and read, and t is where its first
segment that reaches a crosses it: t = e_(k-1) + (a - y_(k-1)) / (y_k - y_(k-1)), a fractional
epoch. With ``interpolate=False`` t is the first evaluated epoch with y_k >= a (an integer).
Interpolation is the default because it makes t, and so S, a continuous function of the curves:
the discrete reading moves S in steps of 1 / t_base (a step of 0.1 when the baseline needs ten
epochs, as the short CPU profiles do), while over 200 epochs the two readings differ by less than
one epoch. If the first evaluation already reaches a there is no earlier point to interpolate
from: t is that epoch (an upper bound) and the note says so. A level never reached gives NaN,
with the reason.

**Speed-up.** S(a) = 1 - t_arm(a) / t_base(a), the fraction of the baseline's time to a that the
arm saves. Both arms take the same iterations per epoch and, up to the p exponent's "negligible
cost" (Sec. 3.1), the same time per iteration, so S is the same in epochs, iterations or images.
The levels are fractions of a* (the baseline's final accuracy, the last point of its curve, so
t_base(a*) always exists) and optionally absolute levels. The paper's three speed-up figures are
read in :func:`speedup_readings`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from nsf.verdicts import Check, Strength

__all__ = [
    "ARM",
    "EARLY_FRACTIONS",
    "FRACTIONS",
    "TOLERANCE",
    "Reached",
    "Reading",
    "divergence_check",
    "epoch_differences",
    "final_checks",
    "final_top1",
    "loss_at_matched_accuracy",
    "mean_curve",
    "readings_table",
    "seed_pairs",
    "seed_sign_check",
    "seed_sign_count",
    "speedup_checks",
    "speedup_readings",
    "speedup_table",
    "time_to_accuracy",
]

#: The column naming an arm (the sweep's case).
ARM = "case"
#: The levels of :func:`speedup_table`, as fractions of the baseline's final accuracy a*.
FRACTIONS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: The levels up to 80 % of a*, the "early stages" of Sec. 5.1.2.
EARLY_FRACTIONS = (0.5, 0.6, 0.7, 0.8)
#: Half-width of "about" in the speed-up readings, in units of S (5 % of the baseline's time).
TOLERANCE = 0.05


# ------------------------------------------------------------------------------ curves and times


def _runs(frame: pd.DataFrame, arm: str, name: Any, columns: Sequence[str]) -> pd.DataFrame:
    """The rows of arm ``name``, checked: the columns exist, no (seed, epoch) twice, every seed
    with the same epochs, no NaN in ``columns``."""
    missing = {arm, "seed", "epoch", *columns} - set(frame.columns)
    if missing:
        raise ValueError(f"the frame lacks the columns {sorted(missing)}")
    rows = frame[frame[arm] == name]
    if rows.empty:
        raise ValueError(f"no runs of arm {name!r} in column {arm!r}")
    if rows.duplicated(["seed", "epoch"]).any():
        raise ValueError(f"arm {name!r}: a (seed, epoch) appears twice (two runs per seed?)")
    epochs = rows.groupby("seed")["epoch"].apply(lambda e: tuple(sorted(e)))
    if epochs.nunique() > 1:
        raise ValueError(f"arm {name!r}: the seeds have different epochs; finish or drop runs")
    for column in columns:
        if rows[column].isna().any():
            raise ValueError(f"arm {name!r}: {column} is NaN in some rows (a diverged run?)")
    return rows


def mean_curve(
    frame: pd.DataFrame, name: Any, column: str = "val_top1", *, arm: str = ARM
) -> pd.Series:
    """The seed-averaged ``column`` of arm ``name`` against epoch (indexed by epoch, sorted)."""
    rows = _runs(frame, arm, name, [column])
    return rows.sort_values(["epoch", "seed"]).groupby("epoch")[column].mean()


class Reached(NamedTuple):
    """When a curve first reaches a level: ``epoch`` (NaN if never) and a ``note`` ("" when the
    crossing was found between two evaluations or, without interpolation, at one)."""

    epoch: float
    note: str


def time_to_accuracy(curve: pd.Series, level: float, *, interpolate: bool = True) -> Reached:
    """t(level) of a curve indexed by epoch (the module's docstring defines both readings)."""
    epochs = curve.index.to_numpy(dtype=float)
    values = curve.to_numpy(dtype=float)
    if not np.all(np.diff(epochs) > 0):
        raise ValueError("the curve's epochs must increase")
    hit = np.flatnonzero(values >= level)
    if hit.size == 0:
        return Reached(math.nan, f"never reached (best {values.max():.4f} < {level:.4f})")
    k = int(hit[0])
    if k == 0:
        return Reached(float(epochs[0]), "reached at the first evaluation (an upper bound)")
    if not interpolate:
        return Reached(float(epochs[k]), "")
    e0, e1, y0, y1 = epochs[k - 1], epochs[k], values[k - 1], values[k]
    return Reached(float(e0 + (level - y0) / (y1 - y0) * (e1 - e0)), "")


def _interp(curve: pd.Series, epoch: float) -> float:
    """The curve's value at ``epoch`` on its polyline (NaN for a NaN epoch)."""
    if math.isnan(epoch):
        return math.nan
    return float(np.interp(epoch, curve.index.to_numpy(float), curve.to_numpy(float)))


def final_top1(frame: pd.DataFrame, *, arm: str = ARM) -> pd.DataFrame:
    """Per arm: ``n_seeds``, the final ``epoch``, the mean, std and variance (ddof=1; NaN for one
    seed) of the final val_top1 over seeds, and ``best_top1_mean``, the mean over seeds of each
    seed's best epoch (Sec. 5.1.2 reports "variance ... across three runs" and does not say
    whether it means a variance or a standard deviation: both are given)."""
    out = []
    for name in pd.unique(frame[arm]):
        rows = _runs(frame, arm, name, ["val_top1"]).sort_values(["seed", "epoch"])
        last = rows.groupby("seed").tail(1)
        top1 = last["val_top1"]
        out.append(
            {
                arm: name,
                "n_seeds": len(last),
                "epoch": int(last["epoch"].iloc[0]),
                "top1_mean": float(top1.mean()),
                "top1_std": float(top1.std(ddof=1)),
                "top1_var": float(top1.var(ddof=1)),
                "best_top1_mean": float(rows.groupby("seed")["val_top1"].max().mean()),
            }
        )
    return pd.DataFrame(out)


def speedup_table(
    frame: pd.DataFrame,
    baseline: Any,
    treated: Any,
    *,
    fractions: Sequence[float] = FRACTIONS,
    levels: Sequence[float] = (),
    interpolate: bool = True,
    arm: str = ARM,
) -> pd.DataFrame:
    """S(a) of arm ``treated`` against arm ``baseline``, one row per level: the ``fractions`` of
    a* (the baseline's final accuracy), then the absolute ``levels``.

    Columns: ``level``, ``fraction`` (of a*; NaN for an absolute level), ``t_base``, ``t_arm``
    (epochs), ``speedup`` = 1 - t_arm / t_base (NaN when either arm never reaches the level) and
    ``note`` (why it is NaN, or that a time is an upper bound).
    """
    base = mean_curve(frame, baseline, arm=arm)
    curve = mean_curve(frame, treated, arm=arm)
    a_star = float(base.iloc[-1])
    rows = [(float(q) * a_star, float(q)) for q in fractions]
    rows += [(float(a), math.nan) for a in levels]
    out = []
    for level, fraction in rows:
        tb = time_to_accuracy(base, level, interpolate=interpolate)
        ta = time_to_accuracy(curve, level, interpolate=interpolate)
        notes = [f"{who}: {r.note}" for who, r in (("baseline", tb), ("arm", ta)) if r.note]
        out.append(
            {
                "level": level,
                "fraction": fraction,
                "t_base": tb.epoch,
                "t_arm": ta.epoch,
                "speedup": 1.0 - ta.epoch / tb.epoch,
                "note": "; ".join(notes),
            }
        )
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------ the three readings


@dataclass(frozen=True)
class Reading:
    """One of the paper's speed-up figures, read operationally and computed.

    ``value`` is the computed quantity (NaN if undefined, ``reason`` then says why), ``target``
    the paper's figure as the interval [low, high] it is judged against (the tolerance already
    applied).
    """

    name: str
    section: str
    words: str
    definition: str
    paper_value: str
    value: float
    low: float
    high: float
    reason: str
    strength: Strength

    @property
    def passed(self) -> bool | None:
        if math.isnan(self.value):
            return None
        return bool(self.low <= self.value <= self.high)

    @property
    def statistic(self) -> str:
        return self.reason if math.isnan(self.value) else f"{self.value:.3f}"

    def check(self) -> Check:
        bounds = f"{self.low:.2f} <= value <= {self.high:.2f}"
        return Check(
            name=self.name,
            claim=f"{self.words} ({self.section})",
            criterion=f"{self.definition}; agrees if {bounds}",
            statistic=self.statistic,
            passed=self.passed,
            undecided=self.reason or "not applicable",
            strength=self.strength,
        )


def speedup_readings(
    frame: pd.DataFrame,
    baseline: Any,
    treated: Any,
    *,
    early: Sequence[float] = EARLY_FRACTIONS,
    tolerance: float = TOLERANCE,
    interpolate: bool = True,
    arm: str = ARM,
) -> tuple[Reading, Reading, Reading]:
    """The paper's three speed-up figures, each computed under one stated reading.

    * **Sec. 5.1.2**, "converges faster in the early stages, reaching the same accuracy about
      15–20 % earlier than the baseline": the median of S(q a*) over the early levels q in
      ``early`` (default 50–80 % of a*); agrees if it lies in [0.15 - tol, 0.20 + tol]. The paper
      names no level, so the criterion is ``lenient``: a band of levels and a band of values.
    * **Sec. 5.1.3**, "reaching the same level as SGD about 75 % earlier": S(a*), the speed-up at
      the baseline's final accuracy; agrees if ``|S(a*) - 0.75| <= tol``.
    * **Abstract**, "matches baseline accuracy with only one-quarter of the training cost": the
      cost C = t_arm(a*) / E_base, the arm's time to a* as a fraction of the baseline's whole
      run (its last epoch E_base, not its own t_base(a*): "training cost" is the budget the
      baseline spent). It agrees if C <= 0.25 + tol: a cheaper match does not contradict "only
      one-quarter". C <= 1 - S(a*), with equality when the baseline first reaches a* at its end.

    A level that an arm never reaches leaves its reading undefined (NaN, the reason recorded),
    and its check undecided. ``tolerance`` (default 0.05, i.e. 5 % of the baseline's time) is the
    width given to "about".
    """
    if tolerance < 0:
        raise ValueError(f"tolerance={tolerance} must be >= 0")
    table = speedup_table(
        frame, baseline, treated, fractions=(*early, 1.0), interpolate=interpolate, arm=arm
    )
    early_rows, final = table.iloc[:-1], table.iloc[-1]
    defined = early_rows["speedup"].dropna()
    if defined.empty:
        early_value, early_reason = math.nan, "no early level reached by both arms"
    else:
        early_value, early_reason = float(defined.median()), ""
    skipped = len(early_rows) - len(defined)
    early_def = (
        f"median of S(q a*) over q in {tuple(early)} (fractions of the baseline's final top-1"
        + (f"; {skipped} level(s) not reached by both arms left out)" if skipped else ")")
    )
    s_star = float(final["speedup"])
    why = final["note"] if math.isnan(s_star) else ""
    e_base = float(mean_curve(frame, baseline, arm=arm).index[-1])
    cost = float(final["t_arm"]) / e_base
    tol = float(tolerance)
    return (
        Reading(
            "speed-up, early stages",
            "Sec. 5.1.2",
            "reaching the same accuracy about 15–20% earlier than the baseline",
            early_def,
            "0.15–0.20",
            early_value,
            0.15 - tol,
            0.20 + tol,
            early_reason,
            "lenient",
        ),
        Reading(
            "speed-up at the baseline's final accuracy",
            "Sec. 5.1.3",
            "reaching the same level as SGD about 75% earlier",
            "S(a*) = 1 - t_arm(a*) / t_base(a*), a* the baseline's final top-1",
            "0.75",
            s_star,
            0.75 - tol,
            0.75 + tol,
            why,
            "independent",
        ),
        Reading(
            "cost to match the baseline",
            "abstract",
            "matches baseline accuracy with only one-quarter of the training cost",
            "C = t_arm(a*) / E_base, E_base the baseline's last epoch",
            "0.25",
            cost,
            0.0,
            0.25 + tol,
            why,
            "independent",
        ),
    )


def speedup_checks(frame: pd.DataFrame, baseline: Any, treated: Any, **kw: Any) -> list[Check]:
    """The three readings of :func:`speedup_readings` as checks."""
    return [r.check() for r in speedup_readings(frame, baseline, treated, **kw)]


def readings_table(readings: Sequence[Reading]) -> pd.DataFrame:
    """The readings side by side: section, the paper's words and figure, our definition, the
    computed value, the interval it is judged against, the verdict and its strength."""
    return pd.DataFrame(
        [
            {
                "reading": r.name,
                "section": r.section,
                "paper's words": r.words,
                "paper's figure": r.paper_value,
                "operational definition": r.definition,
                "computed": r.statistic,
                "agrees if within": f"[{r.low:.2f}, {r.high:.2f}]",
                "verdict": r.check().verdict,
                "strength": r.strength,
            }
            for r in readings
        ]
    ).set_index("reading")


# ------------------------------------------------------------------------------ accuracy and loss


def loss_at_matched_accuracy(
    frame: pd.DataFrame,
    baseline: Any,
    treated: Any,
    *,
    fractions: Sequence[float] = FRACTIONS,
    levels: Sequence[float] = (),
    interpolate: bool = True,
    arm: str = ARM,
) -> pd.DataFrame:
    """The validation loss of each arm at the time its curve reaches the same top-1 levels.

    The levels are those of :func:`speedup_table`. At each, ``loss_base`` and ``loss_arm`` are
    the seed-averaged val_loss at t_base(a) and t_arm(a) (on the loss polyline with
    ``interpolate``, else at the evaluated epoch), and ``loss_gap`` = loss_arm - loss_base:
    positive when the arm reaches the accuracy with a higher loss, the "divergent pattern where
    accuracy advanced while loss lagged behind" of Sec. 5.1.3. NaN where a level is not reached.
    """
    times = speedup_table(
        frame,
        baseline,
        treated,
        fractions=fractions,
        levels=levels,
        interpolate=interpolate,
        arm=arm,
    )
    lb = mean_curve(frame, baseline, "val_loss", arm=arm)
    la = mean_curve(frame, treated, "val_loss", arm=arm)
    out = times[["level", "fraction", "t_base", "t_arm"]].copy()
    out["loss_base"] = [_interp(lb, t) for t in times["t_base"]]
    out["loss_arm"] = [_interp(la, t) for t in times["t_arm"]]
    out["loss_gap"] = out["loss_arm"] - out["loss_base"]
    out["note"] = times["note"]
    return out


def divergence_check(matched: pd.DataFrame, *, min_levels: int = 2) -> Check:
    """Sec. 5.1.3's "accuracy advanced while loss lagged behind", on the table of
    :func:`loss_at_matched_accuracy`: holds if the arm's loss is higher than the baseline's
    (loss_gap > 0) at a strict majority of the levels that both arms reach; undecided with fewer
    than ``min_levels`` such levels."""
    gaps = matched["loss_gap"].dropna()
    above = int((gaps > 0).sum())
    statistic = f"loss_arm > loss_base at {above} of {len(gaps)} matched levels"
    passed = None if len(gaps) < min_levels else bool(above > len(gaps) / 2)
    return Check(
        name="accuracy–loss divergence",
        claim="the test loss did not exhibit a comparable reduction ... accuracy advanced "
        "while loss lagged behind (Sec. 5.1.3)",
        criterion="at matched top-1 levels, val loss of the arm > that of the baseline at a "
        "strict majority of levels",
        statistic=statistic,
        passed=passed,
        undecided=f"fewer than {min_levels} levels reached by both arms",
    )


def epoch_differences(
    frame: pd.DataFrame, baseline: Any, treated: Any, *, arm: str = ARM
) -> pd.DataFrame:
    """Per epoch that both arms evaluated: ``d_top1`` and ``d_loss``, the arm's seed-averaged
    val_top1 and val_loss minus the baseline's (the same epochs, not the same accuracy)."""
    out = pd.DataFrame(
        {
            "d_top1": mean_curve(frame, treated, arm=arm) - mean_curve(frame, baseline, arm=arm),
            "d_loss": mean_curve(frame, treated, "val_loss", arm=arm)
            - mean_curve(frame, baseline, "val_loss", arm=arm),
        }
    )
    return out.dropna().rename_axis("epoch").reset_index()


# ------------------------------------------------------------------------------ seed pairs


def seed_pairs(frame: pd.DataFrame, baseline: Any, treated: Any, *, arm: str = ARM) -> pd.DataFrame:
    """The final val_top1 of the two arms for every seed both ran: ``top1_base``, ``top1_arm``,
    ``gain`` = top1_arm - top1_base and its ``sign`` (-1, 0, +1). Seeds run by one arm only are
    left out."""

    def last(name: Any) -> pd.Series:
        rows = _runs(frame, arm, name, ["val_top1"]).sort_values(["seed", "epoch"])
        return rows.groupby("seed")["val_top1"].last()

    out = pd.concat({"top1_base": last(baseline), "top1_arm": last(treated)}, axis=1).dropna()
    out["gain"] = out["top1_arm"] - out["top1_base"]
    out["sign"] = np.sign(out["gain"]).astype(int)
    return out.rename_axis("seed").reset_index()


def seed_sign_count(pairs: pd.DataFrame) -> dict[str, int]:
    """How many seed pairs the arm wins, loses and ties (keys ``positive``, ``negative``,
    ``zero``, ``pairs``)."""
    sign = pairs["sign"]
    return {
        "positive": int((sign > 0).sum()),
        "negative": int((sign < 0).sum()),
        "zero": int((sign == 0).sum()),
        "pairs": len(sign),
    }


def seed_sign_check(pairs: pd.DataFrame) -> Check:
    """Sec. 6's "consistently improved accuracy" on the seed pairs of :func:`seed_pairs`: holds
    if the arm's final top-1 is above the baseline's in every pair; undecided without a pair.
    ``lenient``: a sign test passes through gains of any size, however small."""
    n = seed_sign_count(pairs)
    return Check(
        name="gain in every seed pair",
        claim="p-tidal scheduling consistently improved accuracy (Sec. 6; 59.1% -> 62.9%, "
        "Sec. 5.1.2)",
        criterion="final top-1 of the arm > that of the baseline for every seed run by both",
        statistic=f"{n['positive']} of {n['pairs']} pairs positive, {n['negative']} negative, "
        f"{n['zero']} tied",
        passed=None if n["pairs"] == 0 else n["positive"] == n["pairs"],
        undecided="no seed run by both arms",
        strength="lenient",
    )


def _final(frame: pd.DataFrame, name: Any, column: str, arm: str) -> pd.Series:
    rows = _runs(frame, arm, name, [column]).sort_values(["seed", "epoch"])
    return rows.groupby("seed")[column].last()


def final_checks(
    frame: pd.DataFrame, baseline: Any, treated: Any, *, arm: str = ARM
) -> list[Check]:
    """The final-epoch comparisons of Sec. 5.1.2 and the paper body's abstract (ledger L33, L4).

    * ``final top-1 gain``: the mean final val_top1 of ``treated`` exceeds the baseline's by more
      than the seeds' spread, ``sqrt(std_base² + std_arm²)`` (ddof=1);
    * ``final loss change``: the mean final val_loss of ``treated`` is below the baseline's by
      more than the same spread of the losses ("reduces test error and test loss").

    Undecided with fewer than two seeds in an arm (no spread to compare with)."""
    out = []
    for name, column, sign, claim in (
        ("final top-1 gain", "val_top1", +1,
         "final top-1 accuracy improves from 59.1% (baseline) to 62.9% (Sec. 5.1.2)"),
        ("final loss change", "val_loss", -1,
         "cyclic scheduling consistently reduces test error and test loss (abstract, body)"),
    ):  # fmt: skip
        base, other = _final(frame, baseline, column, arm), _final(frame, treated, column, arm)
        diff = float(other.mean() - base.mean())
        spread = float(np.hypot(base.std(ddof=1), other.std(ddof=1)))
        word = "above" if sign > 0 else "below"
        out.append(
            Check(
                name=name,
                claim=claim,
                criterion=f"mean final {column} of the arm {word} the baseline's by more than "
                "the seeds' spread sqrt(std_base² + std_arm²)",
                statistic=f"arm − baseline = {diff:+.4f}, spread = {spread:.4f} "
                f"({len(base)} and {len(other)} seeds)",
                passed=None if np.isnan(spread) else bool(sign * diff > spread),
                undecided="undecided (fewer than two seeds in an arm)",
            )
        )
    return out
