r"""The one-dimensional density x exponent demonstration of paper Sec. 4.2.1 (Eq. 14, Fig. 4).

Model (SPEC section 6.1, reconstructed; the paper's displays were stripped). On x in [0, 1] a
target y(x) is fitted by a free function f(x) under the density-weighted quadratic loss

.. math::

    \mathcal L[f] = \tfrac12 \int_0^1 \rho(x)\,(f(x) - y(x))^2\,dx,
    \qquad g(x, t) = \rho(x)\,e(x, t),\quad e = f - y,

and the unified rule acts as a local learning-rate modulation with the accumulated squared
gradient :math:`v(x,t) = \int_0^t g^2\,ds` (AdaGrad-like: no EMA, no momentum). With the
early-time approximation :math:`v \approx t\rho^2 e_0^2` the error decays as

.. math::

    e(x, t) \approx e_0(x)\,\exp\!\Big(-\frac{\eta}{1-p}\,\rho(x)^{1-2p}\,|e_0(x)|^{-2p}\,
    t^{1-p}\Big) \qquad (p < 1)                                              \quad\text{(Eq. 14)}

Three regimes: p = 1/2 screens the density out (rho^0 = 1), p = 0 decays at a rate linear in rho,
p < 0 amplifies the density (rho^(1+2|p|)). Note the step-size confound (SPEC sections 1.5, 7.4):
the local rate is :math:`\eta\,\rho\,v^{-p}`, so at one fixed eta the p values do not take equal
steps; :func:`effective_rate` returns that factor.

What is simulated is the discrete update of SPEC section 6.3 (the paper says "the discrete form of
(14)", SPEC I-12), vectorised over every (p, alpha) pair and grid point at once:

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
from itertools import pairwise

import numpy as np

__all__ = [
    "Check",
    "DensityChecks",
    "DensityDemo",
    "DensityResult",
    "check_d1",
    "check_d2",
    "check_d3",
    "check_d4",
    "checks_table",
    "closed_form_error",
    "decay_comparison",
    "density",
    "effective_rate",
    "frmse",
    "midpoint_grid",
    "simulate",
]

DENSITY_FORMS = ("linear", "exponential")
EPS_MODES = ("inside", "outside")


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class DensityDemo:
    """The parameters of the Sec. 4.2.1 demo (SPEC section 6.3 and Appendix C ``density_1d``).

    Construct it to validate the parameters: every invalid value raises ``ValueError`` naming the
    value and the fix, before any work is done.

    Attributes:
        p_values: the second-moment exponents (rows of Fig. 4); non-empty, finite, each < 1.
        alphas: density slopes (columns of Fig. 4); for the linear density each ``|alpha|`` < 2.
        eta: the learning rate, one value for every p (> 0).
        eps: the stabiliser (>= 0); ``eps_mode`` puts it inside or outside the power.
        steps: iterations T (>= 1).
        checkpoints: strictly increasing iterations in [1, steps] at which f is recorded.
        n_grid: number of midpoint grid points on [0, 1].
        region: (x_b, x_e), the boundary region on which fRMSE is measured.
        target_cycles: c in the target y(x) = sin(2 pi c x).
        f0: the constant initial predictor.
        density_form: ``"linear"``: rho = 1 + alpha (x - 1/2); ``"exponential"``:
            rho = alpha e^(alpha x) / (e^alpha - 1). Both integrate to 1.
    """

    p_values: tuple[float, ...] = (0.5, 0.0, -0.25, -0.5)
    alphas: tuple[float, ...] = (-1.5, 0.0, 1.5)
    eta: float = 0.02
    eps: float = 1e-8
    eps_mode: str = "inside"
    steps: int = 1000
    checkpoints: tuple[int, ...] = (10, 50, 100, 200, 500, 1000)
    n_grid: int = 1000
    region: tuple[float, float] = (0.8, 1.0)
    target_cycles: float = 1.0
    f0: float = 0.0
    density_form: str = "linear"

    def __post_init__(self) -> None:
        for name, kind in [("p_values", float), ("alphas", float), ("checkpoints", int),
                           ("region", float)]:  # fmt: skip
            object.__setattr__(self, name, as_tuple(name, getattr(self, name), kind))
        if len(self.region) != 2:
            raise ValueError(f"region={list(self.region)} must be two numbers [x_b, x_e]")
        if not self.p_values:
            raise ValueError("p_values is empty; give at least one exponent, e.g. [0.5, 0, -0.5]")
        if len(set(self.p_values)) != len(self.p_values):
            raise ValueError(f"p_values {list(self.p_values)} has duplicates; list each p once")
        for p in self.p_values:
            if not math.isfinite(p) or p >= 1:
                raise ValueError(
                    f"p={p!r} in p_values is not allowed: Eq. (14) needs a finite p < 1"
                )
        if not self.alphas:
            raise ValueError(
                "alphas is empty; give at least one density slope, e.g. [-1.5, 0, 1.5]"
            )
        if len(set(self.alphas)) != len(self.alphas):
            raise ValueError(f"alphas {list(self.alphas)} has duplicates; list each slope once")
        if self.density_form not in DENSITY_FORMS:
            raise ValueError(f"density_form={self.density_form!r} is not one of {DENSITY_FORMS}")
        for a in self.alphas:
            if not math.isfinite(a) or (self.density_form == "linear" and abs(a) >= 2):
                raise ValueError(
                    f"alpha={a!r} makes the linear density 1 + alpha (x - 1/2) non-positive; "
                    "use |alpha| < 2"
                )
        if not (math.isfinite(self.eta) and self.eta > 0):
            raise ValueError(f"eta={self.eta!r} must be a positive finite learning rate")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eps={self.eps!r} must be a finite number >= 0")
        if self.eps_mode not in EPS_MODES:
            raise ValueError(f"eps_mode={self.eps_mode!r} is not one of {EPS_MODES}")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps!r} must be >= 1")
        _check_checkpoints(self.checkpoints, self.steps, low=1)
        if self.n_grid < 2:
            raise ValueError(f"n_grid={self.n_grid!r} must be >= 2")
        xb, xe = self.region
        if not 0 <= xb < xe <= 1:
            raise ValueError(f"region={list(self.region)} must satisfy 0 <= x_b < x_e <= 1")
        if not np.any((midpoint_grid(self.n_grid) >= xb) & (midpoint_grid(self.n_grid) <= xe)):
            raise ValueError(
                f"region={list(self.region)} holds no grid point; widen it or raise n_grid"
            )
        if not math.isfinite(self.target_cycles) or self.target_cycles == 0:
            raise ValueError(f"target_cycles={self.target_cycles!r} must be finite and non-zero")
        if not math.isfinite(self.f0):
            raise ValueError(f"f0={self.f0!r} must be finite")


def as_tuple(name: str, value, kind: type) -> tuple:
    """``value`` (a list or tuple of numbers) as a tuple of ``kind``; a clear ``ValueError`` for a
    string (papermill's ``-p`` passes lists as text: use ``-y`` or ``nsf run -p``) or a
    non-number. Integers must be whole numbers."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(
            f"{name}={value!r} must be a list of numbers, not {type(value).__name__}; "
            "with papermill pass lists as YAML (-y) or use `nsf run -p`"
        )
    out = []
    for item in value:
        try:
            number = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"{name} holds {item!r}, which is not a number") from None
        if kind is int:
            if not number.is_integer():
                raise ValueError(f"{name} holds {item!r}; iterations must be whole numbers")
            number = int(number)
        out.append(number)
    return tuple(out)


