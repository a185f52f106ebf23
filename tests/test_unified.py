"""Chapter 01's computations (nsf.unified) against closed forms and hand computations, and its
verdict logic on hand-made inputs: for each clause one input built to pass and one to fail."""

from __future__ import annotations

import ast
import dataclasses

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from nsf import NSF, unified
from nsf.book.provenance import repo_root
from nsf.unified import DiagonalRun, UnifiedSetup, timing
from nsf.validation import setup_from

# ------------------------------------------------------------------------------ the setup


def notebook_defaults() -> dict:
    nb = nbformat.read(repo_root() / "notebooks" / "01_unified_rule.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body}


def test_setup_defaults_are_the_notebooks_parameters_cell():
    defaults = notebook_defaults()
    assert setup_from(UnifiedSetup, defaults) == UnifiedSetup()
    fields = {f.name for f in dataclasses.fields(UnifiedSetup)}
    assert fields == set(defaults) - {"profile"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("seed", -1),
        ("equivalence_steps", 0),
        ("demo_K", -5),
        ("demo_steps", 1.5),  # a count is a whole number
        ("demo_lr", 0.0),
        ("demo_lr", float("nan")),
        ("demo_probe_step", 0),
        ("timing_rounds", 0),
        ("timing_device", "tpu"),
        ("timing_fused", 1),  # a bool is not read from an int
        ("gain_p_values", []),
        ("v_hat_values", [1e-6, 0.0]),
        ("demo_p_values", []),
        ("demo_p_values", [0.5, 0.0, 0.5]),
    ],
)
def test_setup_refuses_a_bad_value_by_name(field, value):
    with pytest.raises(ValidationError, match=field):
        UnifiedSetup(**{field: value})


def test_setup_refuses_a_probe_step_after_the_last_step_by_name():
    UnifiedSetup(demo_steps=50, demo_probe_step=50)  # the last step may be probed
    with pytest.raises(ValidationError, match=r"demo_probe_step=51 .* demo_steps=50"):
        UnifiedSetup(demo_steps=50, demo_probe_step=51)
    with pytest.raises(ValidationError, match="no_such"):
        UnifiedSetup(no_such=1)


def test_setup_demo_is_diagonal_demo_with_the_setups_fields():
    setup = UnifiedSetup(demo_K=6, demo_steps=20, demo_p_values=[0.25], demo_probe_step=5)
    direct = unified.diagonal_demo([0.25], "high", K=6, steps=20, lr=0.01, probe_step=5)
    ours = setup.demo("high")
    assert list(ours) == [0.25]
    np.testing.assert_array_equal(ours[0.25].rel_error, direct[0.25].rel_error)
    np.testing.assert_array_equal(ours[0.25].gain, direct[0.25].gain)


# ------------------------------------------------------------------------- the rule, Eq. 3


def test_constant_gradient_gain_is_the_closed_form_and_nsfs_own_step():
    g = np.array([1e-3, 0.5, 2.0, 10.0])
    np.testing.assert_allclose(unified.constant_gradient_gain(g, 0.25), g**-0.5, rtol=1e-14)
    np.testing.assert_allclose(
        unified.constant_gradient_gain(-g, 0.75, eps=1e-2), 1 / (g**1.5 + 1e-2), rtol=1e-14
    )
    # under a constant gradient NSF's step over lr * g is this gain at every step
    lr, p, eps = 1e-3, 0.3, 1e-8
    theta = torch.zeros(4, dtype=torch.float64)
    opt = NSF([theta], lr=lr, p=p, eps=eps)
    for _ in range(5):
        before = theta.clone()
        theta.grad = torch.from_numpy(g)
        opt.step()
        step = ((before - theta) / (lr * theta.grad)).numpy()
        np.testing.assert_allclose(step, unified.constant_gradient_gain(g, p, eps), rtol=1e-10)


