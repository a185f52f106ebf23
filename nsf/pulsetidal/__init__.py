"""The pulse–tidal experiment of Sec. 5.1 (book chapter 06): ResNet-18 on TinyImageNet.

The schedule's three p values (-0.05 in the pulse, then 0.25 and -0.15, switching every 200
iterations) are blank in the paper body: they come from a third-party summary of the paper.
Only "every 200 iterations" is stated; the pulse length (1000 iterations at the paper's scale)
and the order after the pulse (0.25 first) are the companion's assumptions.

:mod:`nsf.pulsetidal.setup` holds the arms and controls as sweeps; :mod:`nsf.pulsetidal.runs`
runs them and reads back metrics, step diagnostics and p; :mod:`nsf.pulsetidal.metrics` the
metrics over the tidy results (final top-1 over seeds, time to accuracy and the speed-up S(a),
the paper's three speed-up readings, the loss at matched accuracy, the sign of the gain per seed
pair); :mod:`nsf.pulsetidal.summary` the chapter's tables and statements and the numbers the
paper prints.
"""

from nsf.pulsetidal.metrics import (
    ARM,
    EARLY_FRACTIONS,
    FRACTIONS,
    TOLERANCE,
    Reached,
    Reading,
    divergence_check,
    epoch_differences,
    final_checks,
    final_top1,
    loss_at_matched_accuracy,
    mean_curve,
    readings_table,
    seed_pairs,
    seed_sign_check,
    seed_sign_count,
    speedup_checks,
    speedup_readings,
    speedup_table,
    time_to_accuracy,
)
from nsf.pulsetidal.runs import ArmRuns, arm_table, run_arms
from nsf.pulsetidal.setup import CONTROLS, PulseTidalSetup, step_ratio
from nsf.pulsetidal.summary import (
    chapter_checks,
    confound_note,
    controls_note,
    controls_table,
    final_note,
    layer_table,
    loss_note,
    paper_numbers,
    paper_scale_note,
    runs_summary,
    seed_band,
    speedup_grid,
    speedup_note,
    top1_note,
)

__all__ = [
    "ARM",
    "CONTROLS",
    "EARLY_FRACTIONS",
    "FRACTIONS",
    "TOLERANCE",
    "ArmRuns",
    "PulseTidalSetup",
    "Reached",
    "Reading",
    "arm_table",
    "chapter_checks",
    "confound_note",
    "controls_note",
    "controls_table",
    "divergence_check",
    "epoch_differences",
    "final_checks",
    "final_note",
    "final_top1",
    "layer_table",
    "loss_at_matched_accuracy",
    "loss_note",
    "mean_curve",
    "paper_numbers",
    "paper_scale_note",
    "readings_table",
    "run_arms",
    "runs_summary",
    "seed_band",
    "seed_pairs",
    "seed_sign_check",
    "seed_sign_count",
    "speedup_checks",
    "speedup_grid",
    "speedup_note",
    "speedup_readings",
    "speedup_table",
    "step_ratio",
    "time_to_accuracy",
    "top1_note",
]
