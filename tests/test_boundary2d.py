"""Tests of nsf.boundary2d: the 2D early-alignment demo (paper Sec. 4.2.2; book chapter 05)."""

from __future__ import annotations

import math
from typing import get_args

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from nsf import boundary2d as b
from nsf import optim, reference
from nsf.boundary2d import geometry
from nsf.boundary2d import setup as bsetup
from nsf.boundary2d.train import _loss

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
    got = np.exp(geometry._log_segment_density(X, vertex, u, L, sigma))
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


def test_rms_matched_gives_every_p_the_sgd_step_length():
    demo = b.BoundaryDemo(**{**TINY, "iters": 3, "checkpoints": (1, 3)})
    r = b.train_panel(demo, b.Panel("rms", "mean", 0.01, "rms_matched"))
    first = r.history[r.history.iteration == 1].set_index("p").step_norm
    np.testing.assert_allclose(first.to_numpy(), first[0.0], rtol=1e-5)
    plain = b.train_panel(demo, b.Panel("mean", "mean", 0.01))
    f2 = plain.history[plain.history.iteration == 1].set_index("p").step_norm
    assert f2.max() / f2.min() > 10  # without the control p rescales the step


# --------------------------------------------------------------------------- metrics and checks
def test_first_crossing_and_log_time_score():
    assert b.first_crossing(np.array([0.1, 0.5, 0.95, 0.99]), 0.9) == 2.0
    assert math.isinf(b.first_crossing(np.array([0.1, 0.5]), 0.9))
    assert b.log_time_score(np.array([0.0, 1.0, 1.0])) == pytest.approx(1.0)
    early = b.log_time_score(np.array([0.0, 1.0, 1.0, 0.0]))
    late = b.log_time_score(np.array([0.0, 0.0, 1.0, 1.0]))
    assert early > late


# --------------------------------------------------------------------------- effective update norms
CASES = [  # (momentum, bias_correction, eps_mode, update_norm, p): p != 0.5 throughout
    ("ema", True, "outside", None, -0.25),
    ("ema", True, "outside", "rms_matched", 0.3),
    ("heavy_ball", False, "outside", None, -0.25),
    ("heavy_ball", False, "inside", "rms_matched", 0.3),
]


@pytest.mark.parametrize(("momentum", "bias_correction", "eps_mode", "update_norm", "p"), CASES)
def test_update_factors_and_norms_equal_the_float64_reference(
    momentum, bias_correction, eps_mode, update_norm, p
):
    """The denominator and rms factor of every tensor, and the per-sample norms built from them,
    equal Eq. 3 written literally (nsf.reference) after three steps."""
    torch.manual_seed(0)
    model = b.mlp(6, seed=1, dtype=torch.float64)
    X = torch.randn(9, 2, dtype=torch.float64)
    y = (torch.rand(9) > 0.5).to(torch.float64)
    kw = dict(lr=0.05, p=p, betas=(0.8, 0.95), eps=1e-3)
    flags = dict(momentum=momentum, bias_correction=bias_correction, eps_mode=eps_mode,
                 update_norm=update_norm)  # fmt: skip
    opt = optim.NSF(model.parameters(), **kw, **flags, foreach=False)
    states = {n: reference.State.zeros(tuple(q.shape)) for n, q in model.named_parameters()}
    for _ in range(3):
        opt.zero_grad()
        _loss(model(X).squeeze(1), y, "mean").backward()
        terms = {}
        for n, q in model.named_parameters():
            _, terms[n] = reference.eq3_step(
                q.detach().numpy(), q.grad.numpy(), states[n], **kw, **flags
            )
        opt.step()
    factors = b.update_factors(opt, model)
    for n, t in terms.items():
        lr, den, ratio = factors[n]
        np.testing.assert_allclose(den.numpy(), t.denominator, rtol=1e-12)
        want = np.linalg.norm(t.step) / np.linalg.norm(t.m_hat / t.denominator)
        assert lr == 0.05 and ratio == pytest.approx(want, rel=1e-12)
    got = b.effective_update_norms(model, opt, X, y, "mean")
    for i in range(9):
        model.zero_grad()
        (_loss(model(X[i : i + 1]).squeeze(1), y[i : i + 1], "sum") / 9).backward()
        t_ratio = {n: np.linalg.norm(t.step) / np.linalg.norm(t.m_hat / t.denominator)
                   for n, t in terms.items()}  # fmt: skip
        sq = sum(
            np.sum((0.05 * t_ratio[n] * q.grad.numpy() / terms[n].denominator) ** 2)
            for n, q in model.named_parameters()
        )
        assert got[i].item() == pytest.approx(math.sqrt(sq), rel=1e-10)


