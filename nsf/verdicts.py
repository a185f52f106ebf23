"""Verdicts: a paper observation made operational, and the table every chapter shows.

Each chapter turns the paper's observations into :class:`Check` values computed by package
functions from the chapter's results (never typed in a notebook), and displays them with
:func:`checks_table`. The same records feed the claims ledger, so a check carries the claim's
id, the paper's words, the operational criterion, the measured value, the verdict and the
strength of the test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["STRENGTHS", "Check", "all_of", "checks_table"]

#: How much a verdict says: an independent test of the claim; a calibration (a value was chosen
#: from the very numbers it is compared with); a mathematical identity (it holds whatever the
#: experiment does); a lenient criterion (it passes through a weak alternative).
Strength = Literal["independent", "calibration", "identity", "lenient"]
STRENGTHS: tuple[str, ...] = Strength.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Check:
    """One paper observation, its operational test and the verdict on one run.

    ``passed`` is True, False, or None when the check cannot decide; ``undecided`` then says why
    (a needed p is missing, the compared runs never reached the criterion, ...).
    """

    name: str
    claim: str
    criterion: str
    statistic: str
    passed: bool | None
    undecided: str = "not applicable"
    strength: Strength = "independent"

    def __post_init__(self) -> None:
        if self.passed not in (True, False, None):
            raise ValueError(f"{self.name}: passed={self.passed!r} must be True, False or None")
        if self.strength not in STRENGTHS:
            raise ValueError(f"{self.name}: strength={self.strength!r} is not one of {STRENGTHS}")

    @property
    def verdict(self) -> str:
        """ "holds", "does not hold", or the ``undecided`` text."""
        return {True: "holds", False: "does not hold"}.get(self.passed, self.undecided)


def all_of(results: Sequence[bool | None]) -> bool | None:
    """False if any clause fails, else None if any is undecided, else True."""
    if any(r is False for r in results):
        return False
    if any(r is None for r in results):
        return None
    return True


def checks_table(checks: Sequence[Check]):
    """The checks as a pandas DataFrame indexed by check: the paper's observation, the
    criterion, what was measured, the verdict and the strength of the test."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "check": c.name,
                "paper observation": c.claim,
                "criterion": c.criterion,
                "measured": c.statistic,
                "verdict": c.verdict,
                "strength": c.strength,
            }
            for c in checks
        ]
    ).set_index("check")