def test_step_multiplier_by_hand():
    table = unified.step_multiplier([1e-6, 1e-4], [0.5, -0.25])
    assert list(table.columns) == ["v̂ = 1e-06", "v̂ = 1e-04"]
    assert list(table.index) == [0.5, -0.25] and table.index.name == "p"
    np.testing.assert_allclose(table.to_numpy(), [[1000.0, 100.0], [10**-1.5, 0.1]], rtol=1e-12)


def test_torch_equivalences_on_few_steps():
    table = unified.torch_equivalences(steps=5)
    assert list(table.index) == ["T1", "T1b", "T1c", "T2", "T3", "T4", "T6", "T7"]
    expected = table["expected"]
    assert (expected == "differs").sum() == 1 and expected["T6"] == "differs"
    diffs = table["max relative difference"]
    assert (diffs[expected == "equal"] < 1e-13).all()
    assert diffs["T6"] > 1e-6  # torch's dampening skips the first step


# ---------------------------------------------------------------------------- D1 and T_k


def test_steps_to_reduce_on_a_hand_made_series():
    rel = np.array(
        [
            [1.0, 1.0, 1.0],
            [0.5, 0.1, 0.9],  # mode 1 reaches exactly 1/10 at step 1: counted
            [0.09, 0.2, 0.8],  # mode 0 reaches it at step 2 and rises again: still step 2
            [0.2, 0.01, 0.7],  # mode 2 never does
        ]
    )
    np.testing.assert_array_equal(unified.steps_to_reduce(rel), [2.0, 1.0, np.inf])
    np.testing.assert_array_equal(unified.steps_to_reduce(rel, factor=2.0), [1.0, 1.0, np.inf])


def scalar_p0_error(steps: int, lr: float, eps: float, beta1: float = 0.9) -> np.ndarray:
    """|theta - y| / |y| of Eq. 3 at p = 0 for one mode of unit curvature, from theta = 0."""
    theta, m, out = 0.0, 0.0, [1.0]
    for t in range(1, steps + 1):
        m = beta1 * m + (1 - beta1) * (theta - 1.0)
        theta -= lr * (m / (1 - beta1**t)) / (1 + eps)
        out.append(abs(theta - 1.0))
    return np.array(out)


@pytest.fixture(scope="module")
def tiny_demo() -> dict[float, DiagonalRun]:
    return unified.diagonal_demo([0.0, 0.5, -0.5], "low", K=8, steps=40, lr=0.05, probe_step=10)


def test_diagonal_demo_p0_is_momentum_sgd_in_closed_form(tiny_demo):
    """At p = 0 every mode's relative error is one scalar recursion, whatever y_k."""
    expected = scalar_p0_error(40, lr=0.05, eps=1e-8)
    for k in range(8):
        np.testing.assert_allclose(tiny_demo[0.0].rel_error[:, k], expected, rtol=1e-10)


def test_diagonal_demo_uses_one_lr_for_every_p(tiny_demo):
    """The first step from theta = 0 is lr * y / (y^(2p) + eps): the same lr at every p."""
    y = 1.0 / np.arange(1, 9)
    for p, run in tiny_demo.items():
        first = 1 - 0.05 / (y ** (2 * p) + 1e-8)
        np.testing.assert_allclose(run.rel_error[1], np.abs(first), rtol=1e-12)


def test_diagonal_demo_realised_gain_is_eq3(tiny_demo):
    for p, run in tiny_demo.items():
        np.testing.assert_allclose(run.gain, 1 / (run.v_hat**p + 1e-8), rtol=1e-9)
        assert abs(run.slope + p) < 1e-6


def test_diagonal_demo_rms_matched_steps_match_p0():
    runs = unified.diagonal_demo(
        [0.5, -0.5], "high", K=8, steps=3, update_norm="rms_matched", probe_step=1
    )
    y = np.minimum(np.sqrt(np.arange(1, 9) / 8), 1.0)
    for run in runs.values():  # theta_1 = y (1 - rel_error_1) has the p = 0 step's norm
        norm = np.linalg.norm(y * (1 - run.rel_error[1]))
        np.testing.assert_allclose(norm, 0.01 * np.linalg.norm(y) / (1 + 1e-8), rtol=1e-12)


