r"""The setup of the Sec. 4.1 experiment: its stripped parameters, the grid, the basis, the target.

Paper Sec. 4.1.2 names the ingredients of its 1D regression (a grid on [0, 1], the sine modes
C(1) ... C(32), a broadband target, a step size, a fit window) but prints none of their values.
:class:`SpectralSetup` holds each of them, checked once when it is built, with the companion's
reconstruction as defaults. The target is :math:`y(x)=\sum_k A_k\sin(k\pi x)` with :math:`f_0=0`,
so the initial error is :math:`e_0=-y`; the modes are the sine basis
:math:`\phi_k=\sqrt2\sin(k\pi x)` of Eq. 9, orthonormalised on the grid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, Strict, model_validator
from pydantic.dataclasses import dataclass

from nsf.validation import CONFIG, Count, Finite, Positive

__all__ = [
    "AMPLITUDE_PROFILES",
    "Modes",
    "SpectralSetup",
    "amplitudes",
    "grid_points",
    "sine_basis",
    "target",
]

#: Target amplitude profiles A_k of y(x) = sum_k A_k sin(k pi x) (an assumption of the
#: companion). "linear" is a taper from 1 to 1/K over the K keys in their order.
AMPLITUDE_PROFILES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "k^-0.5": lambda k: k**-0.5,
    "1/k": lambda k: 1.0 / k,
    "linear": lambda k: np.linspace(1.0, 1.0 / len(k), len(k)),
}
AmplitudeProfile = Literal["k^-0.5", "1/k", "linear"]


def _distinct_modes(modes: tuple[int, ...]) -> tuple[int, ...]:
    if not modes:
        raise ValueError("it is empty; give mode numbers, e.g. [1, 2, 4, 8, 16, 32]")
    if len(set(modes)) != len(modes):
        raise ValueError(f"{list(modes)} repeats a mode; mode numbers must be distinct")
    return modes


#: A non-empty tuple of distinct sine-mode numbers k >= 1 (a list is accepted).
Modes = Annotated[
    tuple[Annotated[int, Strict(), Field(ge=1)], ...], AfterValidator(_distinct_modes)
]


@dataclass(frozen=True, config=CONFIG)
class SpectralSetup:
    """Every stripped parameter of Sec. 4.1.2; the defaults are the companion's reconstruction.

    Attributes:
        keys: recorded modes k (the table's columns C(1) ... C(32)).
        amps: target amplitudes A_k: a name of ``AMPLITUDE_PROFILES`` or one number per key
            (assumed; the initial predictor is f0 = 0, so e0 = -y).
        amp_scale: a factor on all A_k (assumed 1). For p != 0 Eq. 5 is not scale-invariant:
            scaling e by s scales G by s^2, so this moves every constant-p rate by s^(-2p).
        N: grid points; grid: ``"linspace"`` (endpoints included) or ``"midpoint"``.
        dt, steps: Euler time step and number of steps; the simulated time is steps * dt.
        c, eta: step constants; c*eta is the p = 0 decay rate, 0.400 in the paper's table.
        eps: stabiliser inside the power, (G + eps)^(-p) (Eq. 5).
        G_mode: ``"grad2"`` (G accumulates (c e)^2, "accumulates squared gradients") or
            ``"err2"`` (e^2).
        G_integral: True: G += dt * g^2 (an integral); False: G += g^2 (a sum over steps).
        integrator: ``"euler"`` or ``"exponential"``
            (``e *= exp(-dt c eta (G+eps)^(-p))``, exact for a frozen rate, unconditionally stable).
        record_every: steps between recorded envelopes ("every 10 steps", stated).
        fit_window: [t_a, t_b] of the regression, in simulated time t.
        fit_variable: regress ``log|a_k|`` on ``"t"`` or on the effective time ``"tau"`` (Eq. 8).
        tau_mode: ``"power_of_mean"`` (Eq. 8 as written, (Gbar+eps)^(-p)) or ``"mean_of_power"``
            (the spatial mean of (G+eps)^(-p)).

    A bad value raises ``pydantic.ValidationError`` (a ``ValueError``) naming the field and
    the value, before anything is simulated.
    """

    keys: Modes = (1, 2, 4, 8, 16, 32)
    amps: AmplitudeProfile | tuple[Finite, ...] = "k^-0.5"
    amp_scale: Positive = 1.0
    N: Count = 1024
    grid: Literal["linspace", "midpoint"] = "linspace"
    dt: Positive = 1e-3
    steps: Count = 500
    c: Positive = 2.0
    eta: Positive = 0.2
    eps: Positive = 1e-3
    G_mode: Literal["grad2", "err2"] = "grad2"
    G_integral: Annotated[bool, Strict()] = True
    integrator: Literal["euler", "exponential"] = "euler"
    record_every: Count = 10
    fit_window: tuple[Finite, Finite] = (0.0, 0.5)
    fit_variable: Literal["t", "tau"] = "t"
    tau_mode: Literal["power_of_mean", "mean_of_power"] = "power_of_mean"

    @model_validator(mode="after")
    def _consistent(self) -> SpectralSetup:
        if not isinstance(self.amps, str) and len(self.amps) != len(self.keys):
            raise ValueError(
                f"amps={list(self.amps)} is refused: give {len(self.keys)} numbers, "
                f"one per key {list(self.keys)}"
            )
        if 2 * max(self.keys) + 2 > self.N:
            raise ValueError(
                f"N={self.N} is refused: a grid must have > 2 * max(keys) = "
                f"{2 * max(self.keys)} points to resolve the highest mode; raise N"
            )
        if self.record_every > self.steps:
            raise ValueError(
                f"record_every={self.record_every} is refused: it exceeds steps={self.steps}"
            )
        t_a, t_b = self.fit_window
        if not t_a < t_b:
            raise ValueError(
                f"fit_window={list(self.fit_window)} is refused: give [t_a, t_b] with t_a < t_b"
            )
        if t_a < 0 or t_b > self.t_end * (1 + 1e-12):
            raise ValueError(
                f"fit_window={list(self.fit_window)} is refused: it lies outside the simulated "
                f"time [0, steps*dt] = [0, {self.t_end:g}]; raise steps to >= "
                f"{math.ceil(t_b / self.dt - 1e-9)} or shorten the window"
            )
        if np.count_nonzero(self.window_mask(self.record_times())) < 3:
            raise ValueError(
                f"fit_window={list(self.fit_window)} is refused: it holds fewer than 3 recorded "
                "points; widen it or lower record_every"
            )
        return self

    @property
    def t_end(self) -> float:
        """The simulated time steps * dt."""
        return self.steps * self.dt

    def record_times(self) -> np.ndarray:
        """Times t_n = n dt of the recorded envelopes, n = 0, record_every, ..., <= steps."""
        return np.arange(0, self.steps + 1, self.record_every) * self.dt

    def window_mask(self, t: np.ndarray, window: Sequence[float] | None = None) -> np.ndarray:
        """Which of the times ``t`` lie in ``window`` (default ``fit_window``), ends included."""
        t_a, t_b = self.fit_window if window is None else window
        tol = 1e-9 * self.dt
        return (t >= t_a - tol) & (t <= t_b + tol)

    @property
    def g_scale(self) -> float:
        """The factor s in ``G += s * e^2`` per step.

        c^2 (grad2) or 1 (err2), times dt if G_integral.
        """
        return (self.c**2 if self.G_mode == "grad2" else 1.0) * (
            self.dt if self.G_integral else 1.0
        )

    def replace(self, **changes: Any) -> SpectralSetup:
        """A copy with ``changes`` applied (and validated; an unknown name is refused)."""
        return dataclasses.replace(self, **changes)


def with_overrides(setup: SpectralSetup | None, overrides: Mapping[str, Any]) -> SpectralSetup:
    """``setup`` (default :class:`SpectralSetup`) with the fields in ``overrides`` changed."""
    setup = setup or SpectralSetup()
    return setup.replace(**overrides) if overrides else setup


def amplitudes(
    keys: Sequence[int] = (1, 2, 4, 8, 16, 32), amps: str | Sequence[float] = "k^-0.5"
) -> np.ndarray:
    """The target amplitudes A_k, one per key (``amps`` as in :class:`SpectralSetup`)."""
    k = np.asarray(keys, dtype=float)
    if isinstance(amps, str):
        return np.asarray(AMPLITUDE_PROFILES[amps](k), dtype=float)
    return np.asarray(amps, dtype=float)


def grid_points(N: int = 1024, grid: str = "linspace") -> np.ndarray:
    """x in [0, 1]: ``linspace(0, 1, N)`` or the midpoint grid (i + 1/2) / N."""
    if grid == "linspace":
        return np.linspace(0.0, 1.0, N)
    return (np.arange(N) + 0.5) / N


def sine_basis(
    keys: Sequence[int] = (1, 2, 4, 8, 16, 32),
    N: int = 1024,
    grid: str = "linspace",
    orthonormalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    r"""(x, Phi): the sine basis :math:`\phi_k=\sqrt2\sin(k\pi x)` on the grid, shape [N, K].

    Paper Eq. 9. Integrals are grid means, :math:`\langle u,v\rangle_N=\mathrm{mean}(uv)`. On
    ``linspace`` the raw Gram matrix is :math:`(1-1/N)I` (Remark 3's O(1/N)); with
    ``orthonormalize`` the columns are orthonormalised by QR (signs kept), so
    ``Phi.T @ Phi / N`` is the identity ("on the orthonormalized basis", Sec. 4.1.2).
    """
    x = grid_points(N, grid)
    phi = math.sqrt(2.0) * np.sin(np.pi * np.outer(x, np.asarray(keys, dtype=float)))
    if orthonormalize:
        q, r = np.linalg.qr(phi / math.sqrt(N))
        phi = q * np.sign(np.diag(r)) * math.sqrt(N)
    return x, phi


def target(setup: SpectralSetup | None = None, **overrides: Any) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): the target y(x) = sum_k A_k sin(k pi x) on the grid (Sec. 4.1.2; e0 = -y)."""
    s = with_overrides(setup, overrides)
    x = grid_points(s.N, s.grid)
    amps = s.amp_scale * amplitudes(s.keys, s.amps)
    return x, np.sin(np.pi * np.outer(x, np.asarray(s.keys, float))) @ amps
