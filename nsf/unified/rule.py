r"""What p does to one coordinate, and the endpoints of Eq. 3 checked against ``torch.optim``.

Paper Sec. 3.1; book chapter 01, sections "The endpoints, checked live against torch.optim" and
"What p does to a coordinate, and to the step size".
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from nsf.optim import NSF

__all__ = ["constant_gradient_gain", "step_multiplier", "torch_equivalences"]


def constant_gradient_gain(g: np.ndarray, p: float, eps: float = 0.0) -> np.ndarray:
    r"""Step relative to SGD under a constant gradient, :math:`1/(|g|^{2p} + \epsilon)`.

    Sec. 3.1, Eq. 3 (book chapter 01, "What p does to a coordinate"). With bias correction a
    constant gradient gives :math:`\hat m = g` and :math:`\hat v = g^2` at every step, so the
    update is :math:`-\eta\, g/(|g|^{2p} + \epsilon)`: the gain is :math:`|g|^{-2p}` where
    :math:`|g|^{2p} \gg \epsilon`, and the update scales as :math:`|g|^{1-2p}`. Exact, not an
    approximation.
    """
    return 1.0 / (np.abs(np.asarray(g, dtype=float)) ** (2 * p) + eps)


def step_multiplier(v_hat: Sequence[float], p_values: Sequence[float]):
    r""":math:`\hat v^{-p}`: how much larger than SGD's the step is at a fixed lr (Sec. 3.1; book
    chapter 01, "the step-size confound"), as a DataFrame with one row per p and one column per
    :math:`\hat v`."""
    import pandas as pd

    v = np.asarray(v_hat, dtype=float)
    table = {f"v̂ = {x:.0e}": [x ** (-p) for p in p_values] for x in v}
    return pd.DataFrame(table, index=pd.Index(list(p_values), name="p"))


def _run(make_opt, model, data, lr_lambda=None) -> list[torch.Tensor]:
    opt = make_opt(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
    for x, y in data:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return [p.detach().clone() for p in model.parameters()]


def torch_equivalences(steps: int = 200, seed: int = 0, lr: float = 1e-3):
    """Run NSF and its torch.optim counterparts on one MLP and data stream (float64).

    The endpoints of Eq. 3 (Sec. 3.1; book chapter 01, "The endpoints, checked live"). Returns a
    DataFrame, one row per case (T1, T1b, T1c, T2, T3, T4, T6, T7): the NSF settings, the torch
    reference, the maximum relative parameter difference after ``steps`` steps, and what is
    expected, ``"equal"`` or ``"differs"`` (T6 is a pitfall). The verdicts are
    :func:`nsf.unified.equivalence_checks`.
    """
    import pandas as pd

    b1, b2, eps, wd = 0.9, 0.999, 1e-8, 1e-2
    gen = torch.Generator().manual_seed(seed)
    data = [
        (torch.randn(32, 8, generator=gen, dtype=torch.float64),
         torch.randn(32, 2, generator=gen, dtype=torch.float64))
        for _ in range(steps)
    ]  # fmt: skip
    torch.manual_seed(seed)
    base = torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)
    ).double()

    cases = [
        ("T1", "p=½, ema, bias correction, ε outside", "Adam",
         lambda ps: NSF(ps, lr=lr, p=0.5, eps=eps, weight_decay=wd),
         lambda ps: torch.optim.Adam(ps, lr=lr, eps=eps, weight_decay=wd), None, "equal"),
        ("T1b", "as T1, decoupled weight decay", "AdamW",
         lambda ps: NSF(ps, lr=lr, p=0.5, eps=eps, weight_decay=wd, decoupled_weight_decay=True),
         lambda ps: torch.optim.AdamW(ps, lr=lr, eps=eps, weight_decay=wd), None, "equal"),
        ("T1c", "as T1, amsgrad", "Adam(amsgrad=True)",
         lambda ps: NSF(ps, lr=lr, p=0.5, eps=eps, weight_decay=wd, amsgrad=True),
         lambda ps: torch.optim.Adam(ps, lr=lr, eps=eps, weight_decay=wd, amsgrad=True), None,
         "equal"),
        ("T2", "p=0, heavy ball, ε=0", "SGD(momentum=β1)",
         lambda ps: NSF(ps, lr=lr, p=0.0, eps=0.0, weight_decay=wd, momentum="heavy_ball"),
         lambda ps: torch.optim.SGD(ps, lr=lr, momentum=b1, weight_decay=wd), None, "equal"),
        ("T3", "p=0, ema, no bias correction, ε=0", "SGD(lr=η(1−β1), momentum=β1)",
         lambda ps: NSF(ps, lr=lr, p=0.0, eps=0.0, bias_correction=False),
         lambda ps: torch.optim.SGD(ps, lr=lr * (1 - b1), momentum=b1), None, "equal"),
        ("T4", "p=0, ema, bias correction, ε=0 (Eq. 3 literal)",
         "SGD(lr=η(1−β1)) × 1/(1−β1^t)",
         lambda ps: NSF(ps, lr=lr, p=0.0, eps=0.0),
         lambda ps: torch.optim.SGD(ps, lr=lr * (1 - b1), momentum=b1),
         lambda j: 1 / (1 - b1 ** (j + 1)), "equal"),
        ("T6", "p=0, ema, no bias correction", "SGD(momentum=β1, dampening=β1)",
         lambda ps: NSF(ps, lr=lr, p=0.0, eps=0.0, bias_correction=False),
         lambda ps: torch.optim.SGD(ps, lr=lr, momentum=b1, dampening=b1), None, "differs"),
        ("T7", "p=½, β1=0, no bias correction", "RMSprop(alpha=β2)",
         lambda ps: NSF(ps, lr=lr, p=0.5, betas=(0.0, b2), eps=eps, bias_correction=False),
         lambda ps: torch.optim.RMSprop(ps, lr=lr, alpha=b2, eps=eps), None, "equal"),
    ]  # fmt: skip
    rows = []
    for name, settings, reference, make_nsf, make_torch, lr_lambda, expected in cases:
        ours = _run(make_nsf, copy.deepcopy(base), data)
        theirs = _run(make_torch, copy.deepcopy(base), data, lr_lambda)
        diff = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ours, theirs))
        rows.append({
            "test": name, "NSF settings": settings, "torch reference": reference,
            "max relative difference": diff, "expected": expected,
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("test")