def test_diagonal_demo_refuses_a_probe_outside_the_run():
    with pytest.raises(ValueError, match="probe_step"):
        unified.diagonal_demo([0.0], K=4, steps=5, probe_step=6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        unified.diagonal_demo([0.0], K=4, steps=5, probe_step=5)[0.0].slope = 1.0


# ------------------------------------------------------------------------------ the checks


def make_run(t_k, slope: float = 0.0, steps: int = 200) -> DiagonalRun:
    """A run whose mode k first falls ten-fold at step t_k[k] (inf: never), with ``slope``."""
    t_k = np.asarray(t_k, dtype=float)
    t = np.arange(steps + 1)[:, None]
    rel = np.where(t >= t_k[None, :], 0.01, 1.0)
    return DiagonalRun(rel, np.ones(len(t_k)), np.ones(len(t_k)), slope)


RISING, FALLING, FLAT = [10, 20, 30, 40], [40, 30, 20, 10], [50, 50, 50, 50]


def d1_runs(**changes) -> tuple[dict, dict]:
    """(low, high) on which every D1 check holds; ``changes`` maps "low_0.5" etc. to a run."""
    low = {-0.5: make_run(RISING, 0.5), 0.0: make_run(FLAT), 0.5: make_run(FALLING, -0.5)}
    high = {-0.5: make_run(FALLING, 0.5), 0.0: make_run(FLAT), 0.5: make_run(RISING, -0.5)}
    for key, run in changes.items():
        target, p = key.split("_")
        (low if target == "low" else high)[float(p)] = run
    return low, high


def d1(name: str, **changes):
    return next(c for c in unified.diagonal_checks(*d1_runs(**changes)) if c.name == name)


def test_d1_all_hold_on_the_base_runs_with_honest_strengths():
    checks = unified.diagonal_checks(*d1_runs())
    assert [c.passed for c in checks] == [True] * 6
    assert unified.holds_count(checks) == "6 of 6"
    assert [c.strength for c in checks] == ["identity"] * 4 + ["lenient"] * 2


def test_d1_slope_clause():
    assert d1("(a) low: slope", low_0=make_run(FLAT, 1e-6)).passed is True  # at the bar
    assert d1("(a) low: slope", low_0=make_run(FLAT, 2e-6)).passed is False
    check = d1("(a) low: slope", low_0=make_run(FLAT, 1e-5))
    assert check.passed is False and "1.0e-05" in check.statistic
    assert d1("(b) high: slope", high_0=make_run(FLAT, 1e-5)).passed is False
    assert d1("(a) low: slope", low_0=make_run(FLAT, 0.0)).passed is True


def test_d1_neutral_clause():
    assert d1("(a) low: p = 0", low_0=make_run([100, 100, 105, 100])).passed is True  # 1.05
    check = d1("(a) low: p = 0", low_0=make_run([100, 100, 106, 100]))
    assert check.passed is False and check.statistic == "max/min T_k = 1.060"
    assert d1("(b) high: p = 0", high_0=make_run([50, 60, 50, 50])).passed is False
    never = d1("(a) low: p = 0", low_0=make_run([np.inf] * 4))
    assert never.passed is None and "no mode" in never.verdict
    low, high = d1_runs()
    del low[0.0]
    missing = next(c for c in unified.diagonal_checks(low, high) if c.name == "(a) low: p = 0")
    assert missing.passed is None and missing.verdict == "no p = 0 run"
    assert unified.holds_count(unified.diagonal_checks(low, high)) == "5 of 5"  # decided only


def test_d1_order_clause_in_each_target():
    # p = +0.5 must be fast at high k in (a) (T_k falls with k) and at low k in (b)
    assert d1("p = +0.5: order").passed is True
    wrong_a = d1("p = +0.5: order", **{"low_0.5": make_run(RISING, -0.5)})
    assert wrong_a.passed is False and wrong_a.statistic == "ρ(a) = +1.00, ρ(b) = +1.00"
    wrong_b = d1("p = +0.5: order", **{"high_0.5": make_run(FALLING, -0.5)})
    assert wrong_b.passed is False and wrong_b.statistic == "ρ(a) = -1.00, ρ(b) = -1.00"
    # p = -0.5 the other way round
    assert d1("p = -0.5: order").passed is True
    assert d1("p = -0.5: order", **{"low_-0.5": make_run(FALLING, 0.5)}).passed is False
    assert d1("p = -0.5: order", **{"high_-0.5": make_run(RISING, 0.5)}).passed is False


def test_d1_order_is_undecided_without_its_runs():
    low, high = d1_runs()
    del high[0.5]
    check = next(c for c in unified.diagonal_checks(low, high) if c.name == "p = +0.5: order")
    assert check.passed is None and "no p = +0.5 run" in check.verdict
    flat = d1("p = +0.5: order", **{"low_0.5": make_run(FLAT, -0.5)})  # rho undefined
    assert flat.passed is None


def equivalence_table(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"test": n, "NSF settings": "s", "torch reference": "r",
             "max relative difference": d, "expected": e}
            for n, d, e in rows
        ]
    ).set_index("test")  # fmt: skip


