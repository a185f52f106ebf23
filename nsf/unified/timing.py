"""What the exponent costs per step: ``optimizer.step()`` timed on ResNet-18's parameters.

The paper's abstract promises reweighting "at negligible cost" (Sec. 3.1 makes no claim about
cost, and the paper reports no measurement); book chapter 01, "What the exponent costs per step",
and the book page "How the paper was reconstructed: chapter 01".
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from nsf.optim import NSF
from nsf.schedules import PScheduler, tidal

if TYPE_CHECKING:
    import pandas as pd

    from nsf.unified.setup import UnifiedSetup

__all__ = [
    "ADAM",
    "FUSED",
    "GENERAL_P",
    "SGD",
    "interleaved_step_times",
    "optimizer_step_times",
    "resnet18_gradients",
    "steady_allocator",
    "step_time_table",
    "timing_optimizers",
]

#: The rows of :func:`step_time_table` that the chapter's prose compares.
SGD, ADAM, GENERAL_P, FUSED = (
    "SGD (torch, momentum 0.9)",
    "Adam (torch)",
    "NSF p = −0.15",
    "NSF p = −0.15, fused",
)
_TIDAL = "NSF tidal p(t)"


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


def interleaved_step_times(
    make_params: Callable[[], list[torch.Tensor]],
    optimizers: Mapping[str, Callable[[list[torch.Tensor]], Any]],
    rounds: int = 15,
    warmup: int = 3,
    schedules: Mapping[str, Any] | None = None,
) -> dict[str, list[float]]:
    """Seconds per ``optimizer.step()`` of each optimizer in every timed round, the optimizers
    taking turns within each round.

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
    return times


def optimizer_step_times(
    make_params: Callable[[], list[torch.Tensor]],
    optimizers: Mapping[str, Callable[[list[torch.Tensor]], Any]],
    rounds: int = 15,
    warmup: int = 3,
    schedules: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """Median seconds per ``optimizer.step()`` for each optimizer, timed in interleaved rounds
    (:func:`interleaved_step_times`, whose arguments these are)."""
    times = interleaved_step_times(make_params, optimizers, rounds, warmup, schedules)
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


def timing_optimizers(fused: bool) -> dict[str, Callable[[list[torch.Tensor]], Any]]:
    """The timed optimizers, name -> factory: torch's SGD and Adam, NSF at p = 0 and 1/2 (the
    fast paths), at p = -0.15 (a general power), under a tidal schedule, and with ``fused`` the
    compiled single-pass step at p = -0.15. All at lr 1e-3, weight decay 5e-4, NSF heavy ball."""

    def nsf_opt(p, **kw):
        return lambda ps: NSF(ps, lr=1e-3, p=p, momentum="heavy_ball", weight_decay=5e-4, **kw)

    optimizers = {
        SGD: lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, weight_decay=5e-4, foreach=True),
        ADAM: lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=5e-4, foreach=True),
        "NSF p = 0": nsf_opt(0.0),
        "NSF p = 0.5": nsf_opt(0.5),
        GENERAL_P: nsf_opt(-0.15),
        _TIDAL: nsf_opt(0.05),
    }
    if fused:
        optimizers[FUSED] = nsf_opt(-0.15, fused=True)
    return optimizers


def step_time_table(setup: UnifiedSetup) -> pd.DataFrame:
    """Milliseconds per step of :func:`timing_optimizers` on ResNet-18's parameters (on
    ``setup.timing_device``, median of ``setup.timing_rounds`` interleaved rounds), and each as
    a multiple of Adam's and of SGD's. The tidal row's p follows ``tidal(0.05, 0.2, period=7)``,
    a new p every step."""
    import pandas as pd

    times = optimizer_step_times(
        resnet18_gradients(setup.timing_device, setup.seed),
        timing_optimizers(setup.timing_fused),
        rounds=setup.timing_rounds,
        schedules={_TIDAL: tidal(0.05, 0.2, period=7)},
    )
    step_ms = pd.Series(times).mul(1e3).rename("ms per step")
    return pd.DataFrame(
        {
            "ms per step": step_ms,
            "× Adam": step_ms / step_ms[ADAM],
            "× SGD": step_ms / step_ms[SGD],
        }
    )
