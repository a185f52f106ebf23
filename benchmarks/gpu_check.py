"""GPU check of the Sec. 5.1 configuration: one command, a JSON report (book chapter 06).

On one GPU, in about five minutes, this

1. runs ``benchmarks/optimizer_step.py --device cuda`` (NSF foreach and fused against torch's
   Adam foreach and fused), asking for its ``--json`` report and keeping its printed table and
   exit status either way;
2. times training images/s of the paper configuration: ResNet-18 with the CIFAR stem for 200
   classes at 64x64 (as the engine builds it, :func:`nsf.train.models.build_model`), batch 256,
   bf16 autocast and channels_last, with NSF at p = -0.15 (heavy-ball momentum 0.9, coupled
   weight decay 5e-4) on its foreach and its fused path, and torch's SGD for reference, each with
   ``torch.compile`` off and on, on one fixed generated TinyImageNet-shaped batch (data loading
   is not timed), plus evaluation images/s (forward only, uncompiled);
3. runs a one-GPU NCCL ``torchrun`` smoke: the process group, an all_reduce whose sum is known,
   and a few DDP steps with the engine's loss scaling (:mod:`nsf.train.distributed`), compared at
   one process with the same steps without DDP;
4. projects the wall time of 200 epochs (100k training and 10k validation images per epoch) from
   the measured images/s;
5. writes ``benchmarks/results/gpu_check_<device>_<time>.json`` atomically, with the torch
   version, the device, every measurement, and the error of any section that failed (a failing
   section is recorded; the others still run).

Run from a checkout against whatever torch is installed::

    PYTHONPATH=. python benchmarks/gpu_check.py                  # CUDA, the paper sizes
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu     # every section at tiny sizes

On the CPU the smoke uses gloo and ``torch.compile`` the "eager" backend (dynamo without code
generation), so the logic is tested without a GPU or a C++ compiler. A fused optimizer that
fails (an old torch, no Triton) is replaced by the foreach path, with the failure recorded.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # nsf and benchmarks/train_step.py from this checkout

from nsf.runstore import atomic_write_json  # noqa: E402

SECTIONS = ("optimizer_step", "throughput", "torchrun", "projection")
#: The paper's epoch (Sec. 5.1): TinyImageNet's 100k training and 10k validation images.
EPOCHS, TRAIN_IMAGES, VAL_IMAGES = 200, 100_000, 10_000
#: Sizes per device: the paper's on CUDA, tiny on the CPU.
SIZES = {
    "cuda": dict(model="resnet18", batch_size=256, image_size=64, num_classes=200, steps=20,
                 warmup=3, repeats=3, ddp_batch=64, ddp_steps=3, compile_backend="inductor",
                 optimizer_args=[], timeout_s=240),
    "cpu": dict(model="small_cnn", batch_size=4, image_size=16, num_classes=200, steps=2,
                warmup=1, repeats=3, ddp_batch=4, ddp_steps=2, compile_backend="eager",
                optimizer_args=["--rounds", "1", "--warmup", "0"], timeout_s=240),
}  # fmt: skip


def _tail(text: str, n: int = 4000) -> str:
    return text[-n:]


def _error(error: BaseException) -> dict[str, str]:
    return {"error": f"{type(error).__name__}: {error}", "traceback": _tail(traceback.format_exc())}


def _env() -> dict[str, str]:
    """The environment of a child process: this checkout first on PYTHONPATH."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), path) if p)}


# ------------------------------------------------------------------------------ 1. optimizer step