def _check_checkpoints(checkpoints: Sequence[int], steps: int, low: int) -> None:
    if not checkpoints:
        raise ValueError("checkpoints is empty; give at least one iteration to record")
    c = list(checkpoints)
    if any(b <= a for a, b in pairwise(c)):
        raise ValueError(f"checkpoints {c} must be strictly increasing; sort them and drop repeats")
    if c[0] < low or c[-1] > steps:
        raise ValueError(f"checkpoints {c} must lie in [{low}, steps={steps}]")


# --------------------------------------------------------------------------- the model
def midpoint_grid(n: int) -> np.ndarray:
    """The midpoint grid x_i = (i + 1/2)/n on [0, 1] (SPEC section 6.3), shape (n,)."""
    return (np.arange(n) + 0.5) / n


def density(x: np.ndarray, alpha: float | np.ndarray, form: str = "linear") -> np.ndarray:
    r"""The sample density rho(x) with slope alpha (Sec. 4.2.1; SPEC section 6.2, assumed form).

    ``"linear"``: :math:`\rho = 1 + \alpha(x - \tfrac12)`, positive for ``|alpha|`` < 2;
    ``"exponential"``: :math:`\rho = \alpha e^{\alpha x}/(e^\alpha - 1)` (1 at alpha = 0). Both have
    unit mass on [0, 1]; alpha > 0 puts more samples near x = 1. ``alpha`` broadcasts against ``x``
    (pass ``alpha[:, None]`` for a table). Returns rho with the broadcast shape.
    """
    x = np.asarray(x, dtype=float)
    alpha = np.asarray(alpha, dtype=float)
    if form == "linear":
        return 1.0 + alpha * (x - 0.5)
    if form == "exponential":
        safe = np.where(alpha == 0, 1.0, alpha)
        rho = safe * np.exp(safe * x) / np.expm1(safe)
        return np.where(alpha == 0, np.ones_like(rho), rho)
    raise ValueError(f"form={form!r} is not one of {DENSITY_FORMS}")


