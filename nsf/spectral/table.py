"""The schedules of the paper's decay table (Sec. 4.1.2, Eqs. 6-7) and the part each one plays.

The table has five constant-p rows and three cosine ("tidal") rows between p_min and p_max; their
labels were stripped and are inferred (``data/paper_kappa_table.csv``). :class:`TableSetup` holds
the chapter's choice of rows, checked once; :func:`schedule_roles` reads from the schedules' own
types and parameters which row is p = 0, which constants are positive or negative, and which
tidal row has which same-mean constant: the roles the claims K1-K7 and the tidal gains speak of.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass as plain_dataclass
from typing import Annotated

from pydantic import AfterValidator
from pydantic.dataclasses import dataclass

from nsf.schedules import constant, tidal
from nsf.spectral.setup import Modes
from nsf.validation import CONFIG, Finite, Positive

__all__ = ["Roles", "TableSetup", "paper_family", "schedule_roles", "table_schedules"]


def paper_family(p_scale: float = 0.5) -> tuple[list[float], list[list[float]]]:
    """(p_constant, tidal_ranges) of the paper's table for the scale A.

    Constants {-A, -A/2, 0, A/2, A} and ranges [-A, A], [0, A], [-A, 0], in the table's row order.
    A = 0.5 is the companion default (assumed); A = 1 fits the table's structure equally well.
    """
    a = float(p_scale)
    return [-a, -a / 2, 0.0, a / 2, a], [[-a, a], [0.0, a], [-a, 0.0]]


def table_schedules(
    p_constant: Sequence[float] | None = None,
    tidal_ranges: Sequence[Sequence[float]] | None = None,
    period: float = 0.5,
    phase: float = 0.0,
) -> dict[str, Callable]:
    """name -> p schedule for a table: the constants, then the cosine tidal ranges (Eqs. 6-7).

    Defaults are the paper's rows with A = 0.5 (:func:`paper_family`). A range [p_min, p_max]
    becomes ``tidal(p_mid, p_amp, period, phase)`` with p_mid, p_amp its centre and half-width
    (:class:`TableSetup` checks that p_min <= p_max).
    """
    default_const, default_ranges = paper_family()
    p_constant = default_const if p_constant is None else p_constant
    tidal_ranges = default_ranges if tidal_ranges is None else tidal_ranges
    out: dict[str, Callable] = {}
    for p in p_constant:
        out[f"p = {float(p):g}"] = constant(float(p))
    for rng in tidal_ranges:
        lo, hi = (float(v) for v in rng)
        out[f"tidal [{lo:g}, {hi:g}]"] = tidal((hi + lo) / 2, (hi - lo) / 2, period, phase)
    return out


def _ordered(rng: tuple[float, float]) -> tuple[float, float]:
    if not rng[0] <= rng[1]:
        raise ValueError(f"{list(rng)} is not [p_min, p_max] with p_min <= p_max")
    return rng


#: A tidal range [p_min, p_max] with p_min <= p_max.
PRange = Annotated[tuple[Finite, Finite], AfterValidator(_ordered)]


@dataclass(frozen=True, config=CONFIG)
class TableSetup:
    """The rows of the decay table (Sec. 4.1.2) and the bands of the single-band check.

    Attributes:
        p_constant: the constant-p rows, in the table's order (inferred labels, A = 0.5 assumed).
        tidal_ranges: the tidal rows [p_min, p_max] (inferred labels).
        tidal_period: period T of the cosine schedule, in simulated time (assumed).
        tidal_phase: its phase phi in radians (assumed).
        single_band_modes: modes m of the single-band invariance check (Sec. 4.1.1), run with the
            same schedules.
    """

    p_constant: tuple[Finite, ...] = (-0.5, -0.25, 0.0, 0.25, 0.5)
    tidal_ranges: tuple[PRange, ...] = ((-0.5, 0.5), (0.0, 0.5), (-0.5, 0.0))
    tidal_period: Positive = 0.5
    tidal_phase: Finite = 0.0
    single_band_modes: Modes = (1, 4, 16)

    def schedules(self) -> dict[str, Callable]:
        """name -> p schedule of every row (:func:`table_schedules`)."""
        return table_schedules(
            self.p_constant, self.tidal_ranges, self.tidal_period, self.tidal_phase
        )

    @property
    def p_scale(self) -> float:
        """A = ``max |p|`` of the constant rows, the scale of :func:`paper_family`."""
        return float(max((abs(p) for p in self.p_constant), default=0.0))


@plain_dataclass(frozen=True)
class Roles:
    """Which row of a table plays which part (names of schedules; None or empty where absent).

    Attributes:
        constants: every constant-p row, in table order; nonzero: those with p != 0.
        tides: every tidal row, in table order.
        zero: the p = 0 row; positive: the p > 0 rows.
        strong_negative: the most negative p; next_negative: the next one.
        mild_negative: every negative p but the most negative.
        wide: the mean-0 tidal row with the largest swing.
        upper, lower: (tidal row, its same-mean constant or None) for the tidal rows of mean > 0
            and < 0.
    """

    constants: tuple[str, ...]
    nonzero: tuple[str, ...]
    tides: tuple[str, ...]
    zero: str | None
    positive: tuple[str, ...]
    strong_negative: str | None
    next_negative: str | None
    mild_negative: tuple[str, ...]
    wide: str | None
    upper: tuple[tuple[str, str | None], ...]
    lower: tuple[tuple[str, str | None], ...]

    @property
    def same_mean_pairs(self) -> list[tuple[str, str]]:
        """Pairs (tidal row, constant row of the same mean); the widest swing against p = 0, then
        the
        mean > 0 and mean < 0 tidal rows that have such a constant."""
        pairs = [(self.wide, self.zero)] if self.wide and self.zero else []
        return pairs + [(n, c) for n, c in self.upper + self.lower if c]


def schedule_roles(schedules: Mapping[str, Callable]) -> Roles:
    """The :class:`Roles` of a table's rows, from the schedules' types and parameters:
    :class:`~nsf.schedules.constant` rows by their p, :class:`~nsf.schedules.tidal` rows by their
    p_mid and p_amp. Schedules of other types play no role."""
    const = {n: s.p for n, s in schedules.items() if isinstance(s, constant)}
    tides = {n: s for n, s in schedules.items() if isinstance(s, tidal)}
    negative = sorted((p, n) for n, p in const.items() if p < 0)

    def same_mean(tide: tidal) -> str | None:
        return next(
            (n for n, p in const.items() if math.isclose(p, tide.p_mid, abs_tol=1e-12)), None
        )

    mean0 = [n for n, t in tides.items() if abs(t.p_mid) < 1e-12]
    return Roles(
        constants=tuple(const),
        nonzero=tuple(n for n, p in const.items() if p != 0),
        tides=tuple(tides),
        zero=next((n for n, p in const.items() if p == 0), None),
        positive=tuple(n for n, p in const.items() if p > 0),
        strong_negative=negative[0][1] if negative else None,
        next_negative=negative[1][1] if len(negative) > 1 else None,
        mild_negative=tuple(n for _, n in negative[1:]),
        wide=max(mean0, key=lambda n: tides[n].p_amp) if mean0 else None,
        upper=tuple((n, same_mean(t)) for n, t in tides.items() if t.p_mid > 1e-12),
        lower=tuple((n, same_mean(t)) for n, t in tides.items() if t.p_mid < -1e-12),
    )