def optimizer_section(device: str, script: Path, extra: list[str], timeout_s: float) -> dict:
    """Run the optimizer benchmark with ``--json``; without that flag, again without it.

    The report keeps the command, exit status, printed output and, when the flag worked, the
    parsed JSON (``result``); ``json_flag`` says which way it ran.
    """
    base = [sys.executable, str(script), "--device", device, *extra]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "optimizer_step.json"
        run = subprocess.run([*base, "--json", str(out)], capture_output=True, text=True,
                             timeout=timeout_s, env=_env(), cwd=ROOT)  # fmt: skip
        record: dict[str, Any] = {"command": [*base, "--json", "PATH"], "rc": run.returncode}
        if run.returncode == 0 and out.exists():
            record.update(json_flag=True, result=json.loads(out.read_text()))
        elif "--json" in run.stderr and "unrecognized" in run.stderr:
            record["json_flag"] = False
            record["note"] = "the benchmark has no --json flag: ran it without, kept its output"
            run = subprocess.run(base, capture_output=True, text=True, timeout=timeout_s,
                                 env=_env(), cwd=ROOT)  # fmt: skip
            record.update(command=base, rc=run.returncode)
        else:
            record["json_flag"] = run.returncode == 0
    record.update(stdout=_tail(run.stdout), stderr=_tail(run.stderr))
    if run.returncode != 0:
        record["error"] = f"exit status {run.returncode}: {_tail(run.stderr, 600)}"
    return record


# ------------------------------------------------------------------------------ 2. throughput


def _optimizer(kind: str, params, fused: bool):
    from nsf import NSF

    if kind == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=5e-4, foreach=True)
    return NSF(params, lr=1e-3, p=-0.15, betas=(0.9, 0.999), weight_decay=5e-4,
               momentum="heavy_ball", fused=fused or None)  # fmt: skip


def _warm(model, optimizer, x, y, device, amp: bool, steps: int) -> None:
    """``steps`` untimed training steps (the first ones compile)."""
    from train_step import _time_steps

    _time_steps(model, optimizer, x, y, steps, device, amp)


def _images_per_s(model, optimizer, x, y, device, amp: bool, size: dict) -> tuple[float, list]:
    """Median training images/s over ``repeats`` of ``steps`` steps, after ``warmup`` steps;
    and the seconds of every repeat. Times with train_step's loop."""
    from train_step import _time_steps

    _warm(model, optimizer, x, y, device, amp, size["warmup"])
    seconds = [_time_steps(model, optimizer, x, y, size["steps"], device, amp)[0]
               for _ in range(size["repeats"])]  # fmt: skip
    return size["batch_size"] * size["steps"] / statistics.median(seconds), seconds


@torch.no_grad()
def _eval_images_per_s(model, x, device, amp: bool, size: dict) -> float:
    from train_step import _sync

    model.eval()
    for _ in range(size["warmup"]):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            model(x)
    _sync(device)
    start = time.perf_counter()
    for _ in range(size["steps"]):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            model(x)
    _sync(device)
    model.train()
    return size["batch_size"] * size["steps"] / (time.perf_counter() - start)


def fused_or_foreach(make, first_step) -> tuple[Any, str | None]:
    """``make(True)`` if ``first_step`` of it works (the fused path compiles there), else
    ``make(False)`` and a message saying what failed, on which torch, and what replaced it."""
    try:
        optimizer = make(True)
        first_step(optimizer)
        return optimizer, None
    except Exception as error:
        message = (
            f"the fused path failed on torch {torch.__version__} "
            f"({type(error).__name__}: {_tail(str(error), 400)}); measured the foreach path instead"
        )
        return make(False), message


def _model_options(name: str) -> dict:
    """ResNet-18 with the CIFAR stem (Sec. 5.1 at 64 px); on the CPU a width-8 small CNN."""
    return {"stem": "cifar"} if name == "resnet18" else {"width": 8}