def _target(x: np.ndarray, cycles: float) -> np.ndarray:
    return np.sin(2 * np.pi * cycles * x)


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
    """The SPEC 6.3 iteration for p of shape (P,1,1) and rho of shape (A,N): f, v at ``record``."""
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
    """Run the SPEC 6.3 iteration for every (p, alpha) of ``config`` at once.

    Returns a :class:`DensityResult` with f and v at the checkpoints and the fRMSE on the region.
    """
    if not isinstance(config, DensityDemo):
        raise TypeError(f"config must be a DensityDemo, got {type(config).__name__}")
    x = midpoint_grid(config.n_grid)
    y = _target(x, config.target_cycles)
    rho = density(x[None, :], np.asarray(config.alphas)[:, None], config.density_form)
    p = np.asarray(config.p_values)[:, None, None]
    f, v = _iterate(
        p, rho, y, config.f0, eta=config.eta, eps=config.eps, eps_mode=config.eps_mode,
        steps=config.steps, record=config.checkpoints,
    )  # fmt: skip
    err = frmse(f, y, x, config.region)
    return DensityResult(config, x, y, config.f0 - y, rho, f, v, err)


def frmse(f: np.ndarray, y: np.ndarray, x: np.ndarray, region: tuple[float, float]) -> np.ndarray:
    r"""Fractional RMSE on the region R = [x_b, x_e] (SPEC section 6.3, reconstructed).

    :math:`\mathrm{fRMSE} = \sqrt{\mathrm{mean}_R (f - y)^2} / \sqrt{\mathrm{mean}_R\, y^2}`;
    with f0 = 0 it equals the RMSE relative to the initial RMSE. Reduces the last axis of ``f``;
    returns an array of ``f.shape[:-1]``.
    """
    mask = (x >= region[0]) & (x <= region[1])
    if not mask.any():
        raise ValueError(f"region={list(region)} holds no grid point")
    num = np.sqrt(np.mean((f[..., mask] - y[mask]) ** 2, axis=-1))
    return num / np.sqrt(np.mean(y[mask] ** 2))


def closed_form_error(
    e0: np.ndarray, rho: np.ndarray, p: float, eta: float, n: int | np.ndarray,
    form: str = "continuous",
) -> np.ndarray:  # fmt: skip
    r"""The early-time error of Eq. (14) (SPEC section 6.1), e(x, n) for iteration/time n.

    ``"continuous"``: :math:`e_0\exp(-\frac{\eta}{1-p}\rho^{1-2p}|e_0|^{-2p}n^{1-p})` (Eq. 14 as
    printed, p < 1). ``"discrete"``: its step-by-step analogue for the SPEC 6.3 iteration,
    :math:`e_0\exp(-\eta\rho^{1-2p}|e_0|^{-2p}\sum_{s=1}^{n}s^{-p})` (SPEC D-4), whose large-n limit
    is the continuous form. ``e0`` and ``rho`` broadcast; ``n`` may be an array (it is broadcast
    against a new leading axis when it is). Points with e0 = 0 return 0.
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
    p values rescale (the step-size confound of SPEC sections 1.5 and 7.4). Uses the run's eps and
    eps_mode unless ``eps`` is given.
    """
    cfg = result.config
    eps = cfg.eps if eps is None else eps
    p = np.asarray(cfg.p_values)[:, None, None, None]
    rho = result.rho[None, :, None, :]
    with np.errstate(divide="ignore"):
        if cfg.eps_mode == "inside":
            return rho * (result.v + eps) ** (-p)
        return rho / (result.v**p + eps)


