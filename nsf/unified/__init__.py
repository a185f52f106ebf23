r"""The unified rule made visible: paper Sec. 3.1-3.2, book chapter 01.

Everything chapter 01 shows is computed here; the chapter only plots it. The package follows
the chapter:

==============  ================================================================================
``setup``       :class:`UnifiedSetup`, the chapter's parameters, checked once (pydantic only)
``rule``        the constant-gradient gain, the step multiplier :math:`\hat v^{-p}`, and the
                endpoints of Eq. 3 run against ``torch.optim`` (:func:`torch_equivalences`)
``diagonal``    D1, the exact diagonal case (:func:`diagonal_demo`, :class:`DiagonalRun`)
``timing``      the optimizer's step time on ResNet-18's parameters (:func:`step_time_table`)
``checks``      the verdicts as :class:`nsf.verdicts.Check` records, and the prose that reads them
==============  ================================================================================

``from nsf import unified`` gives every public name below. Submodules are imported on first
use, so that building :class:`UnifiedSetup` (``python -m nsf run 01``) does not load torch.
"""

import importlib

#: submodule -> the public names it defines
_MODULES = {
    "setup": ["UnifiedSetup"],
    "rule": ["constant_gradient_gain", "step_multiplier", "torch_equivalences"],
    "diagonal": ["DiagonalRun", "diagonal_demo", "steps_to_reduce"],
    "timing": [
        "ADAM", "FUSED", "GENERAL_P", "SGD", "interleaved_step_times", "optimizer_step_times",
        "resnet18_gradients", "steady_allocator", "step_time_table", "timing_optimizers",
    ],
    "checks": [
        "EQUIVALENCE_TOL", "diagonal_checks", "diagonal_note", "equivalence_checks",
        "equivalence_note", "holds_count", "timing_check", "timing_note",
    ],
}  # fmt: skip
_LAZY = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'nsf.unified' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nsf.unified.{_LAZY[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
