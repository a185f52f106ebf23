r"""The two-dimensional "early decision-boundary alignment" demonstration of paper Sec. 4.2.2.

The paper trains "a small two-layer MLP ([H] hidden units, ReLU)" on "two intersecting
'angle'-shaped class manifolds with asymmetric sampling density" (far/near branches), with the
unified rule (Eq. 3) at several p, "the same learning rate", no weight decay and identical seeds,
and shows the decision boundaries at checkpoints (Fig. 5), highlighting the top-k samples per
class by "effective update norm". Every number was stripped; this module implements SPEC
section 7 (companion configuration, SPEC sections 7.2-7.4):

* :func:`crossed_l_samples` -- the "crossed-L" generator: class 0 has its vertex at (-1/2, -1/2),
  a far branch along +x and a near branch along +y; class 1 is its point reflection (vertex
  (1/2, 1/2), far branch along -x, near along -y). A point is v + s u + sigma xi with
  s ~ U(0, L), xi ~ N(0, I); a fraction ``far_frac`` of each class lies on the far branch.
* :func:`bayes_log_odds` / :func:`bayes_predict` / :func:`bayes_boundary` -- the Bayes rule of that
  generative model with equal priors, in closed form: a segment's density is
  :math:`\frac1L\,\mathcal N(d_\perp;0,\sigma)\,
  [\Phi(\frac{L-s_\parallel}{\sigma})-\Phi(\frac{-s_\parallel}{\sigma})]`.
* :func:`train_panel` -- full-batch training of the MLP with :class:`~nsf.optim.NSF` at every p
  from one seed, recording metrics at every iteration and snapshots at the checkpoints
  (probability map, per-sample effective update norms from ``torch.func``, the top-k per class).
* :func:`alignment_checks` -- B-1..B-3 of SPEC section 7.3 on t90 (and on a log-time score).

The step-size confound (SPEC sections 1.5, 7.4): at one learning rate the step is multiplied by
v^(-p), so whether v^ sits above or below 1 (set by the loss reduction, mean or sum) decides
which p moves fastest. A :class:`Panel` fixes the reduction, the learning rate and the optional
``update_norm="rms_matched"`` control (p sets the direction, SGD's step sets the length); the
chapter runs three panels side by side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.func import functional_call, grad, vmap

from nsf.density1d import Check, as_tuple
from nsf.optim import NSF

__all__ = [
    "BoundaryDemo",
    "Panel",
    "PanelResult",
    "Samples",
    "alignment_checks",
    "bayes_boundary",
    "bayes_log_odds",
    "bayes_predict",
    "best_linear_accuracy",
    "crossed_l_samples",
    "effective_update_norms",
    "first_crossing",
    "log_time_score",
    "mlp",
    "train_panel",
]

REDUCTIONS = ("mean", "sum")
UPDATE_NORMS = (None, "rms_matched")


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Samples:
    """A labelled sample of the crossed-L model.

    Attributes: ``X`` (n, 2) float64 points; ``y`` (n,) int labels 0/1; ``near`` (n,) bool, True
    on a near branch.
    """

    X: np.ndarray
    y: np.ndarray
    near: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


def _segments(L: float) -> list[tuple[int, bool, np.ndarray, np.ndarray]]:
    """(label, is_near, vertex, unit direction) of the four branches."""
    v0, v1 = np.array([-0.5, -0.5]), np.array([0.5, 0.5])
    ex, ey = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    return [(0, False, v0, ex), (0, True, v0, ey), (1, False, v1, -ex), (1, True, v1, -ey)]


def _check_geometry(L: float, sigma: float, far_frac: float) -> None:
    if not (math.isfinite(L) and L > 0):
        raise ValueError(f"branch length L={L!r} must be a positive finite number")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma={sigma!r} must be a positive finite noise scale")
    if not 0 < far_frac < 1:
        raise ValueError(
            f"far_frac={far_frac!r} must lie strictly between 0 and 1 (both branches need mass)"
        )


def crossed_l_samples(
    n_per_class: int, far_frac: float = 0.8, *, L: float = 1.5, sigma: float = 0.05, seed: int = 0
) -> Samples:
    """Draw ``n_per_class`` points of each class from the crossed-L model (SPEC section 7.2).

    round(far_frac * n_per_class) points of each class lie on its far branch, the rest on its near
    branch. Deterministic for a fixed ``seed`` (a private ``numpy.random.Generator``). Returns
    :class:`Samples`, class 0 first.
    """
    _check_geometry(L, sigma, far_frac)
    if int(n_per_class) < 1:
        raise ValueError(f"n_per_class={n_per_class!r} must be >= 1")
    rng = np.random.default_rng(seed)
    n_far = round(far_frac * n_per_class)
    Xs, ys, nears = [], [], []
    for label, near, vertex, u in _segments(L):
        n = n_per_class - n_far if near else n_far
        s = rng.uniform(0.0, L, size=n)
        xi = rng.standard_normal((n, 2))
        Xs.append(vertex + s[:, None] * u + sigma * xi)
        ys.append(np.full(n, label))
        nears.append(np.full(n, near))
    return Samples(np.concatenate(Xs), np.concatenate(ys), np.concatenate(nears))


def _log_segment_density(X: np.ndarray, vertex, u, L: float, sigma: float) -> np.ndarray:
    """log of (1/L) N(d_perp; 0, sigma) [Phi((L - s)/sigma) - Phi(-s/sigma)], stably."""
    from scipy.special import log_ndtr

    d = X - vertex
    s = d @ u
    perp = d @ np.array([-u[1], u[0]])
    a, b = (L - s) / sigma, -s / sigma  # log(Phi(a) - Phi(b)), a > b
    # Use the lower tail: Phi(a) - Phi(b) = Phi(-b) - Phi(-a); pick the form with smaller args.
    flip = b > 0
    hi = np.where(flip, -b, a)
    lo = np.where(flip, -a, b)
    la, lb = log_ndtr(hi), log_ndtr(lo)
    log_diff = la + np.log1p(-np.exp(np.minimum(lb - la, 0.0)))
    log_perp = -0.5 * (perp / sigma) ** 2 - math.log(sigma * math.sqrt(2 * math.pi))
    return log_perp + log_diff - math.log(L)


def bayes_log_odds(
    X: np.ndarray, far_frac: float = 0.8, *, L: float = 1.5, sigma: float = 0.05
) -> np.ndarray:
    r"""log p(x | class 1) - log p(x | class 0) of the crossed-L model (SPEC section 7.2).

    Each class density is the mixture far_frac * p(x | far) + (1 - far_frac) * p(x | near) of two
    Gaussian-blurred uniform segments. With equal priors the Bayes rule predicts class 1 where the
    log-odds is positive. Computed in log space, so it is finite far from every branch. Returns an
    array of ``X.shape[:-1]``.
    """
    _check_geometry(L, sigma, far_frac)
    X = np.asarray(X, dtype=float)
    flat = X.reshape(-1, 2)
    logs = {0: [], 1: []}
    for label, near, vertex, u in _segments(L):
        w = (1 - far_frac) if near else far_frac
        logs[label].append(math.log(w) + _log_segment_density(flat, vertex, u, L, sigma))
    lp = {k: np.logaddexp(*v) for k, v in logs.items()}
    return (lp[1] - lp[0]).reshape(X.shape[:-1])


def bayes_predict(
    X: np.ndarray, far_frac: float = 0.8, *, L: float = 1.5, sigma: float = 0.05
) -> np.ndarray:
    """The Bayes labels (0/1, int) of the crossed-L model with equal priors (SPEC section 7.2)."""
    return (bayes_log_odds(X, far_frac, L=L, sigma=sigma) > 0).astype(int)


def bayes_boundary(
    extent: float, resolution: int, far_frac: float = 0.8, *, L: float = 1.5, sigma: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Bayes log-odds on a square grid, for drawing the Bayes boundary (its 0-contour).

    Returns ``(xs, ys, log_odds)``: the grid's axes, each (resolution,) spanning
    [-extent, extent], and the log-odds, shape (resolution, resolution), indexed [iy, ix].
    """
    xs = np.linspace(-extent, extent, resolution)
    XX, YY = np.meshgrid(xs, xs)
    return xs, xs, bayes_log_odds(np.stack([XX, YY], -1), far_frac, L=L, sigma=sigma)


