"""Schedules of optimizer hyperparameters, and the scheduler that writes them into an optimizer.

A schedule is a plain function of the step: ``schedule(t) -> value``, as optax's schedules are.
Every schedule is a small frozen dataclass, so it pickles, compares by value, has a ``repr``
that reads like the call that made it, and turns into plain data and back with
:func:`to_spec` / :func:`from_spec` (``{"kind": "cosine", "steps": 100, ...}``; nested schedules
become nested dicts), which is how a training config states its schedules.

The exponent p (paper Sec. 3.3, Sec. 4.1 Eqs. 6-7, Sec. 5.1). These also take a float time or a
NumPy array of times (the continuous-time simulations of Sec. 4):

=================  =====================================================================
``constant``       p(t) = p
``tidal``          p(t) = p_mid + p_amp * cos(2*pi*t/period + phase)   (Sec. 4.1, Eqs. 6-7)
``alternating``    p(t) = high if floor(t/every) is even else low      (Sec. 5.1, a square wave)
``pulse_tidal``    p(t) = pulse_p for t < pulse_steps, else alternating(t - pulse_steps)
=================  =====================================================================

The learning rate (paper Sec. 3.3 and 5.1; the step is an integer):

=================  =====================================================================
``cosine``         f(t) = value * (final + (1 - final) * (1 + cos(pi * min(t, steps)/steps))/2)
``multistep``      f(t) = value * gamma ** (number of milestones m with t >= m)
``warmup``         f(t) = schedule(t) * min(1, (t + 1)/steps)
``stepped``        f(t) = schedule(t // every)    (a schedule counted in epochs of ``every`` steps)
=================  =====================================================================

``constant`` serves the learning rate too. The ``value`` of ``cosine`` and ``multistep``
defaults to 1, so they also serve as multipliers of a base value (``Scheduler(...,
relative=True)``, as ``torch.optim.lr_scheduler.LambdaLR`` multiplies the initial lr).

:class:`Scheduler` writes any schedule into any key of an optimizer's parameter groups
(``"p"``, ``"lr"``, a beta: torch's feature request #83159); :class:`PScheduler` is the one for p.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "KINDS",
    "PScheduler",
    "Scheduler",
    "alternating",
    "constant",
    "cosine",
    "from_spec",
    "multistep",
    "pulse_tidal",
    "stepped",
    "tidal",
    "to_spec",
    "warmup",
]

Schedule = Callable[[Any], Any]


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r} is not a number")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return value


def _positive(name: str, value: Any) -> float:
    value = _number(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}; it is a length of time")
    return value


def _count(name: str, value: Any, minimum: int = 1) -> int:
    """A whole number of steps >= ``minimum``; 1000.0 is read as 1000 (one config, one hash)."""
    number = _number(name, value)
    if not number.is_integer() or number < minimum:
        raise ValueError(f"{name}={value!r} must be a whole number >= {minimum}")
    return int(number)


def _schedule(name: str, value: Any) -> Schedule:
    if not callable(value):
        raise ValueError(f"{name}={value!r} must be a schedule, callable as schedule(t)")
    return value


def _as_output(t: Any, p: Any) -> Any:
    """A Python float for a scalar time, an array for an array of times."""
    return float(p) if np.ndim(t) == 0 else np.asarray(p, dtype=float)


class _Schedule:
    """Shared behaviour: ``__post_init__`` stores checked values into the frozen fields. The
    dataclass ``repr`` names the constructor, as in ``tidal(p_mid=0.0, ...)``."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)


@dataclass(frozen=True)
class constant(_Schedule):  # noqa: N801  (named like the function it stands for)
    """p(t) = p for every t: the fixed-exponent optimizers of paper Sec. 3.3 (or a fixed lr)."""

    p: float

    def __post_init__(self) -> None:
        self._set("p", _number("p", self.p))

    def __call__(self, t: Any) -> Any:
        return _as_output(t, np.full(np.shape(t), self.p))


