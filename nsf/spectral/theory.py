r"""The theory of paper Sec. 4.1.1, and the checks of it that the simulation allows.

The overlap integrals :math:`O_{ijk}` of Eq. 12 (:func:`overlap_integrals`), the coupling matrix
:math:`M_{kj}` of Eq. 9 (:func:`coupling_matrix`), the near-diagonal prediction of Eq. 10
(:func:`diagonal_prediction`, compared with the simulation by :func:`diagonal_gap`), the
early-time expansion of Eq. 13 (:func:`early_time_prediction`), the :math:`I_0` period average of
a cosine schedule (:func:`tidal_period_average`) and the z it implies for a given gain
(:func:`implied_log_z`), and the single-band limit in which :math:`\kappa` does not depend on the
mode (:func:`single_band_kappa`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nsf.spectral.fit import FLOOR, DecayFit, fit_decay
from nsf.spectral.setup import SpectralSetup, amplitudes, sine_basis, with_overrides
from nsf.spectral.simulate import SpectralRun, simulate

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "coupling_matrix",
    "diagonal_gap",
    "diagonal_prediction",
    "early_time_delta",
    "early_time_prediction",
    "implied_log_z",
    "overlap_integrals",
    "period_average_quadrature",
    "single_band_kappa",
    "tidal_period_average",
]


def overlap_integrals(
    indices: Sequence[int], method: str = "closed", n_quad: int = 512
) -> np.ndarray:
    r""":math:`O_{ijk}=\int_0^1\phi_i\phi_j\phi_k^2dx` for i, j, k in ``indices``, shape [n, n, n].

    Paper Eq. 12 (reconstructed; book page "How the paper was reconstructed: chapter 03").
    ``method="closed"``:
    :math:`O_{ijk}=\delta_{ij}+\tfrac12\delta_{i+j,2k}-\tfrac12\delta_{|i-j|,2k}` (so
    :math:`O_{iik}=1+\tfrac12\delta_{ik}`), from the product-to-sum identities.
    ``method="quadrature"``: Gauss-Legendre with ``n_quad`` nodes on [0, 1] (exact to rounding for
    the trigonometric degrees of keys up to ~n_quad/4).
    """
    idx = np.asarray(indices, dtype=int)
    i, j, k = np.meshgrid(idx, idx, idx, indexing="ij")
    if method == "closed":
        return ((i == j) + 0.5 * (i + j == 2 * k) - 0.5 * (np.abs(i - j) == 2 * k)).astype(float)
    if method != "quadrature":
        raise ValueError(f"method={method!r} is refused: use 'closed' or 'quadrature'")
    nodes, weights = np.polynomial.legendre.leggauss(int(n_quad))
    xq, wq = (nodes + 1) / 2, weights / 2
    phi = math.sqrt(2.0) * np.sin(np.pi * np.outer(idx, xq))  # [n, Q]
    return np.einsum("iq,jq,kq,q->ijk", phi, phi, phi**2, wq)


def coupling_matrix(
    G: np.ndarray, p: float | np.ndarray, eps: float, basis: np.ndarray
) -> np.ndarray:
    r""":math:`M_{kj}=\langle(G+\epsilon)^{-p}\phi_k\phi_j\rangle_N`, the coupling matrix of Eq. 9.

    ``G`` is [..., N] (e.g. ``run.G_final``), ``p`` broadcasts against its leading axes, ``basis``
    is [N, K]. Returns [..., K, K]. Its off-diagonal part is the "implicit cross-frequency
    coupling" of Remark (1); Eq. 10 keeps only the diagonal.
    """
    G = np.asarray(G, dtype=float)
    p = np.asarray(p, dtype=float)[..., None]
    w = (G + eps) ** (-p)
    return np.einsum("...n,nk,nj->...kj", w, basis, basis) / basis.shape[0]


def diagonal_prediction(
    run: SpectralRun, window: Sequence[float] | None = None, variable: str | None = None
) -> DecayFit:
    r"""The decay constants that the near-diagonal approximation (Eq. 10) predicts for ``run``.

    :math:`a_k(t)\approx a_k(0)\exp(-c\eta\int_0^tM_{kk}(s)\,ds)` with the exact
    :math:`M_{kk}(s)` of the simulated G, fitted by :func:`fit_decay` like the simulation.
    Where it disagrees with the full simulation, the off-diagonal coupling :math:`M_{kj}` drives
    the decay: the near-diagonal picture of Eq. 10 assumes a nearly uniform G, which the
    broadband experiment of Sec. 4.1.2 does not have (book page "How the paper was
    reconstructed: chapter 03").
    """
    s = run.setup
    log0 = np.log(np.maximum(np.abs(run.a[:, :1, :]), FLOOR))
    return fit_decay(run, window, variable, log_envelope=log0 - s.c * s.eta * run.mkk_integral)


def early_time_delta(setup: SpectralSetup | None = None, **overrides: Any) -> np.ndarray:
    r""":math:`\Delta_k=\int e_0^2\phi_k^2-\int e_0^2` per key, from the overlaps of Eq. 12.

    Our reading of Eqs. 11-13 (book page "How the paper was reconstructed: chapter 03"): with
    :math:`a_k=-A_k/\sqrt2` (orthonormal coefficients of e0 = -y),
    :math:`\Delta_k=\sum_{ij}a_ia_jO_{ijk}-\sum_ja_j^2`; for the power-of-two keys this is
    :math:`\tfrac12a_k^2-a_{2k}a_{4k}`. Its sign and size set Eq. 13's frequency preference.
    """
    s = with_overrides(setup, overrides)
    a = -s.amp_scale * amplitudes(s.keys, s.amps) / math.sqrt(2.0)
    return np.einsum("i,j,ijk->k", a, a, overlap_integrals(s.keys)) - (a**2).sum()


def early_time_prediction(
    p: float, setup: SpectralSetup | None = None, t_bar: float | None = None, **overrides: Any
) -> np.ndarray:
    r"""Eq. 13's early-time decay constants for a constant p, one per key (form reconstructed).

    The form is our reading of the stripped Eqs. 11-13 (book page "How the paper was
    reconstructed: chapter 03").

    .. math::

        \kappa_k \approx c\eta(\bar G+\epsilon)^{-p}\Big[1-\frac{p\,s\,\bar t}{\bar G+\epsilon}
        \Delta_k\Big], \quad \bar G = s\,\bar t\sum_j a_j^2, \quad
        \Delta_k=\sum_{ij}a_ia_jO_{ijk}-\sum_j a_j^2

    with :math:`a_k=-A_k/\sqrt2` the orthonormal coefficients of e0 = -y, s = c^2 (grad2) or 1
    (err2) (times 1/dt if G is a plain sum), and :math:`\bar t` the window midpoint by default.
    The form of Eq. 13 is [reconstructed, medium].
    """
    s = with_overrides(setup, overrides)
    t_bar = sum(s.fit_window) / 2 if t_bar is None else float(t_bar)
    scale = s.g_scale / s.dt
    a = -s.amp_scale * amplitudes(s.keys, s.amps) / math.sqrt(2.0)
    delta = early_time_delta(s)
    g_bar = scale * t_bar * (a**2).sum()
    z = g_bar + s.eps
    return s.c * s.eta * z ** (-p) * (1.0 - p * scale * t_bar / z * delta)


def tidal_period_average(z: float | np.ndarray, p_mid: float, p_amp: float) -> np.ndarray:
    r"""The period average of :math:`z^{-p(t)}` under a cosine schedule, in closed form.

    For :math:`p(t)=p_{\rm mid}+p_{\rm amp}\cos(2\pi t/T+\varphi)` and a fixed z > 0
    (derived; book page "How the paper was reconstructed: chapter 03", the I0 identity),

    .. math::

        \frac1T\int_0^T z^{-p(t)}\,dt = z^{-p_{\rm mid}}\,I_0\big(p_{\rm amp}\ln z\big)
        \ \ge\ z^{-p_{\rm mid}},

    with :math:`I_0` the modified Bessel function of order 0; the inequality (Jensen) is strict
    for any z != 1, not only in the early regime z < 1 the paper names.
    """
    from scipy.special import i0

    z = np.asarray(z, dtype=float)
    return z ** (-p_mid) * i0(p_amp * np.log(z))


def period_average_quadrature(schedule: Callable, z: float, period: float) -> float:
    """(1/T) * int_0^T z^(-p(t)) dt by adaptive quadrature (scipy ``quad``), p(t) = schedule(t)."""
    from scipy.integrate import quad

    value, _ = quad(lambda t: z ** (-schedule(t)), 0.0, period, limit=200, epsabs=0, epsrel=1e-12)
    return value / period


def implied_log_z(gain: float | np.ndarray, p_amp: float) -> np.ndarray:
    r"""``|ln z|`` at which :math:`I_0(p_{\rm amp}\ln z)` equals ``gain`` (>= 1): the implied z.

    If a tidal row's gain over its same-mean constant were the pure period-average factor, this is
    how far from 1 the typical z = G + eps would have to be.
    """
    from scipy.optimize import brentq
    from scipy.special import i0

    gains = np.atleast_1d(np.asarray(gain, dtype=float))
    out = np.full(gains.shape, np.nan)
    for idx, g in np.ndenumerate(gains):
        if g >= 1:
            out[idx] = brentq(lambda u, g=g: i0(u) - g, 0.0, 50.0) / p_amp
    return out if np.ndim(gain) else out[0]


def single_band_kappa(
    modes: Sequence[int],
    schedule: Callable,
    amplitude: float = 1.0,
    setup: SpectralSetup | None = None,
    **overrides: Any,
) -> np.ndarray:
    r"""kappa_m of a single-band initial error :math:`e_0=A\phi_m`, for each m in ``modes``.

    Paper Sec. 4.1.1 ("in the single-band limit kappa is k-invariant").
    In the continuum the dynamics is pointwise and odd in e0, so every half-period of
    :math:`\sin(m\pi x)` contributes the same integral and kappa_m does not depend on m. All modes
    are simulated as one batch (one row per m) and each row is fitted on its own mode.
    """
    s = with_overrides(setup, {**overrides, "keys": tuple(modes)})
    _, basis = sine_basis(s.keys, s.N, s.grid)
    e0 = amplitude * basis.T  # [M, N]: row m is A * phi_m
    run = simulate({f"single band k={m}": schedule for m in s.keys}, initial_error=e0, setup=s)
    return np.diag(fit_decay(run).kappa).copy()


def diagonal_gap(kappa: pd.DataFrame, kappa_diag: pd.DataFrame, names: Sequence[str]):
    """Per row of ``names``: the range of kappa_k over the keys in the full simulation and in the
    near-diagonal prediction of Eq. 10, and Spearman's rank agreement of the two over k."""
    import pandas as pd
    from scipy.stats import spearmanr

    names = list(names)
    return pd.DataFrame(
        {
            "full: min κ_k": kappa.loc[names].min(axis=1),
            "full: max κ_k": kappa.loc[names].max(axis=1),
            "Eq. 10: min κ_k": kappa_diag.loc[names].min(axis=1),
            "Eq. 10: max κ_k": kappa_diag.loc[names].max(axis=1),
            "Spearman(Eq. 10, full) over k": [
                spearmanr(kappa_diag.loc[n], kappa.loc[n]).statistic for n in names
            ],
        }
    )
