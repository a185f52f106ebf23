"""The unified rule (paper Sec. 3.1, Eq. 3) against torch.optim at its endpoints (SPEC 1.8) and
against an independent float64 reference between them."""

from __future__ import annotations

import copy
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nsf
from nsf import NSF, PScheduler, schedules
from nsf.reference import State, eq3_step

STEPS = 60


def mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ).double()


def train_pair(make_a, make_b, steps: int = STEPS, schedulers=(None, None), seed: int = 0,
               dtype=torch.float64):  # fmt: skip
    """Train two copies of one MLP on one random data stream; return both parameter lists."""
    model_a, model_b = mlp(seed).to(dtype), mlp(seed).to(dtype)
    opt_a, opt_b = make_a(model_a.parameters()), make_b(model_b.parameters())
    sched_a = schedulers[0](opt_a) if schedulers[0] else None
    sched_b = schedulers[1](opt_b) if schedulers[1] else None
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        x = torch.randn(32, 6, generator=gen, dtype=torch.float64).to(dtype)
        y = torch.randn(32, 3, generator=gen, dtype=torch.float64).to(dtype)
        for model, opt, sched in ((model_a, opt_a, sched_a), (model_b, opt_b, sched_b)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            if sched is not None:
                sched.step()
    return list(model_a.parameters()), list(model_b.parameters())


def assert_close(params_a, params_b, rtol=1e-10, atol=1e-12):
    for a, b in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def max_rel_diff(params_a, params_b) -> float:
    return max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(params_a, params_b))


# ---------------------------------------------------------------- endpoints (SPEC 1.8 T1-T7)

LR, B1, B2, EPS, WD = 3e-3, 0.9, 0.99, 1e-8, 1e-2


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_p_half_is_adam(foreach, amsgrad):
    """T1/T1c: p = 1/2, ema, bias correction, eps outside, coupled wd == torch.optim.Adam."""
    a, b = train_pair(
        lambda ps: NSF(ps, lr=LR, p=0.5, betas=(B1, B2), eps=EPS, weight_decay=WD,
                       amsgrad=amsgrad, foreach=foreach),
        lambda ps: torch.optim.Adam(ps, lr=LR, betas=(B1, B2), eps=EPS, weight_decay=WD,
                                    amsgrad=amsgrad),
    )  # fmt: skip
    assert_close(a, b)


@pytest.mark.parametrize("foreach", [False, True])
def test_p_half_decoupled_is_adamw(foreach):
    """T1b: decoupled weight decay at p = 1/2 == torch.optim.AdamW; coupled decay is not."""
    make = lambda decoupled: lambda ps: NSF(  # noqa: E731
        ps, lr=LR, p=0.5, betas=(B1, B2), eps=EPS, weight_decay=0.1,
        decoupled_weight_decay=decoupled, foreach=foreach,
    )  # fmt: skip
    adamw = lambda ps: torch.optim.AdamW(ps, lr=LR, betas=(B1, B2), eps=EPS, weight_decay=0.1)  # noqa: E731
    assert_close(*train_pair(make(True), adamw))
    assert max_rel_diff(*train_pair(make(False), adamw)) > 1e-6


@pytest.mark.parametrize("foreach", [False, True])
def test_p_zero_heavy_ball_is_sgd(foreach):
    """T2: p = 0, heavy ball, eps = 0 == torch.optim.SGD(momentum=beta1, weight_decay)."""
    a, b = train_pair(
        lambda ps: NSF(ps, lr=0.05, p=0.0, betas=(B1, B2), eps=0.0, weight_decay=WD,
                       momentum="heavy_ball", foreach=foreach),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=B1, weight_decay=WD),
    )  # fmt: skip
    assert_close(a, b)


def test_p_zero_eps_outside_differs_from_sgd_by_one_plus_eps():
    """T2 note: with eps = 1e-8 outside, each p = 0 step is scaled by 1/(1+eps), ~1e-8 relative."""
    a, b = train_pair(
        lambda ps: NSF(ps, lr=0.05, p=0.0, eps=1e-8, momentum="heavy_ball"),
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=B1),
    )
    assert 1e-11 < max_rel_diff(a, b) < 1e-7


@pytest.mark.parametrize("foreach", [False, True])
def test_p_half_without_momentum_or_correction_is_rmsprop(foreach):
    """T7: p = 1/2, beta1 = 0, no bias correction == torch.optim.RMSprop(alpha=beta2)."""
    a, b = train_pair(
        lambda ps: NSF(ps, lr=LR, p=0.5, betas=(0.0, B2), eps=EPS, bias_correction=False,
                       foreach=foreach),
        lambda ps: torch.optim.RMSprop(ps, lr=LR, alpha=B2, eps=EPS),
    )  # fmt: skip
    assert_close(a, b)


