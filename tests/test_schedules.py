"""p schedules (SPEC 1.10, T10): exact values at hand-computed steps, validation, pickling."""

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