def test_checkpoint_zero_reads_the_first_steps_terms():
    # The gradients at initialisation and the first step's terms: v^ = g^2 of the first batch.
    torch.manual_seed(0)
    X = torch.randn(7, 2)
    y = torch.tensor([0, 1, 0, 1, 1, 0, 1], dtype=torch.float32)
    for p, eps in ((0.0, 1e-8), (-0.25, 1e-8), (0.5, 1e-3)):
        model = b.mlp(8, seed=0)
        opt = optim.NSF(model.parameters(), lr=0.05, p=p, eps=eps, foreach=False)
        model.zero_grad()
        _loss(model(X).squeeze(1), y, "mean").backward()
        first = {n: q.grad.detach().clone() for n, q in model.named_parameters()}
        g0 = b.per_sample_grads(model, X, y, "mean")
        opt.step()
        got = b.effective_update_norms(model, opt, X, y, "mean", g0)
        sq = sum((0.05 * g0[n] / ((first[n] ** 2) ** p + eps)).pow(2).reshape(7, -1).sum(1)
                 for n in first)  # fmt: skip
        np.testing.assert_allclose(got.numpy(), sq.sqrt().numpy(), rtol=1e-5)


def test_the_setup_restates_the_optimizers_choices():
    assert get_args(bsetup._Momentum) == get_args(optim.Momentum)
    assert get_args(bsetup._EpsMode) == get_args(optim.EpsMode)
    assert get_args(bsetup._UpdateNorm) == get_args(optim.UpdateNorm)


# --------------------------------------------------------------------------- checks B-1..B-3
ROLES = b.BoundaryDemo(
    **{**TINY, "p_values": (0.25, 0.0, -0.1, -0.25, -0.5), "p_ab": (-0.25, -0.5), "iters": 20}
)


def hand_result(t90: dict[float, float], demo: b.BoundaryDemo = ROLES) -> b.PanelResult:
    """A PanelResult whose Bayes agreement is 0.5 + 0.01 t before ``t90[p]`` and 0.95 from it
    (never for inf); p_delta's hits the threshold exactly at its t90 (0.95 one step later)."""
    rows = []
    for p in demo.p_values:
        t = t90[p]
        for i in range(demo.iters + 1):
            hit = demo.align_threshold if (i == t and p == demo.p_delta) else 0.95
            a = 0.5 + 0.01 * i if i < t else hit
            rows.append({"p": p, "iteration": i, "bayes_agreement": a, "loss_ratio": 1.0})
    history = pd.DataFrame(rows)
    return b.PanelResult(demo, b.Panel("hand"), {}, history, {}, {}, {}, {}, np.zeros(1))


def verdicts(t90):
    on_t90, _ = b.panel_checks(hand_result(t90))
    return {c.name: c.passed for c in on_t90}


INF = math.inf
PAPER = {0.25: 8, 0.0: 15, -0.1: 2, -0.25: 4, -0.5: 5}  # every clause built to hold


def test_b1_holds_when_sgd_is_slowest_of_the_negative_set_and_fails_otherwise():
    assert verdicts(PAPER)["B-1"] is True
    # a positive p slower than SGD is outside B-1's set: still holds
    assert verdicts({**PAPER, 0.25: INF})["B-1"] is True
    assert verdicts({**PAPER, 0.0: 3})["B-1"] is False  # faster than a = -0.25
    assert verdicts({**PAPER, 0.0: 5})["B-1"] is False  # a tie with b is not slower


def test_b2_holds_only_for_a_unique_fastest_p_delta():
    assert verdicts(PAPER)["B-2"] is True  # p_delta hits the threshold exactly, at 2
    assert verdicts({**PAPER, -0.25: 3})["B-2"] is True  # one step behind: still first
    assert verdicts({**PAPER, 0.25: 2})["B-2"] is False  # a tie is not unique
    assert verdicts({**PAPER, -0.5: 1})["B-2"] is False


def test_b3_holds_when_c_is_slower_than_each_of_a_and_b():
    assert verdicts(PAPER)["B-3"] is True
    assert verdicts({**PAPER, 0.25: 5})["B-3"] is False  # c = b's time: not slower
    assert verdicts({**PAPER, 0.25: 3, -0.25: 2})["B-3"] is False  # c slower than a, not b
    assert verdicts({**PAPER, 0.25: INF})["B-3"] is True  # never aligned counts as slower


