"""Training-step throughput of NSF against torch SGD on the same ResNet-18 (book chapter 01).

The paper calls the cost of the p exponent "negligible". This measures it where it matters:
images/s of a full training step (forward, backward, optimizer step) of ResNet-18 with the
CIFAR stem at 64 px (the Sec. 5.1 network), with

* NSF at p = -0.15 (the low tidal value of Sec. 5.1; a general p takes the full v^p path, not
  the p = 0 shortcut or the sqrt of p = 1/2), heavy-ball momentum 0.9, coupled weight decay 5e-4;
* ``torch.optim.SGD(momentum=0.9, weight_decay=5e-4, foreach=True)``.

Each optimizer drives its own copy of the same initial model on one fixed synthetic batch.
The two are timed in interleaved repeats in one process (so drifts in machine load hit both).
Printed: the median images/s of each and their ratio (the headline), the median of the paired
per-repeat ratios, the ratio of the best repeats (the uncontended speed on a shared machine),
and the time inside ``optimizer.step()`` alone. Usage::

    python benchmarks/train_step.py                       # CPU, batch 16: about a minute
    python benchmarks/train_step.py --device cuda --batch-size 256 --steps 50 --amp

The allocator is held steady first (:func:`nsf.unified.steady_allocator`): otherwise freed
tensor-sized buffers go back to the OS and whichever op first writes a fresh one pays page
faults at random, which makes every ratio bimodal.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F  # noqa: N812

from nsf import NSF
from nsf.train.models import resnet18
from nsf.unified import steady_allocator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(model, optimizer, x, y, steps: int, device: torch.device, amp: bool):
    """Seconds for ``steps`` full training steps, and the part spent in ``optimizer.step()``."""
    step_time = 0.0
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _sync(device)
        t0 = time.perf_counter()
        optimizer.step()
        _sync(device)
        step_time += time.perf_counter() - t0
    _sync(device)
    return time.perf_counter() - start, step_time


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=8, help="interleaved repeats per optimizer")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per optimizer first")
    parser.add_argument("--p", type=float, default=-0.15)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last (CUDA)")
    args = parser.parse_args(argv)
    steady_allocator()

    device = torch.device(args.device)
    amp = args.amp and device.type == "cuda"
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    base = resnet18(args.num_classes, stem="cifar")
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, args.num_classes, (args.batch_size,), device=device)

    runs = {}
    for name in ("nsf", "sgd"):
        model = resnet18(args.num_classes, stem="cifar")
        model.load_state_dict(base.state_dict())
        model = model.to(device, memory_format=memory_format).train()
        if name == "nsf":
            opt = NSF(model.parameters(), lr=1e-3, p=args.p, betas=(0.9, 0.999),
                      weight_decay=5e-4, momentum="heavy_ball")  # fmt: skip
        else:
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4,
                                  foreach=True)  # fmt: skip
        _time_steps(model, opt, x, y, args.warmup, device, amp)
        runs[name] = (model, opt)

    times: dict[str, list[float]] = {"nsf": [], "sgd": []}
    step_times: dict[str, list[float]] = {"nsf": [], "sgd": []}
    for repeat in range(args.repeats):
        order = ("nsf", "sgd") if repeat % 2 == 0 else ("sgd", "nsf")
        for name in order:
            model, opt = runs[name]
            total, in_step = _time_steps(model, opt, x, y, args.steps, device, amp)
            times[name].append(total)
            step_times[name].append(in_step / args.steps)

    images = args.batch_size * args.steps
    rate = {name: images / statistics.median(t) for name, t in times.items()}
    best = {name: images / min(t) for name, t in times.items()}
    ratio = rate["nsf"] / rate["sgd"]
    # Each repeat times NSF and SGD back to back: the paired ratio cancels slow drifts in load,
    # and the best repeat estimates the uncontended speed on a shared machine (as timeit does).
    paired = statistics.median(s / n for n, s in zip(times["nsf"], times["sgd"]))
    threads = torch.get_num_threads() if device.type == "cpu" else None
    where = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {threads} threads"
    )
    print(
        f"ResNet-18 (cifar stem), {args.image_size} px, batch {args.batch_size}, {where}, "
        f"amp={'bf16' if amp else 'off'}, {args.repeats} x {args.steps} steps"
    )
    for name in ("nsf", "sgd"):
        spread = ", ".join(f"{images / t:.1f}" for t in times[name])
        label = f"NSF (p={args.p})" if name == "nsf" else "SGD (torch, foreach)"
        step_ms = 1e3 * statistics.median(step_times[name])
        print(
            f"  {label:22s} median {rate[name]:9.1f} images/s (best {best[name]:.1f}), "
            f"optimizer.step {step_ms:.2f} ms   (repeats: {spread})"
        )
    print(
        f"  NSF/SGD throughput ratio: {ratio:.3f} (medians); paired repeats {paired:.3f}; "
        f"best repeats {best['nsf'] / best['sgd']:.3f}"
    )
    return {
        "nsf_images_per_s": rate["nsf"],
        "sgd_images_per_s": rate["sgd"],
        "ratio": ratio,
        "paired_ratio": paired,
        "best_ratio": best["nsf"] / best["sgd"],
        "nsf_step_ms": 1e3 * statistics.median(step_times["nsf"]),
        "sgd_step_ms": 1e3 * statistics.median(step_times["sgd"]),
    }


if __name__ == "__main__":
    main()