def throughput_section(device: torch.device, size: dict) -> dict:
    """Training images/s per (optimizer, compile) variant, and evaluation images/s."""
    from nsf.train.models import build_model

    amp = device.type == "cuda"
    fmt = torch.channels_last
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    b, s, c = size["batch_size"], size["image_size"], size["num_classes"]
    x = torch.randn(b, 3, s, s, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, c, (b,), device=device)
    base = build_model(size["model"], c, 3, **_model_options(size["model"]))
    out: dict[str, Any] = {
        "model": f"{size['model']}, {c} classes, {s}x{s}, batch {b}",
        "amp": "bf16" if amp else "off",
        "memory_format": "channels_last",
        "data": "one fixed generated batch on the device (data loading not timed)",
        "compile_backend": size["compile_backend"],
        "variants": {},
        "errors": {},
    }
    fused_error = None
    for compiled in (False, True):
        for kind, fused in (("sgd", False), ("nsf", False), ("nsf", True)):
            if kind == "sgd" and compiled:
                continue
            impl = "fused" if fused else "foreach"
            name = f"{kind}_{impl}_compile_{'on' if compiled else 'off'}"
            try:
                model = copy.deepcopy(base).to(device, memory_format=fmt).train()
                record: dict[str, Any] = {}
                if fused and fused_error is not None:
                    record.update(fell_back=True, fused_error=fused_error)
                    fused = False
                net = model
                if compiled:
                    start = time.perf_counter()
                    net = torch.compile(model, backend=size["compile_backend"])
                if fused and not compiled:  # eager: a failing first step is the optimizer's
                    optimizer, fused_error = fused_or_foreach(
                        lambda f, m=model: _optimizer("nsf", m.parameters(), f),
                        lambda opt, m=model: _warm(m, opt, x, y, device, amp, 1),
                    )
                    if fused_error is not None:
                        record.update(fell_back=True, fused_error=fused_error)
                else:
                    optimizer = _optimizer(kind, model.parameters(), fused)
                if compiled:
                    _warm(net, optimizer, x, y, device, amp, size["warmup"])
                    record["compile_and_warmup_s"] = time.perf_counter() - start
                rate, seconds = _images_per_s(net, optimizer, x, y, device, amp, size)
                record.update(train_images_per_s=rate, repeat_seconds=seconds)
                out["variants"][name] = record
            except Exception as error:
                out["errors"][name] = _error(error)
            finally:
                model = net = optimizer = None
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    try:
        model = copy.deepcopy(base).to(device, memory_format=fmt)
        out["eval_images_per_s"] = _eval_images_per_s(model, x, device, amp, size)
    except Exception as error:
        out["errors"]["eval"] = _error(error)
    if not out["variants"]:
        out["error"] = "no variant could be timed"
    return out


# ------------------------------------------------------------------------------ 3. torchrun smoke