@pytest.mark.parametrize("foreach", [False, True])
def test_eq3_literal_p_zero_is_sgd_with_time_varying_rate(foreach):
    """T4: Eq. 3 literal at p = 0 (ema + bias correction, eps = 0) is heavy-ball SGD with the
    rate eta*(1-beta1)/(1-beta1^t): a 'reverse warm-up' (SPEC 1.8, note 2)."""
    eta = 0.05
    a, b = train_pair(
        lambda ps: NSF(ps, lr=eta, p=0.0, betas=(B1, B2), eps=0.0, foreach=foreach),
        lambda ps: torch.optim.SGD(ps, lr=eta * (1 - B1), momentum=B1),
        schedulers=(
            None,
            lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda j: 1 / (1 - B1 ** (j + 1))),
        ),
    )
    assert_close(a, b)


# ------------------------------------------------- between the endpoints: float64 reference


def reference_run(grads_fn, theta0, steps, *, schedule, has_grad=None, **hyper):
    """Eq. 3 by :func:`nsf.reference.eq3_step`, tensor by tensor, p = ``schedule(t)`` at step t;
    ``has_grad(t, i)`` False skips tensor i at step t (its state does not move)."""
    theta = [np.asarray(t, np.float64).copy() for t in theta0]
    states = [State.zeros(t.shape) for t in theta]
    for t in range(steps):
        p = schedule(t)
        grads = grads_fn(theta)
        for i, g in enumerate(grads):
            if has_grad is None or has_grad(t, i):
                theta[i], _ = eq3_step(theta[i], g, states[i], p=float(p), **hyper)
    return theta


def nsf_run(grads_fn, theta0, steps, *, schedule, has_grad=None, dtypes=None, **kw):
    """The same run with :class:`NSF` (``kw`` its arguments, foreach/fused included) on tensors
    of ``dtypes`` (float64 by default), the gradients computed in float64 from the parameters."""
    dtypes = dtypes or [torch.float64] * len(theta0)
    params = [torch.tensor(t, dtype=d, requires_grad=True) for t, d in zip(theta0, dtypes)]
    opt = NSF(params, **kw)
    sched = PScheduler(opt, schedule)
    for t in range(steps):
        grads = grads_fn([q.detach().double().numpy() for q in params])
        for i, (param, g) in enumerate(zip(params, grads)):
            keep = has_grad is None or has_grad(t, i)
            param.grad = torch.from_numpy(g).to(param.dtype) if keep else None
        opt.step()
        sched.step()
    return [q.detach() for q in params], opt


def quadratic_problem(seed=0, maximize=False):
    """A fixed ill-conditioned least-squares problem with gradients spanning many scales (its
    negative with ``maximize``, so that ascent converges too)."""
    rng = np.random.default_rng(seed)
    shapes = [(5, 4), (7,)]
    targets = [rng.normal(size=s) * 10.0 ** rng.uniform(-3, 1, size=s) for s in shapes]
    scales = [10.0 ** rng.uniform(-2, 1, size=s) for s in shapes]

    def grads_fn(theta):
        sign = -1.0 if maximize else 1.0
        return [sign * c * (t - y) for t, y, c in zip(theta, targets, scales)]

    theta0 = [rng.normal(size=s) for s in shapes]
    return grads_fn, theta0


CONFIGS = [
    dict(p=-0.25), dict(p=0.125), dict(p=0.75), dict(p=-0.25, eps_mode="inside", eps=1e-3),
    dict(p=0.125, momentum="heavy_ball"), dict(p=0.75, bias_correction=False),
    dict(p=-0.25, update_norm="rms_matched"), dict(p=0.125, weight_decay=0.05),
    dict(p=schedules.pulse_tidal(-0.05, 7, 0.25, -0.15, 5)),
    dict(p=schedules.tidal(0.0, 0.5, 11), eps_mode="inside", update_norm="rms_matched"),
    dict(p=-0.3, maximize=True), dict(p=0.7, maximize=True, momentum="heavy_ball"),
    dict(p=-0.2, amsgrad=True), dict(p=0.8, amsgrad=True, eps_mode="inside", eps=1e-4),
    dict(p=-0.35, decoupled_weight_decay=True, weight_decay=0.1),
    dict(p=0.65, decoupled_weight_decay=True, weight_decay=0.05, amsgrad=True, maximize=True),
    dict(p=0.0, maximize=True, update_norm="rms_matched"),
]  # fmt: skip