def test_undecided_when_the_compared_runs_never_align():
    never = dict.fromkeys(ROLES.p_values, INF)
    on_t90, on_score = b.panel_checks(hand_result(never))
    assert [c.passed for c in on_t90] == [None, None, None]
    assert on_t90[0].verdict.startswith("undecided")
    # one undecided comparison and the others holding: undecided; one failing: fails
    assert verdicts({**PAPER, 0.0: INF, -0.25: INF})["B-1"] is None
    assert verdicts({**PAPER, 0.0: INF, -0.25: INF, -0.5: INF, -0.1: INF, 0.25: 1})["B-2"] is False
    # the log-time score never ties at "never": it still ranks by the earlier rise
    assert all(c.passed is not None for c in on_score)
    assert all(c.strength == "independent" for c in on_t90 + on_score)


def test_checks_frame_is_the_verdict_table_per_panel():
    frame = b.checks_frame([hand_result(PAPER)])
    assert list(frame.index.get_level_values("check")) == ["B-1", "B-2", "B-3"] * 2
    assert set(frame["verdict"]) == {"holds"}
    assert frame.index.get_level_values("panel")[0] == "hand"


# --------------------------------------------------------------------------- check B-4
def curves_result(agree: dict[float, list[float]], loss: dict[float, list[float]], name="hand"):
    """A PanelResult from per-p agreement and loss curves over iterations 0..len - 1."""
    demo = ROLES
    rows = [
        {"p": p, "iteration": i, "bayes_agreement": a, "loss": loss[p][i],
         "loss_ratio": loss[p][i] / loss[p][0]}
        for p in demo.p_values
        for i, a in enumerate(agree[p])
    ]  # fmt: skip
    return b.PanelResult(demo, b.Panel(name), {}, pd.DataFrame(rows), {}, {}, {}, {}, np.zeros(1))


def flat(v, n=11):
    return [v] * n


def test_lead_counts_compare_at_matched_iterations_from_one():
    sgd_agree = [0.5, 0.5, 0.6, 0.7, 0.8]
    d_agree = [0.9, 0.6, 0.6, 0.8, 0.7]  # iteration 0 is not compared; a tie is not ahead
    d_loss = [0.1, 1.0, 1.0, 0.2, 1.0]  # not lower at 1, lower at 3
    agree = {p: flat(0.5, 5) for p in ROLES.p_values} | {0.0: sgd_agree, -0.1: d_agree}
    loss = {p: flat(0.7, 5) for p in ROLES.p_values} | {0.0: flat(0.7, 5), -0.1: d_loss}
    assert b.lead_counts(curves_result(agree, loss), -0.1) == (4, 2, 1)


def test_b4_needs_the_lead_in_accuracy_and_the_lagging_loss_together():
    base = {p: flat(0.5) for p in ROLES.p_values}
    ahead = base | {-0.1: [0.5] + [0.8] * 10}
    sgd_loss = {p: flat(0.6) for p in ROLES.p_values}
    # ahead at every iteration, loss higher than SGD's: accuracy advanced while the loss lagged
    held = b.divergence_check(curves_result(ahead, sgd_loss | {-0.1: flat(0.7)}))
    assert held.passed is True and held.name == "B-4" and held.strength == "independent"
    assert "ahead of p = 0 at 10 of 10 iterations; its loss not lower at 10" in held.statistic
    # ahead in accuracy and lower in loss: faster training, not a divergence
    assert b.divergence_check(curves_result(ahead, sgd_loss | {-0.1: flat(0.5)})).passed is False
    # a lagging loss but ahead at only half of the iterations: not advanced
    half = base | {-0.1: [0.5] + [0.8] * 5 + [0.5] * 5}
    assert b.divergence_check(curves_result(half, sgd_loss | {-0.1: flat(0.7)})).passed is False
    # never ahead: does not hold either (the claim needs the lead)
    assert b.divergence_check(curves_result(base, sgd_loss | {-0.1: flat(0.7)})).passed is False


def test_b4_is_named_per_panel_for_the_record():
    agree = {p: flat(0.5) for p in ROLES.p_values}
    loss = {p: flat(0.6) for p in ROLES.p_values}
    names = [c.name for c in b.divergence_checks([curves_result(agree, loss, "(i) x")])]
    assert names == ["(i) x · B-4 · vs p=0"]


