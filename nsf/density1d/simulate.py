r"""The discrete update of Sec. 4.2.1, its closed form (Eq. 14), and what is measured from them.

What is simulated is the update rule itself (the paper says it iterates "the discrete form of
(14)", but (14) is a closed-form solution), vectorised over every (p, alpha) pair and grid
point at once:

.. math::

    g_n = \rho\,(f_{n-1} - y),\qquad v_n = v_{n-1} + g_n^2,\qquad
    f_n = f_{n-1} - \eta\,(v_n + \epsilon)^{-p}\,g_n
    \quad(\text{eps inside; outside: } 1/(v_n^p+\epsilon)).

Everything is deterministic (no randomness at all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nsf.density1d.setup import DensityDemo, demo_part, density, midpoint_grid, target

__all__ = [
    "DensityResult",
    "closed_form_error",
    "decay_comparison",
    "density_ratio",
    "effective_rate",
    "frmse",
    "median_rate",
    "simulate",
]


@dataclass(frozen=True)
class DensityResult:
    """What :func:`simulate` returns.

    Attributes:
        config: the :class:`DensityDemo` that produced it.
        x: grid, shape (N,). y: target, shape (N,). e0: initial error f0 - y, shape (N,).
        rho: density per alpha, shape (A, N).
        f: predictions at the checkpoints, shape (P, A, C, N) (P p values, A alphas, C checkpoints).
        v: accumulated squared gradient at the checkpoints, shape (P, A, C, N).
        frmse: fRMSE on the region at every checkpoint, shape (P, A, C).
    """

    config: DensityDemo
    x: np.ndarray
    y: np.ndarray
    e0: np.ndarray
    rho: np.ndarray
    f: np.ndarray
    v: np.ndarray
    frmse: np.ndarray

    def frmse_table(self):
        """fRMSE as a long pandas DataFrame: columns p, alpha, step, fRMSE."""
        import pandas as pd

        cfg = self.config
        rows = [
            {"p": p, "alpha": a, "step": c, "fRMSE": float(self.frmse[i, j, k])}
            for i, p in enumerate(cfg.p_values)
            for j, a in enumerate(cfg.alphas)
            for k, c in enumerate(cfg.checkpoints)
        ]
        return pd.DataFrame(rows)


def _iterate(
    p: np.ndarray, rho: np.ndarray, y: np.ndarray, f0: float, *, eta: float, eps: float,
    eps_mode: str, steps: int, record: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The iteration for p of shape (P,1,1) and rho of shape (A,N): f, v at ``record``."""
    shape = (p.shape[0], rho.shape[0], rho.shape[1])
    f = np.full(shape, float(f0))
    v = np.zeros(shape)
    want = {n: i for i, n in enumerate(record)}
    fs = np.empty((len(record), *shape))
    vs = np.empty((len(record), *shape))
    with np.errstate(divide="ignore"):
        for n in range(1, steps + 1):
            g = rho * (f - y)
            v += g * g
            # outside: 1 / (v^p + eps); v = 0 with p < 0 gives 1/inf = 0, a zero step
            scale = (v + eps) ** (-p) if eps_mode == "inside" else 1.0 / (v**p + eps)
            f -= eta * scale * g
            if n in want:
                fs[want[n]] = f
                vs[want[n]] = v
    # (C, P, A, N) -> (P, A, C, N)
    return np.moveaxis(fs, 0, 2), np.moveaxis(vs, 0, 2)


def simulate(config: DensityDemo) -> DensityResult:
    """Run the iteration of Sec. 4.2.1 for every (p, alpha) of ``config`` at once.

    Returns a :class:`DensityResult` with f and v at the checkpoints and the fRMSE on the region.
    """
    if not isinstance(config, DensityDemo):
        raise TypeError(f"config must be a DensityDemo, got {type(config).__name__}")
    config = demo_part(config)
    x = midpoint_grid(config.n_grid)
    y = target(x, config.target_cycles)
    rho = density(x[None, :], np.asarray(config.alphas)[:, None], config.density_form)
    p = np.asarray(config.p_values)[:, None, None]
    f, v = _iterate(
        p, rho, y, config.f0, eta=config.eta, eps=config.eps, eps_mode=config.eps_mode,
        steps=config.steps, record=config.checkpoints,
    )  # fmt: skip
    err = frmse(f, y, x, config.region)
    return DensityResult(config, x, y, config.f0 - y, rho, f, v, err)


def frmse(f: np.ndarray, y: np.ndarray, x: np.ndarray, region: tuple[float, float]) -> np.ndarray:
    r"""Fractional RMSE on the region R = [x_b, x_e] (Sec. 4.2.1, reconstructed).

    :math:`\mathrm{fRMSE} = \sqrt{\mathrm{mean}_R (f - y)^2} / \sqrt{\mathrm{mean}_R\, y^2}`;
    with f0 = 0 it equals the RMSE relative to the initial RMSE. Reduces the last axis of ``f``;
    returns an array of ``f.shape[:-1]``.
    """
    mask = (x >= region[0]) & (x <= region[1])
    if not mask.any():
        raise ValueError(f"region={list(region)} holds no grid point")
    num = np.sqrt(np.mean((f[..., mask] - y[mask]) ** 2, axis=-1))
    return num / np.sqrt(np.mean(y[mask] ** 2))