PATHS = [dict(foreach=False), dict(foreach=True)]
#: The fused path's two kernels: the C kernel (CPU float32/float64, fused_backend "auto") and the
#: torch.compile kernel that CUDA runs, here run by inductor's C++ backend.
COMPILED = dict(fused=True, fused_backend="compile")
FUSED = [
    pytest.param(dict(fused=True), marks=pytest.mark.slow, id="fused"),
    pytest.param(COMPILED, marks=pytest.mark.slow, id="fused-compile"),
]


def check_against_reference(config, path, steps=50, has_grad=None, rtol=1e-10, moved=True):
    config = dict(config)
    p = config.pop("p")
    schedule = p if callable(p) else schedules.constant(p)
    kw = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, schedule=schedule, has_grad=has_grad)
    kw |= config
    grads_fn, theta0 = quadratic_problem(maximize=kw.get("maximize", False))
    expected = reference_run(grads_fn, theta0, steps, **kw)
    got, _ = nsf_run(grads_fn, theta0, steps, **kw, **path)
    for param, ref, start in zip(got, expected, theta0, strict=True):
        np.testing.assert_allclose(param.numpy(), ref, rtol=rtol, atol=1e-12)
        assert not moved or np.abs(ref - start).max() > 1e-3  # the run went somewhere


@pytest.mark.parametrize("path", PATHS + FUSED, ids=str)
@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
)
def test_matches_float64_reference(config, path):
    """Between the endpoints (and under switching schedules) NSF equals Eq. 3 to 1e-10, on every
    path, maximize, amsgrad and decoupled decay included, away from p = 1/2."""
    check_against_reference(config, path)


def intermittent(t: int, i: int) -> bool:
    """Tensor 0 gets a gradient at every step, tensor 1 only at steps 0, 3, 4, 7, 8, ...: their
    step counters diverge from the second step on."""
    return i == 0 or t % 4 in (0, 3)


INTERMITTENT_CONFIGS = [
    dict(p=-0.25), dict(p=0.5), dict(p=0.0), dict(p=0.3, amsgrad=True, momentum="heavy_ball"),
    dict(p=-0.4, update_norm="rms_matched", eps_mode="inside"),
    dict(p=0.6, bias_correction=False, decoupled_weight_decay=True, weight_decay=0.1),
]  # fmt: skip


@pytest.mark.parametrize("path", PATHS + FUSED, ids=str)
@pytest.mark.parametrize("config", INTERMITTENT_CONFIGS, ids=str)
def test_intermittent_gradients_match_reference(config, path):
    """A parameter without a gradient on some steps keeps its state and its own step count
    (bias correction by it): single-tensor, foreach and fused paths equal Eq. 3 per tensor."""
    check_against_reference(config, path, steps=30, has_grad=intermittent)


@pytest.mark.parametrize("config", INTERMITTENT_CONFIGS, ids=str)
def test_intermittent_gradients_foreach_equals_single_tensor(config):
    """With diverging step counters the foreach path still computes exactly the for-loop."""
    grads_fn, theta0 = quadratic_problem()
    kw = split_p(config) | dict(lr=1e-2)
    runs = [
        nsf_run(grads_fn, theta0, 30, has_grad=intermittent, foreach=f, **kw) for f in (True, False)
    ]
    for x, y in zip(runs[0][0], runs[1][0], strict=True):
        assert torch.equal(x, y)
    opt = runs[0][1]
    assert [opt.state[q]["step"].item() for q in opt.param_groups[0]["params"]] == [30, 15]


def split_p(config):
    """NSF's and the reference's keywords from a config: p becomes a constant schedule."""
    kw = dict(config)
    return kw | dict(schedule=schedules.constant(kw.pop("p")))


def alone(grads_fn, theta0, i):
    """The problem restricted to tensor i (each tensor's gradient depends on it alone)."""
    rest = list(theta0)

    def grads_i(theta):
        rest[i] = theta[0]
        return [grads_fn(rest)[i]]

    return grads_i, [theta0[i]]


MIXED = [torch.float32, torch.float64]


