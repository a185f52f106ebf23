"""The checks added for the ledger's rows: each verdict follows from its inputs, both ways."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nsf.pulsetidal.metrics import final_checks
from nsf.spectral.checks import theory_checks
from nsf.unified.checks import NEGLIGIBLE, timing_check
from nsf.unified.timing import GENERAL_P


def _frame(top1: dict, loss: dict) -> pd.DataFrame:
    rows = []
    for arm in top1:
        for seed, (t, l) in enumerate(zip(top1[arm], loss[arm], strict=True)):
            for epoch in (1, 2):  # only the last epoch may count
                rows.append({"case": arm, "seed": seed, "epoch": epoch,
                             "val_top1": t if epoch == 2 else 0.0, "val_loss": l})  # fmt: skip
    return pd.DataFrame(rows)


def test_final_checks_compare_the_gain_with_the_seed_spread():
    base, arm = [0.50, 0.52, 0.51], [0.60, 0.61, 0.62]
    frame = _frame({"baseline": base, "pulse_tidal": arm},
                   {"baseline": [1.0, 1.1, 1.05], "pulse_tidal": [0.5, 0.55, 0.6]})  # fmt: skip
    gain, loss = final_checks(frame, "baseline", "pulse_tidal")
    assert gain.passed is True and loss.passed is True
    spread = np.hypot(np.std(base, ddof=1), np.std(arm, ddof=1))
    assert f"{np.mean(arm) - np.mean(base):+.4f}" in gain.statistic
    assert f"{spread:.4f}" in gain.statistic
    # a gain inside the spread is not a finding; a worse loss fails
    noisy = _frame({"baseline": [0.4, 0.6, 0.5], "pulse_tidal": [0.45, 0.65, 0.55]},
                   {"baseline": [1.0, 1.0, 1.0], "pulse_tidal": [1.2, 1.3, 1.25]})  # fmt: skip
    gain, loss = final_checks(noisy, "baseline", "pulse_tidal")
    assert gain.passed is False and loss.passed is False


def test_final_checks_with_one_seed_are_undecided():
    frame = _frame({"baseline": [0.5], "pulse_tidal": [0.9]},
                   {"baseline": [1.0], "pulse_tidal": [0.1]})  # fmt: skip
    assert [c.passed for c in final_checks(frame, "baseline", "pulse_tidal")] == [None, None]


@pytest.mark.parametrize("grid", ["linspace", "midpoint"])
def test_theory_checks(grid):
    good = theory_checks(single_spread=1e-7, r2_tau_constant=0.999,
                         distance={"rms": 0.01, "max_abs": 0.02}, N=256, grid=grid)  # fmt: skip
    assert [c.passed for c in good] == [True, True, True, True]
    bad = theory_checks(single_spread=0.01, r2_tau_constant=0.9,
                        distance={"rms": 0.2, "max_abs": 0.3}, N=256, grid=grid)  # fmt: skip
    assert [c.passed for c in bad] == [False, False, True, False]
    assert {c.name: c.strength for c in good}["grid error"] == "identity"


def test_timing_check_reads_the_general_p_row_against_the_bar():
    def ratios(r):
        return pd.DataFrame({"× Adam": [1.0, r]}, index=["Adam", GENERAL_P])

    assert timing_check(ratios(NEGLIGIBLE)).passed is True
    assert timing_check(ratios(NEGLIGIBLE * 1.01)).passed is False
    assert timing_check(ratios(1.0)).strength == "lenient"
