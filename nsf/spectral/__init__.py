r"""Spectral decay of a 1D regression under a p-exponent step: paper Sec. 4.1.

A regression on [0, 1] is driven by the locality-modulated step of Eq. 5; its error is expanded
in sine modes and each mode decays at a rate :math:`\kappa_k`. The paper prints an 8 x 6 table of
these rates and draws claims from it. The package follows the data flow of the chapter:

================  ==============================================================================
``setup``         :class:`SpectralSetup` (every stripped parameter, checked once), grid, basis,
                  target
``table``         the table's schedules (:class:`TableSetup`, :func:`table_schedules`) and the
                  part each row plays (:func:`schedule_roles`)
``simulate``      :func:`simulate`: Eq. 5 for all schedules at once; the stability bound
``fit``           :func:`fit_decay`, :func:`decay_table`: where :math:`\kappa_k` is fitted
``theory``        Sec. 4.1.1: overlaps (Eq. 12), coupling matrix (Eq. 9), the near-diagonal and
                  early-time predictions (Eqs. 10, 13), the :math:`I_0` period average,
                  the single-band limit
``paper``         the paper's printed table and how ours compares with it
``checks``        the claims K1-K7 (K4 as K4a-K4c), :class:`nsf.verdicts.Check` records
``sweep``         the sweep of the stripped parameters (:class:`SweepSetup`)
``summary``       the chapter's conclusions in words
================  ==============================================================================

``from nsf import spectral`` gives every public name below.
"""

from nsf.spectral.checks import CLAIMS, claim_checks, claims_count, claims_note, theory_checks
from nsf.spectral.fit import DecayFit, decay_table, envelope_rebounds, fit_decay, rebound_table
from nsf.spectral.paper import (
    distance_note,
    paper_comparison,
    paper_kappa_table,
    paper_p0_value,
    reproduction_note,
    row_summary,
    table_distance,
    tidal_gains,
)
from nsf.spectral.setup import (
    AMPLITUDE_PROFILES,
    SpectralSetup,
    amplitudes,
    grid_points,
    sine_basis,
    target,
)
from nsf.spectral.simulate import SpectralRun, UnstableStepError, simulate, stability_rate_bound
from nsf.spectral.summary import summary_note
from nsf.spectral.sweep import SCHEDULE_AXES, SweepSetup, sensitivity_sweep, sweep_note
from nsf.spectral.table import Roles, TableSetup, paper_family, schedule_roles, table_schedules
from nsf.spectral.theory import (
    coupling_matrix,
    diagonal_gap,
    diagonal_prediction,
    early_time_delta,
    early_time_prediction,
    implied_log_z,
    overlap_integrals,
    period_average_quadrature,
    single_band_kappa,
    tidal_period_average,
)

__all__ = [
    "AMPLITUDE_PROFILES",
    "CLAIMS",
    "SCHEDULE_AXES",
    "DecayFit",
    "Roles",
    "SpectralRun",
    "SpectralSetup",
    "SweepSetup",
    "TableSetup",
    "UnstableStepError",
    "amplitudes",
    "claim_checks",
    "claims_count",
    "claims_note",
    "coupling_matrix",
    "decay_table",
    "diagonal_gap",
    "diagonal_prediction",
    "distance_note",
    "early_time_delta",
    "early_time_prediction",
    "envelope_rebounds",
    "fit_decay",
    "grid_points",
    "implied_log_z",
    "overlap_integrals",
    "paper_comparison",
    "paper_family",
    "paper_kappa_table",
    "paper_p0_value",
    "period_average_quadrature",
    "rebound_table",
    "reproduction_note",
    "row_summary",
    "schedule_roles",
    "sensitivity_sweep",
    "simulate",
    "sine_basis",
    "single_band_kappa",
    "stability_rate_bound",
    "summary_note",
    "sweep_note",
    "table_distance",
    "table_schedules",
    "target",
    "theory_checks",
    "tidal_gains",
    "tidal_period_average",
]