def best_linear_accuracy(X: np.ndarray, y: np.ndarray, n_angles: int = 1440) -> float:
    """The best accuracy any line achieves on (X, y), searched exhaustively in 2D.

    For each of ``n_angles`` directions w (uniform on the circle, both orientations) every
    threshold on w.x is tried (sorting), so the answer is the optimum over lines up to the angular
    resolution. Returns that accuracy in [1/2, 1].
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y).astype(int)
    n = len(y)
    best = 0.0
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    proj = X @ np.stack([np.cos(angles), np.sin(angles)])  # (n, A)
    order = np.argsort(proj, axis=0)
    ys = y[order]  # (n, A) labels sorted along each direction
    # predict 1 above the threshold: accuracy = (#0 below) + (#1 above)
    zeros_below = np.vstack([np.zeros((1, n_angles)), np.cumsum(ys == 0, axis=0)])
    ones_above = np.vstack([np.cumsum((ys == 1)[::-1], axis=0)[::-1], np.zeros((1, n_angles))])
    best = float(np.max(zeros_below + ones_above)) / n
    return best


# --------------------------------------------------------------------------- model
def mlp(hidden: int, seed: int, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """The two-layer MLP 2 -> hidden -> 1 with ReLU (Sec. 4.2.2), initialised from ``seed``.

    The initial values follow PyTorch's default ``nn.Linear`` distribution (weights and biases
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))) but are drawn from a private ``torch.Generator``, so the
    same seed gives the same network whatever the global RNG state.
    """
    if int(hidden) < 1:
        raise ValueError(f"hidden={hidden!r} must be >= 1")
    gen = torch.Generator().manual_seed(int(seed))
    net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1)).to(dtype)
    with torch.no_grad():
        for layer in (net[0], net[2]):
            bound = 1.0 / math.sqrt(layer.in_features)
            for t in (layer.weight, layer.bias):
                t.copy_((torch.rand(t.shape, generator=gen, dtype=dtype) * 2 - 1) * bound)
    return net


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Panel:
    """One column of the confound control (SPEC section 7.4).

    Attributes: ``name``; ``reduction`` of the BCE loss, ``"mean"`` or ``"sum"``; ``lr``, one
    learning rate for every p; ``update_norm``, ``None`` or ``"rms_matched"`` (NSF's control: each
    tensor's step is rescaled to the length of the p = 0 step).
    """

    name: str
    reduction: str = "mean"
    lr: float = 0.01
    update_norm: str | None = None

    def __post_init__(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction={self.reduction!r} is not one of {REDUCTIONS}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(
                f"lr={self.lr!r} for panel {self.name!r} must be a positive finite number"
            )
        if self.update_norm not in UPDATE_NORMS:
            raise ValueError(f"update_norm={self.update_norm!r} is not one of {UPDATE_NORMS}")


@dataclass(frozen=True)
class BoundaryDemo:
    """The parameters of the Sec. 4.2.2 demo (SPEC section 7.2 and Appendix C ``toy_2d``).

    Constructing it validates every value (``ValueError`` naming the value and the fix).

    Attributes:
        L, sigma, far_frac: branch length, noise and far-branch fraction of the training data.
        n_train_per_class, n_test_per_class: sample sizes; the test set has ``test_far_frac``
            far points per class (1/2 by default, so the near branches weigh as much as the far).
        data_seed, seed: seeds of the data and of the network's initialisation (shared by all p).
        hidden: hidden width H.
        p_values: exponents (rows of Fig. 5), non-empty, no duplicates.
        iters: full-batch iterations; checkpoints: strictly increasing, in [0, iters].
        topk: samples per class highlighted by effective update norm (1 <= k <= class size).
        betas, eps, eps_mode, momentum: NSF's settings (Eq. 3 literal by default).
        align_threshold: Bayes agreement that counts as aligned (t90 uses 0.9).
        p_delta, p_ab, p_c: the paper's roles: the "slightly negative" p, the two competitive
            values a and b, and the positive c (SPEC section 7.1); each must be in ``p_values``.
        map_extent, map_resolution: the square [-extent, extent]^2 and grid of the probability maps.
    """

    L: float = 1.5
    sigma: float = 0.05
    far_frac: float = 0.8
    n_train_per_class: int = 200
    n_test_per_class: int = 400
    test_far_frac: float = 0.5
    data_seed: int = 0
    seed: int = 0
    hidden: int = 32
    p_values: tuple[float, ...] = (0.5, 0.25, 0.0, -0.1, -0.25, -0.5)
    iters: int = 500
    checkpoints: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500)
    topk: int = 10
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    eps_mode: str = "outside"
    momentum: str = "ema"
    align_threshold: float = 0.9
    p_delta: float = -0.1
    p_ab: tuple[float, ...] = (-0.25, -0.5)
    p_c: float = 0.25
    map_extent: float = 1.3
    map_resolution: int = 121

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name, kind in [("p_values", float), ("checkpoints", int), ("p_ab", float),
                           ("betas", float)]:  # fmt: skip
            set_(self, name, as_tuple(name, getattr(self, name), kind))
        _check_geometry(self.L, self.sigma, self.far_frac)
        if not 0 < self.test_far_frac < 1:
            raise ValueError(
                f"test_far_frac={self.test_far_frac!r} must lie strictly between 0 and 1"
            )
        for name in ("n_train_per_class", "n_test_per_class", "hidden", "iters"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1")
        if not self.p_values:
            raise ValueError("p_values is empty; give at least one exponent, e.g. [0.5, 0, -0.1]")
        if len(set(self.p_values)) != len(self.p_values):
            raise ValueError(f"p_values {list(self.p_values)} has duplicates; list each p once")
        if not all(math.isfinite(p) for p in self.p_values):
            raise ValueError(f"p_values {list(self.p_values)} must be finite")
        c = list(self.checkpoints)
        if not c:
            raise ValueError("checkpoints is empty; give at least one iteration to snapshot")
        if any(b <= a for a, b in pairwise(c)):
            raise ValueError(
                f"checkpoints {c} must be strictly increasing; sort them and drop repeats"
            )
        if c[0] < 0 or c[-1] > self.iters:
            raise ValueError(f"checkpoints {c} must lie in [0, iters={self.iters}]")
        if not 1 <= int(self.topk) <= self.n_train_per_class:
            raise ValueError(
                f"topk={self.topk!r} must be between 1 and the class size "
                f"n_train_per_class={self.n_train_per_class}"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas={list(self.betas)} must be two numbers in [0, 1)")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eps={self.eps!r} must be a finite number >= 0")
        if self.eps_mode not in ("outside", "inside"):
            raise ValueError(f"eps_mode={self.eps_mode!r} is not 'outside' or 'inside'")
        if self.momentum not in ("ema", "heavy_ball"):
            raise ValueError(f"momentum={self.momentum!r} is not 'ema' or 'heavy_ball'")
        if not 0 < self.align_threshold <= 1:
            raise ValueError(f"align_threshold={self.align_threshold!r} must lie in (0, 1]")
        for role, value in [("p_delta", self.p_delta), ("p_c", self.p_c)] + [
            ("p_ab", v) for v in self.p_ab
        ]:
            if value not in self.p_values:
                raise ValueError(
                    f"{role}={value!r} is not in p_values {list(self.p_values)}; "
                    "add it or change the role"
                )
        if len(self.p_ab) == 0:
            raise ValueError(
                "p_ab is empty; name the paper's competitive values a and b, e.g. [-0.25, -0.5]"
            )
        if not self.p_delta < 0:
            raise ValueError(
                f"p_delta={self.p_delta!r} must be negative (the paper's 'slightly negative' p)"
            )
        if not self.p_c > 0:
            raise ValueError(f"p_c={self.p_c!r} must be positive (the paper's 'positive c')")
        if 0.0 not in self.p_values:
            raise ValueError(
                f"p_values {list(self.p_values)} must include 0, the SGD endpoint of B-1"
            )
        if not (math.isfinite(self.map_extent) and self.map_extent > 0):
            raise ValueError(f"map_extent={self.map_extent!r} must be positive")
        if int(self.map_resolution) < 8:
            raise ValueError(f"map_resolution={self.map_resolution!r} must be >= 8")

    def geometry(self) -> dict[str, float]:
        """The keyword arguments of the Bayes functions: far_frac, L, sigma."""
        return {"far_frac": self.far_frac, "L": self.L, "sigma": self.sigma}

    def datasets(self) -> dict[str, Samples]:
        """``train`` (far_frac split), ``test`` (test_far_frac split) and ``test_trainprop``
        (the training split), from ``data_seed`` (three independent streams)."""
        kw = {"L": self.L, "sigma": self.sigma}
        return {
            "train": crossed_l_samples(
                self.n_train_per_class, self.far_frac, seed=self.data_seed, **kw
            ),
            "test": crossed_l_samples(
                self.n_test_per_class, self.test_far_frac, seed=self.data_seed + 1_000_003, **kw
            ),
            "test_trainprop": crossed_l_samples(
                self.n_test_per_class, self.far_frac, seed=self.data_seed + 2_000_003, **kw
            ),
        }


# --------------------------------------------------------------------------- training
@dataclass
class PanelResult:
    """What :func:`train_panel` returns for one :class:`Panel`.

    Attributes:
        demo, panel: the configuration.
        data: the :class:`Samples` used (``train``, ``test``, ``test_trainprop``).
        history: pandas DataFrame, one row per (p, iteration 0..iters): ``acc`` (test, 50/50),
            ``acc_near`` (test near branches), ``acc_trainprop``, ``bayes_agreement`` (test),
            ``loss`` (mean BCE on the training set, whatever the reduction), ``loss_ratio``
            (loss / loss at iteration 0), ``step_norm`` (||theta_t - theta_{t-1}||_2).
        maps: p -> array (C, R, R) of P(class 1) on the map grid at the checkpoints.
        update_norms: p -> array (C, n_train) of per-sample effective update norms.
        topk: p -> bool array (C, n_train), True for the top-k per class.
        vhat_median: p -> array (C,) median of v^ over all parameters at the checkpoints.
        grid: the map's axis, (R,).
    """

    demo: BoundaryDemo
    panel: Panel
    data: dict[str, Samples]
    history: object
    maps: dict[float, np.ndarray]
    update_norms: dict[float, np.ndarray]
    topk: dict[float, np.ndarray]
    vhat_median: dict[float, np.ndarray]
    grid: np.ndarray

    def t_align(self) -> dict[float, float]:
        """p -> first iteration with Bayes agreement >= align_threshold (inf if never): t90."""
        h = self.history
        return {
            p: first_crossing(
                h.loc[h.p == p, "bayes_agreement"].to_numpy(), self.demo.align_threshold
            )
            for p in self.demo.p_values
        }

    def scores(self) -> dict[float, float]:
        """p -> log-time mean Bayes agreement (:func:`log_time_score`; higher = earlier)."""
        h = self.history
        return {
            p: log_time_score(h.loc[h.p == p, "bayes_agreement"].to_numpy())
            for p in self.demo.p_values
        }

    def half_gain(self) -> dict[float, tuple[int, float]]:
        """p -> (t_half, loss ratio at t_half): t_half is the first iteration at which the Bayes
        agreement has made half of its largest gain over iteration 0 (companion). "Accuracy
        improves while the loss remains high" (paper abstract, Sec. 4.2.2) reads: loss ratio
        there is still above ``loss_high_frac``."""
        h, out = self.history, {}
        for p in self.demo.p_values:
            hp = h[h.p == p]
            a = hp["bayes_agreement"].to_numpy()
            mark = a[0] + 0.5 * (a.max() - a[0])
            t = int(first_crossing(a, mark)) if a.max() > a[0] else 0
            out[p] = (t, float(hp["loss_ratio"].to_numpy()[t]))
        return out

    def metrics_table(self):
        """Per p: t90, log-time score, loss ratios, and the §7.3 metrics at the checkpoints."""
        import pandas as pd

        t90, score, half = self.t_align(), self.scores(), self.half_gain()
        h = self.history
        rows = []
        for p in self.demo.p_values:
            hp = h[h.p == p].set_index("iteration")
            t = t90[p]
            row = {
                "p": p,
                "t90": t,
                "log-time score": score[p],
                "loss ratio at t90": float(hp.loc[int(t), "loss_ratio"])
                if math.isfinite(t)
                else np.nan,
                "t_half": half[p][0],
                "loss ratio at t_half": half[p][1],
            }
            for c in self.demo.checkpoints:
                row[f"agree@{c}"] = float(hp.loc[c, "bayes_agreement"])
            row["acc@end"] = float(hp["acc"].iloc[-1])
            row["near acc@end"] = float(hp["acc_near"].iloc[-1])
            row["loss@end"] = float(hp["loss"].iloc[-1])
            rows.append(row)
        return pd.DataFrame(rows).set_index("p")


def first_crossing(series: np.ndarray, threshold: float) -> float:
    """The first index i with series[i] >= threshold, as a float; ``inf`` if none (SPEC t90)."""
    hit = np.flatnonzero(np.asarray(series) >= threshold)
    return float(hit[0]) if hit.size else math.inf


def log_time_score(series: np.ndarray) -> float:
    r"""Mean of series[t] over t = 1..T with weights 1/t (companion): the area under the curve
    on a logarithmic iteration axis, normalised to [0, 1] for a series in [0, 1]. Rewards early
    alignment; unlike t90 it never ties at 'never reached'."""
    s = np.asarray(series, dtype=float)[1:]
    w = 1.0 / np.arange(1, len(s) + 1)
    return float(np.sum(w * s) / np.sum(w))


def _loss(logits: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target, reduction=reduction)


def _preconditioner(opt: NSF, param: torch.Tensor, fallback_grad: torch.Tensor | None):
    """(den, ratio) for one tensor: den = v^^p + eps (or (v^ + eps)^p), and the rms_matched
    per-tensor factor ||u0|| / ||u|| (1 without the control). Before any step (``fallback_grad``
    given) v^ = g^2 and m^ = g of the first full batch (SPEC section 7.2)."""
    group = opt.param_groups[0]
    p, eps, (b1, b2) = group["p"], group["eps"], group["betas"]
    if fallback_grad is not None:
        vhat, mhat = fallback_grad**2, fallback_grad
    else:
        state = opt.state[param]
        t = float(state["step"])
        vhat = state["exp_avg_sq"] / (1 - b2**t)
        bc1 = (1 - b1**t) if group["momentum"] == "ema" else 1.0
        mhat = state["exp_avg"] / bc1
    if group["eps_mode"] == "outside":
        den, p0_scale = vhat.pow(p) + eps, 1.0 / (1.0 + eps)
    else:
        den, p0_scale = (vhat + eps).pow(p), 1.0
    ratio = 1.0
    if group["update_norm"] == "rms_matched":
        norm = torch.linalg.vector_norm(mhat / den)
        if norm > 0:
            ratio = float(torch.linalg.vector_norm(mhat) * p0_scale / norm)
    return den, ratio


def effective_update_norms(
    model: nn.Module, opt: NSF, X: torch.Tensor, y: torch.Tensor, reduction: str,
    first_grads: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:  # fmt: skip
    r"""Per-sample effective update norms :math:`\lVert \eta\, r\, \nabla\ell_i \oslash
    (\hat v^p+\epsilon)\rVert_2` over all parameters (SPEC section 7.2, reconstructed).

    ``ell_i`` is sample i's share of the batch loss (BCE/n for ``"mean"``, BCE for ``"sum"``),
    v^ the optimizer's current bias-corrected second moment and r the rms_matched factor of each
    tensor (1 without the control). Per-sample gradients come from ``torch.func.vmap(grad(...))``.
    Before the first step pass ``first_grads`` (name -> full-batch gradient): v^ = g^2 then.
    Returns a (n,) tensor.
    """
    params = {k: v.detach() for k, v in model.named_parameters()}
    scale = 1.0 / len(y) if reduction == "mean" else 1.0

    def sample_loss(prm, xi, yi):
        out = functional_call(model, prm, (xi[None, :],)).reshape(())
        return _loss(out, yi, "sum") * scale

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, X, y)
    lr = opt.param_groups[0]["lr"]
    total = torch.zeros(len(y), dtype=X.dtype)
    for name, param in model.named_parameters():
        fb = None if first_grads is None else first_grads[name]
        den, ratio = _preconditioner(opt, param, fb)
        u = lr * ratio * grads[name] / den
        total += u.reshape(len(y), -1).pow(2).sum(1)
    return total.sqrt()


def _topk_per_class(norms: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    mask = np.zeros(len(norms), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        # stable order: largest norm first, ties by index
        top = idx[np.lexsort((idx, -norms[idx]))[:k]]
        mask[top] = True
    return mask


def train_panel(
    demo: BoundaryDemo, panel: Panel, data: dict[str, Samples] | None = None
) -> PanelResult:
    """Train the MLP full-batch with :class:`~nsf.optim.NSF` at every p of ``demo``, per ``panel``.

    Every p starts from the same network (``demo.seed``) and data (``demo.data_seed``); the
    optimizer is NSF with ``betas``, ``eps``, ``eps_mode``, ``momentum`` of ``demo``, bias
    correction, no weight decay, and the panel's reduction, learning rate and update_norm.
    Metrics are recorded at every iteration (SPEC section 7.3) and snapshots at the checkpoints.
    Deterministic on CPU for fixed seeds. Returns a :class:`PanelResult`.
    """
    import pandas as pd

    if not isinstance(demo, BoundaryDemo):
        raise TypeError(f"demo must be a BoundaryDemo, got {type(demo).__name__}")
    if not isinstance(panel, Panel):
        raise TypeError(f"panel must be a Panel, got {type(panel).__name__}")
    data = demo.datasets() if data is None else data
    dt = torch.float32
    tr, te, te2 = data["train"], data["test"], data["test_trainprop"]
    Xtr, ytr = torch.as_tensor(tr.X, dtype=dt), torch.as_tensor(tr.y, dtype=dt)
    Xte, Xte2 = torch.as_tensor(te.X, dtype=dt), torch.as_tensor(te2.X, dtype=dt)
    bayes_te = bayes_predict(te.X, **demo.geometry())
    grid = np.linspace(-demo.map_extent, demo.map_extent, demo.map_resolution)
    GX, GY = np.meshgrid(grid, grid)
    Xmap = torch.as_tensor(np.stack([GX.ravel(), GY.ravel()], 1), dtype=dt)
    R = demo.map_resolution
    want = {c: i for i, c in enumerate(demo.checkpoints)}
    C = len(demo.checkpoints)

    rows, maps, norms, tops, vmeds = [], {}, {}, {}, {}
    for p in demo.p_values:
        model = mlp(demo.hidden, demo.seed, dt)
        opt = NSF(
            model.parameters(), lr=panel.lr, p=p, betas=demo.betas, eps=demo.eps,
            weight_decay=0.0, momentum=demo.momentum, bias_correction=True,
            eps_mode=demo.eps_mode, update_norm=panel.update_norm, foreach=False,
        )  # fmt: skip
        maps[p] = np.empty((C, R, R))
        norms[p] = np.empty((C, len(ytr)))
        tops[p] = np.zeros((C, len(ytr)), dtype=bool)
        vmeds[p] = np.full(C, np.nan)
        prev = torch.cat([q.detach().flatten() for q in model.parameters()])

        def record(t: int, step_norm: float, model=model, p=p) -> float:
            with torch.no_grad():
                loss = float(_loss(model(Xtr).squeeze(1), ytr, "mean"))
                pred = (model(Xte).squeeze(1) > 0).numpy().astype(int)
                pred2 = (model(Xte2).squeeze(1) > 0).numpy().astype(int)
            rows.append({
                "p": p, "iteration": t,
                "acc": float(np.mean(pred == te.y)),
                "acc_near": float(np.mean(pred[te.near] == te.y[te.near])),
                "acc_trainprop": float(np.mean(pred2 == te2.y)),
                "bayes_agreement": float(np.mean(pred == bayes_te)),
                "loss": loss, "step_norm": step_norm,
            })  # fmt: skip
            return loss

        def snapshot(t: int, first_grads=None, model=model, opt=opt, p=p) -> None:
            k = want[t]
            with torch.no_grad():
                maps[p][k] = torch.sigmoid(model(Xmap)).reshape(R, R).numpy()
            u = effective_update_norms(model, opt, Xtr, ytr, panel.reduction, first_grads).numpy()
            norms[p][k] = u
            tops[p][k] = _topk_per_class(u, tr.y, demo.topk)
            if first_grads is None:
                b2 = opt.param_groups[0]["betas"][1]
                v = [opt.state[q]["exp_avg_sq"] / (1 - b2 ** float(opt.state[q]["step"]))
                     for q in model.parameters()]  # fmt: skip
            else:
                v = [g**2 for g in first_grads.values()]
            vmeds[p][k] = float(torch.cat([x.flatten() for x in v]).median())

        record(0, 0.0)
        for t in range(1, demo.iters + 1):
            opt.zero_grad(set_to_none=True)
            loss = _loss(model(Xtr).squeeze(1), ytr, panel.reduction)
            loss.backward()
            if t == 1 and 0 in want:
                snapshot(0, {n: q.grad.detach().clone() for n, q in model.named_parameters()})
            opt.step()
            cur = torch.cat([q.detach().flatten() for q in model.parameters()])
            record(t, float(torch.linalg.vector_norm(cur - prev)))
            prev = cur
            if t in want:
                snapshot(t)

    history = pd.DataFrame(rows)
    first = history[history.iteration == 0].set_index("p")["loss"]
    history["loss_ratio"] = history["loss"] / history["p"].map(first)
    return PanelResult(demo, panel, data, history, maps, norms, tops, vmeds, grid)


# --------------------------------------------------------------------------- checks B-1..B-3
def _later(a: float, b: float) -> bool | None:
    """Is a strictly later than b? None when neither was reached (both inf)."""
    if math.isinf(a) and math.isinf(b):
        return None
    return a > b


def _all(results: Sequence[bool | None]) -> bool | None:
    if any(r is False for r in results):
        return False
    if any(r is None for r in results):
        return None
    return True


def alignment_checks(
    demo: BoundaryDemo, times: Mapping[float, float], *, label: str = "t90"
) -> list[Check]:
    """B-1..B-3 of SPEC section 7.3 on per-p alignment times (lower = earlier).

    ``times`` is :meth:`PanelResult.t_align` (t90; inf = never aligned) or any "time" where lower
    is better (pass minus :meth:`PanelResult.scores` for the log-time score). A comparison of two
    runs that both never aligned is undecided, and so is a check that rests on one (verdict "not
    applicable"). Returns three :class:`~nsf.density1d.Check`.
    """
    p0, d, ab, c = 0.0, demo.p_delta, list(demo.p_ab), demo.p_c
    fmt = lambda p: f"{times[p]:g}" if label == "t90" else f"{-times[p]:.3f}"  # noqa: E731
    b1 = _all([_later(times[p0], times[q]) for q in [d, *ab]])
    b2 = _all([_later(times[q], times[d]) for q in demo.p_values if q != d])
    b3 = _all([_later(times[c], times[q]) for q in ab])
    word = "t90" if label == "t90" else "log-time score"
    cmp = "largest" if label == "t90" else "lowest"
    und = f"undecided (runs it compares never reached agreement {demo.align_threshold:g})"
    return [
        Check("B-1", "the SGD endpoint p = 0 is the slowest to align",
              f"{word} of p = 0 {cmp} among p in {[p0, d, *ab]}",
              ", ".join(f"p={q:g}: {fmt(q)}" for q in [p0, d, *ab]), b1, und),
        Check("B-2", f"a slightly negative p (here {d:g}) aligns fastest",
              f"p = {d:g} is the unique best {word} among all p",
              ", ".join(f"p={q:g}: {fmt(q)}" for q in demo.p_values), b2, und),
        Check("B-3", f"the positive c (here {c:g}) is slower than a, b = {ab}",
              f"{word} of p = {c:g} worse than each of {ab}",
              ", ".join(f"p={q:g}: {fmt(q)}" for q in [c, *ab]), b3, und),
    ]  # fmt: skip
