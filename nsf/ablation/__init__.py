"""The p ablation of Sec. 3.3 (book chapter 02): the final results of a grid of constant p over
datasets, seeds and lr policies, per-p summaries, the best p with its seed spread, the step-size
confound at a fixed lr, and the paper's four qualitative findings as checks
(:mod:`nsf.ablation.results`, :mod:`nsf.ablation.checks`).
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

__all__ = [
    "CLAIMS",
    "K_SIGMA",
    "MIN_PEAKS",
    "ROLES",
    "RUN_KEYS",
    "TOLERANCE",
    "BestP",
    "ablation_checks",
    "best_p",
    "by_p",
    "clean_tolerates_nonpositive_p",
    "extremes_degrade",
    "final_results",
    "intermediate_peak",
    "noisy_favours_positive_p",
    "update_size_table",
]
