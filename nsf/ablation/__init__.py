"""The p ablation of Sec. 3.3 (book chapter 02): the embedded experiment as a sweep
(:mod:`nsf.ablation.setup`), the final results of a grid of constant p over datasets, seeds and lr
policies, per-p summaries, the best p with its seed spread, the step-size confound at a fixed lr
(:mod:`nsf.ablation.results`), the paper's four qualitative findings as checks
(:mod:`nsf.ablation.checks`) and the chapter's statements (:mod:`nsf.ablation.summary`).
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
from nsf.ablation.setup import POLICIES, AblationSetup, runs
from nsf.ablation.summary import best_p_table, confound_note, findings_note, runs_note

__all__ = [
    "CLAIMS",
    "K_SIGMA",
    "MIN_PEAKS",
    "POLICIES",
    "ROLES",
    "RUN_KEYS",
    "TOLERANCE",
    "AblationSetup",
    "BestP",
    "ablation_checks",
    "best_p",
    "best_p_table",
    "by_p",
    "clean_tolerates_nonpositive_p",
    "confound_note",
    "extremes_degrade",
    "final_results",
    "findings_note",
    "intermediate_peak",
    "noisy_favours_positive_p",
    "runs",
    "runs_note",
    "update_size_table",
]
