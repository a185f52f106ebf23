"""Tests of nsf.density1d: the 1D density x exponent demo (paper Sec. 4.2.1)."""

from __future__ import annotations

import numpy as np
import pytest

from nsf import density1d as d

SMALL = {"n_grid": 200, "steps": 200, "checkpoints": (10, 50, 100, 200)}


def test_p_half_is_exactly_density_invariant_at_eps_zero():
    # Sec. 4.2.1: at p = 1/2 and eps = 0, g / sqrt(v) = e / sqrt(sum e^2): rho cancels every step.
    cfg = d.DensityDemo(p_values=(0.5, 0.0), alphas=(-1.9, -1.0, 0.0, 0.7, 1.9), eps=0.0, **SMALL)
    res = d.simulate(cfg)
    f_half = res.f[0]  # (A, C, N)
    np.testing.assert_allclose(f_half, np.broadcast_to(f_half[2], f_half.shape), rtol=0, atol=1e-12)
    # ... and the same run at p = 0 depends on alpha (so the invariance is not trivial).
    assert np.abs(res.f[1] - res.f[1, 2:3]).max() > 1e-2


@pytest.mark.parametrize("eps_mode", ["inside", "outside"])
def test_p_half_invariance_holds_for_the_exponential_density(eps_mode):
    cfg = d.DensityDemo(
        p_values=(0.5,), alphas=(-3.0, 0.0, 3.0), eps=0.0, eps_mode=eps_mode,
        density_form="exponential", **SMALL,
    )  # fmt: skip
    f = d.simulate(cfg).f[0]
    np.testing.assert_allclose(f, np.broadcast_to(f[1], f.shape), rtol=0, atol=1e-12)


def test_one_step_matches_the_update_rule_by_hand():
    cfg = d.DensityDemo(
        p_values=(-0.5, 0.25), alphas=(1.0,), eta=0.1, eps=1e-3, steps=1, checkpoints=(1,),
        n_grid=50, f0=0.3,
    )  # fmt: skip
    res = d.simulate(cfg)
    x = d.midpoint_grid(50)
    y = np.sin(2 * np.pi * x)
    rho = 1 + 1.0 * (x - 0.5)
    g = rho * (0.3 - y)
    for i, p in enumerate(cfg.p_values):
        expected = 0.3 - 0.1 * (g**2 + 1e-3) ** (-p) * g
        np.testing.assert_allclose(res.f[i, 0, 0], expected, rtol=1e-13)
    np.testing.assert_allclose(res.v[0, 0, 0], g**2, rtol=1e-13)


def test_closed_form_regimes():
    e0 = np.array([-0.5, 0.8, 1.0])
    rho = np.array([0.5, 1.0, 1.5])
    # p = 0: SGD, decay rate linear in rho; discrete and continuous clocks coincide.
    for form in ("continuous", "discrete"):
        np.testing.assert_allclose(
            d.closed_form_error(e0, rho, 0.0, 0.1, 7, form=form), e0 * np.exp(-0.1 * rho * 7)
        )
    # p = 1/2: Adam, density screened out: e0 exp(-2 eta sqrt(t) / |e0|).
    np.testing.assert_allclose(
        d.closed_form_error(e0, rho, 0.5, 0.1, 9), e0 * np.exp(-2 * 0.1 * 3 / np.abs(e0))
    )
    # p < 0: rho^(1 + 2|p|) |e0|^(2|p|).
    got = d.closed_form_error(e0, rho, -0.5, 0.1, 4.0)
    np.testing.assert_allclose(got, e0 * np.exp(-0.1 / 1.5 * rho**2 * np.abs(e0) * 4.0**1.5))
    # an array of times gets a leading axis
    assert d.closed_form_error(e0, rho, -0.25, 0.1, np.arange(1, 6), form="discrete").shape == (
        5, 3,
    )  # fmt: skip
    with pytest.raises(ValueError, match="p < 1"):
        d.closed_form_error(e0, rho, 1.0, 0.1, 3)


