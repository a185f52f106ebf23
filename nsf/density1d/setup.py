r"""The setup of the Sec. 4.2.1 demo: its parameters, the grid, the density, the target.

Paper Sec. 4.2.1 names the ingredients of its 1D toy (a density slope alpha, the exponents p of
the rows of Fig. 4, a boundary region, a number of steps) but prints none of their values.
:class:`DensityDemo` holds each of them, checked once when it is built, with the companion's
reconstruction as defaults (the notebook's parameters cell, book page "04 · The 1D density demo").
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, Strict, field_validator, model_validator
from pydantic.dataclasses import dataclass

from nsf.validation import CONFIG, Count, Finite, Increasing, NonNegative, Positive

__all__ = ["DENSITY_FORMS", "EPS_MODES", "DensityDemo", "density", "midpoint_grid", "target"]

DENSITY_FORMS = ("linear", "exponential")
EPS_MODES = ("inside", "outside")

#: A grid size: a whole number >= 2.
GridSize = Annotated[int, Strict(), Field(ge=2)]


def midpoint_grid(n: int) -> np.ndarray:
    """The midpoint grid x_i = (i + 1/2)/n on [0, 1], shape (n,)."""
    return (np.arange(n) + 0.5) / n


def density(x: np.ndarray, alpha: float | np.ndarray, form: str = "linear") -> np.ndarray:
    r"""The sample density rho(x) with slope alpha (Sec. 4.2.1; the form is assumed).

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


def target(x: np.ndarray, cycles: float) -> np.ndarray:
    """The target y(x) = sin(2 pi c x) with c = ``cycles``."""
    return np.sin(2 * np.pi * cycles * x)


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class DensityDemo:
    """The parameters of the Sec. 4.2.1 demo; the defaults are the companion's reconstruction.

    Attributes:
        p_values: the second-moment exponents (rows of Fig. 4); distinct, each < 1 (Eq. 14).
        alphas: density slopes (columns of Fig. 4); distinct; for the linear density each
            ``|alpha|`` < 2.
        eta: the learning rate, one value for every p (> 0).
        eps: the stabiliser (>= 0); ``eps_mode`` puts it inside or outside the power.
        steps: iterations T (>= 1).
        checkpoints: strictly increasing iterations in [1, steps] at which f is recorded.
        n_grid: number of midpoint grid points on [0, 1] (>= 2).
        region: (x_b, x_e), the boundary region on which fRMSE is measured, inside [0, 1] and
            holding a grid point.
        target_cycles: c in the target y(x) = sin(2 pi c x) (non-zero).
        f0: the constant initial predictor.
        density_form: ``"linear"``: rho = 1 + alpha (x - 1/2); ``"exponential"``:
            rho = alpha e^(alpha x) / (e^alpha - 1). Both integrate to 1.

    A bad value raises ``pydantic.ValidationError`` (a ``ValueError``) naming the field, the
    value and the fix, before anything is simulated.
    """

    p_values: tuple[Finite, ...] = (0.5, 0.0, -0.25, -0.5)
    alphas: tuple[Finite, ...] = (-1.5, 0.0, 1.5)
    eta: Positive = 0.02
    eps: NonNegative = 1e-8
    eps_mode: Literal["inside", "outside"] = "inside"
    steps: Count = 1000
    checkpoints: Increasing = (10, 50, 100, 200, 500, 1000)
    n_grid: GridSize = 1000
    region: tuple[Finite, Finite] = (0.8, 1.0)
    target_cycles: Finite = 1.0
    f0: Finite = 0.0
    density_form: Literal["linear", "exponential"] = "linear"

    @field_validator("p_values", "alphas")
    @classmethod
    def _distinct(cls, values: tuple[float, ...], info: Any) -> tuple[float, ...]:
        example = {"p_values": "[0.5, 0, -0.5]", "alphas": "[-1.5, 0, 1.5]"}[info.field_name]
        if not values:
            raise ValueError(f"{info.field_name} is empty; give at least one, e.g. {example}")
        if len(set(values)) != len(values):
            raise ValueError(
                f"{info.field_name}={list(values)} has duplicates; list each value once"
            )
        return values

    @field_validator("p_values")
    @classmethod
    def _below_one(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        for p in values:
            if p >= 1:
                raise ValueError(
                    f"p={p!r} in p_values is not allowed: Eq. (14) needs p < 1; drop it"
                )
        return values

    @field_validator("target_cycles")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("target_cycles=0 makes the target y = 0; give a non-zero c, e.g. 1")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DensityDemo:
        if self.density_form == "linear":
            for a in self.alphas:
                if abs(a) >= 2:
                    raise ValueError(
                        f"alphas={list(self.alphas)} is refused: alpha={a!r} makes the linear "
                        "density 1 + alpha (x - 1/2) non-positive; use |alpha| < 2"
                    )
        if self.checkpoints[-1] > self.steps:
            raise ValueError(
                f"checkpoints={list(self.checkpoints)} is refused: they must lie in "
                f"[1, steps={self.steps}]; drop the later ones or raise steps"
            )
        if self.checkpoints[0] < 1:
            raise ValueError(
                f"checkpoints={list(self.checkpoints)} is refused: they must lie in "
                f"[1, steps={self.steps}]; drop the iterations below 1"
            )
        xb, xe = self.region
        if not 0 <= xb < xe <= 1:
            raise ValueError(
                f"region={list(self.region)} is refused: give [x_b, x_e] with 0 <= x_b < x_e <= 1"
            )
        x = midpoint_grid(self.n_grid)
        if not np.any((x >= xb) & (x <= xe)):
            raise ValueError(
                f"region={list(self.region)} is refused: it holds no grid point of "
                f"n_grid={self.n_grid}; widen it or raise n_grid"
            )
        return self

    def replace(self, **changes: Any) -> DensityDemo:
        """A copy with ``changes`` applied (and validated; an unknown name is refused)."""
        return dataclasses.replace(self, **changes)


def demo_part(setup: DensityDemo) -> DensityDemo:
    """The :class:`DensityDemo` fields of ``setup`` (a demo, or a subclass of it) as a demo."""
    names = [f.name for f in dataclasses.fields(DensityDemo)]
    if type(setup) is DensityDemo:
        return setup
    return DensityDemo(**{n: getattr(setup, n) for n in names})