@dataclass(frozen=True)
class tidal(_Schedule):  # noqa: N801
    """Cosine ("tidal") schedule of paper Sec. 4.1, Eqs. 6-7 (reconstructed; book page "How the
    paper was reconstructed: chapter 03").

    p(t) = p_mid + p_amp * cos(2*pi*t / period + phase)

    A schedule between ``p_min`` and ``p_max`` has p_mid = (p_max + p_min)/2 and
    p_amp = (p_max - p_min)/2. ``period`` is in the unit of t (iterations or simulated time).
    """

    p_mid: float
    p_amp: float
    period: float
    phase: float = 0.0

    def __post_init__(self) -> None:
        self._set("p_mid", _number("p_mid", self.p_mid))
        self._set("p_amp", _number("p_amp", self.p_amp))
        self._set("period", _positive("period", self.period))
        self._set("phase", _number("phase", self.phase))

    def __call__(self, t: Any) -> Any:
        angle = 2.0 * np.pi * np.asarray(t, dtype=float) / self.period + self.phase
        return _as_output(t, self.p_mid + self.p_amp * np.cos(angle))


@dataclass(frozen=True)
class alternating(_Schedule):  # noqa: N801
    """Square wave of paper Sec. 5.1: ``high`` for ``every`` steps, then ``low``, and so on.

    p(t) = high if floor(t / every) is even else low. The paper states the switch "every 200
    iterations"; the values 0.25 / -0.15 come only from a third-party summary of the paper
    (book page "How the paper was reconstructed: chapter 06").
    """

    high: float
    low: float
    every: float

    def __post_init__(self) -> None:
        self._set("high", _number("high", self.high))
        self._set("low", _number("low", self.low))
        self._set("every", _positive("every", self.every))

    def __call__(self, t: Any) -> Any:
        phase = np.floor(np.asarray(t, dtype=float) / self.every) % 2
        return _as_output(t, np.where(phase == 0, self.high, self.low))


@dataclass(frozen=True)
class pulse_tidal(_Schedule):  # noqa: N801
    """Pulse-tidal schedule of paper Sec. 5.1 (book page "How the paper was reconstructed:
    chapter 06").

    p(t) = pulse_p                              for t < pulse_steps
    p(t) = alternating(high, low, every)(t - pulse_steps)   otherwise

    so the square wave restarts at its ``high`` phase when the pulse ends. A whole number of
    ``pulse_steps`` is kept as an int (1000 and 1000.0 are one schedule, with one spec).
    """

    pulse_p: float
    pulse_steps: float
    high: float
    low: float
    every: float

    def __post_init__(self) -> None:
        self._set("pulse_p", _number("pulse_p", self.pulse_p))
        steps = _number("pulse_steps", self.pulse_steps)
        if steps < 0:
            raise ValueError(f"pulse_steps must be >= 0, got {steps!r}; use 0 for no pulse")
        self._set("pulse_steps", int(steps) if steps.is_integer() else steps)
        self._set("high", _number("high", self.high))
        self._set("low", _number("low", self.low))
        self._set("every", _positive("every", self.every))

    def __call__(self, t: Any) -> Any:
        t_arr = np.asarray(t, dtype=float)
        after = alternating(self.high, self.low, self.every)(t_arr - self.pulse_steps)
        return _as_output(t, np.where(t_arr < self.pulse_steps, self.pulse_p, after))


@dataclass(frozen=True)
class cosine(_Schedule):  # noqa: N801
    """Cosine annealing from ``value`` to ``value * final_factor`` over ``steps`` steps, then flat.

    f(t) = value * (final_factor + (1 - final_factor) * (1 + cos(pi * min(t, steps) / steps)) / 2)

    (``optax.cosine_decay_schedule`` with alpha = final_factor). The learning-rate option of the
    training runs of paper Sec. 3.3 and 5.1 [assumed].
    """

    steps: int
    final_factor: float = 0.0
    value: float = 1.0

    def __post_init__(self) -> None:
        self._set("steps", _count("steps", self.steps))
        final = _number("final_factor", self.final_factor)
        if not 0.0 <= final <= 1.0:
            raise ValueError(f"final_factor={final!r} must lie in [0, 1]")
        self._set("final_factor", final)
        self._set("value", _number("value", self.value))

    def __call__(self, t: int) -> float:
        final = self.final_factor
        shape = 0.5 * (1.0 + math.cos(math.pi * min(t, self.steps) / self.steps))
        return self.value * (final + (1.0 - final) * shape)


