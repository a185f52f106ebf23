r"""D1, the exact diagonal case: a linear model in the sine basis, where each parameter is one
frequency and Sec. 3.2's spectral reading of p is exact (book chapter 01, "D1: the exact
diagonal case")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nsf.optim import NSF

__all__ = ["DiagonalRun", "diagonal_demo", "steps_to_reduce"]


@dataclass(frozen=True, eq=False)
class DiagonalRun:
    r"""Results of :func:`diagonal_demo` for one p.

    Attributes:
        rel_error: [steps + 1, K], :math:`|\theta_k(t) - y_k| / |y_k|` from t = 0.
        gain: [K], the realised gain :math:`r_k = |\Delta\theta_k| / (\eta\,|\hat m_k|)` at the
            probe step, which Eq. 3 says is :math:`1/(\hat v_k^{\,p} + \epsilon)`.
        v_hat: [K], :math:`\hat v_k` at the probe step.
        slope: the log-log fit of :math:`r_k` on :math:`\hat v_k` (which is :math:`-p`).
    """

    rel_error: np.ndarray
    gain: np.ndarray
    v_hat: np.ndarray
    slope: float

    def steps_to_reduce(self, factor: float = 10.0) -> np.ndarray:
        """T_k of :func:`steps_to_reduce` for this run."""
        return steps_to_reduce(self.rel_error, factor)


def _target_spectrum(kind: str, K: int) -> np.ndarray:
    k = np.arange(1, K + 1, dtype=float)
    if kind == "low":  # energy at low frequencies: y_k ~ 1/k
        return 1.0 / k
    if kind == "high":  # energy at high frequencies: y_k ~ k^0.5, capped at 1
        return np.minimum(np.sqrt(k / K), 1.0)
    raise ValueError(f"spectrum {kind!r} is not 'low' (y_k ~ 1/k) or 'high' (y_k ~ k^0.5)")


def diagonal_demo(
    p_values: Sequence[float],
    spectrum: str = "low",
    K: int = 64,
    steps: int = 300,
    lr: float = 0.01,
    noise_std: float = 0.0,
    seed: int = 0,
    update_norm: str | None = None,
    probe_step: int = 50,
    eps: float = 1e-8,
) -> dict[float, DiagonalRun]:
    r"""D1: a linear model in the orthonormal sine basis, where Eq. 4 holds exactly (Sec. 3.2).

    f_theta(x) = sum_k theta_k phi_k(x), phi_k = sqrt(2) sin(k pi x), loss 1/2 ||f - y||^2 with
    targets y_obs = y + xi. In this basis the gradient is g_k = theta_k - y_k - xi_k, so each
    coordinate is one frequency (H_i is a Kronecker delta) and v_k is the band energy V(omega_k).
    NSF (ema, bias correction, eps outside) is run from theta = 0 for each p, at one lr.

    Returns a :class:`DiagonalRun` per p. The realised gain is measured from the parameter's
    change over the probe step, against :math:`\hat m` and :math:`\hat v` of that step as
    :meth:`nsf.optim.NSF.update_terms` reports them. ``noise_std`` is the per-coefficient std of
    xi_k.
    ``spectrum`` is ``"low"`` (y_k ~ 1/k) or ``"high"`` (y_k ~ k^0.5, capped at 1).
    """
    if not p_values:
        raise ValueError("p_values is empty; give at least one exponent")
    if not 1 <= probe_step <= steps:
        raise ValueError(f"probe_step={probe_step} must lie in [1, steps={steps}]")
    y = _target_spectrum(spectrum, K)
    results = {}
    for p in p_values:
        rng = np.random.default_rng(seed)
        theta = torch.zeros(K, dtype=torch.float64, requires_grad=True)
        opt = NSF([theta], lr=lr, p=p, eps=eps, update_norm=update_norm, foreach=False)
        errors = [np.abs(theta.detach().numpy() - y) / np.abs(y)]
        gain = v_hat = None
        for t in range(1, steps + 1):
            xi = rng.normal(0.0, noise_std, K) if noise_std > 0 else 0.0
            theta.grad = theta.detach() - torch.from_numpy(y + xi)
            before = theta.detach().clone()
            opt.step()
            if t == probe_step:
                terms = opt.update_terms(theta)
                v_hat = terms.v_hat.numpy()
                gain = ((theta.detach() - before).abs() / (lr * terms.m_hat.abs())).numpy()
            errors.append(np.abs(theta.detach().numpy() - y) / np.abs(y))
        slope = np.polyfit(np.log(v_hat), np.log(gain), 1)[0]
        results[float(p)] = DiagonalRun(
            rel_error=np.array(errors), gain=gain, v_hat=v_hat, slope=float(slope)
        )
    return results


def steps_to_reduce(rel_error: np.ndarray, factor: float = 10.0) -> np.ndarray:
    """T_k: the first step at which mode k's relative error falls to 1/factor or below (inf if
    never), from ``rel_error`` [steps + 1, K] whose row t is step t."""
    below = rel_error <= 1.0 / factor
    first = np.argmax(below, axis=0).astype(float)
    first[~below.any(axis=0)] = np.inf
    return first
