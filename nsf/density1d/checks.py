r"""The paper's observations on Fig. 4 (Sec. 4.2.1) as checks D-1..D-4, and their settings.

The paper's three bullets (p = 1/2 screens the density out, p = 0 follows it, p < 0 amplifies it)
and its closed form (Eq. 14) are each a :class:`nsf.verdicts.Check` computed from a
:class:`~nsf.density1d.DensityResult`. Each check states its strength honestly: D-1 and D-2 follow
from the update rule itself given the chapter's setup (identities), D-3 and D-4 can fail.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import model_validator
from pydantic.dataclasses import dataclass

from nsf.density1d.setup import DensityDemo, demo_part, midpoint_grid, target
from nsf.density1d.simulate import DensityResult, decay_comparison, density_ratio
from nsf.validation import CONFIG, Count, NonNegative, Positive
from nsf.verdicts import Check

__all__ = ["DensityChecks", "check_d1", "check_d2", "check_d3", "check_d4"]


def _index(values: Sequence[float], value: float) -> int | None:
    for i, v in enumerate(values):
        if v == value:
            return i
    return None


def check_d1(result: DensityResult, tol: float = 1e-6) -> Check:
    r"""D-1: at p = 1/2 the fRMSE is insensitive to alpha (spread across alpha < tol everywhere).

    Strength: identity. At p = 1/2 the update is :math:`e_n = e_{n-1}(1 - \eta\rho/
    \sqrt{\rho^2 S_n + \epsilon})` with :math:`S_n = \sum_{s \le n} e_{s-1}^2`, which at
    :math:`\epsilon = 0` is :math:`e_n = e_{n-1}(1 - \eta/\sqrt{S_n})`: rho cancels at every step,
    so every alpha runs the same recursion. What the check measures is only how far the
    stabiliser eps breaks that cancellation; it holds whatever the dynamics do once eps is small.
    """
    cfg = result.config
    claim = "p = 0.5: the curves are nearly insensitive to alpha"
    crit = f"max over checkpoints of (max - min over alpha) fRMSE < {tol:g}"
    i = _index(cfg.p_values, 0.5)
    if i is None or len(cfg.alphas) < 2:
        return Check("D-1", claim, crit, "needs p = 0.5 and two alphas", None, strength="identity")
    spread = float(np.max(np.ptp(result.frmse[i], axis=0)))
    return Check("D-1", claim, crit, f"spread = {spread:.2e}", spread < tol, strength="identity")


def check_d2(result: DensityResult, floor: float = 1e-6) -> Check:
    r"""D-2: at p = 0, fRMSE falls as alpha rises (higher density at the region = faster).

    Strictly decreasing in alpha at every checkpoint where the largest-error alpha is above
    ``floor`` (below it every curve has converged and the order is round-off); it fails when no
    checkpoint is above the floor.

    Strength: identity. At p = 0 the update is linear, :math:`e_n = (1 - \eta\rho)^n e_0` exactly
    (eps plays no part), so wherever the density grows with alpha (the linear density on a region
    right of x = 1/2, as in the chapter) and :math:`\eta\rho < 1`, a larger alpha decays faster at
    every n. The check confirms the setup puts the dense side on the region, not the dynamics.
    """
    cfg = result.config
    claim = "p = 0: higher density in the boundary region accelerates convergence there"
    crit = f"fRMSE strictly decreasing in alpha at every checkpoint with fRMSE > {floor:g}"
    i = _index(cfg.p_values, 0.0)
    if i is None or len(cfg.alphas) < 2:
        return Check("D-2", claim, crit, "needs p = 0 and two alphas", None, strength="identity")
    order = np.argsort(cfg.alphas)
    err = result.frmse[i][order]  # (A, C), alpha ascending
    live = err.max(axis=0) > floor
    ok = np.all(np.diff(err[:, live], axis=0) < 0, axis=0)
    bad = [
        int(c) for c, good in zip(np.asarray(cfg.checkpoints)[live], ok, strict=True) if not good
    ]
    stat = f"{int(ok.sum())}/{int(live.sum())} checkpoints ordered" + (
        f"; out of order at {bad}" if bad else ""
    )
    return Check("D-2", claim, crit, stat, bool(live.any() and ok.all()), strength="identity")


def check_d3(result: DensityResult, checkpoint: int = 100) -> Check:
    """D-3: for p < 0 the density sensitivity is amplified relative to p = 0.

    The ratio fRMSE(alpha_min)/fRMSE(alpha_max) at ``checkpoint``
    (:func:`~nsf.density1d.density_ratio`) is larger for every p < 0 than at p = 0.

    Strength: independent. The ratio depends on how v accumulates along the run; Eq. (14) predicts
    the amplification (rho^(1-2p)) only while e is near e0, which at the chapter's learning rate
    ends long before the checkpoint, so the outcome is the simulated dynamics'.
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
    ratio = density_ratio(result, checkpoint)
    stat = ", ".join(f"p={cfg.p_values[i]:g}: {ratio[i]:.3g}" for i in [i0, *negs])
    return Check("D-3", claim, crit, stat, bool(all(ratio[i] > ratio[i0] for i in negs)))


