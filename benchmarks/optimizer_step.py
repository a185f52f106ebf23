"""Optimizer step time: NSF against torch.optim.Adam and SGD on ResNet-18's parameters.

The paper promises "negligible cost" for the unified rule (Sec. 3.1). This script times one
``optimizer.step()`` over the 11.7 M parameters of torchvision's ResNet-18 with fixed random
gradients, interleaving the optimizers round by round (so drift in machine load hits all of them
alike), and prints the median time of each, its spread (the 25th to 75th percentile of the
rounds) and its ratio to Adam and SGD.

    python benchmarks/optimizer_step.py                     # CPU
    python benchmarks/optimizer_step.py --device cuda       # the same on a GPU
    python benchmarks/optimizer_step.py --json out.json     # also write the numbers as JSON

The bars, both at p = -0.15: the default (foreach) NSF within 1.5x of
``torch.optim.Adam(foreach=True)`` (target 1.4x), and ``NSF(fused=True)`` within 1.5x of
``torch.optim.Adam(fused=True)`` (target 1.3x). A schedule that changes p every step ("tidal")
must cost what a constant p costs: p is a Python float, so nothing recompiles and nothing waits
for the device.

``NSF(fused=True)`` on a CPU is nsf's C kernel (``nsf._cpu_kernel``: one call per step for all
tensors, one pass over each tensor's memory); the "torch.compile" row is the same step with
``fused_backend="compile"``, the kernel CUDA runs (on CUDA the two rows are one, and only the
first is timed). The one-off costs are reported first: building the C kernel (or loading it from
its on-disk cache) and the first compiled step on a small model, which includes inductor's
compilation unless its cache (``TORCHINDUCTOR_CACHE_DIR``, by default under the temp directory)
already holds it from an earlier process.

The allocator is held steady first (:func:`nsf.unified.steady_allocator`): otherwise freed
tensor-sized buffers go back to the OS and whichever op first writes a fresh one pays page
faults at random, which makes every ratio bimodal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from nsf import NSF, schedules
from nsf.unified import interleaved_step_times, resnet18_gradients

SGD, ADAM, ADAM_FUSED = "SGD(momentum=0.9)", "Adam", "Adam fused (torch)"
NSF_BAR, NSF_FUSED = "NSF p=-0.15", "NSF p=-0.15 fused"
NSF_COMPILED = "NSF p=-0.15 fused, torch.compile"
TIDAL, TIDAL_FUSED = "NSF tidal (p changes every step)", "NSF tidal fused"
#: (name, numerator, denominator, bar, target) of each ratio.
BARS = (
    ("foreach", NSF_BAR, ADAM, 1.5, 1.4),
    ("fused", NSF_FUSED, ADAM_FUSED, 1.5, 1.3),
)


def nsf(p: float, fused: bool = False, backend: str = "auto"):
    return lambda ps: NSF(
        ps, lr=1e-3, p=p, momentum="heavy_ball", weight_decay=5e-4, fused=fused or None,
        fused_backend=backend,
    )  # fmt: skip


def optimizers(device: str) -> dict:
    table = {
        SGD: lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, weight_decay=5e-4, foreach=True),
        ADAM: lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=5e-4, foreach=True),
        NSF_BAR: nsf(-0.15),
        "NSF p=0 (fast path)": nsf(0.0),
        "NSF p=0.5 (sqrt path)": nsf(0.5),
        TIDAL: nsf(0.0),
        ADAM_FUSED: lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=5e-4, fused=True),
        NSF_FUSED: nsf(-0.15, fused=True),
        TIDAL_FUSED: nsf(0.0, fused=True),
    }
    if not device.startswith("cuda"):  # on CUDA "auto" is torch.compile already
        table[NSF_COMPILED] = nsf(-0.15, fused=True, backend="compile")
    return table


SCHEDULES = {name: schedules.tidal(0.05, 0.2, period=7) for name in (TIDAL, TIDAL_FUSED)}


def one_off_costs(device: str) -> dict:
    """The first fused step of a small model on each kernel (seconds), and how the C kernel was
    obtained (built, or loaded from its cache)."""
    costs = {}
    backends = ["auto"] if device.startswith("cuda") else ["auto", "compile"]
    for backend in backends:
        model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)).to(device)
        opt = nsf(-0.15, fused=True, backend=backend)(model.parameters())
        model(torch.randn(4, 8, device=device)).sum().backward()
        start = time.perf_counter()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        costs[f"first_fused_step_s[{backend}]"] = time.perf_counter() - start
    if not device.startswith("cuda"):
        from nsf import _cpu_kernel

        info = _cpu_kernel.build_info()
        costs["c_kernel"] = {k: info.get(k) for k in ("cached", "seconds", "isa", "openmp", "path")}
    return costs


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return dict(cpu=model, cpus=os.cpu_count(), load_avg=load, torch=torch.__version__,
                python=platform.python_version())  # fmt: skip


def quantile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    i = q * (len(xs) - 1)
    lo = int(i)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (i - lo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=25, help="timed rounds per optimizer")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    before = machine()
    costs = one_off_costs(args.device)
    times = interleaved_step_times(
        resnet18_gradients(args.device), optimizers(args.device), args.rounds, args.warmup,
        SCHEDULES,
    )  # fmt: skip
    after = machine()
    median = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"ResNet-18 (11.7 M parameters) on {args.device}, {torch.get_num_threads()} threads, "
          f"{before['cpu']} ({before['cpus']} CPUs), torch {torch.__version__}; median of "
          f"{args.rounds} interleaved rounds; load average {_load(before)} before, "
          f"{_load(after)} after")  # fmt: skip
    print(f"{'optimizer':36s} {'ms/step':>9s} {'p25-p75':>13s} {'vs Adam':>8s} {'vs SGD':>8s}")
    for name, t in median.items():
        spread = f"{quantile(times[name], 0.25) * 1e3:.1f}-{quantile(times[name], 0.75) * 1e3:.1f}"
        print(f"{name:36s} {t * 1e3:9.2f} {spread:>13s} {t / median[ADAM]:8.3f} "
              f"{t / median[SGD]:8.3f}")  # fmt: skip

    print()
    for key, value in costs.items():
        if key == "c_kernel":
            how = "loaded from its cache" if value["cached"] else "built"
            print(f"C kernel ({value['isa']}, OpenMP {'on' if value['openmp'] else 'off'}): "
                  f"{how} in {value['seconds'] * 1e3:.0f} ms ({value['path']})")  # fmt: skip
        else:
            cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "inductor's default cache")
            note = f", {cache}" if "compile" in key else ""
            print(f"{key}: {value:.2f} s, once per process{note}")
    ratios = {}
    for kind, num, den, bar, target in BARS:
        ratio = median[num] / median[den]
        ratios[kind] = dict(ratio=ratio, numerator=num, denominator=den, bar=bar, target=target,
                            meets_bar=ratio <= bar, meets_target=ratio <= target)  # fmt: skip
        verdict = "meets" if ratio <= bar else "MISSES"
        print(f"{num} / {den} = {ratio:.3f}: {verdict} the {bar}x bar "
              f"(target {target}: {'met' if ratio <= target else 'not met'})")  # fmt: skip
    for constant, tidal in ((NSF_BAR, TIDAL), (NSF_FUSED, TIDAL_FUSED)):
        print(f"{tidal} / constant p = {median[tidal] / median[constant]:.3f}")

    if args.json:
        report = dict(device=args.device, threads=torch.get_num_threads(), rounds=args.rounds,
                      machine_before=before, machine_after=after, one_off=costs,
                      ms_per_step={k: v * 1e3 for k, v in median.items()},
                      ms_p25_p75={k: [quantile(v, 0.25) * 1e3, quantile(v, 0.75) * 1e3]
                                  for k, v in times.items()},
                      ratios=ratios)  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


def _load(m: dict) -> str:
    return "n/a" if m["load_avg"] is None else f"{m['load_avg'][0]:.2f}"


if __name__ == "__main__":
    main()
