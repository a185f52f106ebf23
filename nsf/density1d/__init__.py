r"""The one-dimensional density x exponent demonstration of paper Sec. 4.2.1 (Eq. 14, Fig. 4).

Model (reconstructed; the paper's displays were stripped). On x in [0, 1] a target y(x) is fitted
by a free function f(x) under the density-weighted quadratic loss

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
p < 0 amplifies the density (rho^(1+2|p|)). Note the step-size confound (book chapters 04 and 05):
the local rate is :math:`\eta\,\rho\,v^{-p}`, so at one fixed eta the p values do not take equal
steps; :func:`effective_rate` returns that factor.

The package follows the data flow of the chapter (book page "04 · The 1D density demo"):

=============  ===================================================================================
``setup``      :class:`DensityDemo` (every parameter, checked once), the grid, density, target
``simulate``   :func:`simulate` (the discrete update for every (p, alpha) at once), fRMSE, the
               closed form (14) and its comparison with the simulation, the effective rate
``checks``     D-1..D-4 as :class:`nsf.verdicts.Check` records; :class:`DensityChecks`
``summary``    the chapter's statements in words
=============  ===================================================================================

``from nsf import density1d`` gives every public name below.
"""

from nsf.density1d.checks import DensityChecks, check_d1, check_d2, check_d3, check_d4
from nsf.density1d.setup import (
    DENSITY_FORMS,
    EPS_MODES,
    DensityDemo,
    density,
    midpoint_grid,
    target,
)
from nsf.density1d.simulate import (
    DensityResult,
    closed_form_error,
    decay_comparison,
    density_ratio,
    effective_rate,
    frmse,
    median_rate,
    simulate,
)
from nsf.density1d.summary import (
    amplification_note,
    closed_form_note,
    findings_note,
    rate_note,
    rate_spread,
    run_note,
)

__all__ = [
    "DENSITY_FORMS",
    "EPS_MODES",
    "DensityChecks",
    "DensityDemo",
    "DensityResult",
    "amplification_note",
    "check_d1",
    "check_d2",
    "check_d3",
    "check_d4",
    "closed_form_error",
    "closed_form_note",
    "decay_comparison",
    "density",
    "density_ratio",
    "effective_rate",
    "findings_note",
    "frmse",
    "median_rate",
    "midpoint_grid",
    "rate_note",
    "rate_spread",
    "run_note",
    "simulate",
    "target",
]
