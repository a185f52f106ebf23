"""The logic of the checks K1-K7, K4 in its parts K4a-K4c (nsf.spectral.checks), and of the
chapter's verdict prose, on hand-made kappa / R^2 / rebound tables: for each clause one table built
to pass and one built to fail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import spearmanr

from nsf import spectral
from nsf.schedules import constant, tidal

KEYS = [1, 2, 4, 8, 16, 32]
UP = np.linspace(0.40, 0.45, 6)  # rises with k: high-pass
DOWN = UP[::-1]  # falls with k: low-pass


def base_tables() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """A table on which every check but K4c holds (K4c needs rebounds, :func:`base_rebounds`):
    each clause below breaks exactly one thing."""
    schedules = spectral.table_schedules()
    kappa = {
        "p = -0.5": np.array([0.30, 0.35, 0.40, 0.45, 0.50, 0.45]),  # drops at the last key
        "p = -0.25": UP,
        "p = 0": np.full(6, 0.4),
        "p = 0.25": DOWN,
        "p = 0.5": DOWN - 0.02,
        "tidal [-0.5, 0.5]": np.full(6, 0.45),
        "tidal [0, 0.5]": DOWN + 0.05,
        "tidal [-0.5, 0]": UP + 0.05,
    }
    r2 = {n: np.full(6, 0.99) for n in kappa}
    r2["p = 0"] = np.full(6, 1.0)
    r2["p = -0.5"] = np.full(6, 0.9)  # K4a: below the next negative p (0.99)
    frame = lambda d: pd.DataFrame(d, index=KEYS).T  # noqa: E731
    return frame(kappa), frame(r2), schedules


def base_rebounds(kappa: pd.DataFrame) -> pd.DataFrame:
    """No envelope rebounds except the most negative row's at k = 32 (K4c holds)."""
    rebounds = pd.DataFrame(False, index=kappa.index, columns=kappa.columns)
    rebounds.loc["p = -0.5", 32] = True
    return rebounds


def verdicts(kappa, r2, schedules, rebounds="base") -> dict[str, bool | None]:
    rebounds = base_rebounds(kappa) if isinstance(rebounds, str) else rebounds
    return {c.name: c.passed for c in spectral.claim_checks(kappa, r2, schedules, rebounds)}


def test_every_check_holds_on_the_base_table():
    assert set(verdicts(*base_tables()).values()) == {True}


def test_checks_are_verdict_records_with_their_strengths():
    kappa, r2, schedules = base_tables()
    checks = spectral.claim_checks(kappa, r2, schedules, base_rebounds(kappa))
    names = [c.name for c in checks]
    assert names == [cid for cid, _, _ in spectral.CLAIMS]
    assert names == ["K1", "K2", "K3", "K4a", "K4b", "K4c", "K5", "K6", "K7"]
    strength = {c.name: c.strength for c in checks}
    assert strength["K1"] == "calibration" and strength["K4a"] == "lenient"
    assert {s for n, s in strength.items() if n not in ("K1", "K4a")} == {"independent"}
    assert spectral.claims_count(checks) == (9, 9)


def test_each_part_of_k4_has_its_own_verdict():
    """K4's three parts are told apart: breaking one leaves the other two holding."""
    kappa, r2, schedules = base_tables()
    clean = _set(r2, "p = -0.5", 0.995)  # no R^2 drop against p = -0.25 (0.99)
    rising = _set(kappa, "p = -0.5", 0.55, [32])  # kappa_32 > kappa_16
    none = pd.DataFrame(False, index=kappa.index, columns=kappa.columns)
    parts = ("K4a", "K4b", "K4c")
    assert [verdicts(kappa, clean, schedules)[p] for p in parts] == [False, True, True]
    assert [verdicts(rising, r2, schedules)[p] for p in parts] == [True, False, True]
    assert [verdicts(kappa, r2, schedules, none)[p] for p in parts] == [True, True, False]
    got = verdicts(kappa, r2, schedules, None)
    assert got["K4c"] is None and got["K4a"] is True and got["K4b"] is True
    checks = spectral.claim_checks(kappa, r2, schedules)
    assert next(c for c in checks if c.name == "K4c").verdict == "no envelopes given"
    assert spectral.claims_count(checks) == (8, 8)  # the undecided part is not counted


def test_k4c_looks_at_the_most_negative_row_only():
    kappa, r2, schedules = base_tables()
    others = pd.DataFrame(True, index=kappa.index, columns=kappa.columns)
    others.loc["p = -0.5"] = False
    assert verdicts(kappa, r2, schedules, others)["K4c"] is False


