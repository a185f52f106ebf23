r"""Eq. 3 of the paper (Sec. 3.1) written literally, in float64 NumPy: the readable math of
:class:`nsf.optim.NSF` and the oracle of its tests.

One tensor, one step, every term computed as the equations state it (no folding of the bias
correction into scalars, no fast paths, nothing shared with :mod:`nsf.optim`)::

    g  = -grad if maximize else grad;   g += lambda*theta           (coupled L2)
    m  = beta1*m + (1-beta1)*g   (ema)   |   beta1*m + g   (heavy ball, torch SGD's buffer)
    v  = beta2*v + (1-beta2)*g^2;        v_max = max(v_max, v)     (amsgrad)
    m^ = m/(1-beta1^t)   (ema with bias correction; heavy ball: m^ = m)
    v^ = v/(1-beta2^t)   (bias correction; v_max in place of v with amsgrad)
    D  = v^^p + eps      ("outside", Eq. 3)   |   (v^ + eps)^p   ("inside")
    u  = m^/D;  with rms_matched u *= ||u0||/||u||, u0 = m^/(1 + eps) (outside) or m^ (inside)
    theta = theta*(1 - lr*lambda) (decoupled decay) ;  theta = theta - lr*u
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["State", "Terms", "eq3_step"]


@dataclass
class State:
    """One tensor's optimizer state: the step count t and the moments m, v (and max v)."""

    t: int
    m: np.ndarray
    v: np.ndarray
    v_max: np.ndarray

    @classmethod
    def zeros(cls, shape: tuple[int, ...]) -> State:
        return cls(0, np.zeros(shape), np.zeros(shape), np.zeros(shape))


class Terms(NamedTuple):
    """The terms of one step: theta_after = theta_before (times the decoupled decay) - lr*step."""

    m_hat: np.ndarray
    v_hat: np.ndarray
    denominator: np.ndarray
    step: np.ndarray


def eq3_step(
    theta: np.ndarray,
    grad: np.ndarray,
    state: State,
    *,
    lr: float,
    p: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: str = "ema",
    bias_correction: bool = True,
    eps_mode: str = "outside",
    amsgrad: bool = False,
    decoupled_weight_decay: bool = False,
    update_norm: str | None = None,
    maximize: bool = False,
) -> tuple[np.ndarray, Terms]:
    """One step of Eq. 3 on one tensor: advances ``state`` and returns (new theta, its terms)."""
    theta, grad = np.asarray(theta, np.float64), np.asarray(grad, np.float64)
    beta1, beta2 = betas
    g = -grad if maximize else grad
    if not decoupled_weight_decay:
        g = g + weight_decay * theta

    state.t += 1
    t = state.t
    if momentum == "ema":
        state.m = beta1 * state.m + (1 - beta1) * g
    else:
        state.m = beta1 * state.m + g
    state.v = beta2 * state.v + (1 - beta2) * g * g
    state.v_max = np.maximum(state.v_max, state.v)
    v = state.v_max if amsgrad else state.v

    m_hat = state.m / (1 - beta1**t) if bias_correction and momentum == "ema" else state.m
    v_hat = v / (1 - beta2**t) if bias_correction else v
    with np.errstate(divide="ignore"):  # v^ = 0 at p < 0: D = inf, a zero step
        denominator = v_hat**p + eps if eps_mode == "outside" else (v_hat + eps) ** p
    step = m_hat / denominator
    if update_norm == "rms_matched":
        step_p0 = m_hat / (1 + eps) if eps_mode == "outside" else m_hat
        if np.linalg.norm(step) > 0:
            step = step * np.linalg.norm(step_p0) / np.linalg.norm(step)

    if decoupled_weight_decay:
        theta = theta * (1 - lr * weight_decay)
    return theta - lr * step, Terms(m_hat, v_hat, denominator, step)