@dataclass(frozen=True)
class multistep(_Schedule):  # noqa: N801
    """Step decay: ``value``, multiplied by ``gamma`` at each milestone passed.

    f(t) = value * gamma ** (number of milestones m with t >= m)

    (``torch.optim.lr_scheduler.MultiStepLR``). The default gamma 0.2 is the x0.2 at epochs
    60/120/160 common in CIFAR training (assumed: paper Sec. 3.3 prints no schedule; book page
    "How the paper was reconstructed: chapter 02").
    """

    milestones: tuple[int, ...]
    gamma: float = 0.2
    value: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.milestones, (str, bytes)) or not isinstance(self.milestones, Sequence):
            raise ValueError(f"milestones={self.milestones!r} must be a sequence of steps")
        milestones = tuple(_count("milestones", m) for m in self.milestones)
        if not milestones or list(milestones) != sorted(set(milestones)):
            raise ValueError(
                f"milestones={list(self.milestones)!r} must be increasing positive whole numbers"
            )
        self._set("milestones", milestones)
        self._set("gamma", _positive("gamma", self.gamma))
        self._set("value", _number("value", self.value))

    def __call__(self, t: int) -> float:
        return self.value * self.gamma ** sum(1 for m in self.milestones if t >= m)


@dataclass(frozen=True)
class warmup(_Schedule):  # noqa: N801
    """A linear warm-up over the first ``steps`` steps in front of ``schedule``.

    f(t) = schedule(t) * min(1, (t + 1) / steps)
    """

    steps: int
    schedule: Schedule = constant(1.0)

    def __post_init__(self) -> None:
        self._set("steps", _count("steps", self.steps))
        self._set("schedule", _schedule("schedule", self.schedule))

    def __call__(self, t: int) -> float:
        return self.schedule(t) * min(1.0, (t + 1) / self.steps)