def test_rebound_table_marks_rises_inside_the_window():
    run = spectral.simulate({"p = 0": constant(0.0), "p = -0.5": constant(-0.5)})
    table = spectral.rebound_table(run)
    assert list(table.index) == ["p = 0", "p = -0.5"] and list(table.columns) == KEYS
    assert not table.loc["p = 0"].any()  # a pure exponential never rises
    inside = run.setup.window_mask(run.t)
    rises = (np.diff(run.envelope[:, inside], axis=1) > 0).any(axis=1)
    np.testing.assert_array_equal(table.to_numpy(), rises)


def _set(table, row, values, keys=slice(None)):
    table = table.copy()
    table.loc[row, keys] = values
    return table


# (check, which table, row, new values, key selection): each breaks one clause of one check
FAILING = {
    "K1 kappa off 0.400": ("K1", "kappa", "p = 0", 0.401, slice(None)),
    "K1 R^2 below 0.999": ("K1", "r2", "p = 0", 0.998, [32]),
    "K2 last not below first": (
        "K2",
        "kappa",
        "p = 0.25",
        [0.40, 0.45, 0.44, 0.43, 0.42, 0.41],
        slice(None),
    ),
    "K2 Spearman not negative": (
        "K2",
        "kappa",
        "p = 0.5",
        [0.45, 0.30, 0.31, 0.32, 0.33, 0.34],
        slice(None),
    ),
    "K3 last not above first": (
        "K3",
        "kappa",
        "p = -0.25",
        [0.45, 0.40, 0.41, 0.42, 0.43, 0.44],
        slice(None),
    ),
    "K3 Spearman not positive": (
        "K3",
        "kappa",
        "p = -0.25",
        [0.40, 0.45, 0.44, 0.43, 0.42, 0.41],
        slice(None),
    ),
    "K5 mean-0 tidal not above p = 0 at one k": ("K5", "kappa", "tidal [-0.5, 0.5]", 0.39, [8]),
    "K5 upper tidal not above its constant at one k": ("K5", "kappa", "tidal [0, 0.5]", 0.42, [8]),
    "K5 lower tidal not above its constant at the last key": (
        "K5",
        "kappa",
        "tidal [-0.5, 0]",
        0.449,
        [32],
    ),
    "K6 widest swing R^2 not below p = 0": ("K6", "r2", "tidal [-0.5, 0.5]", 1.0, slice(None)),
    "K7 upper tidal not low-pass": ("K7", "kappa", "tidal [0, 0.5]", UP + 0.06, slice(None)),
    "K7 lower tidal not high-pass": (
        "K7",
        "kappa",
        "tidal [-0.5, 0]",
        [0.5, 0.49, 0.48, 0.47, 0.46, 0.5],
        slice(None),
    ),
    "K7 lower tidal R^2 not above 0.95": ("K7", "r2", "tidal [-0.5, 0]", 0.94, [4]),
}


@pytest.mark.parametrize("case", FAILING)
def test_each_clause_fails_alone(case):
    cid, which, row, values, keys = FAILING[case]
    kappa, r2, schedules = base_tables()
    if which == "kappa":
        kappa = _set(kappa, row, values, keys)
    else:
        r2 = _set(r2, row, values, keys)
    got = verdicts(kappa, r2, schedules)
    assert got[cid] is False
    assert all(v is True for k, v in got.items() if k != cid), got


def test_k5_asks_the_lower_tidal_only_at_the_last_key():
    """The paper claims the mean < 0 tidal row beats its constant at high k only: a deficit at low
    k must not fail K5, while the other tidal rows must win at every k."""
    kappa, r2, schedules = base_tables()
    kappa = _set(kappa, "tidal [-0.5, 0]", 0.30, [1, 2, 4])
    assert verdicts(kappa, r2, schedules)["K5"] is True
    kappa = _set(kappa, "tidal [0, 0.5]", 0.30, [1])
    assert verdicts(kappa, r2, schedules)["K5"] is False


def test_k1_compares_with_the_papers_p0_row_not_an_other_constant():
    kappa, r2, schedules = base_tables()
    assert spectral.paper_p0_value() == pytest.approx(0.4)
    assert verdicts(_set(kappa, "p = 0", 0.4004), r2, schedules)["K1"] is True
    assert verdicts(_set(kappa, "p = 0", 0.3994), r2, schedules)["K1"] is False


def test_k3_ignores_the_most_negative_row():
    kappa, r2, schedules = base_tables()
    kappa = _set(kappa, "p = -0.5", DOWN)  # low-pass: K3 must not look at it
    r2 = _set(r2, "p = -0.5", 0.9)
    assert verdicts(kappa, r2, schedules)["K3"] is True


