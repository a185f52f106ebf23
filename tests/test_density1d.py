"""Tests of nsf.density1d: the 1D density x exponent demo (paper Sec. 4.2.1, SPEC section 6)."""

from __future__ import annotations

import numpy as np
import pytest

from nsf import density1d as d

SMALL = {"n_grid": 200, "steps": 200, "checkpoints": (10, 50, 100, 200)}


def test_p_half_is_exactly_density_invariant_at_eps_zero():
    # SPEC 6.1: at p = 1/2 and eps = 0, g / sqrt(v) = e / sqrt(sum e^2): rho cancels every step.
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


def test_small_eps_keeps_d1_within_tolerance():
    res = d.simulate(d.DensityDemo(**SMALL))
    check = d.check_d1(res, tol=1e-6)
    assert check.passed is True


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


def test_closed_form_matches_simulated_early_decay_within_5_percent():
    # SPEC D-4: eta = 0.002, n <= 20, |e0| > 0.2, every p in {0, 0.5, -0.25, -0.5} and alpha.
    cfg = d.DensityDemo()
    comp = d.decay_comparison(cfg, eta=0.002, steps=20, min_e0=0.2)
    assert comp["rel_error"].shape == (4, 3)
    assert comp["rel_error"].max() < 0.05
    assert d.check_d4(cfg).passed is True


def test_closed_form_fails_outside_the_early_regime():
    # The comparison can fail: at the chapter's eta = 0.02 e leaves the e ~ e0 regime (SPEC D-4).
    comp = d.decay_comparison(d.DensityDemo(), eta=0.02, steps=20, min_e0=0.2)
    assert comp["rel_error"].max() > 0.1
    assert d.check_d4(d.DensityDemo(), eta=0.02).passed is False


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


def test_default_checks_d2_d3_hold_and_table():
    res = d.simulate(d.DensityDemo(n_grid=400))
    c2, c3 = d.check_d2(res), d.check_d3(res)
    assert c2.passed is True and c3.passed is True
    table = d.checks_table([c2, c3])
    assert list(table.index) == ["D-2", "D-3"] and set(table["verdict"]) == {"holds"}
    # D-2 fails when the alpha order is reversed in the data (the check can fail).
    flipped = d.DensityResult(**{**res.__dict__, "frmse": res.frmse[:, ::-1]})
    assert d.check_d2(flipped).passed is False


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p_values": ()}, "p_values is empty"),
        ({"p_values": (0.5, 0.5)}, "duplicates"),
        ({"p_values": (1.0,)}, "p < 1"),
        ({"alphas": ()}, "alphas is empty"),
        ({"alphas": (2.5,)}, r"\|alpha\| < 2"),
        ({"eta": 0.0}, "eta=0.0"),
        ({"eta": -1.0}, "positive"),
        ({"eps": -1e-8}, "eps"),
        ({"eps_mode": "middle"}, "eps_mode"),
        ({"checkpoints": (10, 10, 50)}, "strictly increasing"),
        ({"checkpoints": (50, 10)}, "strictly increasing"),
        ({"checkpoints": ()}, "checkpoints is empty"),
        ({"checkpoints": (10, 2000)}, "steps=1000"),
        ({"region": (0.9, 0.8)}, "region"),
        ({"n_grid": 1}, "n_grid"),
        ({"density_form": "cubic"}, "density_form"),
    ],
)
def test_invalid_parameters_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        d.DensityDemo(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d3_checkpoint": 75}, "d3_checkpoint=75 is not one of the checkpoints"),
        ({"d1_tol": 0.0}, "d1_tol"),
        ({"d4_eta": -0.1}, "d4_eta"),
        ({"d4_steps": 0}, "d4_steps"),
        ({"d4_min_e0": 1.5}, "d4_min_e0"),
    ],
)
def test_invalid_check_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        d.DensityChecks(d.DensityDemo(), **kwargs)


def test_density_checks_run_all_four():
    demo = d.DensityDemo(**SMALL)
    checks = d.DensityChecks(demo, d3_checkpoint=100).run(d.simulate(demo))
    assert [c.name for c in checks] == ["D-1", "D-2", "D-3", "D-4"]
    with pytest.raises(ValueError, match="another DensityDemo"):
        d.DensityChecks(demo).run(d.simulate(d.DensityDemo(n_grid=100)))


def test_lists_given_as_text_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"must be a list of numbers.*-y"):
        d.DensityDemo(checkpoints="[10, 50]")
    with pytest.raises(ValueError, match="whole numbers"):
        d.DensityDemo(checkpoints=(10.5, 50))