# --------------------------------------------------------------------------- checks D-1..D-4
@dataclass(frozen=True)
class Check:
    """One paper observation made operational: what it claims, the statistic, the verdict.

    ``passed`` is True, False, or None when the check cannot decide: ``undecided`` says why
    (a needed p or alpha is missing, or the compared runs never reached the criterion).
    """

    name: str
    claim: str
    criterion: str
    statistic: str
    passed: bool | None
    undecided: str = "not applicable"

    @property
    def verdict(self) -> str:
        """ "holds", "does not hold", or the ``undecided`` text."""
        return {True: "holds", False: "does not hold"}.get(self.passed, self.undecided)


def _index(values: Sequence[float], value: float) -> int | None:
    for i, v in enumerate(values):
        if v == value:
            return i
    return None


def check_d1(result: DensityResult, tol: float = 1e-6) -> Check:
    """D-1: at p = 1/2 the fRMSE is insensitive to alpha (spread across alpha < tol everywhere)."""
    cfg = result.config
    claim = "p = 0.5: the curves are nearly insensitive to alpha"
    crit = f"max over checkpoints of (max - min over alpha) fRMSE < {tol:g}"
    i = _index(cfg.p_values, 0.5)
    if i is None or len(cfg.alphas) < 2:
        return Check("D-1", claim, crit, "needs p = 0.5 and two alphas", None)
    spread = float(np.max(np.ptp(result.frmse[i], axis=0)))
    return Check("D-1", claim, crit, f"spread = {spread:.2e}", spread < tol)


def check_d2(result: DensityResult, floor: float = 1e-6) -> Check:
    """D-2: at p = 0, fRMSE falls as alpha rises (higher density at the region = faster).

    Strictly decreasing in alpha at every checkpoint where the largest-error alpha is above
    ``floor`` (below it every curve has converged and the order is round-off).
    """
    cfg = result.config
    claim = "p = 0: higher density in the boundary region accelerates convergence there"
    crit = f"fRMSE strictly decreasing in alpha at every checkpoint with fRMSE > {floor:g}"
    i = _index(cfg.p_values, 0.0)
    if i is None or len(cfg.alphas) < 2:
        return Check("D-2", claim, crit, "needs p = 0 and two alphas", None)
    order = np.argsort(cfg.alphas)
    err = result.frmse[i][order]  # (A, C), alpha ascending
    live = err.max(axis=0) > floor
    ok = np.all(np.diff(err[:, live], axis=0) < 0, axis=0)
    bad = [c for c, good in zip(np.asarray(cfg.checkpoints)[live], ok, strict=True) if not good]
    stat = f"{int(ok.sum())}/{int(live.sum())} checkpoints ordered" + (
        f"; out of order at {bad}" if bad else ""
    )
    return Check("D-2", claim, crit, stat, bool(live.any() and ok.all()))


def check_d3(result: DensityResult, checkpoint: int = 100) -> Check:
    """D-3: for p < 0 the density sensitivity is amplified relative to p = 0.

    Ratio fRMSE(alpha_min)/fRMSE(alpha_max) at ``checkpoint`` is larger for every p < 0 than at
    p = 0.
    """
    cfg = result.config
    claim = "p < 0: the density sensitivity is amplified (vs p = 0)"
    crit = (
        f"fRMSE(alpha_min)/fRMSE(alpha_max) at step {checkpoint} "
        "larger for every p < 0 than for p = 0"
    )
    i0 = _index(cfg.p_values, 0.0)
    negs = [i for i, p in enumerate(cfg.p_values) if p < 0]
    k = _index(cfg.checkpoints, checkpoint)
    if i0 is None or not negs or len(cfg.alphas) < 2 or k is None:
        return Check(
            "D-3", claim, crit, "needs p = 0, a p < 0, two alphas and the checkpoint", None
        )
    lo, hi = int(np.argmin(cfg.alphas)), int(np.argmax(cfg.alphas))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = result.frmse[:, lo, k] / result.frmse[:, hi, k]
    stat = ", ".join(f"p={cfg.p_values[i]:g}: {ratio[i]:.3g}" for i in [i0, *negs])
    return Check("D-3", claim, crit, stat, bool(all(ratio[i] > ratio[i0] for i in negs)))