@pytest.mark.parametrize("path", PATHS + FUSED, ids=str)
@pytest.mark.parametrize("config", [dict(p=-0.25), dict(p=0.0), dict(p=0.3, amsgrad=True)], ids=str)
def test_mixed_float32_float64(config, path):
    """float32 and float64 tensors in one group (split by dtype inside the step) keep their
    dtypes and step exactly as each would alone; the float64 one follows Eq. 3 to 1e-10."""
    grads_fn, theta0 = quadratic_problem()
    kw = split_p(config) | dict(lr=1e-2)
    mixed, _ = nsf_run(grads_fn, theta0, 20, dtypes=MIXED, **kw, **path)
    assert [q.dtype for q in mixed] == MIXED
    for i, dtype in enumerate(MIXED):
        single, _ = nsf_run(*alone(grads_fn, theta0, i), 20, dtypes=[dtype], **kw, **path)
        assert torch.equal(mixed[i], single[0])
    expected = reference_run(grads_fn, theta0, 20, **kw)
    np.testing.assert_allclose(mixed[1].numpy(), expected[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mixed[0].double().numpy(), expected[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", PATHS, ids=str)
@settings(max_examples=60, deadline=None)
@given(
    p=st.floats(-1.0, 1.0),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.sampled_from([1e-8, 1e-4, 1e-2]),
    weight_decay=st.sampled_from([0.0, 0.03]),
    momentum=st.sampled_from(["ema", "heavy_ball"]),
    eps_mode=st.sampled_from(["outside", "inside"]),
    update_norm=st.sampled_from([None, "rms_matched"]),
    flags=st.tuples(*[st.booleans()] * 4),
)
def test_any_configuration_matches_reference(path, p, beta1, beta2, eps, flags, **kw):
    """Property: for any p in [-1, 1], betas, eps, modes and flags, 8 steps (one tensor skipping
    some) equal Eq. 3 to 1e-9."""
    bias_correction, amsgrad, decoupled, maximize = flags
    config = kw | dict(
        p=p, betas=(beta1, beta2), eps=eps, bias_correction=bias_correction, amsgrad=amsgrad,
        decoupled_weight_decay=decoupled, maximize=maximize,
    )  # fmt: skip
    config["lr"] = 1e-3 if kw["momentum"] == "heavy_ball" else 1e-2
    check_against_reference(config, path, steps=8, has_grad=intermittent, rtol=1e-9, moved=False)


ALL_PATHS = [
    dict(foreach=False), dict(foreach=True), dict(fused=True),
    pytest.param(COMPILED, marks=pytest.mark.slow, id="fused-compile"),
]  # fmt: skip


@pytest.mark.parametrize("path", PATHS + FUSED, ids=str)
def test_state_after_load_state_dict_steps_identically(path):
    """A fresh optimizer (other hyperparameters, other parameter objects) loaded with a state
    dict through torch.save/load(weights_only=True) steps exactly as the original, with
    diverged per-tensor step counters and amsgrad state."""
    grads_fn, theta0 = quadratic_problem()
    kw = dict(lr=1e-2, p=-0.2, amsgrad=True, momentum="heavy_ball", weight_decay=1e-3) | path
    params = [torch.tensor(t, requires_grad=True) for t in theta0]
    opt = NSF(params, **kw)

    def run(opt, params, steps):
        for t in steps:
            grads = grads_fn([q.detach().numpy() for q in params])
            for i, (q, g) in enumerate(zip(params, grads)):
                q.grad = torch.from_numpy(g) if intermittent(t, i) else None
            opt.step()

    run(opt, params, range(6))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    clones = [q.detach().clone().requires_grad_() for q in params]
    fresh = NSF(clones, lr=0.5, p=0.5)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    run(opt, params, range(6, 14))
    run(fresh, clones, range(6, 14))
    for q, c in zip(params, clones, strict=True):
        assert torch.equal(q, c)
        assert opt.state[q].keys() == fresh.state[c].keys()
        for key, value in opt.state[q].items():
            assert torch.equal(value, fresh.state[c][key]), key
    assert [opt.state[q]["step"].item() for q in params] == [14, 7]


@pytest.mark.parametrize("path", ALL_PATHS, ids=str)
def test_sparse_gradients_are_refused(path):
    """An embedding with sparse=True: the step raises, naming sparse gradients, and changes
    nothing (the refusal comes before any update; no compilation)."""
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    before = embedding.weight.detach().clone()
    opt = NSF(embedding.parameters(), **path)
    embedding(torch.tensor([1, 4])).sum().backward()
    assert embedding.weight.grad.is_sparse
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()
    assert torch.equal(embedding.weight.detach(), before)
    assert not opt.state


@pytest.mark.parametrize("path", ALL_PATHS, ids=str)
def test_complex_parameters_are_refused(path):
    """Complex parameters (hence complex gradients) are refused by name: |g|^2 is not g*g."""
    theta = torch.ones(3, dtype=torch.complex128, requires_grad=True)
    opt = NSF([theta], **path)
    theta.grad = torch.full_like(theta, 1 + 2j)
    with pytest.raises(RuntimeError, match="complex"):
        opt.step()
    assert torch.equal(theta.detach(), torch.ones(3, dtype=torch.complex128))


def test_import_nsf_loads_neither_the_fused_path_nor_pydantic():
    """``import nsf`` and a foreach step need only torch and numpy; nsf._fused loads on demand."""
    code = (
        "import sys, torch, nsf\n"
        "t = torch.zeros(3, requires_grad=True); t.grad = torch.ones(3); nsf.NSF([t]).step()\n"
        "print(sorted(m for m in ('nsf._fused', 'nsf.validation', 'pydantic') if m in sys.modules))"
    )
    env = os.environ | {"PYTHONPATH": str(Path(nsf.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_scale_law():
    """T9: with eps = 0 and no weight decay, scaling every gradient by c scales the step by
    c^(1-2p) exactly (SPEC 1.5)."""
    for p in (-0.25, 0.0, 0.3, 0.75):
        steps = []
        for c in (1.0, 10.0):
            theta = torch.zeros(4, dtype=torch.float64, requires_grad=True)
            opt = NSF([theta], lr=1.0, p=p, eps=0.0)
            theta.grad = c * torch.tensor([1e-3, -2e-2, 0.5, 3.0], dtype=torch.float64)
            opt.step()
            steps.append(theta.detach().clone())
        torch.testing.assert_close(steps[1], steps[0] * 10.0 ** (1 - 2 * p), rtol=1e-12, atol=0)


# ------------------------------------------------------------------- paths, resume, safety

FOREACH_CONFIGS = [
    dict(p=-0.15), dict(p=0.5), dict(p=0.0), dict(p=0.0, eps_mode="inside"),
    dict(p=0.3, amsgrad=True, weight_decay=0.01), dict(p=-0.4, momentum="heavy_ball"),
    dict(p=0.2, update_norm="rms_matched"),
    dict(p=0.6, decoupled_weight_decay=True, weight_decay=0.1),
    dict(p=-0.2, maximize=True), dict(p=0.25, eps_mode="inside", bias_correction=False),
]  # fmt: skip


@pytest.mark.parametrize("config", FOREACH_CONFIGS, ids=str)
def test_foreach_equals_single_tensor(config):
    """The multi-tensor path computes exactly what the single-tensor path computes."""
    a, b = train_pair(
        lambda ps: NSF(ps, lr=1e-3, foreach=True, **config),
        lambda ps: NSF(ps, lr=1e-3, foreach=False, **config),
    )
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_foreach_is_the_default():
    model = mlp()
    opt = NSF(model.parameters())
    assert opt.param_groups[0]["foreach"] is None  # None resolves to the foreach path
    calls = []
    original = torch._foreach_addcdiv_

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    torch._foreach_addcdiv_ = spy
    try:
        model(torch.randn(2, 6, dtype=torch.float64)).sum().backward()
        opt.step()
    finally:
        torch._foreach_addcdiv_ = original
    assert calls


def test_p_per_group_and_changing_every_step():
    """Each group uses its own p; a PScheduler with one schedule per group writes each."""
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = NSF([{"params": [a], "p": 0.5}, {"params": [b], "p": -0.25}], lr=0.1)
    sched = PScheduler(opt, [schedules.constant(0.5), schedules.alternating(0.25, -0.15, 1)])
    seen = []
    for _ in range(4):
        seen.append(sched.get_last_p())
        a.grad = torch.full_like(a, 0.01)
        b.grad = torch.full_like(b, 0.01)
        opt.step()
        sched.step()
    assert seen == [[0.5, 0.25], [0.5, -0.15], [0.5, 0.25], [0.5, -0.15]]
    # Adam-like group: constant gradient, bias-corrected, |step| = lr * g/(|g| + eps) ~ lr.
    torch.testing.assert_close(a.detach(), torch.full_like(a, -0.4), rtol=1e-5, atol=0)


def pulse_tidal_run(steps, split=None):
    """Train with a pulse-tidal schedule; with ``split``, checkpoint there and finish in fresh
    objects loaded with weights_only=True."""
    model = mlp(3).float()
    schedule = schedules.pulse_tidal(-0.05, 5, 0.25, -0.15, 4)

    def make(m):
        opt = NSF(m.parameters(), lr=1e-2, momentum="heavy_ball", weight_decay=5e-4, amsgrad=True)
        return opt, PScheduler(opt, schedule)

    opt, sched = make(model)
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(16, 6, generator=gen), torch.randn(16, 3, generator=gen))
            for _ in range(steps)]  # fmt: skip
    for i, (x, y) in enumerate(data):
        if i == split:
            buffer = io.BytesIO()
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict()}, buffer)  # fmt: skip
            buffer.seek(0)
            state = torch.load(buffer, weights_only=True)
            model = mlp(99).float()  # different init: everything must come from the checkpoint
            opt, sched = make(model)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()
    return [q.detach() for q in model.parameters()], sched.get_last_p()


def test_resume_is_bit_identical():
    full, p_full = pulse_tidal_run(30)
    resumed, p_resumed = pulse_tidal_run(30, split=13)
    assert p_full == p_resumed
    for x, y in zip(full, resumed):
        assert torch.equal(x, y)


@pytest.mark.parametrize(
    "path",
    [{"foreach": False}, {"foreach": True}, {"fused": True}],
    ids=["single", "foreach", "fused"],
)
def test_negative_p_with_zero_second_moment_is_finite(path):
    """p < 0 and v^ = 0 gives v^^p = inf and a zero step, not NaN (SPEC 1.7), on every path
    (the fused one in float32 on the CPU runs the kernel's own log2/exp2)."""
    for eps_mode, eps in (("outside", 1e-8), ("outside", 0.0), ("inside", 0.0)):
        theta = torch.ones(5, requires_grad=True)
        opt = NSF([theta], lr=0.1, p=-0.5, eps=eps, eps_mode=eps_mode, **path)
        for _ in range(3):
            theta.grad = torch.tensor([0.0, 0.0, 1e-30, 1.0, -2.0])  # 1e-30**2 underflows
            opt.step()
        assert torch.isfinite(theta).all(), (path, eps_mode, eps, theta)
        assert torch.equal(theta[:3].detach(), torch.ones(3))


def test_rms_matched_keeps_the_p0_step_size():
    """update_norm='rms_matched': per tensor, ||step|| equals the p = 0 step's norm."""
    theta = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    base = theta.detach().clone()
    opt = NSF([theta], lr=1.0, p=-0.4, eps=0.0, update_norm="rms_matched")
    g = torch.tensor([1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0], dtype=torch.float64)
    theta.grad = g
    opt.step()
    step = theta.detach() - base
    torch.testing.assert_close(step.norm(), g.norm(), rtol=1e-12, atol=0)
    assert not torch.allclose(step / step.norm(), -g / g.norm())  # direction did change


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        (dict(p=math.nan), "p"), (dict(p=math.inf), "p"), (dict(lr=-1e-3), "lr"),
        (dict(eps=-1e-8), "eps"), (dict(betas=(1.0, 0.999)), "betas[0]"),
        (dict(betas=(0.9, -0.1)), "betas[1]"), (dict(weight_decay=-1.0), "weight_decay"),
        (dict(momentum="nesterov"), "momentum"), (dict(eps_mode="middle"), "eps_mode"),
        (dict(update_norm="l2"), "update_norm"),
    ],
)  # fmt: skip
def test_bad_hyperparameters_are_refused(kwargs, named):
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        NSF(mlp().parameters(), **kwargs)