def test_roles_come_from_the_schedule_types():
    schedules = {
        "a": constant(0.0),
        "b": constant(-1.0),
        "c": constant(0.5),
        "d": tidal(0.0, 0.3, 1.0),
        "e": tidal(0.0, 0.6, 1.0),
        "f": tidal(0.5, 0.5, 1.0),
        "g": tidal(-0.2, 0.1, 1.0),
        "h": lambda t: 0.0 * t,  # plays no role
    }
    roles = spectral.schedule_roles(schedules)
    assert roles.constants == ("a", "b", "c") and roles.tides == ("d", "e", "f", "g")
    assert (roles.zero, roles.positive, roles.strong_negative, roles.next_negative) == (
        "a",
        ("c",),
        "b",
        None,
    )
    assert roles.wide == "e" and roles.upper == (("f", "c"),) and roles.lower == (("g", None),)
    assert roles.same_mean_pairs == [("e", "a"), ("f", "c")]
    assert roles.nonzero == ("b", "c")


def test_missing_rows_leave_checks_undecided():
    kappa, r2, _ = base_tables()
    only = {"p = 0.25": constant(0.25)}
    checks = spectral.claim_checks(kappa.loc[["p = 0.25"]], r2.loc[["p = 0.25"]], only)
    got = {c.name: c.passed for c in checks}
    assert got == {
        "K1": None,
        "K2": True,
        "K3": None,
        "K4a": None,
        "K4b": None,
        "K4c": None,
        "K5": None,
        "K6": None,
        "K7": None,
    }
    assert spectral.claims_count(checks) == (1, 1)
    assert next(c for c in checks if c.name == "K1").verdict == "no p = 0 row"


@given(
    st.lists(st.integers(0, 4), min_size=6, max_size=6),
    st.lists(st.integers(0, 4), min_size=6, max_size=6),
)
def test_scipy_spearman_equals_the_average_rank_formula(a, b):
    """The hand-rolled Spearman (average ranks for ties) this replaced, as the oracle."""

    def rank(v):
        v = np.asarray(v, float)
        return (v[:, None] > v[None, :]).sum(1) + ((v[:, None] == v[None, :]).sum(1) + 1) / 2

    ra, rb = rank(a) - rank(a).mean(), rank(b) - rank(b).mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if den == 0:
        return
    ours = spearmanr(np.asarray(a, float), np.asarray(b, float)).statistic
    assert ours == pytest.approx((ra * rb).sum() / den, abs=1e-12)
    assert np.sign(ours) == np.sign((ra * rb).sum())


def test_claims_note_counts_parts_and_strengths_and_says_whether_the_row_drops():
    kappa, r2, schedules = base_tables()
    checks = spectral.claim_checks(kappa, r2, schedules, base_rebounds(kappa))
    note = spectral.claims_note(checks, kappa, schedules)
    assert note.startswith("**9 of 9** checks hold with these parameters, 7 of the 7 independent")
    assert "K1 is a **calibration**" in note and "K4a is **lenient**" in note
    assert "(p = -0.5) drops at the highest key" in note
    rising = _set(kappa, "p = -0.5", 0.55, [32])
    failed = spectral.claim_checks(rising, r2, schedules, base_rebounds(rising))
    note = spectral.claims_note(failed, rising, schedules)
    assert note.startswith("**8 of 9** checks hold with these parameters, 6 of the 7 independent")
    assert "(p = -0.5) does **not** drop" in note


def test_summary_lists_what_holds_and_fails():
    kappa, r2, schedules = base_tables()
    kappa = _set(kappa, "tidal [-0.5, 0.5]", 0.39, [8])
    checks = spectral.claim_checks(kappa, r2, schedules, base_rebounds(kappa))
    gap = spectral.diagonal_gap(kappa, kappa, ["p = 0.5"])
    sweep = pd.DataFrame({"status": ["ok", "refused: x"], "rms": [0.2, np.nan]})
    note = spectral.summary_note(
        checks, kappa, schedules, sweep=sweep, gap=gap, single_spread=1e-15, overlap_error=0,
        i0_error=0,
    )  # fmt: skip
    assert "Hold: K1, K2, K3, K4a, K4b, K4c, K6, K7; fail: K5." in note
    assert "K1, a calibration" in note
    assert "derived from the paper's table under our row labels" in note
    assert "the closest swept setting has 0.200" in note
    assert "rank agreement over k ranges over +1.00…+1.00" in note


def test_sweep_note_counts_settings_refusals_and_full_passes():
    sweep = pd.DataFrame(
        {
            "status": ["ok", "ok", "refused: dt=1 is refused", "refused: dt=1 is refused"],
            "n_pass": [9, 8, np.nan, np.nan],
            "rms": [0.3, 0.2, np.nan, np.nan],
            "max_abs": [0.5, 0.4, np.nan, np.nan],
        }
    )
    note = spectral.sweep_note(sweep, 0.25)
    assert note.startswith("**4 settings**: 2 simulated, 2 refused before simulating; 2 because")
    assert "All 9 checks (K1–K7, K4 in three parts) hold in 1 of them" in note
    assert "RMS = **0.200** (max |difference| 0.400); the reference parameters give 0.250" in note