def test_the_per_run_loss_reading_is_reported_as_not_discriminating_when_sgd_shares_it():
    from nsf.boundary2d import notes

    rise = [0.5, 0.6, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]
    agree = {p: rise for p in ROLES.p_values}
    slow = [1.0, 0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5]  # loss high at t_half
    loss = {p: slow for p in ROLES.p_values}
    results = {k: curves_result(agree, loss, k) for k in ("mean", "sum", "rms")}
    text = notes.loss_high_note(results)
    assert "does not discriminate" in text and "15 of 15 runs" in text
    # the loss of p = 0 falls fast: now the reading differs between p = 0 and the others
    fast = [1.0, 0.4] + [0.3] * 9
    results["sum"] = curves_result(agree, loss | {0.0: fast}, "sum")
    text = notes.loss_high_note(results)
    assert "does not discriminate" not in text
    assert "p = 0.25 in sum" in text and "p = -0.1 in sum" in text


def test_divergence_note_says_whether_the_step_matched_panel_keeps_it():
    from nsf.boundary2d import notes

    base = {p: flat(0.5) for p in ROLES.p_values}
    ahead = base | {-0.1: [0.5] + [0.8] * 10}
    loss = {p: flat(0.6) for p in ROLES.p_values}
    lagging = curves_result(ahead, loss | {-0.1: flat(0.7)}, "free")
    faster = curves_result(ahead, loss | {-0.1: flat(0.5)}, "matched")
    text = notes.divergence_note({"mean": lagging, "sum": lagging, "rms": faster})
    assert "does not survive at SGD's step length" in text
    text = notes.divergence_note({"mean": faster, "sum": faster, "rms": lagging})
    assert "It holds in the step-matched panel (iii) too" in text
    table = notes.divergence_table({"mean": lagging})
    assert table.loc[("free", "-0.1"), "of those, loss not lower"] == 10
    assert np.isnan(table.loc[("free", "0.25"), "share"])  # never ahead: no share


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"L": 0.0}, "L"),
        ({"L": -1.0}, "L"),
        ({"sigma": 0.0}, "sigma"),
        ({"far_frac": 1.0}, "far_frac"),
        ({"far_frac": 0.0}, "far_frac"),
        ({"test_far_frac": 1.2}, "test_far_frac"),
        ({"checkpoints": (1, 600)}, "checkpoints=\\[1, 600\\] is refused"),
        ({"checkpoints": (1, 5, 5)}, "checkpoints"),
        ({"checkpoints": ()}, "checkpoints"),
        ({"p_values": ()}, "p_values"),
        ({"p_values": (0.0, 0.0)}, "p_values"),
        ({"p_values": (0.5, 0.25, -0.1, -0.25, -0.5)}, "p_values=.* must include 0"),
        ({"topk": 201}, "topk=201 is refused"),
        ({"topk": 0}, "topk"),
        ({"hidden": 0}, "hidden"),
        ({"p_delta": -0.3}, "p_delta=-0.3 is not in p_values"),
        ({"p_delta": 0.25}, "p_delta"),
        ({"p_c": 0.3}, "p_c=0.3 is not in p_values"),
        ({"p_ab": ()}, "p_ab"),
        ({"align_threshold": 1.5}, "align_threshold"),
        ({"loss_high_frac": 1.0}, "loss_high_frac"),
        ({"eps_mode": "both"}, "eps_mode"),
        ({"momentum": "nesterov"}, "momentum"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"p_values": "[0.5, 0, -0.1]"}, "p_values"),
        ({"iters": 12.0}, "iters"),
        ({"no_such": 1}, "no_such"),
    ],
)
def test_invalid_demo_parameters_are_refused_by_name(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        b.BoundaryDemo(**kwargs)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (b.Panel, {"name": "x", "lr": 0.0}, "lr"),
        (b.Panel, {"name": "x", "reduction": "max"}, "reduction"),
        (b.Panel, {"name": "x", "update_norm": "l2"}, "update_norm"),
        (b.Panels, {"lr_sum": -1e-3}, "lr_sum"),
        (b.Panels, {"rms_reduction": "max"}, "rms_reduction"),
        (b.CrossedL, {"far_frac": 1.5}, "far_frac"),
    ],
)
def test_invalid_panels_are_refused_by_name(cls, kwargs, field):
    with pytest.raises(ValidationError, match=field):
        cls(**kwargs)


def test_sample_functions_refuse_a_bad_geometry_by_name():
    with pytest.raises(ValidationError, match="sigma"):
        b.crossed_l_samples(10, sigma=-1.0)
    with pytest.raises(ValidationError, match="n_per_class"):
        b.crossed_l_samples(0)
    with pytest.raises(ValidationError, match="far_frac"):
        b.bayes_log_odds(np.zeros((1, 2)), far_frac=1.0)