def decay_comparison(
    config: DensityDemo, *, eta: float, steps: int, min_e0: float = 0.2
) -> dict[str, np.ndarray]:
    r"""Simulated vs closed-form early decay, -log|e_n/e_0| at every n <= ``steps`` (SPEC D-4).

    Runs the iteration of ``config`` with learning rate ``eta`` for ``steps`` steps and compares at
    the grid points with ``|e0|`` > ``min_e0`` (where e is well away from its zeros). Returns arrays
    ``n`` (S,), ``mask`` (N,), ``simulated``, ``discrete``, ``continuous`` (each (P, A, S, N), the
    decay -log|e_n/e_0|), and ``rel_error`` (P, A): max over n and masked points of
    ``|simulated - discrete|`` / ``|simulated|``.
    """
    cfg = DensityDemo(**{**config.__dict__, "eta": eta, "steps": steps,
                         "checkpoints": tuple(range(1, steps + 1))})  # fmt: skip
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


def check_d4(
    config: DensityDemo, *, eta: float = 0.002, steps: int = 20, min_e0: float = 0.2,
    tol: float = 0.05,
) -> Check:  # fmt: skip
    """D-4: the closed form (14) matches the simulated early decay within ``tol`` (SPEC 6.5).

    Relative error of -log|e_n/e_0| against the discrete analogue of (14), max over n <= steps,
    grid points with ``|e0|`` > min_e0, every p and alpha.
    """
    comp = decay_comparison(config, eta=eta, steps=steps, min_e0=min_e0)
    worst = float(comp["rel_error"].max())
    return Check(
        "D-4",
        "the closed form (14) describes the early decay",
        f"max relative error of the decay over n <= {steps} at eta = {eta:g}, "
        f"|e0| > {min_e0:g}: < {tol:.0%}",
        f"max relative error = {worst:.2%}",
        worst < tol,
    )


@dataclass(frozen=True)
class DensityChecks:
    """The settings of D-1..D-4 (SPEC section 6.5) for one :class:`DensityDemo`, validated.

    Attributes: ``demo``; ``d1_tol`` (D-1 spread bound); ``d2_floor`` (D-2 ignores checkpoints
    where every fRMSE is below it); ``d3_checkpoint`` (D-3's early checkpoint, one of the demo's);
    ``d4_eta``, ``d4_steps``, ``d4_min_e0``, ``d4_tol`` (D-4's small learning rate, steps, grid
    points with ``|e0|`` above ``d4_min_e0``, and tolerance).
    """

    demo: DensityDemo
    d1_tol: float = 1e-6
    d2_floor: float = 1e-6
    d3_checkpoint: int = 100
    d4_eta: float = 0.002
    d4_steps: int = 20
    d4_min_e0: float = 0.2
    d4_tol: float = 0.05

    def __post_init__(self) -> None:
        for name in ("d1_tol", "d2_floor", "d4_eta", "d4_tol"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a positive finite number")
        if self.d3_checkpoint not in self.demo.checkpoints:
            raise ValueError(
                f"d3_checkpoint={self.d3_checkpoint!r} is not one of the checkpoints "
                f"{list(self.demo.checkpoints)}; pick one of them"
            )
        if int(self.d4_steps) < 1:
            raise ValueError(f"d4_steps={self.d4_steps!r} must be >= 1")
        x = midpoint_grid(self.demo.n_grid)
        e0_max = float(np.max(np.abs(self.demo.f0 - _target(x, self.demo.target_cycles))))
        if not 0 <= self.d4_min_e0 < e0_max:
            raise ValueError(
                f"d4_min_e0={self.d4_min_e0!r} leaves no grid point with |e0| above it; lower it"
            )

    def run(self, result: DensityResult) -> list[Check]:
        """D-1..D-4 on ``result`` (which must come from ``demo``); returns four :class:`Check`."""
        if result.config != self.demo:
            raise ValueError("result was simulated from another DensityDemo than these checks'")
        return [
            check_d1(result, self.d1_tol),
            check_d2(result, self.d2_floor),
            check_d3(result, self.d3_checkpoint),
            check_d4(
                self.demo,
                eta=self.d4_eta,
                steps=self.d4_steps,
                min_e0=self.d4_min_e0,
                tol=self.d4_tol,
            ),
        ]


def checks_table(checks: Sequence[Check]):
    """The checks as a pandas DataFrame (check, claim, criterion, statistic, verdict)."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "check": c.name,
                "paper observation": c.claim,
                "criterion": c.criterion,
                "measured": c.statistic,
                "verdict": c.verdict,
            }
            for c in checks
        ]
    ).set_index("check")