def test_frmse_normalisation():
    x = d.midpoint_grid(100)
    y = np.sin(2 * np.pi * x)
    assert d.frmse(np.zeros_like(y), y, x, (0.8, 1.0)) == pytest.approx(1.0)
    assert d.frmse(y, y, x, (0.8, 1.0)) == 0.0


def test_checks_not_applicable_without_the_needed_p():
    res = d.simulate(d.DensityDemo(p_values=(-0.5,), **SMALL))
    assert d.check_d1(res).passed is None and d.check_d1(res).verdict == "not applicable"
    assert d.check_d2(res).passed is None


def test_effective_rate_shows_the_step_size_scaling():
    res = d.simulate(d.DensityDemo(eps=0.0, **SMALL))
    rate = d.effective_rate(res)
    assert rate.shape == res.f.shape
    # eps = 0. p = 0: rate = rho exactly; p = 1/2 is rho-free (= 1/sqrt(sum e^2)).
    np.testing.assert_allclose(rate[1], np.broadcast_to(res.rho[:, None, :], rate[1].shape))
    np.testing.assert_allclose(rate[0], np.broadcast_to(rate[0, 1], rate[0].shape), rtol=1e-12)


def test_density_checks_run_all_four():
    demo = d.DensityDemo(**SMALL)
    checks = d.DensityChecks(**SMALL, d3_checkpoint=100).run(d.simulate(demo))
    assert [c.name for c in checks] == ["D-1", "D-2", "D-3", "D-4"]
    with pytest.raises(ValueError, match="another DensityDemo"):
        d.DensityChecks(**SMALL).run(d.simulate(d.DensityDemo(n_grid=100)))
    with pytest.raises(ValueError, match="positional"):
        d.DensityChecks(demo)  # keyword-only: a demo is never read as p_values


# --------------------------------------------------------------------------- clause tests
def fake(frmse, p_values, alphas, checkpoints=(10, 50, 100)) -> d.DensityResult:
    """A DensityResult holding only a hand-made fRMSE table of shape (P, A, C)."""
    frmse = np.asarray(frmse, dtype=float)
    cfg = d.DensityDemo(
        p_values=p_values, alphas=alphas, checkpoints=checkpoints, steps=checkpoints[-1],
        n_grid=10,
    )  # fmt: skip
    empty = np.zeros(0)
    return d.DensityResult(cfg, empty, empty, empty, empty, empty, empty, frmse)


def test_d1_reads_the_alpha_spread_of_the_p_half_row():
    # p = 0.5 is row 1; its fRMSE falls over the checkpoints but not across alpha. Row 0 (p = 0)
    # is spread widely, so reading the wrong row or the wrong axis fails the passing case.
    half = [[1.0, 0.1, 0.01], [1.0 + 1e-8, 0.1, 0.01 - 1e-8]]
    wide = [[1.0, 0.1, 0.01], [0.5, 0.05, 0.001]]
    passing = d.check_d1(fake([wide, half], (0.0, 0.5), (-1.0, 1.0)), tol=1e-6)
    assert passing.passed is True and passing.strength == "identity"
    assert passing.statistic == "spread = 1.00e-08"
    spread = [[1.0, 0.1, 0.01], [1.0, 0.1 + 1e-5, 0.01]]
    failing = d.check_d1(fake([wide, spread], (0.0, 0.5), (-1.0, 1.0)), tol=1e-6)
    assert failing.passed is False and failing.verdict == "does not hold"


D2_ALPHAS = (1.5, -1.5, 0.0)  # deliberately unsorted: the check must order by alpha


def _d2(rows_by_alpha: dict[float, list[float]], floor: float = 1e-6) -> d.Check:
    p0 = [rows_by_alpha[a] for a in D2_ALPHAS]
    other = np.ones_like(np.asarray(p0))
    return d.check_d2(fake([other, p0], (0.5, 0.0), D2_ALPHAS), floor=floor)


