r"""The simulation of Eq. 5 (paper Sec. 4.1.1-4.1.2), all schedules of a table at once.

On :math:`x\in[0,1]` the pointwise error :math:`e(x,t)=f(x,t)-y(x)` of a regression with uniform
density evolves by a locality-modulated step without momentum,

.. math::

    \partial_t e = -c\,\eta\,\big(G(x,t)+\epsilon\big)^{-p(t)}\,e, \qquad
    G(x,t)=\int_0^t \big(c\,e(x,s)\big)^2\,ds \quad\text{(Eq. 5)}

where G is the cumulative local energy ("accumulates squared gradients"). It is integrated by
explicit Euler,

.. math::

    G_{n+1} = G_n + dt\,(c\,e_n)^2, \qquad
    e_{n+1} = e_n - dt\,\eta\,(G_{n+1}+\epsilon)^{-p(t_n)}\,c\,e_n ,

for every schedule of a table as one array of shape ``[n_schedules, N]``: there is no Python loop
over schedules. A step that cannot be shown stable is refused before anything is simulated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nsf.spectral.setup import SpectralSetup, sine_basis, target, with_overrides

__all__ = ["SpectralRun", "UnstableStepError", "simulate", "stability_rate_bound"]


class UnstableStepError(ValueError):
    """The explicit Euler step cannot be shown stable (see :func:`stability_rate_bound`)."""


def _schedule_matrix(schedules: Mapping[str, Callable], times: np.ndarray) -> np.ndarray:
    """P[s, n] = schedule_s(times[n]); a schedule that is not vectorised is called per float t."""
    if not isinstance(schedules, Mapping) or len(schedules) == 0:
        raise ValueError(
            f"schedules={schedules!r} is refused: give a non-empty mapping name -> p schedule"
        )
    rows = []
    for name, sched in schedules.items():
        if not callable(sched):
            raise ValueError(
                f"schedules[{name!r}]={sched!r} is refused: a schedule must be callable as p(t)"
            )
        try:
            row = np.asarray(sched(times), dtype=float)
        except Exception:  # a schedule written for scalars only
            row = np.array([float(sched(float(t))) for t in times])
        if row.shape != times.shape:
            row = np.array([float(sched(float(t))) for t in times])
        if not np.all(np.isfinite(row)):
            raise ValueError(f"schedules[{name!r}]={sched!r} is refused: it returns a non-finite p")
        rows.append(row)
    return np.stack(rows)


def stability_rate_bound(setup: SpectralSetup, p: np.ndarray, e0_max: float) -> float:
    r"""An upper bound on the local rate :math:`c\eta(G+\epsilon)^{-p}` over the whole run.

    While every Euler factor :math:`1-dt\,r` lies in (0, 1], :math:`|e(x,t)|\le|e_0(x)|`, so
    :math:`0\le G\le G_{\max}=s\,n\,e_{0,\max}^2` with s the per-step G increment factor
    (:attr:`SpectralSetup.g_scale`) and n the number of steps. As :math:`z^{-p}` is monotone in
    z, the rate is at most :math:`c\eta\max_p\max(\epsilon^{-p},(G_{\max}+\epsilon)^{-p})`
    (:math:`\epsilon^{-p}` binds for p > 0, :math:`G_{\max}` for p < 0). If dt times this bound
    is < 1, the assumption holds by induction, so the explicit step is stable and sign-preserving.
    """
    g_max = setup.g_scale * setup.steps * float(e0_max) ** 2
    p = np.asarray(p, dtype=float)
    bound = np.maximum(setup.eps ** (-p), (g_max + setup.eps) ** (-p))
    return float(setup.c * setup.eta * bound.max())


def _check_stability(setup: SpectralSetup, P: np.ndarray, e0: np.ndarray) -> None:
    if setup.integrator != "euler":
        return
    rate = stability_rate_bound(setup, P, np.abs(e0).max())
    if setup.dt * rate >= 1.0:
        raise UnstableStepError(
            f"dt={setup.dt!r} is refused: "
            f"the explicit Euler step is unstable: dt * c * eta * max (G+eps)^(-p) can reach "
            f"{setup.dt * rate:.3g} >= 1 (the rate bound {rate:.4g} comes from eps={setup.eps:g}, "
            f"p in [{P.min():g}, {P.max():g}]); use dt < {1 / rate:.3g}, a larger eps, or "
            "integrator='exponential'",
        )


@dataclass(frozen=True)
class SpectralRun:
    """One batched simulation. Leading axis s indexes the schedules (``names``).

    Attributes:
        setup: the :class:`SpectralSetup`; names: schedule names; keys: recorded modes.
        x, basis: grid [N] and orthonormalised basis [N, K].
        t: record times [R]; p: p(t_n) per step [S, steps].
        a: signed modal coefficients a_k(t) [S, R, K]; ``envelope`` is ``|a|``.
        tau: effective time of Eq. 8 (``setup.tau_mode``) at the record times [S, R].
        G_mean: spatial mean of G at the record times [S, R].
        mkk_integral: int_0^t M_kk(s) ds (Eq. 9's diagonal) at the record times [S, R, K].
        G_final, e_final: G and e at t = steps * dt [S, N].
    """

    setup: SpectralSetup
    names: tuple[str, ...]
    keys: tuple[int, ...]
    x: np.ndarray
    basis: np.ndarray
    t: np.ndarray
    p: np.ndarray
    a: np.ndarray
    tau: np.ndarray
    G_mean: np.ndarray
    mkk_integral: np.ndarray
    G_final: np.ndarray
    e_final: np.ndarray

    @property
    def envelope(self) -> np.ndarray:
        """``|a_k(t)|`` [S, R, K], the envelopes of Fig. 3."""
        return np.abs(self.a)


def simulate(
    schedules: Mapping[str, Callable],
    initial_error: np.ndarray | None = None,
    setup: SpectralSetup | None = None,
    *,
    track_theory: bool = True,
    float32_rate: bool = True,
    **overrides: Any,
) -> SpectralRun:
    r"""Integrate Eq. 5 for every schedule at once and record the mode coefficients.

    Paper Sec. 4.1.2: ``e`` and ``G`` are arrays [S, N] for the S schedules;
    per step, :math:`G \mathrel{+}= s\,e^2` (s = :attr:`SpectralSetup.g_scale`), then
    :math:`e \leftarrow e - dt\,c\eta\,(G+\epsilon)^{-p(t_n)}e` (Euler) or
    :math:`e \leftarrow e\,\exp(-dt\,c\eta\,(G+\epsilon)^{-p(t_n)})` (exponential). Every
    ``record_every`` steps :math:`a_k=\langle e,\phi_k\rangle_N` is recorded, together with the
    effective time :math:`\tau` of Eq. 8 and :math:`\int_0^t M_{kk}` of Eq. 9 (left Riemann sums
    over the steps).

    Args:
        schedules: name -> p(t) (e.g. :func:`table_schedules`); called once on all step times.
        initial_error: e0 on the grid, [N] or [S, N]; default -y (f0 = 0).
        setup, overrides: a :class:`SpectralSetup` and/or its fields (keyword arguments).
        track_theory: accumulate tau and int M_kk (about 15 % of the time); False leaves them NaN
            (a fit in tau then refuses).
        float32_rate: evaluate the factor (G+eps)^(-p) = exp(-p log(G+eps)) in float32, where
            log/exp are ~3x faster; its relative error is < 1e-6 (kappa moves by < 1e-5) and it is
            exactly 1 at p = 0. Everything else, G and e included, is float64.

    Raises:
        ValueError: before simulating, for a bad setup, an empty or non-callable schedule set, or
            an Euler step that :func:`stability_rate_bound` cannot prove stable.
    """
    s = with_overrides(setup, overrides)
    step_times = np.arange(s.steps) * s.dt
    P = _schedule_matrix(schedules, step_times)
    n_sched = P.shape[0]
    if initial_error is None:
        e0 = -target(s)[1]
    else:
        e0 = np.asarray(initial_error, dtype=float)
        if e0.shape not in ((s.N,), (n_sched, s.N)) or not np.all(np.isfinite(e0)):
            raise ValueError(
                f"initial_error=array{e0.shape} is refused: give finite values of shape "
                f"({s.N},) or ({n_sched}, {s.N})"
            )
    _check_stability(s, P, e0)
    x, basis = sine_basis(s.keys, s.N, s.grid)  # nothing is simulated before this line

    e = np.array(np.broadcast_to(e0, (n_sched, s.N)), dtype=float)
    G = np.zeros_like(e)
    w = np.empty_like(e)
    w_fast = np.empty(e.shape, dtype=np.float32) if float32_rate else w
    P_fast = P.astype(w_fast.dtype)
    basis2 = basis**2 / s.N
    basis_mean = basis / s.N
    rate = s.dt * s.c * s.eta
    n_rec = s.steps // s.record_every + 1
    a = np.empty((n_sched, n_rec, len(s.keys)))
    tau = np.empty((n_sched, n_rec))
    G_mean = np.empty((n_sched, n_rec))
    mkk = np.empty((n_sched, n_rec, len(s.keys)))
    tau_acc = np.zeros(n_sched) if track_theory else np.full(n_sched, np.nan)
    mkk_acc = (
        np.zeros((n_sched, len(s.keys)))
        if track_theory
        else np.full((n_sched, len(s.keys)), np.nan)
    )
    for n in range(s.steps + 1):
        if n % s.record_every == 0:
            r = n // s.record_every
            a[:, r] = e @ basis_mean
            tau[:, r] = tau_acc
            G_mean[:, r] = G.mean(axis=1) if track_theory else np.nan
            mkk[:, r] = mkk_acc
        if n == s.steps:
            break
        np.multiply(e, e, out=w)
        w *= s.g_scale
        G += w
        np.add(G, s.eps, out=w_fast, casting="same_kind")
        np.log(w_fast, out=w_fast)
        w_fast *= -P_fast[:, n, None]
        np.exp(w_fast, out=w_fast)  # (G + eps)^(-p)
        if float32_rate:
            w[...] = w_fast
        if track_theory:
            mkk_acc += s.dt * (w @ basis2)
            if s.tau_mode == "mean_of_power":
                tau_acc += s.dt * w.mean(axis=1)
            else:
                tau_acc += s.dt * (G.mean(axis=1) + s.eps) ** (-P[:, n])
        if s.integrator == "euler":
            w *= rate
            w *= e
            e -= w
        else:
            w *= -rate
            np.exp(w, out=w)
            e *= w
    return SpectralRun(
        setup=s,
        names=tuple(schedules),
        keys=s.keys,
        x=x,
        basis=basis,
        t=s.record_times(),
        p=P,
        a=a,
        tau=tau,
        G_mean=G_mean,
        mkk_integral=mkk,
        G_final=G,
        e_final=e,
    )