def check_d4(
    config: DensityDemo, *, eta: float = 0.002, steps: int = 20, min_e0: float = 0.2,
    tol: float = 0.05,
) -> Check:  # fmt: skip
    """D-4: the closed form (14) matches the simulated early decay within ``tol``.

    Relative error of -log|e_n/e_0| against the discrete analogue of (14)
    (:func:`~nsf.density1d.decay_comparison`), max over n <= steps, grid points with
    ``|e0|`` > min_e0, every p and alpha.

    Strength: independent. The simulation is compared with a closed form derived separately (from
    the approximation v ~ n rho^2 e0^2); it can fail, and does at the chapter's own learning
    rate. It tests Eq. (14) in its stated early regime only: the smaller ``eta * steps``, the
    closer the two must come.
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


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class DensityChecks(DensityDemo):
    """The settings of D-1..D-4 with the :class:`DensityDemo` they judge, checked together.

    It extends :class:`DensityDemo` (the demo's fields, then these), so one notebook namespace
    builds it and the rules that join the two (``d3_checkpoint`` is one of the checkpoints,
    ``d4_min_e0`` leaves a grid point) are checked before anything runs.

    Attributes:
        d1_tol: D-1's bound on the fRMSE spread across alpha at p = 1/2.
        d2_floor: D-2 ignores checkpoints where every fRMSE is below it.
        d3_checkpoint: D-3's early checkpoint, one of ``checkpoints``.
        d4_eta, d4_steps, d4_min_e0, d4_tol: D-4's small learning rate, number of steps, grid
            points with ``|e0|`` above ``d4_min_e0`` (at least one), and tolerance.
    """

    d1_tol: Positive = 1e-6
    d2_floor: Positive = 1e-6
    d3_checkpoint: Count = 100
    d4_eta: Positive = 0.002
    d4_steps: Count = 20
    d4_min_e0: NonNegative = 0.2
    d4_tol: Positive = 0.05

    @model_validator(mode="after")
    def _fits_the_demo(self) -> DensityChecks:
        if self.d3_checkpoint not in self.checkpoints:
            raise ValueError(
                f"d3_checkpoint={self.d3_checkpoint!r} is not one of the checkpoints "
                f"{list(self.checkpoints)}; pick one of them"
            )
        x = midpoint_grid(self.n_grid)
        e0_max = float(np.max(np.abs(self.f0 - target(x, self.target_cycles))))
        if not self.d4_min_e0 < e0_max:
            raise ValueError(
                f"d4_min_e0={self.d4_min_e0!r} leaves no grid point with |e0| above it "
                f"(max |e0| = {e0_max:.3g}); lower it"
            )
        return self

    @property
    def demo(self) -> DensityDemo:
        """The demo these checks judge."""
        return demo_part(self)

    def run(self, result: DensityResult) -> list[Check]:
        """D-1..D-4 on ``result`` (which must come from :attr:`demo`); four checks."""
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
