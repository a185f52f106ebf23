r"""The crossed-L data of Sec. 4.2.2, its Bayes rule in closed form, and the best straight line.

The paper's two "intersecting 'angle'-shaped class manifolds with asymmetric sampling density"
are reconstructed as a *crossed L* (an assumption of the companion; book chapter 05, "The data
and the optimal separator"): class 0 has its vertex at (-1/2, -1/2), a far branch along +x and
a near branch along +y; class 1 is its point reflection (vertex (1/2, 1/2), far branch along -x,
near along -y). A point is v + s u + sigma xi with s ~ U(0, L), xi ~ N(0, I); a fraction
``far_frac`` of each class lies on the far branch.

The paper's "optimal separator" is taken to be the Bayes rule of that generative model with
equal priors; a blurred segment's density is
:math:`\frac1L\,\mathcal N(d_\perp;0,\sigma)\,
[\Phi(\frac{L-s_\parallel}{\sigma})-\Phi(\frac{-s_\parallel}{\sigma})]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic.dataclasses import dataclass as checked_dataclass

from nsf.validation import CONFIG, Count, OpenUnit, Positive

__all__ = [
    "CrossedL",
    "Samples",
    "bayes_boundary",
    "bayes_log_odds",
    "bayes_predict",
    "best_linear_accuracy",
    "crossed_l_samples",
]


@checked_dataclass(frozen=True, config=CONFIG)
class CrossedL:
    """The crossed-L geometry: branch length ``L``, noise ``sigma`` and far-branch fraction
    ``far_frac`` (strictly between 0 and 1: both branches need mass). Building it checks them
    (``pydantic.ValidationError`` naming the field and the value)."""

    L: Positive = 1.5
    sigma: Positive = 0.05
    far_frac: OpenUnit = 0.8


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


@checked_dataclass(frozen=True, config=CONFIG)
class _Size:
    n_per_class: Count


def crossed_l_samples(
    n_per_class: int, far_frac: float = 0.8, *, L: float = 1.5, sigma: float = 0.05, seed: int = 0
) -> Samples:
    """Draw ``n_per_class`` points of each class from the crossed-L model (Sec. 4.2.2).

    round(far_frac * n_per_class) points of each class lie on its far branch, the rest on its near
    branch. Deterministic for a fixed ``seed`` (a private ``numpy.random.Generator``). Returns
    :class:`Samples`, class 0 first.
    """
    CrossedL(L=L, sigma=sigma, far_frac=far_frac)
    _Size(n_per_class=n_per_class)
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
    r"""log p(x | class 1) - log p(x | class 0) of the crossed-L model (Sec. 4.2.2's "optimal
    separator", reconstructed as the Bayes rule).

    Each class density is the mixture far_frac * p(x | far) + (1 - far_frac) * p(x | near) of two
    Gaussian-blurred uniform segments. With equal priors the Bayes rule predicts class 1 where the
    log-odds is positive. Computed in log space, so it is finite far from every branch. Returns an
    array of ``X.shape[:-1]``.
    """
    CrossedL(L=L, sigma=sigma, far_frac=far_frac)
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
    """The Bayes labels (0/1, int) of the crossed-L model with equal priors."""
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
    angles = np.linspace(0.0, 2 * np.pi, n_angles, endpoint=False)
    proj = X @ np.stack([np.cos(angles), np.sin(angles)])  # (n, A)
    order = np.argsort(proj, axis=0)
    ys = y[order]  # (n, A) labels sorted along each direction
    # predict 1 above the threshold: accuracy = (#0 below) + (#1 above)
    zeros_below = np.vstack([np.zeros((1, n_angles)), np.cumsum(ys == 0, axis=0)])
    ones_above = np.vstack([np.cumsum((ys == 1)[::-1], axis=0)[::-1], np.zeros((1, n_angles))])
    return float(np.max(zeros_below + ones_above)) / n
