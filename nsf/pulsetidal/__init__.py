"""The pulse–tidal experiment of Sec. 5.1 (book chapter 06): ResNet-18 on TinyImageNet.

:mod:`nsf.pulsetidal.metrics` holds the metrics over the sweep's tidy results: final top-1 over
seeds, time to accuracy and the speed-up S(a), the paper's three speed-up readings, the loss at
matched accuracy, the expected calibration error and the sign of the gain per seed pair.
"""

from nsf.pulsetidal.metrics import (
    ARM,
    EARLY_FRACTIONS,
    ECE_BINS,
    FRACTIONS,
    TOLERANCE,
    Reached,
    Reading,
    calibration_bins,
    divergence_check,
    ece_from_bins,
    epoch_differences,
    expected_calibration_error,
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

__all__ = [
    "ARM",
    "EARLY_FRACTIONS",
    "ECE_BINS",
    "FRACTIONS",
    "TOLERANCE",
    "Reached",
    "Reading",
    "calibration_bins",
    "divergence_check",
    "ece_from_bins",
    "epoch_differences",
    "expected_calibration_error",
    "final_top1",
    "loss_at_matched_accuracy",
    "mean_curve",
    "readings_table",
    "seed_pairs",
    "seed_sign_check",
    "seed_sign_count",
    "speedup_checks",
    "speedup_readings",
    "speedup_table",
    "time_to_accuracy",
]
