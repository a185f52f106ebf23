"""Tests of nsf.boundary2d: the 2D early-alignment demo (paper Sec. 4.2.2, SPEC section 7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nsf import boundary2d as b

torch.set_num_threads(1)

TINY = {
    "n_train_per_class": 30,
    "n_test_per_class": 40,
    "p_values": (0.25, 0.0, -0.1, -0.25),
    "p_ab": (-0.25,),
    "iters": 12,
    "checkpoints": (0, 1, 5, 12),
    "topk": 3,
    "hidden": 8,
    "map_resolution": 16,
}


# --------------------------------------------------------------------------- data and Bayes rule
def test_generator_counts_and_determinism():
    s = b.crossed_l_samples(50, 0.8, seed=3)
    assert s.X.shape == (100, 2) and len(s) == 100
    for c in (0, 1):
        assert np.sum((s.y == c) & ~s.near) == 40 and np.sum((s.y == c) & s.near) == 10
    again = b.crossed_l_samples(50, 0.8, seed=3)
    np.testing.assert_array_equal(s.X, again.X)
    assert not np.array_equal(s.X, b.crossed_l_samples(50, 0.8, seed=4).X)


def test_bayes_rule_beats_every_linear_separator_on_its_own_samples():
    for seed in (0, 1):
        s = b.crossed_l_samples(300, 0.8, seed=seed)
        bayes = np.mean(b.bayes_predict(s.X) == s.y)
        linear = b.best_linear_accuracy(s.X, s.y)
        assert bayes > 0.95
        assert bayes > linear + 0.05, (bayes, linear)


def test_best_linear_accuracy_finds_a_separating_line():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 2))
    y = (X @ np.array([0.3, -1.0]) > 0.1).astype(int)
    assert b.best_linear_accuracy(X, y) >= 0.99
    assert b.best_linear_accuracy(X, 1 - y) >= 0.99  # either orientation


def test_bayes_log_odds_is_odd_under_the_point_reflection():
    # class 1 is class 0 reflected through the origin, so the log-odds flips sign.
    X = np.random.default_rng(1).uniform(-1.5, 1.5, (500, 2))
    np.testing.assert_allclose(b.bayes_log_odds(-X), -b.bayes_log_odds(X), atol=1e-8)
    # finite far away from every branch (log-space evaluation)
    assert np.all(np.isfinite(b.bayes_log_odds(np.array([[9.0, -7.0], [-20.0, 3.0]]))))


def test_segment_density_matches_quadrature():
    # p(x | seg) = (1/L) N(d_perp) [Phi((L-s)/sigma) - Phi(-s/sigma)] vs direct integration over s.
    L, sigma = 1.5, 0.05
    vertex, u = np.array([-0.5, -0.5]), np.array([1.0, 0.0])
    X = np.array([[-0.52, -0.47], [0.3, -0.55], [1.02, -0.5], [-0.6, -0.45]])
    s = np.linspace(0, L, 200001)
    dens = []
    for x in X:
        diff = x[None, :] - (vertex[None, :] + s[:, None] * u[None, :])
        g = np.exp(-0.5 * np.sum(diff**2, 1) / sigma**2) / (2 * np.pi * sigma**2)
        dens.append(np.trapezoid(g, s) / L)
    got = np.exp(b._log_segment_density(X, vertex, u, L, sigma))
    np.testing.assert_allclose(got, dens, rtol=1e-6)


def test_bayes_boundary_grid():
    xs, _, lo = b.bayes_boundary(1.2, 21)
    assert xs.shape == (21,) and lo.shape == (21, 21)
    assert lo[0, 0] < 0 < lo[-1, -1] or lo[0, 0] > 0 > lo[-1, -1]


# --------------------------------------------------------------------------- model and training
def test_mlp_init_ignores_the_global_rng():
    torch.manual_seed(123)
    a = b.mlp(16, seed=5)
    torch.manual_seed(999)
    c = b.mlp(16, seed=5)
    for pa, pc in zip(a.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pc)
    assert a[0].weight.abs().max() <= 1 / math.sqrt(2)
    assert not torch.equal(a[0].weight, b.mlp(16, seed=6)[0].weight)


def test_training_is_deterministic_for_a_fixed_seed():
    demo = b.BoundaryDemo(**TINY)
    panel = b.Panel("mean", "mean", 0.01)
    r1, r2 = b.train_panel(demo, panel), b.train_panel(demo, panel)
    assert r1.history.equals(r2.history)
    for p in demo.p_values:
        np.testing.assert_array_equal(r1.maps[p], r2.maps[p])
        np.testing.assert_array_equal(r1.update_norms[p], r2.update_norms[p])
    r3 = b.train_panel(b.BoundaryDemo(**{**TINY, "seed": 1}), panel)
    assert not r1.history.equals(r3.history)


def test_panel_result_contents_and_topk():
    demo = b.BoundaryDemo(**TINY)
    r = b.train_panel(demo, b.Panel("sum", "sum", 3e-4))
    assert len(r.history) == len(demo.p_values) * (demo.iters + 1)
    assert set(r.history.columns) >= {"acc", "acc_near", "bayes_agreement", "loss", "step_norm"}
    for p in demo.p_values:
        assert r.maps[p].shape == (4, 16, 16)
        assert np.all((r.maps[p] >= 0) & (r.maps[p] <= 1))
        tops = r.topk[p]
        for c in (0, 1):
            assert np.all(tops[:, r.data["train"].y == c].sum(1) == demo.topk)
    h = r.history
    assert np.allclose(h[h.iteration == 0].loss_ratio, 1.0)
    table = r.metrics_table()
    assert list(table.index) == list(demo.p_values)


def test_effective_update_norms_match_a_per_sample_loop():
    # Before the first step, p = 0 (eps outside): u_i = lr * grad(l_i / n) / (1 + eps).
    torch.manual_seed(0)
    model = b.mlp(8, seed=0)
    X = torch.randn(7, 2)
    y = torch.tensor([0, 1, 0, 1, 1, 0, 1], dtype=torch.float32)
    for p, eps in ((0.0, 1e-8), (-0.25, 1e-8), (0.5, 1e-3)):
        opt = b.NSF(model.parameters(), lr=0.05, p=p, eps=eps)
        model.zero_grad()
        b._loss(model(X).squeeze(1), y, "mean").backward()
        first = {n: q.grad.detach().clone() for n, q in model.named_parameters()}
        got = b.effective_update_norms(model, opt, X, y, "mean", first)
        for i in range(7):
            model.zero_grad()
            (b._loss(model(X[i : i + 1]).squeeze(1), y[i : i + 1], "sum") / 7).backward()
            sq = sum(
                (0.05 * q.grad / ((first[n] ** 2) ** p + eps)).pow(2).sum()
                for n, q in model.named_parameters()
            )
            assert got[i].item() == pytest.approx(math.sqrt(sq), rel=1e-5)


def test_rms_matched_gives_every_p_the_sgd_step_length():
    demo = b.BoundaryDemo(**{**TINY, "iters": 3, "checkpoints": (1, 3)})
    r = b.train_panel(demo, b.Panel("rms", "mean", 0.01, "rms_matched"))
    first = r.history[r.history.iteration == 1].set_index("p").step_norm
    np.testing.assert_allclose(first.to_numpy(), first[0.0], rtol=1e-5)
    plain = b.train_panel(demo, b.Panel("mean", "mean", 0.01))
    f2 = plain.history[plain.history.iteration == 1].set_index("p").step_norm
    assert f2.max() / f2.min() > 10  # without the control p rescales the step (SPEC 7.4)


# --------------------------------------------------------------------------- metrics and checks
def test_first_crossing_and_log_time_score():
    assert b.first_crossing(np.array([0.1, 0.5, 0.95, 0.99]), 0.9) == 2.0
    assert math.isinf(b.first_crossing(np.array([0.1, 0.5]), 0.9))
    assert b.log_time_score(np.array([0.0, 1.0, 1.0])) == pytest.approx(1.0)
    early = b.log_time_score(np.array([0.0, 1.0, 1.0, 0.0]))
    late = b.log_time_score(np.array([0.0, 0.0, 1.0, 1.0]))
    assert early > late


def test_alignment_checks_verdicts():
    demo = b.BoundaryDemo()
    paper = {0.5: 40.0, 0.25: 30.0, 0.0: 300.0, -0.1: 2.0, -0.25: 5.0, -0.5: 6.0}
    assert [c.passed for c in b.alignment_checks(demo, paper)] == [True, True, True]
    reverse = {0.5: 2.0, 0.25: 5.0, 0.0: 40.0, -0.1: 50.0, -0.25: 60.0, -0.5: 70.0}
    assert [c.passed for c in b.alignment_checks(demo, reverse)] == [False, False, False]
    never = dict.fromkeys(demo.p_values, math.inf)
    checks = b.alignment_checks(demo, never)
    assert [c.passed for c in checks] == [None, None, None]
    assert checks[0].verdict.startswith("undecided")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p_values": ()}, "p_values is empty"),
        ({"p_values": (0.0, 0.0)}, "duplicates"),
        ({"checkpoints": (1, 5, 5)}, "strictly increasing"),
        ({"checkpoints": (10, 2)}, "strictly increasing"),
        ({"checkpoints": ()}, "checkpoints is empty"),
        ({"checkpoints": (1, 600)}, "iters=500"),
        ({"topk": 201}, "class size"),
        ({"topk": 0}, "topk"),
        ({"far_frac": 1.0}, "far_frac"),
        ({"sigma": 0.0}, "sigma"),
        ({"hidden": 0}, "hidden"),
        ({"p_delta": -0.3}, "p_delta=-0.3 is not in p_values"),
        ({"p_c": 0.3}, "p_c=0.3 is not in p_values"),
        ({"p_values": (0.5, 0.25, -0.1, -0.25, -0.5)}, "must include 0"),
        ({"align_threshold": 1.5}, "align_threshold"),
        ({"eps_mode": "both"}, "eps_mode"),
    ],
)
def test_invalid_demo_parameters_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        b.BoundaryDemo(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr=0.0"),
        ({"lr": -1e-3}, "positive"),
        ({"reduction": "max"}, "reduction"),
        ({"update_norm": "l2"}, "update_norm"),
    ],
)
def test_invalid_panels_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        b.Panel("x", **kwargs)


def test_lists_given_as_text_are_refused():
    with pytest.raises(ValueError, match="must be a list of numbers"):
        b.BoundaryDemo(p_values="[0.5, 0, -0.1]")