def torchrun_section(device: str, size: dict, nproc: int, timeout_s: float) -> dict:
    """``torchrun --standalone --nproc_per_node nproc`` of this script's DDP worker."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "worker.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(nproc), str(Path(__file__).resolve()), "--ddp-worker",
                   "--device", device, "--worker-out", str(out),
                   "--ddp-batch", str(size["ddp_batch"]), "--ddp-steps", str(size["ddp_steps"]),
                   "--image-size", str(size["image_size"]), "--model", size["model"],
                   "--num-classes", str(size["num_classes"])]  # fmt: skip
        start = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                             env=_env(), cwd=ROOT)  # fmt: skip
        record: dict[str, Any] = {"command": command, "rc": run.returncode,
                                  "wall_s": time.perf_counter() - start}  # fmt: skip
        if out.exists():
            record["worker"] = json.loads(out.read_text())
    record["stderr"] = _tail(run.stderr, 2000)
    if run.returncode != 0:
        record["error"] = f"exit status {run.returncode}: {_tail(run.stderr, 600)}"
    elif "worker" not in record:
        record["error"] = "the worker wrote no report"
    elif record["worker"].get("error"):
        record["error"] = record["worker"]["error"]
    return record


def ddp_worker(args) -> int:
    """One rank of the smoke: process group, all_reduce, DDP steps (rank 0 writes the report)."""
    import torch.distributed as td

    from nsf.train.distributed import Dist, distributed

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = args.device == "cuda"
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    report: dict[str, Any] = {"backend": "nccl" if cuda else "gloo"}
    start = time.perf_counter()
    with distributed(device) as state:  # the engine's join: it makes the group when W > 1
        if not state.enabled:  # one process: the engine needs no group, the smoke makes one
            kwargs = {"device_id": device} if cuda else {}
            td.init_process_group(report["backend"], **kwargs)
            state = Dist(td.get_rank(), td.get_world_size(), local_rank, owns_group=True)
        report.update(world_size=state.world_size, init_s=time.perf_counter() - start)
        try:
            value = torch.full((4,), float(state.rank + 1), device=device)
            td.all_reduce(value)
            expected = state.world_size * (state.world_size + 1) / 2
            report["all_reduce"] = {"value": value[0].item(), "expected": expected,
                                    "ok": bool((value == expected).all())}  # fmt: skip
            report["ddp"] = _ddp_steps(args, device, state)
        except Exception as error:
            report.update(_error(error))
        finally:
            if state.owns_group and not state.enabled and td.is_initialized():
                td.destroy_process_group()
    if state.rank == 0:
        atomic_write_json(args.worker_out, report)
    return 0


def _ddp_steps(args, device: torch.device, state) -> dict:
    """A few DDP steps of the model with NSF and the engine's loss scaling; at one process,
    compared with the same steps without DDP (the parameters' largest difference)."""
    from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817

    from nsf.train.distributed import broadcast_buffers, global_batch_counts, scaled_loss
    from nsf.train.models import build_model

    torch.manual_seed(0)
    model = build_model(args.model, args.num_classes, 3, **_model_options(args.model))
    model = model.to(device)
    reference = copy.deepcopy(model)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = _optimizer("nsf", ddp.parameters(), False)
    ref_opt = _optimizer("nsf", reference.parameters(), False)
    b, s = args.ddp_batch, args.image_size
    counts = global_batch_counts(b * args.ddp_steps, b, args.ddp_steps)
    W, r = state.world_size, state.rank
    gen = torch.Generator().manual_seed(1)
    losses, start = [], time.perf_counter()
    for count in counts:
        x = torch.randn(count, 3, s, s, generator=gen).to(device)
        y = torch.randint(0, args.num_classes, (count,), generator=gen).to(device)
        lo, hi = count * r // W, count * (r + 1) // W  # this rank's contiguous slice
        loss = scaled_loss(F.cross_entropy(ddp(x[lo:hi]), y[lo:hi], reduction="sum"), count, W)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if W == 1:
            ref_loss = F.cross_entropy(reference(x), y)
            ref_opt.zero_grad(set_to_none=True)
            ref_loss.backward()
            ref_opt.step()
    broadcast_buffers(model, state)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    out = {"steps": len(counts), "global_batch": b, "losses": losses,
           "finite": all(math.isfinite(v) for v in losses),
           "seconds": time.perf_counter() - start}  # fmt: skip
    if W == 1:
        diff = max((p - q).abs().max().item()
                   for p, q in zip(model.parameters(), reference.parameters()))  # fmt: skip
        out["max_param_diff_vs_single_process"] = diff
    return out


# ------------------------------------------------------------------------------ 4. projection


def project(train_images_per_s: float, eval_images_per_s: float, *, epochs: int = EPOCHS,
            train_images: int = TRAIN_IMAGES, val_images: int = VAL_IMAGES,
            once_s: float = 0.0) -> dict[str, float]:  # fmt: skip
    """Wall time of a run: per epoch train_images / train rate + val_images / eval rate; times
    epochs, plus ``once_s`` paid once (compilation)."""
    epoch_s = train_images / train_images_per_s + val_images / eval_images_per_s
    total_s = epochs * epoch_s + once_s
    return {"epoch_s": epoch_s, "total_s": total_s, "total_h": total_s / 3600}


def projection_section(throughput: dict) -> dict:
    """The 200-epoch wall time of every timed variant (compilation included once)."""
    if "eval_images_per_s" not in throughput or not throughput.get("variants"):
        return {"error": "the throughput section measured nothing to project from"}
    ev = throughput["eval_images_per_s"]
    out: dict[str, Any] = {
        "epochs": EPOCHS,
        "train_images": TRAIN_IMAGES,
        "val_images": VAL_IMAGES,
        "eval_images_per_s": ev,
        "note": "compute only, at the measured rates: data loading, checkpoints and process "
        "start are not included; a CPU run's rates are at tiny sizes and project nothing real",
        "variants": {},
    }
    for name, v in throughput["variants"].items():
        once = v.get("compile_and_warmup_s", 0.0)
        out["variants"][name] = {"train_images_per_s": v["train_images_per_s"], "once_s": once,
                                 **project(v["train_images_per_s"], ev, once_s=once)}  # fmt: skip
    nsf = {k: v for k, v in out["variants"].items() if k.startswith("nsf")}
    if nsf:
        out["fastest_nsf"] = min(nsf, key=lambda k: nsf[k]["total_s"])
    return out


# ------------------------------------------------------------------------------ the report


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _commit() -> str | None:
    try:
        run = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=ROOT, timeout=10)  # fmt: skip
        return run.stdout.strip() or None
    except Exception:
        return None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--out", type=Path, default=None, help="report path (default: "
                        "benchmarks/results/gpu_check_<device>_<time>.json)")  # fmt: skip
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--nproc", type=int, default=1, help="torchrun processes (GPUs)")
    parser.add_argument("--optimizer-script", type=Path, default=HERE / "optimizer_step.py",
                        help="the optimizer benchmark to run (tests pass a stand-in)")  # fmt: skip
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ddp-batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ddp-steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--num-classes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        sys.exit(ddp_worker(args))

    start = time.perf_counter()
    device = torch.device(args.device)
    size = SIZES[args.device]
    out = args.out or ROOT / "benchmarks" / "results" / (
        f"gpu_check_{args.device}_{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    report: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": _commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": args.device,
        "cuda_available": torch.cuda.is_available(),
        "sizes": {k: v for k, v in size.items() if k != "optimizer_args"},
        "sections": {},
        "errors": {},
    }
    try:
        report["device_name"] = _device_name(device)
    except Exception as error:
        report["errors"]["device"] = _error(error)["error"]

    def run(name: str, fn, *a) -> None:
        if name not in args.sections:
            return
        print(f"[gpu_check] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            result = fn(*a)
        except Exception as error:
            result = _error(error)
        result["section_s"] = time.perf_counter() - t0
        report["sections"][name] = result
        parts = ([result["error"]] if "error" in result else []) + [
            f"{part}: {e['error']}" for part, e in result.get("errors", {}).items()
        ]  # a section's own error, then those of its parts (throughput's variants)
        if parts:
            report["errors"][name] = "; ".join(parts)
        status = "FAILED " + report["errors"][name] if parts else "ok"
        print(f"[gpu_check] {name}: {status} ({result['section_s']:.1f} s)", flush=True)

    run("optimizer_step", optimizer_section, args.device, args.optimizer_script,
        size["optimizer_args"], size["timeout_s"])  # fmt: skip
    run("throughput", throughput_section, device, size)
    run("torchrun", torchrun_section, args.device, size, args.nproc, size["timeout_s"])
    run("projection", projection_section, report["sections"].get("throughput", {}))
    report["wall_s"] = time.perf_counter() - start
    path = atomic_write_json(out, report)
    print(f"[gpu_check] report: {path} ({report['wall_s']:.0f} s; "
          f"{len(report['errors'])} section(s) with errors)")  # fmt: skip
    return report


if __name__ == "__main__":
    main()