def test_equivalence_clause_equal_and_differs():
    checks = unified.equivalence_checks(
        equivalence_table(
            [("eq-ok", 1e-10, "equal"), ("eq-bad", 1e-8, "equal"),
             ("diff-ok", 1e-3, "differs"), ("diff-bad", 1e-15, "differs")]
        )
    )  # fmt: skip
    assert [c.passed for c in checks] == [True, False, True, False]
    assert {c.strength for c in checks} == {"identity"}
    assert checks[0].statistic == "max relative difference = 1.0e-10"
    assert unified.holds_count(checks) == "2 of 4"
    note = unified.equivalence_note(checks, 7)
    assert note.startswith("**2 of 4 equivalences hold** after 7 steps; these do not: eq-bad,")
    with pytest.raises(ValueError, match="expected"):
        unified.equivalence_checks(equivalence_table([("x", 0.0, "same")]))


def ratios_table(general: float, fused: bool) -> pd.DataFrame:
    over = {unified.SGD: 0.5, unified.ADAM: 1.0, "NSF p = 0": 0.7, "NSF p = 0.5": 1.0}
    over[unified.GENERAL_P] = general
    if fused:
        over[unified.FUSED] = 0.8
    return pd.DataFrame({"× Adam": pd.Series(over)})


def test_timing_note_clauses():
    within = unified.timing_note(ratios_table(1.10, fused=False))
    assert "**1.10×**" in within and "within the 1.10× bar" in within
    assert "fused" not in within
    above = unified.timing_note(ratios_table(1.11, fused=True))
    assert "not negligible" in above and "within" not in above
    assert "torch.compile elsewhere) takes **0.80×**" in above


def test_step_time_table_on_small_parameters(monkeypatch):
    def small(device, seed):
        def make():
            ps = [torch.zeros(64, requires_grad=True), torch.zeros(8, 8, requires_grad=True)]
            for q in ps:
                q.grad = torch.full_like(q, 1e-3)
            return ps

        return make

    monkeypatch.setattr(timing, "resnet18_gradients", small)
    table = unified.step_time_table(UnifiedSetup(timing_rounds=2, timing_fused=False))
    assert list(table.index) == list(unified.timing_optimizers(False))
    assert unified.FUSED not in table.index
    assert table.loc[unified.ADAM, "× Adam"] == 1.0 and table.loc[unified.SGD, "× SGD"] == 1.0
    assert (table["ms per step"] > 0).all()
