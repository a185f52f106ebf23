"""The parameters of chapter 01 (the unified rule, paper Sec. 3.1-3.2), checked once.

This module imports pydantic only (no torch), so ``python -m nsf run 01`` refuses a bad value
before a kernel, or torch, starts.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, Strict, model_validator
from pydantic.dataclasses import dataclass

from nsf.validation import CONFIG, Count, Finite, Positive

if TYPE_CHECKING:
    from nsf.optim import UpdateNorm
    from nsf.unified.diagonal import DiagonalRun

__all__ = ["UnifiedSetup"]


def _non_empty(values: tuple) -> tuple:
    if not values:
        raise ValueError("it is empty; give at least one value")
    return values


def _distinct(values: tuple) -> tuple:
    _non_empty(values)
    if len(set(values)) != len(values):
        raise ValueError(f"{list(values)} repeats a value; the exponents must be distinct")
    return values


#: A seed, a whole number >= 0.
Seed = Annotated[int, Strict(), Field(ge=0)]
#: A non-empty tuple of exponents p (a list is accepted).
Exponents = Annotated[tuple[Finite, ...], AfterValidator(_non_empty)]
#: A non-empty tuple of distinct exponents p (each p is one run).
DistinctExponents = Annotated[tuple[Finite, ...], AfterValidator(_distinct)]


@dataclass(frozen=True, config=CONFIG)
class UnifiedSetup:
    r"""Every parameter of chapter 01; the defaults are the notebook's parameters cell.

    Attributes:
        seed: seed of the MLP and data stream of the torch equivalences, of the D1 runs and of
            the timed gradients.
        equivalence_steps: optimizer steps per torch.optim equivalence (Sec. 3.1, Eq. 3).
        gain_p_values: exponents of the constant-gradient gain plot, and rows of the
            step-multiplier table :math:`\hat v^{-p}`.
        v_hat_values: second-moment values :math:`\hat v > 0` of the step-multiplier table.
        demo_K: sine modes of the diagonal demo D1 (Sec. 3.2).
        demo_steps: optimizer steps of D1.
        demo_lr: learning rate of D1, one value for every p.
        demo_p_values: the distinct exponents of D1.
        demo_probe_step: the step (1 ... demo_steps) at which D1 measures the realised gain.
        timing_rounds: interleaved timing rounds per optimizer.
        timing_device: ``"cpu"`` or ``"cuda"``, the device of the step-time measurement.
        timing_fused: also time ``NSF(fused=True)`` (compiles once; a C++ compiler on the CPU).

    A bad value raises ``pydantic.ValidationError`` (a ``ValueError``) naming the field.
    """

    seed: Seed = 0
    equivalence_steps: Count = 200
    gain_p_values: Exponents = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75)
    v_hat_values: Annotated[tuple[Positive, ...], AfterValidator(_non_empty)] = (
        1e-8,
        1e-6,
        1e-4,
        1.0,
    )
    demo_K: Count = 64  # noqa: N815 (the notebook's name)
    demo_steps: Count = 600
    demo_lr: Positive = 0.01
    demo_p_values: DistinctExponents = (-0.5, -0.25, 0.0, 0.25, 0.5)
    demo_probe_step: Count = 50
    timing_rounds: Count = 10
    timing_device: Literal["cpu", "cuda"] = "cpu"
    timing_fused: Annotated[bool, Strict()] = True

    @model_validator(mode="after")
    def _consistent(self) -> UnifiedSetup:
        if self.demo_probe_step > self.demo_steps:
            raise ValueError(
                f"demo_probe_step={self.demo_probe_step} is refused: it exceeds "
                f"demo_steps={self.demo_steps}; probe at a step that is run"
            )
        return self

    def demo(
        self, spectrum: Literal["low", "high"], update_norm: UpdateNorm = None
    ) -> dict[float, DiagonalRun]:
        """:func:`nsf.unified.diagonal_demo` with this setup's D1 parameters, noiseless, for
        target ``spectrum`` (``"low"``: y_k ~ 1/k; ``"high"``: y_k ~ k^0.5)."""
        from nsf.unified.diagonal import diagonal_demo

        return diagonal_demo(
            self.demo_p_values,
            spectrum,
            K=self.demo_K,
            steps=self.demo_steps,
            lr=self.demo_lr,
            seed=self.seed,
            probe_step=self.demo_probe_step,
            update_norm=update_norm,
        )

    def replace(self, **changes: Any) -> UnifiedSetup:
        """A copy with ``changes`` applied (and validated; an unknown name is refused)."""
        return dataclasses.replace(self, **changes)
