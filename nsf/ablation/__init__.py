"""The p ablation of Sec. 3.3 (book chapter 02): the embedded experiment as sweeps
(:mod:`nsf.ablation.setup`), the ``per_p`` lr search (:mod:`nsf.ablation.search`), the final
results of a grid of constant p over datasets, seeds and lr policies, per-p summaries, the best p
with its seed spread, the step-size confound at a fixed lr (:mod:`nsf.ablation.results`), the
paper's four qualitative findings as checks (:mod:`nsf.ablation.checks`) and the chapter's
statements (:mod:`nsf.ablation.summary`).
"""

from nsf.ablation.checks import (
    CLAIMS,
    MIN_PEAKS,
    ROLES,
    TOLERANCE,
    ablation_checks,
    clean_tolerates_nonpositive_p,
    extremes_degrade,
    intermediate_peak,
    noisy_favours_positive_p,
)
from nsf.ablation.results import (
    K_SIGMA,
    RUN_KEYS,
    BestP,
    best_p,
    by_p,
    final_results,
    update_size_table,
)
from nsf.ablation.search import choose_lr, per_p_sweep, search_sweep
from nsf.ablation.setup import (
    GRID_POLICIES,
    POLICIES,
    AblationRuns,
    AblationSetup,
    run_ablation,
    runs,
)
from nsf.ablation.summary import (
    best_p_table,
    confound_note,
    findings_note,
    runs_note,
    search_note,
    search_table,
    sweeps_note,
)

__all__ = [
    "CLAIMS",
    "GRID_POLICIES",
    "K_SIGMA",
    "MIN_PEAKS",
    "POLICIES",
    "ROLES",
    "RUN_KEYS",
    "TOLERANCE",
    "AblationRuns",
    "AblationSetup",
    "BestP",
    "ablation_checks",
    "best_p",
    "best_p_table",
    "by_p",
    "choose_lr",
    "clean_tolerates_nonpositive_p",
    "confound_note",
    "extremes_degrade",
    "final_results",
    "findings_note",
    "intermediate_peak",
    "noisy_favours_positive_p",
    "per_p_sweep",
    "run_ablation",
    "runs",
    "runs_note",
    "search_note",
    "search_sweep",
    "search_table",
    "sweeps_note",
    "update_size_table",
]