def test_bad_group_is_refused():
    with pytest.raises(ValueError, match="p must be a finite"):
        NSF([{"params": mlp().parameters(), "p": math.nan}])


def test_non_finite_p_written_later_is_refused_at_step():
    model = mlp()
    opt = NSF(model.parameters())
    opt.param_groups[0]["p"] = math.inf
    model(torch.randn(2, 6, dtype=torch.float64)).sum().backward()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['p'\]"):
        opt.step()


def test_state_dict_round_trip_keeps_hyperparameters():
    model = mlp()
    opt = NSF(model.parameters(), p=-0.15, momentum="heavy_ball", eps_mode="inside", amsgrad=True)
    model(torch.randn(2, 6, dtype=torch.float64)).sum().backward()
    opt.step()
    fresh = NSF(mlp().parameters())
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert fresh.param_groups[0]["p"] == -0.15
    assert fresh.param_groups[0]["momentum"] == "heavy_ball"
    state = fresh.state_dict()["state"][0]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert state["step"].item() == 1


# -------------------------------------------------- fused (torch.compile) path, float64 and 32

FUSED_CONFIGS = [
    dict(p=-0.15), dict(p=0.5), dict(p=0.0), dict(p=-0.2, eps_mode="inside", eps=1e-3),
    dict(p=-0.4, momentum="heavy_ball"), dict(p=0.3, amsgrad=True, weight_decay=0.01),
    dict(p=0.6, decoupled_weight_decay=True, weight_decay=0.1), dict(p=-0.2, maximize=True),
    dict(p=0.2, update_norm="rms_matched"), dict(p=0.25, eps_mode="inside", bias_correction=False),
    dict(p=0.0, eps=0.0, momentum="heavy_ball", weight_decay=1e-2, betas=(0.0, 0.99)),
]  # fmt: skip