def density_ratio(result: DensityResult, checkpoint: int) -> np.ndarray:
    """fRMSE(alpha_min) / fRMSE(alpha_max) at ``checkpoint`` for every p, shape (P,): how much
    slower the misaligned density fits the region than the aligned one (inf where the aligned
    fRMSE is 0)."""
    cfg = result.config
    k = cfg.checkpoints.index(checkpoint)
    lo, hi = int(np.argmin(cfg.alphas)), int(np.argmax(cfg.alphas))
    with np.errstate(divide="ignore", invalid="ignore"):
        return result.frmse[:, lo, k] / result.frmse[:, hi, k]


def closed_form_error(
    e0: np.ndarray, rho: np.ndarray, p: float, eta: float, n: int | np.ndarray,
    form: str = "continuous",
) -> np.ndarray:  # fmt: skip
    r"""The early-time error of Eq. (14), e(x, n) for iteration/time n.

    ``"continuous"``: :math:`e_0\exp(-\frac{\eta}{1-p}\rho^{1-2p}|e_0|^{-2p}n^{1-p})` (Eq. 14 as
    printed, p < 1). ``"discrete"``: its step-by-step analogue for the iteration of
    :func:`simulate`, :math:`e_0\exp(-\eta\rho^{1-2p}|e_0|^{-2p}\sum_{s=1}^{n}s^{-p})`, whose
    large-n limit is the continuous form. ``e0`` and ``rho`` broadcast; ``n`` may be an array (it
    is broadcast against a new leading axis when it is). Points with e0 = 0 return 0.
    """
    if not (math.isfinite(p) and p < 1):
        raise ValueError(f"p={p!r}: Eq. (14) holds only for p < 1")
    e0 = np.asarray(e0, dtype=float)
    rho = np.asarray(rho, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(n < 0):
        raise ValueError(f"n={n!r} must be >= 0")
    if form == "continuous":
        clock = n ** (1 - p) / (1 - p)
    elif form == "discrete":
        s = np.arange(1, int(n.max()) + 1, dtype=float)
        csum = np.concatenate([[0.0], np.cumsum(s ** (-p))])
        clock = csum[n.astype(int)]
    else:
        raise ValueError(f"form={form!r} is not 'continuous' or 'discrete'")
    clock = clock.reshape(clock.shape + (1,) * max(e0.ndim, rho.ndim)) if clock.ndim else clock
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = rho ** (1 - 2 * p) * np.abs(e0) ** (-2 * p)
        out = e0 * np.exp(-eta * rate * clock)
    return np.where(e0 == 0, 0.0, out)


def effective_rate(result: DensityResult, eps: float | None = None) -> np.ndarray:
    r"""The local decay rate per unit eta, :math:`\rho\,(v+\epsilon)^{-p}`, shape (P, A, C, N).

    At one fixed eta the step of the error is ``eta * effective_rate * e``; this is the factor the
    p values rescale (the step-size confound: one learning rate is not one step size). Uses the
    run's eps and eps_mode unless ``eps`` is given.
    """
    cfg = result.config
    eps = cfg.eps if eps is None else eps
    p = np.asarray(cfg.p_values)[:, None, None, None]
    rho = result.rho[None, :, None, :]
    with np.errstate(divide="ignore"):
        if cfg.eps_mode == "inside":
            return rho * (result.v + eps) ** (-p)
        return rho / (result.v**p + eps)


def median_rate(result: DensityResult) -> tuple[int, np.ndarray]:
    """(j, med): the column j of the alpha nearest 0 (uniform density where there is one) and
    the median over the grid of its :func:`effective_rate` per p and checkpoint, shape (P, C)."""
    j = int(np.argmin(np.abs(np.asarray(result.config.alphas))))
    return j, np.median(effective_rate(result)[:, j], axis=-1)


def decay_comparison(
    config: DensityDemo, *, eta: float, steps: int, min_e0: float = 0.2
) -> dict[str, np.ndarray]:
    r"""Simulated vs closed-form early decay, -log|e_n/e_0| at every n <= ``steps`` (Eq. 14).

    Runs the iteration of ``config`` with learning rate ``eta`` for ``steps`` steps and compares at
    the grid points with ``|e0|`` > ``min_e0`` (where e is well away from its zeros). Returns arrays
    ``n`` (S,), ``mask`` (N,), ``simulated``, ``discrete``, ``continuous`` (each (P, A, S, N), the
    decay -log|e_n/e_0|), and ``rel_error`` (P, A): max over n and masked points of
    ``|simulated - discrete|`` / ``|simulated|``.
    """
    cfg = demo_part(config).replace(eta=eta, steps=steps, checkpoints=tuple(range(1, steps + 1)))
    res = simulate(cfg)
    e0 = res.e0
    mask = np.abs(e0) > min_e0
    if not mask.any():
        raise ValueError(f"min_e0={min_e0!r}: no grid point has |e0| above it; lower it")
    n = np.arange(1, steps + 1)
    with np.errstate(divide="ignore"):
        sim = -np.log(np.abs((res.f - res.y) / e0))  # (P, A, S, N)
    disc = np.empty_like(sim)
    cont = np.empty_like(sim)
    for i, p in enumerate(cfg.p_values):
        for j in range(len(cfg.alphas)):
            for form, out in (("discrete", disc), ("continuous", cont)):
                e = closed_form_error(e0, res.rho[j], p, eta, n, form=form)  # (S, N)
                with np.errstate(divide="ignore"):
                    out[i, j] = -np.log(np.abs(e / e0))
    rel = np.abs(sim - disc)[..., mask] / np.abs(sim)[..., mask]
    return {
        "n": n, "mask": mask, "x": res.x, "e0": e0, "rho": res.rho,
        "simulated": sim, "discrete": disc, "continuous": cont,
        "rel_error": rel.max(axis=(-1, -2)),
    }  # fmt: skip