def test_d2_passes_when_frmse_falls_with_alpha_at_every_live_checkpoint():
    # the last checkpoint is below the floor for every alpha and out of order: it is ignored
    check = _d2({-1.5: [0.9, 0.5, 1e-8], 0.0: [0.8, 0.3, 2e-8], 1.5: [0.7, 0.1, 3e-8]})
    assert check.passed is True and check.strength == "identity"
    assert check.statistic == "2/2 checkpoints ordered"


def test_d2_fails_when_one_live_checkpoint_is_not_strictly_ordered():
    check = _d2({-1.5: [0.9, 0.5, 0.2], 0.0: [0.8, 0.3, 0.2], 1.5: [0.7, 0.1, 0.1]})
    assert check.passed is False
    assert check.statistic == "2/3 checkpoints ordered; out of order at [100]"


def test_d2_fails_when_no_checkpoint_is_above_the_floor():
    check = _d2({-1.5: [3e-7, 2e-7, 1e-7], 0.0: [2e-7, 1e-7, 5e-8], 1.5: [1e-7, 5e-8, 1e-8]})
    assert check.passed is False and check.statistic == "0/0 checkpoints ordered"


D3_P = (0.0, -0.25, -0.5)
D3_ALPHAS = (-1.0, 0.0, 1.0)


def _d3(ratios_at_50: list[float]) -> d.Check:
    """fRMSE with the misaligned/aligned ratio ``ratios_at_50`` per p at checkpoint 50 (index
    1), and the reverse order (p = 0 largest) at checkpoints 10 and 100."""
    frmse = np.ones((3, 3, 3))
    frmse[:, 0, 1] = ratios_at_50  # alpha_min; alpha_max stays 1
    frmse[:, 2, 1] = 1.0
    frmse[:, 0, [0, 2]] = np.array([[9.0], [1.5], [1.2]])  # p = 0 most sensitive elsewhere
    return d.check_d3(fake(frmse, D3_P, D3_ALPHAS), checkpoint=50)


def test_d3_passes_when_every_negative_p_has_a_larger_ratio_than_p_zero():
    check = _d3([2.0, 5.0, 3.0])
    assert check.passed is True and check.strength == "independent"
    assert check.statistic == "p=0: 2, p=-0.25: 5, p=-0.5: 3"


def test_d3_fails_when_one_negative_p_is_not_amplified():
    check = _d3([2.0, 5.0, 1.5])
    assert check.passed is False


def test_d3_undecided_without_its_checkpoint():
    check = d.check_d3(fake(np.ones((3, 3, 3)), D3_P, D3_ALPHAS), checkpoint=75)
    assert check.passed is None


D4 = {"p_values": (0.0,), "alphas": (0.0, 1.0), "n_grid": 40, "steps": 5, "checkpoints": (5,)}


def _p0_rel_error(eta: float, rho: np.ndarray) -> float:
    # p = 0: e_n = (1 - eta rho)^n e0 exactly, so the simulated decay is -n log(1 - eta rho) and
    # the discrete closed form is eta rho n: their relative gap is the same at every n.
    return float(np.max(1 - eta * rho / -np.log1p(-eta * rho)))


def test_decay_comparison_at_p_zero_has_its_closed_form_error():
    demo = d.DensityDemo(**D4)
    comp = d.decay_comparison(demo, eta=0.01, steps=6, min_e0=0.5)
    x = d.midpoint_grid(40)
    mask = np.abs(np.sin(2 * np.pi * x)) > 0.5
    np.testing.assert_array_equal(comp["mask"], mask)
    exact = -np.arange(1, 7)[:, None] * np.log1p(-0.01 * (x[mask] + 0.5))  # rho = x + 1/2
    np.testing.assert_allclose(comp["simulated"][0, 1][:, mask], exact, rtol=1e-10)
    expected = [_p0_rel_error(0.01, np.ones(1)), _p0_rel_error(0.01, x[mask] + 0.5)]
    np.testing.assert_allclose(comp["rel_error"][0], expected, rtol=1e-8)