BACKENDS = [
    pytest.param("auto", marks=pytest.mark.slow, id="c-kernel"),
    pytest.param("compile", marks=pytest.mark.slow, id="compile"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", FUSED_CONFIGS, ids=str)
def test_fused_equals_foreach(config, backend):
    """fused=True (the C kernel, or the compiled kernel: compiled once per (amsgrad,
    update_norm), whatever the rest) equals the foreach path to 1e-12 relative over 50 float64
    steps."""
    a, b = train_pair(
        lambda ps: NSF(ps, lr=1e-3, fused=True, fused_backend=backend, **config),
        lambda ps: NSF(ps, lr=1e-3, foreach=True, **config),
        steps=50,
    )
    assert max_rel_diff(a, b) <= 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_equals_foreach_under_switching_schedule(backend):
    """A pulse-tidal p schedule (with amsgrad, heavy ball, weight decay) on both paths."""
    schedule = schedules.pulse_tidal(-0.05, 7, 0.25, -0.15, 5)
    make = lambda fused: lambda ps: NSF(  # noqa: E731
        ps, lr=1e-2, momentum="heavy_ball", weight_decay=5e-4, amsgrad=True, fused=fused,
        foreach=None if fused else True, fused_backend=backend,
    )  # fmt: skip
    sched = lambda opt: PScheduler(opt, schedule)  # noqa: E731
    a, b = train_pair(make(True), make(False), steps=50, schedulers=(sched, sched))
    assert max_rel_diff(a, b) <= 1e-12


def _dynamo_graphs() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_changing_p_every_step_never_recompiles(backend):
    """p (and lr) changing every step, through 0 and 1/2 exactly, on tensors of new sizes and a
    new optimizer: no recompilation (dynamo would raise), no new graph, no graph break; the C
    kernel is built once (the same library object throughout)."""
    from nsf import _cpu_kernel

    a = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(7, dtype=torch.float64, requires_grad=True)
    model = mlp()
    kw = dict(lr=1e-2, fused=True, fused_backend=backend)
    opt = NSF([{"params": model.parameters()}, {"params": [a, b], "p": 0.3}], **kw)

    def step(optimizer, params, t):
        for q in params:
            q.grad = torch.full_like(q, 0.01 * (t + 1)).sin()
        optimizer.step()

    params = [*model.parameters(), a, b]
    step(opt, params, 0)  # compiles, unless an earlier test did
    graphs = _dynamo_graphs()
    ps = [0.5, 0.0, *schedules.tidal(0.0, 0.4, 7)(np.arange(20)), 0.5, 0.0]
    other = NSF([torch.zeros(11, 2, dtype=torch.float64, requires_grad=True)], **kw)
    library = _cpu_kernel.library() if backend == "auto" else None
    with torch._dynamo.config.patch(error_on_recompile=True):
        for t, p in enumerate(ps):
            opt.param_groups[0]["p"], opt.param_groups[1]["p"] = float(p), float(-p)
            opt.param_groups[0]["lr"] = 1e-2 / (1 + t)
            step(opt, params, t)
            step(other, other.param_groups[0]["params"], t)
    assert len(ps) >= 20
    assert _dynamo_graphs() == graphs
    assert not torch._dynamo.utils.counters["graph_break"]
    assert all(torch.isfinite(q).all() for q in params)
    if backend == "auto":
        assert _cpu_kernel.library() is library


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_state_dict_round_trip(backend):
    """The fused path keeps the foreach path's state (same keys); a checkpoint taken from it
    resumes bit-identically, and the foreach path can take over from it."""

    def run(split=None, then_foreach=False):
        model = mlp(3)
        opt = NSF(model.parameters(), lr=1e-2, p=-0.15, amsgrad=True, fused=True,
                  fused_backend=backend)  # fmt: skip
        gen = torch.Generator().manual_seed(0)
        for i in range(12):
            if i == split:
                state = copy.deepcopy(opt.state_dict())
                opt = NSF(model.parameters())
                opt.load_state_dict(state)  # restores the hyperparameters, fused=True included
                if then_foreach:
                    opt.param_groups[0]["fused"] = False
            x = torch.randn(8, 6, generator=gen, dtype=torch.float64)
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
        return [q.detach() for q in model.parameters()], opt

    full, opt = run()
    state = opt.state_dict()
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert state["param_groups"][0]["fused"] is True
    assert state["param_groups"][0]["fused_backend"] == backend
    resumed, _ = run(split=5)
    for x, y in zip(full, resumed):
        assert torch.equal(x, y)
    assert max_rel_diff(full, run(split=5, then_foreach=True)[0]) <= 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_float32_matches_foreach(backend):
    """float32 on the CPU uses the kernel's own log2/exp2: within float32 rounding of the
    foreach path (a zero second moment: test_negative_p_with_zero_second_moment_is_finite)."""
    kw = dict(lr=1e-3, p=-0.15, momentum="heavy_ball", weight_decay=5e-4)
    a, b = train_pair(
        lambda ps: NSF(ps, fused=True, fused_backend=backend, **kw),
        lambda ps: NSF(ps, **kw),
        steps=30,
        schedulers=(lambda o: PScheduler(o, schedules.tidal(0.0, 0.3, 5)),) * 2,
        dtype=torch.float32,
    )
    assert max_rel_diff(a, b) <= 1e-5


@pytest.mark.parametrize(
    "backend", ["auto", pytest.param("compile", marks=pytest.mark.slow, id="compile")]
)
def test_fused_leaves_odd_tensors_to_the_foreach_path(backend):
    """Non-contiguous parameters, and on the compiled kernel single-element ones, are updated by
    the foreach path, exactly (nothing here is compiled or built)."""

    def make():
        torch.manual_seed(0)
        odd = [torch.randn(4, 6, dtype=torch.float64).t().requires_grad_()]
        if backend == "compile":
            odd.append(torch.randn(1, dtype=torch.float64, requires_grad=True))
        return odd

    a, b = make(), make()
    opt_a = NSF(a, p=-0.15, fused=True, fused_backend=backend)
    opt_b = NSF(b, p=-0.15, foreach=True)
    for t in range(5):
        for q in (*a, *b):
            q.grad = torch.full_like(q, 0.1 * (t + 1))
        opt_a.step()
        opt_b.step()
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_fused_and_foreach_together_are_refused():
    with pytest.raises(ValueError, match="fused=True and foreach=True"):
        NSF(mlp().parameters(), fused=True, foreach=True)


# ------------------------------------------------------ update_terms against the reference

TERM_CONFIGS = [
    dict(momentum=momentum, bias_correction=bc, amsgrad=amsgrad, eps_mode=eps_mode,
         update_norm=norm, maximize=maximize, p=p)
    for momentum in ("ema", "heavy_ball") for bc in (True, False) for amsgrad in (False, True)
    for eps_mode in ("outside", "inside") for norm in (None, "rms_matched")
    for maximize in (False, True) for p in (0.3,)
] + [dict(p=0.0), dict(p=0.0, eps_mode="inside"), dict(p=0.5), dict(p=-0.4, amsgrad=True),
     dict(p=0.0, update_norm="rms_matched"),
     dict(p=0.6, decoupled_weight_decay=True, weight_decay=0.1),
     dict(p=-0.2, weight_decay=0.05, momentum="heavy_ball")]  # fmt: skip


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("config", TERM_CONFIGS, ids=str)
def test_update_terms_match_reference(config, foreach):
    """NSF.update_terms gives the reference's m^, v^, denominator and step after every step, and
    theta_before - theta_after = lr * step (+ lr * lambda * theta_before, decoupled)."""
    lr, eps = 1e-2, 1e-3 if config.get("eps_mode") == "inside" else 1e-8
    kw = dict(betas=(0.9, 0.99), eps=eps, maximize=False) | config
    grads_fn, theta0 = quadratic_problem(seed=1, maximize=kw["maximize"])
    params = [torch.tensor(t, requires_grad=True) for t in theta0]
    opt = NSF(params, lr=lr, foreach=foreach, **kw)
    ref_theta, ref_states = [t.copy() for t in theta0], [State.zeros(t.shape) for t in theta0]
    for _ in range(6):
        before = [q.detach().clone() for q in params]
        for param, g in zip(params, grads_fn([q.detach().numpy() for q in params])):
            param.grad = torch.from_numpy(g)
        ref_grads = grads_fn(ref_theta)
        opt.step()
        for i, param in enumerate(params):
            ref_theta[i], expected = eq3_step(
                ref_theta[i], ref_grads[i], ref_states[i], lr=lr, **kw
            )
            terms = opt.update_terms(param)
            for name, value in terms._asdict().items():
                np.testing.assert_allclose(value.numpy(), getattr(expected, name), rtol=1e-11,
                                           atol=1e-14, err_msg=name)  # fmt: skip
            decay = lr * kw.get("weight_decay", 0.0) * before[i]
            drop = before[i] - param.detach()
            if kw.get("decoupled_weight_decay"):
                drop = drop - decay
            torch.testing.assert_close(drop, lr * terms.step, rtol=1e-12, atol=1e-15)


def test_update_terms_refuses_a_stranger_and_a_fresh_parameter():
    theta = torch.zeros(3, requires_grad=True)
    opt = NSF([theta])
    with pytest.raises(ValueError, match="no state"):
        opt.update_terms(theta)
    with pytest.raises(ValueError, match="not a parameter"):
        opt.update_terms(torch.zeros(3))
