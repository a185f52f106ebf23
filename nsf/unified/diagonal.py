"""The unified rule made visible (paper Sec. 3.1-3.2, SPEC sections 1-2): the torch equivalences,
the gain and step-multiplier laws, the exact diagonal demo D1, and the optimizer's step time.

Everything chapter 01 shows is computed here; the chapter only plots it.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from nsf.optim import NSF
from nsf.schedules import PScheduler

__all__ = [
    "DiagonalRun",
    "constant_gradient_gain",
    "diagonal_checks",
    "diagonal_demo",
    "optimizer_step_times",
    "resnet18_gradients",
    "steady_allocator",
    "step_multiplier",
    "steps_to_reduce",
    "torch_equivalences",
]


def constant_gradient_gain(g: np.ndarray, p: float, eps: float = 0.0) -> np.ndarray:
    r"""Step relative to SGD under a constant gradient, :math:`1/(|g|^{2p} + \epsilon)` (SPEC 1.5).

    With bias correction a constant gradient gives :math:`\hat m = g` and :math:`\hat v = g^2` at
    every step, so the update is :math:`-\eta\, g/(|g|^{2p} + \epsilon)`: the gain is
    :math:`|g|^{-2p}` where :math:`|g|^{2p} \gg \epsilon`, and the update scales as
    :math:`|g|^{1-2p}`. Exact, not an approximation.
    """
    return 1.0 / (np.abs(np.asarray(g, dtype=float)) ** (2 * p) + eps)


def step_multiplier(v_hat: Sequence[float], p_values: Sequence[float]):
    """v^^(-p): how much larger than SGD's the step is at a fixed lr (SPEC 1.5), as a DataFrame
    with one row per p and one column per v^."""
    import pandas as pd

    v = np.asarray(v_hat, dtype=float)
    table = {f"v̂ = {x:.0e}": [x ** (-p) for p in p_values] for x in v}
    return pd.DataFrame(table, index=pd.Index(list(p_values), name="p"))


# ------------------------------------------------------------------ equivalences (SPEC 1.8)


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

    Returns a DataFrame, one row per case of SPEC 1.8 (T1, T1b, T1c, T2, T3, T4, T6, T7): the NSF
    settings, the torch reference, the maximum relative parameter difference after ``steps``
    steps, what is expected ("equal" within 1e-10, or "differs"), and whether that holds.
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
        equal = diff <= 1e-10
        rows.append({
            "test": name, "NSF settings": settings, "torch reference": reference,
            "max relative difference": diff, "expected": expected,
            "holds": equal if expected == "equal" else not equal,
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("test")


# ---------------------------------------------------------------- D1: the exact diagonal case


class DiagonalRun(dict):
    """Results of :func:`diagonal_demo` for one p (a dict with attribute access)."""

    __getattr__ = dict.__getitem__


def _target_spectrum(kind: str, K: int) -> np.ndarray:
    k = np.arange(1, K + 1, dtype=float)
    if kind == "low":  # energy at low frequencies: y_k ~ 1/k
        return 1.0 / k
    if kind == "high":  # energy at high frequencies: y_k ~ k^0.5, capped at 1
        return np.minimum(np.sqrt(k / K), 1.0)
    raise ValueError(f"spectrum {kind!r} is not 'low' (y_k ~ 1/k) or 'high' (y_k ~ k^0.5)")


def diagonal_demo(
    p_values: Sequence[float],
    spectrum: str = "low",
    K: int = 64,
    steps: int = 300,
    lr: float = 0.01,
    noise_std: float = 0.0,
    seed: int = 0,
    update_norm: str | None = None,
    probe_step: int = 50,
    eps: float = 1e-8,
) -> dict[float, DiagonalRun]:
    r"""D1 of SPEC 2.2: a linear model in the orthonormal sine basis, where Eq. 4 holds exactly.

    f_theta(x) = sum_k theta_k phi_k(x), phi_k = sqrt(2) sin(k pi x), loss 1/2 ||f - y||^2 with
    targets y_obs = y + xi. In this basis the gradient is g_k = theta_k - y_k - xi_k, so each
    coordinate is one frequency (H_i is a Kronecker delta) and v_k is the band energy V(omega_k).
    NSF (ema, bias correction, eps outside) is run from theta = 0 for each p.

    Returns, per p: ``rel_error`` [steps + 1, K], :math:`|\theta_k(t) - y_k| / |y_k|`; ``gain``
    and ``v_hat`` [K] at ``probe_step``, the realised gain
    :math:`r_k = |\Delta\theta_k| / (\eta\,|\hat m_k|)`, which Eq. 3 says is
    :math:`1/(\hat v_k^{\,p} + \epsilon)`; ``slope``, the log-log fit of :math:`r_k` on
    :math:`\hat v_k` (which is :math:`-p`).
    ``noise_std`` is the per-coefficient std of xi_k (SPEC 2.2's convention).
    """
    if not p_values:
        raise ValueError("p_values is empty; give at least one exponent")
    if not 1 <= probe_step <= steps:
        raise ValueError(f"probe_step={probe_step} must lie in [1, steps={steps}]")
    y = _target_spectrum(spectrum, K)
    results = {}
    for p in p_values:
        rng = np.random.default_rng(seed)
        theta = torch.zeros(K, dtype=torch.float64, requires_grad=True)
        opt = NSF([theta], lr=lr, p=p, eps=eps, update_norm=update_norm, foreach=False)
        errors = [np.abs(theta.detach().numpy() - y) / np.abs(y)]
        gain = v_hat = None
        for t in range(1, steps + 1):
            xi = rng.normal(0.0, noise_std, K) if noise_std > 0 else 0.0
            theta.grad = theta.detach() - torch.from_numpy(y + xi)
            before = theta.detach().clone()
            opt.step()
            if t == probe_step:
                state, (beta1, beta2) = opt.state[theta], opt.param_groups[0]["betas"]
                m_hat = state["exp_avg"] / (1 - beta1**t)
                v_hat = (state["exp_avg_sq"] / (1 - beta2**t)).numpy()
                gain = ((theta.detach() - before).abs() / (lr * m_hat.abs())).numpy()
            errors.append(np.abs(theta.detach().numpy() - y) / np.abs(y))
        slope = np.polyfit(np.log(v_hat), np.log(gain), 1)[0]
        results[float(p)] = DiagonalRun(
            rel_error=np.array(errors), gain=gain, v_hat=v_hat, slope=float(slope)
        )
    return results


def steps_to_reduce(rel_error: np.ndarray, factor: float = 10.0) -> np.ndarray:
    """T_k: the first step at which mode k's relative error falls below 1/factor (inf if never)."""
    below = rel_error <= 1.0 / factor
    first = np.argmax(below, axis=0).astype(float)
    first[~below.any(axis=0)] = np.inf
    return first


# -------------------------------------------------------------------- step time (Sec. 3.1)


def steady_allocator() -> bool:
    """Make glibc keep freed memory in the process, for timings that mean something.

    By default glibc hands freed buffers above a threshold back to the OS, so whichever op first
    writes a fresh tensor-sized buffer pays page faults, at random: optimizer timings turn
    bimodal (seen here: Adam at 24 or 53 ms a step on ResNet-18). ``mallopt`` raises the mmap
    threshold to its 32 MiB maximum and the trim threshold to 2 GiB, for this process. Returns
    False where there is no glibc (nothing changes then).
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    return bool(
        libc.mallopt(m_mmap_threshold, 32 * 2**20) and libc.mallopt(m_trim_threshold, 2**31 - 1)
    )


def optimizer_step_times(
    make_params: Callable[[], list[torch.Tensor]],
    optimizers: Mapping[str, Callable[[list[torch.Tensor]], Any]],
    rounds: int = 15,
    warmup: int = 3,
    schedules: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Median seconds per ``optimizer.step()`` for each optimizer, timed in interleaved rounds.

    ``make_params()`` returns fresh parameters with ``.grad`` set; each optimizer gets its own
    copy. ``schedules`` maps an optimizer's name to a p schedule stepped with it (a schedule that
    changes p every step must cost what a constant p costs). Interleaving rounds spreads drift in
    machine load evenly over the optimizers; :func:`~nsf.unified.steady_allocator` is applied first.
    """
    steady_allocator()
    instances = {}
    for name, make in optimizers.items():
        opt = make(make_params())
        sched = PScheduler(opt, schedules[name]) if schedules and name in schedules else None
        instances[name] = (opt, sched)
    device = next(iter(instances.values()))[0].param_groups[0]["params"][0].device

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {name: [] for name in instances}
    for round_ in range(warmup + rounds):
        for name, (opt, sched) in instances.items():
            sync()
            start = time.perf_counter()
            opt.step()
            if sched is not None:
                sched.step()
            sync()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def resnet18_gradients(device: str = "cpu", seed: int = 0) -> Callable[[], list[torch.Tensor]]:
    """A factory of ResNet-18's 11.7 M parameters with fixed random gradients (for timing)."""
    import torchvision

    model = torchvision.models.resnet18(num_classes=1000)
    gen = torch.Generator().manual_seed(seed)
    shapes = [p.shape for p in model.parameters()]
    grads = [torch.randn(s, generator=gen) * 1e-3 for s in shapes]
    values = [p.detach().clone() for p in model.parameters()]

    def make() -> list[torch.Tensor]:
        params = [v.clone().to(device).requires_grad_(True) for v in values]
        for p, g in zip(params, grads):
            p.grad = g.to(device)
        return params

    return make


def diagonal_checks(low: Mapping[float, DiagonalRun], high: Mapping[float, DiagonalRun]):
    """The D1 checks of SPEC 2.2 as a table (check, measured, criterion, holds).

    ``low`` and ``high`` are :func:`diagonal_demo` results for spectra (a) y_k ~ 1/k and
    (b) y_k ~ k^0.5, run without noise (T_k is defined on noiseless runs).
    """
    import pandas as pd
    from scipy.stats import spearmanr

    rows = []
    for label, runs in (("(a) low", low), ("(b) high", high)):
        worst = max(abs(run.slope + p) for p, run in runs.items())
        rows.append({
            "check": f"{label}: fitted slope of log r_k on log v̂_k equals −p",
            "measured": f"max |slope + p| = {worst:.1e}", "criterion": "≤ 1e-6",
            "holds": worst <= 1e-6,
        })  # fmt: skip
        if 0.0 in runs:
            t_k = steps_to_reduce(runs[0.0].rel_error)
            ratio = float(np.max(t_k) / np.min(t_k))
            rows.append({
                "check": f"{label}: p = 0 is neutral, T_k flat in k",
                "measured": f"max/min T_k = {ratio:.3f}", "criterion": "≤ 1.05",
                "holds": ratio <= 1.05,
            })  # fmt: skip
    for p, sign_low in ((0.5, -1), (-0.5, +1)):
        if p not in low or p not in high:
            continue
        k = np.arange(1, len(low[p].gain) + 1)
        rho_low = spearmanr(steps_to_reduce(low[p].rel_error), k).statistic
        rho_high = spearmanr(steps_to_reduce(high[p].rel_error), k).statistic
        word = (
            "negative in (a), positive in (b)"
            if sign_low < 0
            else "positive in (a), negative in (b)"
        )
        rows.append({
            "check": f"p = {p:+g}: Spearman(T_k, k) {word}",
            "measured": f"ρ(a) = {rho_low:+.2f}, ρ(b) = {rho_high:+.2f}", "criterion": "signs",
            "holds": bool(np.sign(rho_low) == sign_low and np.sign(rho_high) == -sign_low),
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("check")
