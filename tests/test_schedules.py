"""p schedules: exact values at hand-computed steps, validation, pickling."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from nsf import NSF, PScheduler
from nsf.schedules import alternating, constant, pulse_tidal, tidal


def test_hand_computed_values():
    assert [constant(-0.15)(t) for t in (0, 7, 10**6)] == [-0.15] * 3
    s = tidal(0.0, 0.5, period=4)
    assert [round(s(t), 12) for t in range(5)] == [0.5, 0.0, -0.5, 0.0, 0.5]
    assert tidal(0.25, 0.25, 1.0, phase=-math.pi / 2)(0.25) == pytest.approx(0.5)  # sin form
    a = alternating(0.25, -0.15, every=200)
    assert [a(t) for t in (0, 199, 200, 399, 400)] == [0.25, 0.25, -0.15, -0.15, 0.25]
    pt = pulse_tidal(-0.05, 1000, 0.25, -0.15, 200)
    values = {t: pt(t) for t in (0, 999, 1000, 1199, 1200, 1399, 1400)}
    assert values == {0: -0.05, 999: -0.05, 1000: 0.25, 1199: 0.25, 1200: -0.15,
                      1399: -0.15, 1400: 0.25}  # fmt: skip
    assert pulse_tidal(-0.05, 0, 0.25, -0.15, 2)(0) == 0.25  # no pulse: the wave from t = 0


@pytest.mark.parametrize(
    "schedule",
    [
        constant(0.3),
        tidal(0.1, 0.4, 0.5, 0.3),
        alternating(0.25, -0.15, 3),
        pulse_tidal(-0.05, 4, 0.25, -0.15, 3),
    ],
    ids=repr,
)
def test_array_times_equal_scalar_times(schedule):
    """The simulations call schedules on arrays of float times; each entry equals the scalar."""
    t = np.linspace(0.0, 9.0, 37)
    out = schedule(t)
    assert isinstance(out, np.ndarray) and out.shape == t.shape
    assert np.array_equal(out, [schedule(float(x)) for x in t])
    assert isinstance(schedule(3), float)


def test_repr_reads_like_the_call_and_pickles():
    s = pulse_tidal(-0.05, 1000, 0.25, -0.15, 200)
    assert (
        repr(s) == "pulse_tidal(pulse_p=-0.05, pulse_steps=1000, high=0.25, low=-0.15, every=200.0)"
    )
    assert pickle.loads(pickle.dumps(s)) == s
    assert eval(repr(s), {"pulse_tidal": pulse_tidal}) == s


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: tidal(0, 0.5, period=0), "period"), (lambda: tidal(0, 0.5, period=-1), "period"),
        (lambda: alternating(0.25, -0.15, every=0), "every"),
        (lambda: pulse_tidal(-0.05, -1, 0.25, -0.15, 200), "pulse_steps"),
        (lambda: pulse_tidal(-0.05, 10, 0.25, -0.15, -5), "every"),
        (lambda: constant(float("nan")), "p"), (lambda: tidal(float("inf"), 0.1, 1), "p_mid"),
    ],
)  # fmt: skip
def test_bad_schedule_arguments_are_refused(make, named):
    with pytest.raises(ValueError, match=named):
        make()


def test_scheduler_writes_p_from_t_zero_and_round_trips():
    opt = NSF([torch.zeros(2, requires_grad=True)])
    sched = PScheduler(opt, alternating(0.25, -0.15, 2))
    assert sched.get_last_p() == [0.25] and sched.last_step == 0
    for _ in range(3):
        sched.step()
    assert sched.get_last_p() == [-0.15]
    state = sched.state_dict()
    fresh = PScheduler(opt, alternating(0.25, -0.15, 2))
    fresh.load_state_dict(state)
    assert fresh.last_step == 3 and opt.param_groups[0]["p"] == -0.15
    with pytest.raises(ValueError, match="saved with schedules"):
        PScheduler(opt, constant(0.0)).load_state_dict(state)


def test_scheduler_refuses_wrong_number_of_schedules():
    opt = NSF([{"params": [torch.zeros(1, requires_grad=True)]},
               {"params": [torch.zeros(1, requires_grad=True)]}])  # fmt: skip
    with pytest.raises(ValueError, match="3 schedules for 2 parameter groups"):
        PScheduler(opt, [constant(0.0)] * 3)


# --------------------------------------------------------------------------------------------
# One vocabulary: specs, learning-rate schedules, a scheduler for any key

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from nsf.schedules import (  # noqa: E402
    Scheduler,
    cosine,
    from_spec,
    multistep,
    stepped,
    to_spec,
    warmup,
)

_real = st.floats(-2, 2, allow_nan=False)
_len = st.floats(0.5, 500, allow_nan=False)
_steps = st.integers(1, 400)
_p = st.one_of(
    st.builds(constant, _real),
    st.builds(tidal, _real, _real, _len, _real),
    st.builds(alternating, _real, _real, _steps),
    st.builds(pulse_tidal, _real, st.integers(0, 500), _real, _real, _steps),
)
_lr = st.one_of(
    st.builds(cosine, _steps, st.floats(0, 1)),
    st.builds(multistep, st.lists(_steps, min_size=1, unique=True).map(sorted), st.floats(0.01, 1)),
)
_any = st.one_of(_p, _lr, st.builds(warmup, _steps, _lr), st.builds(stepped, _lr, _steps))


@given(_any)
def test_spec_round_trips_through_json(schedule):
    import json

    spec = to_spec(schedule)
    assert from_spec(spec) == schedule
    assert from_spec(json.loads(json.dumps(spec))) == schedule and to_spec(from_spec(spec)) == spec


@given(_p, st.integers(0, 2000))
def test_p_schedules_are_bounded_and_periodic(schedule, t):
    value = schedule(t)
    if isinstance(schedule, tidal):
        assert abs(value - schedule.p_mid) <= abs(schedule.p_amp) + 1e-12
        assert schedule(t + schedule.period) == pytest.approx(value, abs=1e-9)
    if isinstance(schedule, (alternating, pulse_tidal)):
        assert value in (schedule.high, schedule.low) or value == getattr(schedule, "pulse_p", None)
        start = getattr(schedule, "pulse_steps", 0)
        if t >= start:
            assert schedule(t + 2 * schedule.every) == value


def _old_lr_factor(spec, it, iters_per_epoch, epochs):
    """The learning-rate factor of the engine before the one vocabulary (nsf.engine.LRFactor),
    kept literally as the oracle of the new schedules."""
    if spec["per"] == "epoch":
        t, horizon = it // iters_per_epoch, epochs
    else:
        t, horizon = it, epochs * iters_per_epoch
    factor = 1.0
    if spec["type"] == "multistep":
        factor = spec["gamma"] ** sum(1 for m in spec["milestones"] if t >= m)
    elif spec["type"] == "cosine":
        final = spec["final_factor"]
        factor = final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(t, horizon) / horizon))
    if spec["warmup"] > 0:
        factor *= min(1.0, (t + 1) / spec["warmup"])
    return factor


@pytest.mark.parametrize("kind", ["constant", "cosine", "multistep"])
@pytest.mark.parametrize("per", ["epoch", "iteration"])
@pytest.mark.parametrize("w", [0, 3])
def test_lr_schedules_equal_the_old_formulas_bit_for_bit(kind, per, w):
    """Through a relative Scheduler on a real optimizer, as the training loop uses them."""
    ipe, epochs, base = 7, 12, 0.05
    spec = {"type": kind, "per": per, "warmup": w, "final_factor": 0.1, "milestones": [2, 5],
            "gamma": 0.2}  # fmt: skip
    horizon = epochs if per == "epoch" else epochs * ipe
    s = {"constant": constant(1.0), "cosine": cosine(horizon, 0.1),
         "multistep": multistep([2, 5], 0.2)}[kind]  # fmt: skip
    s = warmup(w, s) if w else s
    s = stepped(s, ipe) if per == "epoch" else s
    opt = NSF([torch.zeros(1, requires_grad=True)], lr=base)
    sched = Scheduler(opt, "lr", s, relative=True)
    for it in range(ipe * epochs + 3):
        assert opt.param_groups[0]["lr"] == base * _old_lr_factor(spec, it, ipe, epochs), it
        sched.step()


def test_scheduler_drives_any_key():
    opt = NSF([torch.zeros(1, requires_grad=True)], weight_decay=0.1)
    sched = Scheduler(opt, "weight_decay", multistep([2], gamma=0.5), relative=True)
    values = []
    for _ in range(4):
        values.append(opt.param_groups[0]["weight_decay"])
        sched.step()
    assert values == [0.1, 0.1, 0.05, 0.05]
    with pytest.raises(ValueError, match="'momentum_dampening'"):
        Scheduler(opt, "momentum_dampening", constant(0.0))


def test_bad_specs_are_refused_by_name():
    with pytest.raises(ValueError, match="'sine'"):
        from_spec({"kind": "sine"})
    with pytest.raises(ValueError, match=r"'0\.5'"):
        from_spec({"kind": "constant", "p": "0.5"})
    with pytest.raises(ValueError, match="milestones"):
        multistep([5, 2])