def test_d4_passes_below_and_fails_above_the_worst_pair():
    demo = d.DensityDemo(**D4)
    x = d.midpoint_grid(40)
    mask = np.abs(np.sin(2 * np.pi * x)) > 0.5
    flat, worst = _p0_rel_error(0.01, np.ones(1)), _p0_rel_error(0.01, x[mask] + 0.5)
    assert flat < worst
    passing = d.check_d4(demo, eta=0.01, steps=6, min_e0=0.5, tol=1.01 * worst)
    assert passing.passed is True and passing.strength == "independent"
    # between the two alphas' errors: only alpha = 1 is off, and that is enough to fail
    failing = d.check_d4(demo, eta=0.01, steps=6, min_e0=0.5, tol=(flat + worst) / 2)
    assert failing.passed is False


# --------------------------------------------------------------------------- setups
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": -5}, r"steps\n.*greater than or equal to 1"),
        ({"p_values": ()}, "p_values is empty"),
        ({"p_values": (0.5, 0.5)}, r"p_values=\[0.5, 0.5\] has duplicates"),
        ({"p_values": (1.0,)}, r"p=1.0 in p_values .* p < 1"),
        ({"alphas": ()}, "alphas is empty"),
        ({"alphas": (2.5,)}, r"alphas=\[2.5\] is refused.*\|alpha\| < 2"),
        ({"eta": 0.0}, r"eta\n.*greater than 0"),
        ({"eps": -1e-8}, r"eps\n.*greater than or equal to 0"),
        ({"eps_mode": "middle"}, r"eps_mode\n.*'inside' or 'outside'"),
        ({"checkpoints": (10, 10, 50)}, r"checkpoints\n.*strictly increasing"),
        ({"checkpoints": (50, 10)}, r"checkpoints\n.*strictly increasing"),
        ({"checkpoints": ()}, r"checkpoints\n.*empty"),
        ({"checkpoints": (10, 2000)}, r"checkpoints=\[10, 2000\] is refused.*steps=1000"),
        ({"checkpoints": (0, 10)}, r"checkpoints=\[0, 10\] is refused"),
        ({"checkpoints": "[10, 50]"}, r"checkpoints\n.*valid tuple"),
        ({"checkpoints": (10.5, 50)}, r"checkpoints\.0\n.*valid integer"),
        ({"region": (0.9, 0.8)}, r"region=\[0.9, 0.8\] is refused"),
        ({"region": (0.8, 1.2)}, r"region=\[0.8, 1.2\] is refused"),
        ({"region": (0.9, 0.91), "n_grid": 4}, "holds no grid point of n_grid=4"),
        ({"n_grid": 1}, r"n_grid\n.*greater than or equal to 2"),
        ({"density_form": "cubic"}, r"density_form\n"),
        ({"target_cycles": 0.0}, "target_cycles=0"),
        ({"f0": float("nan")}, r"f0\n.*finite"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_invalid_parameters_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        d.DensityDemo(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d3_checkpoint": 75}, "d3_checkpoint=75 is not one of the checkpoints"),
        ({"d1_tol": 0.0}, r"d1_tol\n"),
        ({"d4_eta": -0.1}, r"d4_eta\n"),
        ({"d4_steps": 0}, r"d4_steps\n"),
        ({"d4_min_e0": 1.5}, "d4_min_e0=1.5 leaves no grid point"),
        ({"steps": -5}, r"steps\n"),  # the demo's own rules hold here too
    ],
)
def test_invalid_check_settings_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        d.DensityChecks(**kwargs)


def test_setups_from_a_namespace():
    from nsf.validation import setup_from

    ns = {"steps": 200, "checkpoints": [10, 100, 200], "d3_checkpoint": 10, "other": 1}
    checks = setup_from(d.DensityChecks, ns)
    demo = d.DensityDemo(steps=200, checkpoints=(10, 100, 200))
    assert checks.demo == setup_from(d.DensityDemo, ns) == demo
    assert checks.checkpoints == (10, 100, 200) and checks.d3_checkpoint == 10
