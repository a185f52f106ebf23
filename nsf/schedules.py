"""Schedules for the second-moment exponent p, and the scheduler that applies them.

A schedule is a plain function of the step: ``schedule(t) -> p``. It is called with an integer
iteration index by :class:`PScheduler` (training, paper Sec. 3.3 and Sec. 5.1) and with a float
time, or a NumPy array of times, by the continuous-time simulations (paper Sec. 4.1, Eqs. 6-7).
Every schedule is a small frozen dataclass, so it pickles, compares by value and has a ``repr``
that reads like the call that made it.

The four families (SPEC section 1.10):

=================  =====================================================================
``constant``       p(t) = p
``tidal``          p(t) = p_mid + p_amp * cos(2*pi*t/period + phase)   (Sec. 4.1, Eqs. 6-7)
``alternating``    p(t) = high if floor(t/every) is even else low      (Sec. 5.1, a square wave)
``pulse_tidal``    p(t) = pulse_p for t < pulse_steps, else alternating(t - pulse_steps)
=================  =====================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PScheduler", "alternating", "constant", "pulse_tidal", "tidal"]

Schedule = Callable[[Any], Any]


def _finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _positive(name: str, value: float) -> float:
    value = _finite(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}; it is a length of time")
    return value


def _as_output(t: Any, p: Any) -> Any:
    """A Python float for a scalar time, an array for an array of times."""
    return float(p) if np.ndim(t) == 0 else np.asarray(p, dtype=float)


class _Schedule:
    """Shared behaviour: the ``repr`` names the constructor, as in ``tidal(p_mid=0.0, ...)``."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({fields})"


@dataclass(frozen=True, repr=False)
class constant(_Schedule):  # noqa: N801  (named like the function it stands for)
    """p(t) = p for every t: the fixed-exponent optimizers of paper Sec. 3.3."""

    p: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _finite("p", self.p))

    def __call__(self, t: Any) -> Any:
        return _as_output(t, np.full(np.shape(t), self.p))


@dataclass(frozen=True, repr=False)
class tidal(_Schedule):  # noqa: N801
    """Cosine ("tidal") schedule of paper Sec. 4.1, Eqs. 6-7 (reconstructed, SPEC section 4.2).

    p(t) = p_mid + p_amp * cos(2*pi*t / period + phase)

    A schedule between ``p_min`` and ``p_max`` has p_mid = (p_max + p_min)/2 and
    p_amp = (p_max - p_min)/2. ``period`` is in the unit of t (iterations or simulated time).
    """

    p_mid: float
    p_amp: float
    period: float
    phase: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "p_mid", _finite("p_mid", self.p_mid))
        object.__setattr__(self, "p_amp", _finite("p_amp", self.p_amp))
        object.__setattr__(self, "period", _positive("period", self.period))
        object.__setattr__(self, "phase", _finite("phase", self.phase))

    def __call__(self, t: Any) -> Any:
        angle = 2.0 * np.pi * np.asarray(t, dtype=float) / self.period + self.phase
        return _as_output(t, self.p_mid + self.p_amp * np.cos(angle))


@dataclass(frozen=True, repr=False)
class alternating(_Schedule):  # noqa: N801
    """Square wave of paper Sec. 5.1: ``high`` for ``every`` steps, then ``low``, and so on.

    p(t) = high if floor(t / every) is even else low. The paper states the switch "every 200
    iterations"; the values 0.25 / -0.15 are reconstructed from a summary (SPEC section 1.10).
    """

    high: float
    low: float
    every: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "high", _finite("high", self.high))
        object.__setattr__(self, "low", _finite("low", self.low))
        object.__setattr__(self, "every", _positive("every", self.every))

    def __call__(self, t: Any) -> Any:
        phase = np.floor(np.asarray(t, dtype=float) / self.every) % 2
        return _as_output(t, np.where(phase == 0, self.high, self.low))


@dataclass(frozen=True, repr=False)
class pulse_tidal(_Schedule):  # noqa: N801
    """Pulse-tidal schedule of paper Sec. 5.1 (SPEC section 1.10).

    p(t) = pulse_p                              for t < pulse_steps
    p(t) = alternating(high, low, every)(t - pulse_steps)   otherwise

    so the square wave restarts at its ``high`` phase when the pulse ends.
    """

    pulse_p: float
    pulse_steps: float
    high: float
    low: float
    every: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "pulse_p", _finite("pulse_p", self.pulse_p))
        steps = _finite("pulse_steps", self.pulse_steps)
        if steps < 0:
            raise ValueError(f"pulse_steps must be >= 0, got {steps!r}; use 0 for no pulse")
        object.__setattr__(self, "high", _finite("high", self.high))
        object.__setattr__(self, "low", _finite("low", self.low))
        object.__setattr__(self, "every", _positive("every", self.every))

    def __call__(self, t: Any) -> Any:
        t_arr = np.asarray(t, dtype=float)
        after = alternating(self.high, self.low, self.every)(t_arr - self.pulse_steps)
        return _as_output(t, np.where(t_arr < self.pulse_steps, self.pulse_p, after))


class PScheduler:
    """Writes ``schedule(t)`` into the ``"p"`` of every parameter group of an optimizer.

    Used like a learning-rate scheduler (SPEC section 1.10)::

        sched = PScheduler(opt, pulse_tidal(-0.05, 1000, 0.25, -0.15, 200))
        for batch in loader:
            loss(batch).backward()
            opt.step()
            sched.step()

    t = 0 at construction (so the first optimizer step uses ``schedule(0)``) and t += 1 at each
    :meth:`step`. ``schedule`` may be one schedule for all groups or a sequence, one per group.
    p is written as a Python float, so a schedule that changes p every step never synchronises
    with the device. It does not subclass ``torch.optim.lr_scheduler.LRScheduler``, which
    hard-codes the ``"lr"`` key.
    """

    def __init__(self, optimizer: Any, schedule: Schedule | Sequence[Schedule]) -> None:
        groups = optimizer.param_groups
        schedules = list(schedule) if isinstance(schedule, Sequence) else [schedule] * len(groups)
        if len(schedules) != len(groups):
            raise ValueError(
                f"got {len(schedules)} schedules for {len(groups)} parameter groups; "
                "pass one schedule, or one per group"
            )
        for s in schedules:
            if not callable(s):
                raise ValueError(f"a schedule must be callable as schedule(t) -> p, got {s!r}")
        self.optimizer = optimizer
        self.schedules = schedules
        self.last_step = 0
        self._apply()

    def _apply(self) -> None:
        for group, schedule in zip(self.optimizer.param_groups, self.schedules, strict=True):
            group["p"] = float(schedule(self.last_step))

    def step(self) -> None:
        """Advance t by one and write the new p; call after ``optimizer.step()``."""
        self.last_step += 1
        self._apply()

    def get_last_p(self) -> list[float]:
        """The p of each parameter group, as written at the current t."""
        return [group["p"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The step counter and the schedules' reprs (plain data, loadable with weights_only)."""
        return {"last_step": self.last_step, "schedules": [repr(s) for s in self.schedules]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the step counter; refuses a state saved under different schedules."""
        saved = list(state_dict["schedules"])
        current = [repr(s) for s in self.schedules]
        if saved != current:
            raise ValueError(
                f"this state was saved with schedules {saved}, but this scheduler has {current}; "
                "build the scheduler with the same schedules before loading"
            )
        self.last_step = int(state_dict["last_step"])
        self._apply()

    def __repr__(self) -> str:
        return f"PScheduler(t={self.last_step}, schedules={self.schedules!r})"