@dataclass(frozen=True)
class stepped(_Schedule):  # noqa: N801
    """``schedule`` counted in blocks of ``every`` steps: f(t) = schedule(t // every).

    A schedule stated in epochs, evaluated at iteration t: ``every`` = iterations per epoch
    (the learning rate then changes between epochs only, as an lr scheduler stepped per epoch).
    """

    schedule: Schedule
    every: int

    def __post_init__(self) -> None:
        self._set("schedule", _schedule("schedule", self.schedule))
        self._set("every", _count("every", self.every))

    def __call__(self, t: int) -> float:
        return self.schedule(t // self.every)


#: Every schedule by the name a spec gives as its ``"kind"``.
KINDS: dict[str, type] = {
    cls.__name__: cls
    for cls in (constant, tidal, alternating, pulse_tidal, cosine, multistep, warmup, stepped)
}


def to_spec(schedule: Schedule) -> dict[str, Any]:
    """``schedule`` as plain JSON-ready data: ``{"kind": name, **fields}``, nested schedules as
    nested specs, tuples as lists. :func:`from_spec` inverts it."""
    if type(schedule) not in KINDS.values():
        raise ValueError(f"{schedule!r} is not one of the schedules {tuple(KINDS)}")
    spec: dict[str, Any] = {"kind": type(schedule).__name__}
    for f in dataclasses.fields(schedule):
        value = getattr(schedule, f.name)
        if isinstance(value, _Schedule):
            value = to_spec(value)
        elif isinstance(value, tuple):
            value = list(value)
        spec[f.name] = value
    return spec


def from_spec(spec: Mapping[str, Any]) -> Schedule:
    """The schedule a spec describes: ``{"kind": K, **fields}`` with K one of :data:`KINDS`.

    Fields left out take the schedule's defaults; an unknown kind, an unknown or missing field
    or a value that is not a number raises ``ValueError`` naming it. Times are in steps. The
    Sec. 5.1 schedule is ``{"kind": "pulse_tidal", "pulse_p": -0.05, "pulse_steps": 1000,
    "high": 0.25, "low": -0.15, "every": 200}``.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"a schedule spec must be a mapping with a 'kind', got {spec!r}")
    fields = dict(spec)
    kind = fields.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"schedule kind={kind!r} is not one of {tuple(KINDS)}")
    cls = KINDS[kind]
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise ValueError(f"schedule {kind!r} got unknown fields {unknown}; its fields: {names}")
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    missing = [n for n in required if n not in fields]
    if missing:
        raise ValueError(f"schedule {kind!r} is missing {missing}; its fields: {names}")
    if isinstance(fields.get("schedule"), Mapping):
        fields["schedule"] = from_spec(fields["schedule"])
    try:
        return cls(**fields)
    except ValueError as error:
        raise ValueError(f"schedule {kind!r}: {error}") from None


class Scheduler:
    """Writes ``schedule(t)`` into ``group[key]`` of every parameter group of an optimizer.

    Any hyperparameter a group holds can be scheduled: ``"p"``, ``"lr"``, ``"weight_decay"``,
    ``"betas"`` is a pair and is not (torch's feature request #83159 asks for this; torch's
    ``LRScheduler`` hard-codes ``"lr"``). Used like an lr scheduler::

        lr = Scheduler(opt, "lr", cosine(steps=1000), relative=True)
        for batch in loader:
            loss(batch).backward()
            opt.step()
            lr.step()

    t = 0 at construction (so the first optimizer step uses ``schedule(0)``) and t += 1 at each
    :meth:`step`. ``schedule`` may be one schedule for all groups or a sequence, one per group.
    With ``relative=True`` the group's value at construction is kept as
    ``group["initial_<key>"]`` and the scheduler writes ``initial * schedule(t)``, as
    ``LambdaLR`` does. Values are written as Python floats, so a schedule that changes every
    step never synchronises with the device. The state is the step counter alone: a schedule
    is a function of the step.
    """

    def __init__(
        self,
        optimizer: Any,
        key: str,
        schedule: Schedule | Sequence[Schedule],
        *,
        relative: bool = False,
    ) -> None:
        groups = optimizer.param_groups
        schedules = list(schedule) if isinstance(schedule, Sequence) else [schedule] * len(groups)
        if len(schedules) != len(groups):
            raise ValueError(
                f"got {len(schedules)} schedules for {len(groups)} parameter groups; "
                "pass one schedule, or one per group"
            )
        for s in schedules:
            if not callable(s):
                raise ValueError(f"a schedule must be callable as schedule(t), got {s!r}")
        for group in groups:
            if key not in group:
                raise ValueError(f"the parameter groups have no {key!r}; they have {list(group)}")
            if relative:
                group.setdefault(f"initial_{key}", group[key])
        self.optimizer = optimizer
        self.key = key
        self.relative = relative
        self.schedules = schedules
        self.last_step = 0
        self._apply()

    def _apply(self) -> None:
        for group, schedule in zip(self.optimizer.param_groups, self.schedules, strict=True):
            value = schedule(self.last_step)
            if self.relative:
                value = group[f"initial_{self.key}"] * value
            group[self.key] = float(value)

    def step(self) -> None:
        """Advance t by one and write the new values; call after ``optimizer.step()``."""
        self.last_step += 1
        self._apply()

    def get_last_value(self) -> list[float]:
        """The value of each parameter group, as written at the current t."""
        return [group[self.key] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The step counter and the schedules' reprs (plain data, loadable with weights_only)."""
        return {"last_step": self.last_step, "schedules": [repr(s) for s in self.schedules]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
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
        return f"Scheduler({self.key!r}, t={self.last_step}, schedules={self.schedules!r})"


class PScheduler(Scheduler):
    """The :class:`Scheduler` of the exponent p (paper Sec. 3.3 and 5.1).

    Used like a learning-rate scheduler::

        sched = PScheduler(opt, pulse_tidal(-0.05, 1000, 0.25, -0.15, 200))
        for batch in loader:
            loss(batch).backward()
            opt.step()
            sched.step()
    """

    def __init__(self, optimizer: Any, schedule: Schedule | Sequence[Schedule]) -> None:
        super().__init__(optimizer, "p", schedule)

    def get_last_p(self) -> list[float]:
        """The p of each parameter group, as written at the current t."""
        return self.get_last_value()

    def __repr__(self) -> str:
        return f"PScheduler(t={self.last_step}, schedules={self.schedules!r})"
