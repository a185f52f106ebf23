r"""The two-dimensional "early decision-boundary alignment" demonstration of paper Sec. 4.2.2.

The paper trains "a small two-layer MLP ([H] hidden units, ReLU)" on "two intersecting
'angle'-shaped class manifolds with asymmetric sampling density" (far/near branches), with the
unified rule (Eq. 3) at several p, "the same learning rate", no weight decay and identical seeds,
and shows the decision boundaries at checkpoints (Fig. 5), highlighting the top-k samples per
class by "effective update norm". Every number was stripped; book chapter 05 reconstructs them.
The package follows the chapter's data flow:

============  ==================================================================================
``geometry``  the crossed-L samples (:func:`crossed_l_samples`), the Bayes rule in closed form
              (:func:`bayes_log_odds`, :func:`bayes_predict`, :func:`bayes_boundary`), the best
              straight line (:func:`best_linear_accuracy`)
``setup``     :class:`BoundaryDemo` (every stripped parameter, checked once) and :class:`Panels`
              (the three panels of the step-size control, each a :class:`Panel`)
``train``     the MLP (:func:`mlp`), :func:`train_panel`, the per-sample effective update norms
              (:func:`effective_update_norms`, from :meth:`nsf.optim.NSF.update_terms`)
``results``   :class:`PanelResult` and its metrics (:func:`first_crossing` for t90,
              :func:`log_time_score`)
``checks``    B-1..B-3 as :class:`nsf.verdicts.Check` records (:func:`alignment_checks`) and
              B-4, accuracy ahead of p = 0 while the loss is not (:func:`divergence_checks`)
``notes``     the chapter's tables and verdicts in words
============  ==================================================================================

The step-size confound: at one learning rate the step is multiplied by v^^(-p), so whether v^
sits above or below 1 (set by the loss reduction, mean or sum) decides which p moves fastest. A
:class:`Panel` fixes the reduction, the learning rate and the optional
``update_norm="rms_matched"`` control (p sets the direction, SGD's step sets the length); the
chapter runs three panels side by side.

``from nsf.boundary2d import ...`` gives every public name below. The setups, the metrics and
the checks import without torch; the training names (``train``) load it on first use.
"""

import importlib

from nsf.boundary2d.checks import (
    alignment_checks,
    checks_frame,
    divergence_check,
    divergence_checks,
    lead_counts,
    named_checks,
    panel_checks,
)
from nsf.boundary2d.geometry import (
    CrossedL,
    Samples,
    bayes_boundary,
    bayes_log_odds,
    bayes_predict,
    best_linear_accuracy,
    crossed_l_samples,
)
from nsf.boundary2d.results import PanelResult, first_crossing, log_time_score
from nsf.boundary2d.setup import BoundaryDemo, Panel, Panels

__all__ = [
    "BoundaryDemo",
    "CrossedL",
    "Panel",
    "PanelResult",
    "Panels",
    "Samples",
    "UpdateFactors",
    "alignment_checks",
    "bayes_boundary",
    "bayes_log_odds",
    "bayes_predict",
    "best_linear_accuracy",
    "checks_frame",
    "crossed_l_samples",
    "divergence_check",
    "divergence_checks",
    "effective_update_norms",
    "first_crossing",
    "lead_counts",
    "log_time_score",
    "mlp",
    "named_checks",
    "notes",
    "panel_checks",
    "per_sample_grads",
    "train_panel",
    "update_factors",
]

_TRAIN = {"UpdateFactors", "effective_update_norms", "mlp", "per_sample_grads", "train_panel",
          "update_factors"}  # fmt: skip


def __getattr__(name: str):
    if name in _TRAIN:
        return getattr(importlib.import_module("nsf.boundary2d.train"), name)
    if name == "notes":
        return importlib.import_module("nsf.boundary2d.notes")
    raise AttributeError(f"module 'nsf.boundary2d' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
