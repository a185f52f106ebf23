"""The training engine of the image chapters: the p ablation (paper Sec. 3.3, SPEC section 3) and
the pulse-tidal ResNet-18 (paper Sec. 5.1, SPEC section 8). One function, :func:`train`, runs a
:class:`TrainConfig` from one CPU core to a cluster of GPUs::

    from nsf.engine import TrainConfig, train

    config = TrainConfig(dataset="digits", model="small_cnn", epochs=15, batch_size=64,
                         lr=0.05, p_schedule={"kind": "constant", "p": 0.0})
    result = train(config, "runs")          # or: torchrun --nproc_per_node=8 -m nsf train ...
    result.frame                            # one row of metrics per epoch

What one iteration does (SPEC sections 1.10, 3.2, 8.1)::

    loss = cross_entropy(model(x), y)               # bf16 autocast on CUDA
    loss.backward()                                 # DDP all-reduces the gradients
    optimizer.step()                                # NSF at the current (p, lr)
    p_scheduler.step(); lr_scheduler.step()         # both are functions of the iteration

The run lives in a directory of a :class:`nsf.runstore.RunStore`, keyed by the hash of the full
(normalised) config: ``config.json``, ``metrics.csv`` (one row per epoch, rewritten atomically),
``p_log.json`` (the p of every iteration, run-length encoded), ``checkpoint.pt`` (everything that
training needs to continue, written atomically every ``checkpoint_every`` iterations and at every
epoch end), ``model.pt`` (the final weights) and ``finished.json``. A finished run is loaded, never
recomputed; an unfinished one resumes from its checkpoint, and in deterministic mode on a CPU the
resumed run ends with metrics and weights bit-identical to an uninterrupted one.

Correct by construction:

* A batch is a pure function of (seed, epoch, index) (:class:`nsf.datasets.DeviceLoader`), and the
  p and learning-rate schedules are pure functions of the iteration, so resuming at (epoch, batch)
  replays exactly the batches and hyperparameters that an uninterrupted run sees.
* ``batch_size`` is the global batch. Under DDP each of W processes takes a contiguous slice of
  every global batch and the loss is ``sum(per-sample loss) * W / (global batch count)``; DDP's
  gradient average then equals the single-process gradient of the global mean, even for an
  uneven last batch. Metrics are summed over processes before they are divided.
* The inner loop never waits on the device: losses and counts accumulate on the device, p and
  the learning rate are Python floats, and the host reads the device once per ``log_every``
  iterations (only when a progress bar is shown) and at epoch ends.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from nsf import schedules
from nsf.optim import EPS_MODES, MOMENTUM_MODES, NSF, UPDATE_NORMS
from nsf.runstore import Run, RunStore, atomic_write_json, atomic_write_text
from nsf.schedules import PScheduler
from nsf.train.models import MODELS, STEMS, build_model

__all__ = [
    "METRIC_COLUMNS",
    "TIMING_COLUMNS",
    "LRFactor",
    "RunResult",
    "TrainConfig",
    "build_p_schedule",
    "evaluate",
    "load_result",
    "rle_decode",
    "rle_encode",
    "train",
]

#: Columns of ``metrics.csv``, one row per epoch. Accuracies are fractions in [0, 1];
#: ``val_top5`` is top-min(5, C); ``val_ece`` is the 15-bin expected calibration error;
#: ``lr`` is the learning rate of the epoch's last iteration; ``epoch_time_s`` is the wall time of
#: the epoch (training and evaluation) and ``train_images_per_s`` the training throughput (all
#: processes together).
METRIC_COLUMNS = (
    "epoch",
    "iteration",
    "lr",
    "p_mean",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "val_ece",
    "epoch_time_s",
    "train_images_per_s",
)
#: Columns that measure the machine, not the training; they differ between identical runs.
TIMING_COLUMNS = ("epoch_time_s", "train_images_per_s")

P_KINDS = {
    "constant": schedules.constant,
    "tidal": schedules.tidal,
    "alternating": schedules.alternating,
    "pulse_tidal": schedules.pulse_tidal,
}
LR_TYPES = ("constant", "multistep", "cosine")
LR_UNITS = ("epoch", "iteration")
AMP_MODES = ("bf16", "none")
DEVICES = ("auto", "cpu", "cuda")
ECE_BINS = 15

#: Test hook: ``os._exit`` the process right after this global iteration (and after the checkpoint
#: that iteration may write), as a kill would. The exact-resume test uses it.
CRASH_ENV = "NSF_ENGINE_CRASH_AFTER"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.csv"
P_LOG_FILE = "p_log.json"


# --------------------------------------------------------------------------------------------
# Schedules given as plain data


def build_p_schedule(spec: Mapping[str, Any]) -> schedules.Schedule:
    """The :mod:`nsf.schedules` object described by ``spec`` (SPEC section 1.10).

    ``spec`` is ``{"kind": K, **fields}`` with K one of ``constant`` (p), ``tidal`` (p_mid, p_amp,
    period, phase=0), ``alternating`` (high, low, every) and ``pulse_tidal`` (pulse_p,
    pulse_steps, high, low, every); times are in iterations. The Sec. 5.1 schedule is
    ``{"kind": "pulse_tidal", "pulse_p": -0.05, "pulse_steps": 1000, "high": 0.25,
    "low": -0.15, "every": 200}``.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"p_schedule must be a mapping with a 'kind', got {spec!r}")
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in P_KINDS:
        raise ValueError(f"p_schedule kind={kind!r} is not one of {tuple(P_KINDS)}")
    cls = P_KINDS[kind]
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(spec) - set(names))
    if unknown:
        raise ValueError(f"p_schedule {kind!r} got unknown fields {unknown}; its fields: {names}")
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
    missing = [n for n in required if n not in spec]
    if missing:
        raise ValueError(f"p_schedule {kind!r} is missing {missing}; its fields: {names}")
    for name, value in spec.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"p_schedule {kind!r}: {name}={value!r} is not a number")
    return cls(**spec)


def _normalise_p_schedule(spec: Mapping[str, Any]) -> dict[str, Any]:
    schedule = build_p_schedule(spec)
    out: dict[str, Any] = {"kind": spec["kind"]}
    for f in dataclasses.fields(schedule):
        value = getattr(schedule, f.name)
        if f.name == "pulse_steps" and float(value).is_integer():
            value = int(value)  # an iteration count: 1000 and 1000.0 are one config
        out[f.name] = value
    return out


def _normalise_lr_schedule(spec: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise ValueError(f"lr_schedule must be a mapping with a 'type', got {spec!r}")
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in LR_TYPES:
        raise ValueError(f"lr_schedule type={kind!r} is not one of {LR_TYPES}")
    per = spec.pop("per", "epoch")
    if per not in LR_UNITS:
        raise ValueError(f"lr_schedule per={per!r} is not one of {LR_UNITS}")
    warmup = spec.pop("warmup", 0)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"lr_schedule warmup={warmup!r} must be an int >= 0 (in units of {per})")
    out: dict[str, Any] = {"type": kind, "per": per, "warmup": warmup}
    if kind == "multistep":
        milestones = spec.pop("milestones", None)
        gamma = spec.pop("gamma", 0.2)  # SPEC 3.2 / 8.1: x0.2 at epochs 60/120/160 [assumed]
        if (
            not isinstance(milestones, Sequence)
            or not milestones
            or any(isinstance(m, bool) or not isinstance(m, int) or m <= 0 for m in milestones)
            or list(milestones) != sorted(set(milestones))
        ):
            raise ValueError(
                f"lr_schedule milestones={milestones!r} must be increasing positive ints"
            )
        if not (isinstance(gamma, (int, float)) and gamma > 0 and math.isfinite(gamma)):
            raise ValueError(f"lr_schedule gamma={gamma!r} must be a finite number > 0")
        out.update(milestones=[int(m) for m in milestones], gamma=float(gamma))
    elif kind == "cosine":
        final = spec.pop("final_factor", 0.0)
        if not (isinstance(final, (int, float)) and 0 <= final <= 1):
            raise ValueError(f"lr_schedule final_factor={final!r} must lie in [0, 1]")
        out["final_factor"] = float(final)
    if spec:
        raise ValueError(f"lr_schedule {kind!r} got unknown fields {sorted(spec)}")
    return out


class LRFactor:
    """The learning-rate factor at global iteration ``it`` (a ``LambdaLR`` lambda, SPEC 3.2).

    ``per="epoch"`` evaluates the schedule at ``it // iters_per_epoch`` (steps between epochs, as
    ``MultiStepLR`` stepped per epoch), ``per="iteration"`` at ``it`` itself. ``multistep``
    multiplies by ``gamma`` at each milestone passed (SPEC 3.2: x0.2 at epochs 60/120/160),
    ``cosine`` anneals from 1 to ``final_factor`` over the run, and a ``warmup`` of w units
    multiplies by ``min(1, (t + 1) / w)``. A pure function of ``it``: resuming needs only ``it``.
    """

    def __init__(self, spec: Mapping[str, Any], iters_per_epoch: int, epochs: int) -> None:
        self.spec = dict(spec)
        self.iters_per_epoch = int(iters_per_epoch)
        self.epochs = int(epochs)

    def __call__(self, it: int) -> float:
        spec = self.spec
        if spec["per"] == "epoch":
            t, horizon = it // self.iters_per_epoch, self.epochs
        else:
            t, horizon = it, self.epochs * self.iters_per_epoch
        factor = 1.0
        if spec["type"] == "multistep":
            factor = spec["gamma"] ** sum(1 for m in spec["milestones"] if t >= m)
        elif spec["type"] == "cosine":
            final = spec["final_factor"]
            factor = final + (1.0 - final) * 0.5 * (
                1.0 + math.cos(math.pi * min(t, horizon) / horizon)
            )
        if spec["warmup"] > 0:
            factor *= min(1.0, (t + 1) / spec["warmup"])
        return factor


# --------------------------------------------------------------------------------------------
# The configuration


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run; its hash names the run directory.

    The defaults are the registry values of SPEC Appendix C for Sec. 3.3 and Sec. 5.1 where they
    apply ([assumed] unless the SPEC says otherwise): NSF with heavy-ball momentum beta1 = 0.9,
    beta2 = 0.999, eps = 1e-8 outside the power, bias correction of v only, coupled weight decay
    5e-4 on every parameter, lr 0.1, augmentation RandomCrop(pad 4) + horizontal flip.

    Data: ``dataset`` and ``data_options`` go to :func:`nsf.datasets.load_dataset`; ``val_split``
    is the split evaluated every epoch (``"test"``; TinyImageNet's is ``"val"``).
    Model: ``model`` (``"resnet18"`` or ``"small_cnn"``), ``stem`` (ResNet-18's ``"cifar"`` or
    ``"imagenet"``) and ``model_options`` (SmallCNN's ``width``, ``norm``).
    Training: ``epochs``, ``batch_size`` (the global batch, split over processes),
    ``eval_batch_size``, ``lr``, ``lr_schedule`` ({"type": "constant" | "multistep" |
    "cosine", "per": "epoch" | "iteration", "warmup": 0, "milestones", "gamma",
    "final_factor"}), ``weight_decay`` (coupled L2, SPEC 1.6), ``p_schedule`` (see
    :func:`build_p_schedule`), the NSF options ``betas``, ``eps``, ``momentum``,
    ``bias_correction``, ``eps_mode``, ``update_norm``; augmentation ``crop_pad`` and ``flip``;
    ``drop_last`` (False: ceil(N/B) iterations per epoch, SPEC 8.1).
    Execution: ``seed``, ``deterministic`` (deterministic algorithms, no cuDNN benchmark),
    ``amp`` (``"bf16"`` autocast on CUDA; a CPU run ignores it), ``channels_last`` (CUDA only),
    ``compile`` (``torch.compile``), ``checkpoint_every`` (iterations; 0 = at epoch ends only),
    ``log_every`` (iterations between progress-bar updates) and ``device`` (``"auto"``,
    ``"cpu"``, ``"cuda"``).

    The schedules are normalised (defaults filled in, numbers made floats), so two configs that
    mean the same run have the same hash. Build one from a dict with :meth:`from_dict`.
    """

    dataset: str = "digits"
    data_options: Mapping[str, Any] = field(default_factory=dict)
    val_split: str = "test"
    model: str = "small_cnn"
    stem: str = "cifar"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 512
    lr: float = 0.1
    lr_schedule: Mapping[str, Any] = field(default_factory=lambda: {"type": "constant"})
    weight_decay: float = 5e-4
    p_schedule: Mapping[str, Any] = field(default_factory=lambda: {"kind": "constant", "p": 0.0})
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: str = "heavy_ball"
    bias_correction: bool = True
    eps_mode: str = "outside"
    update_norm: str | None = None
    crop_pad: int = 4
    flip: bool = True
    drop_last: bool = False
    seed: int = 0
    deterministic: bool = False
    amp: str = "bf16"
    channels_last: bool = True
    compile: bool = False
    checkpoint_every: int = 0
    log_every: int = 50
    device: str = "auto"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        from nsf.train.datasets import DATASETS

        _check(self.dataset in DATASETS, f"dataset={self.dataset!r} is not one of {DATASETS}")
        _check(
            isinstance(self.data_options, Mapping),
            f"data_options={self.data_options!r} must be a mapping",
        )
        put("data_options", dict(self.data_options))
        _check(isinstance(self.val_split, str), f"val_split={self.val_split!r} must be a str")
        _check(self.model in MODELS, f"model={self.model!r} is not one of {MODELS}")
        _check(self.stem in STEMS, f"stem={self.stem!r} is not one of {STEMS}")
        _check(
            isinstance(self.model_options, Mapping),
            f"model_options={self.model_options!r} must be a mapping",
        )
        put("model_options", dict(self.model_options))
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            _check(_is_int(value) and value >= 1, f"{name}={value!r} must be an int >= 1")
        for name in ("checkpoint_every", "crop_pad", "seed"):
            value = getattr(self, name)
            _check(_is_int(value) and value >= 0, f"{name}={value!r} must be an int >= 0")
        _check(
            _is_int(self.log_every) and self.log_every >= 1,
            f"log_every={self.log_every!r} must be an int >= 1",
        )
        for name in ("lr", "weight_decay", "eps"):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            _check(
                ok and math.isfinite(value) and value >= 0,
                f"{name}={value!r} must be a finite number >= 0",
            )
            put(name, float(value))
        _check(self.lr > 0, f"lr={self.lr!r} must be > 0")
        betas = tuple(self.betas) if isinstance(self.betas, Sequence) else ()
        _check(
            len(betas) == 2 and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas),
            f"betas={self.betas!r} must be two numbers in [0, 1)",
        )
        put("betas", (float(betas[0]), float(betas[1])))
        _check(
            self.momentum in MOMENTUM_MODES,
            f"momentum={self.momentum!r} is not one of {MOMENTUM_MODES}",
        )
        _check(self.eps_mode in EPS_MODES, f"eps_mode={self.eps_mode!r} is not one of {EPS_MODES}")
        _check(
            self.update_norm in UPDATE_NORMS,
            f"update_norm={self.update_norm!r} is not one of {UPDATE_NORMS}",
        )
        _check(self.amp in AMP_MODES, f"amp={self.amp!r} is not one of {AMP_MODES}")
        _check(self.device in DEVICES, f"device={self.device!r} is not one of {DEVICES}")
        for name in (
            "bias_correction",
            "flip",
            "drop_last",
            "deterministic",
            "channels_last",
            "compile",
        ):
            _check(
                isinstance(getattr(self, name), bool),
                f"{name}={getattr(self, name)!r} must be a bool",
            )
        put("p_schedule", _normalise_p_schedule(self.p_schedule))
        put("lr_schedule", _normalise_lr_schedule(self.lr_schedule))
        if self.model == "resnet18" and self.model_options:
            raise ValueError(
                f"model_options={self.model_options!r}: resnet18 takes none (use stem)"
            )
        if self.model == "small_cnn":
            unknown = sorted(set(self.model_options) - {"width", "norm"})
            _check(not unknown, f"model_options {unknown} unknown for small_cnn (width, norm)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples become lists); ``from_dict(to_dict())`` round-trips."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from a mapping; unknown keys raise ``ValueError`` (a typo must not pass)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(names)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated and normalised again)."""
        return dataclasses.replace(self, **changes)

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


# --------------------------------------------------------------------------------------------
# p log: the p of every iteration, run-length encoded


def rle_encode(values: Iterator[float] | Sequence[float]) -> list[list]:
    """``[p0, p0, p0, p1] -> [[p0, 3], [p1, 1]]`` (the p log of SPEC section 1.10)."""
    pairs: list[list] = []
    for value in values:
        _rle_append(pairs, float(value))
    return pairs


def rle_decode(pairs: Sequence[Sequence]) -> list[float]:
    """Inverse of :func:`rle_encode`."""
    out: list[float] = []
    for value, count in pairs:
        out.extend([float(value)] * int(count))
    return out


def _rle_append(pairs: list[list], value: float) -> None:
    if pairs and pairs[-1][0] == value:
        pairs[-1][1] += 1
    else:
        pairs.append([value, 1])


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class RunResult:
    """What :func:`train` returns: the run directory and what it holds.

    ``metrics`` is one dict per epoch (keys :data:`METRIC_COLUMNS`), ``p_log`` the run-length
    encoded p of every iteration (:func:`rle_decode` expands it), ``params_path`` the final
    ``state_dict`` (``torch.load(..., weights_only=True)``), ``summary`` the contents of
    ``finished.json``, and ``from_cache`` whether the run had already finished before this call.
    """

    run_dir: Path
    config: TrainConfig
    metrics: list[dict[str, float]]
    p_log: list[list]
    params_path: Path
    summary: dict[str, Any]
    from_cache: bool

    @property
    def frame(self):
        """The metrics as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.metrics, columns=list(METRIC_COLUMNS))

    def state_dict(self) -> dict[str, Tensor]:
        """The final weights."""
        return torch.load(self.params_path, map_location="cpu", weights_only=True)


def _metrics_csv(rows: Sequence[Mapping[str, float]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(METRIC_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: repr(row[k]) if isinstance(row[k], float) else row[k] for k in METRIC_COLUMNS}
        )
    return buffer.getvalue()


def _read_metrics_csv(path: Path) -> list[dict[str, float]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    ints = ("epoch", "iteration")
    return [{k: int(v) if k in ints else float(v) for k, v in row.items()} for row in rows]


def load_result(run: Run, config: TrainConfig | None = None) -> RunResult:
    """The :class:`RunResult` of a finished run, read from its directory."""
    config = config or TrainConfig.from_dict(json.loads(run.path("config.json").read_text()))
    return RunResult(
        run_dir=run.dir,
        config=config,
        metrics=_read_metrics_csv(run.path(METRICS_FILE)),
        p_log=json.loads(run.path(P_LOG_FILE).read_text()),
        params_path=run.path(MODEL_FILE),
        summary=run.summary,
        from_cache=True,
    )


# --------------------------------------------------------------------------------------------
# Execution environment: processes, devices, determinism


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_reduce_(self, tensor: Tensor) -> Tensor:
        if self.enabled:
            torch.distributed.all_reduce(tensor)
        return tensor


def _resolve_device(requested: str, local_rank: int) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch.cuda.is_available() is False")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device("cpu")


@contextlib.contextmanager
def _distributed(device: torch.device) -> Iterator[_Dist]:
    """Join the process group when started by torchrun (RANK / WORLD_SIZE / LOCAL_RANK)."""
    dist = torch.distributed
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield _Dist()
        return
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    state = _Dist(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns
    )
    try:
        yield state
    finally:
        if owns and dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def _determinism(deterministic: bool, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms and no cuDNN autotuning (else cuDNN benchmark); undone after."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    if deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        torch.backends.cudnn.deterministic = saved[3]


def _autocast(device: torch.device, amp: str):
    if device.type == "cuda" and amp == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _show_progress(progress: bool | None, dist: _Dist) -> bool:
    if not dist.is_main:
        return False
    return sys.stderr.isatty() if progress is None else bool(progress)


# --------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    num_classes: int,
    *,
    amp: str = "none",
    dist: _Dist | None = None,
) -> dict[str, float]:
    """Loss, top-1, top-min(5, C) and 15-bin ECE of ``model`` (in eval mode) over ``loader``.

    ``ECE = sum_b |sum_{i in b} correct_i - sum_{i in b} confidence_i| / N``, with the bins
    (k/15, (k+1)/15] of the top-1 softmax probability (SPEC section 8.3). Under DDP every process
    evaluates its shard and the sums are all-reduced.
    """
    dist = dist or _Dist()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    k = min(5, num_classes)
    # [loss, top1, topk, count] and per bin [count, correct, confidence]
    totals = torch.zeros(4, dtype=torch.float64, device=device)
    bins = torch.zeros(3, ECE_BINS, dtype=torch.float64, device=device)
    edges = torch.arange(ECE_BINS, device=device)
    for x, y in loader.epoch(0):
        if y.numel() == 0:
            continue
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        probs = logits.softmax(dim=1)
        confidence, prediction = probs.max(dim=1)
        correct = (prediction == y).double()
        topk = (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1)
        loss = F.cross_entropy(logits, y, reduction="sum")
        totals += torch.stack(
            [loss.double(), correct.sum(), topk.double().sum(), correct.new_tensor(y.numel())]
        )
        index = (confidence * ECE_BINS).ceil().long().clamp_(1, ECE_BINS) - 1
        onehot = (index[:, None] == edges).double()  # a matmul, not a scatter: deterministic
        bins += torch.stack([onehot.sum(0), correct @ onehot, confidence.double() @ onehot])
    dist.all_reduce_(totals)
    dist.all_reduce_(bins)
    model.train(was_training)
    loss, top1, topk, count = totals.tolist()
    ece = (bins[1] - bins[2]).abs().sum().item() / max(count, 1.0)
    n = max(count, 1.0)
    return {"loss": loss / n, "top1": top1 / n, "topk": topk / n, "ece": ece}


# --------------------------------------------------------------------------------------------
# Training


def _global_batch_counts(num_samples: int, global_batch: int, num_batches: int) -> list[int]:
    """Samples in each global batch of an epoch: full batches, then the remainder (if kept)."""
    return [min(global_batch, num_samples - i * global_batch) for i in range(num_batches)]


def _broadcast_buffers(model: nn.Module, dist: _Dist) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics) before evaluation or saving."""
    if dist.enabled:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)


def train(
    config: TrainConfig | Mapping[str, Any],
    store_root: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train ``config`` in its run directory under ``store_root``, or load it if it has finished.

    Resumes from ``checkpoint.pt`` if the run was interrupted. Started by ``torchrun`` (the
    environment has WORLD_SIZE > 1), it joins the process group (NCCL on CUDA, gloo on CPUs),
    trains with DistributedDataParallel on its shard of every global batch, and only rank 0
    writes files (every rank reads the checkpoint: across nodes, ``store_root`` must be on a
    shared file system). ``data_root`` is where :func:`nsf.datasets.load_dataset` looks for the
    downloaded datasets (it is not part of the config: it says where the data is, not what it
    is). ``progress``: tqdm bars on rank 0 (``None``: when stderr is a terminal).
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(config)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    with _distributed(device) as dist:
        store = RunStore(store_root)
        prefix = f"{config.dataset}-{config.model}"
        if dist.is_main:
            run = store.run(config.to_dict(), prefix=prefix)
        dist.barrier()
        if not dist.is_main:
            run = store.run(config.to_dict(), prefix=prefix)
        if run.is_finished:
            return load_result(run, config)
        with _determinism(config.deterministic, device):
            _Trainer(config, run, device, dist, data_root, _show_progress(progress, dist)).fit()
        dist.barrier()
        result = load_result(run, config)
        result.from_cache = False
        return result


class _Trainer:
    """One training run: builds everything, resumes, loops, checkpoints. Use :func:`train`."""

    def __init__(
        self,
        config: TrainConfig,
        run: Run,
        device: torch.device,
        dist: _Dist,
        data_root: str | os.PathLike | None,
        progress: bool,
    ) -> None:
        from nsf.train import datasets, loader

        self.config, self.run, self.device, self.dist, self.progress = (
            config,
            run,
            device,
            dist,
            progress,
        )
        cuda = device.type == "cuda"
        self.amp = config.amp if cuda else "none"
        self.channels_last = config.channels_last and cuda
        if dist.is_main and config.amp != "none" and not cuda:
            warnings.warn(
                f"amp={config.amp!r} applies on CUDA only; this {device.type} run uses float32 "
                "(set amp='none' to silence this note)",
                stacklevel=3,
            )
        W = dist.world_size
        if config.batch_size % W or config.eval_batch_size % W:
            raise ValueError(
                f"batch_size={config.batch_size} and eval_batch_size={config.eval_batch_size} "
                f"must be divisible by the number of processes ({W})"
            )

        train_set = datasets.load_dataset(
            config.dataset, "train", root=data_root, **config.data_options
        )
        val_set = datasets.load_dataset(
            config.dataset, config.val_split, root=data_root, **config.data_options
        )
        self.num_classes = train_set.num_classes
        common = dict(
            device=device,
            seed=config.seed,
            rank=dist.rank,
            world_size=W,
            channels_last=self.channels_last,
        )
        self.train_loader = loader.DeviceLoader(
            train_set,
            config.batch_size // W,
            train=True,
            crop_pad=config.crop_pad,
            flip=config.flip,
            drop_last=config.drop_last,  # explicit: the loader's default depends on W
            **common,
        )
        self.val_loader = loader.DeviceLoader(
            val_set, config.eval_batch_size // W, train=False, **common
        )
        self.iters_per_epoch = len(self.train_loader)
        self.batch_counts = _global_batch_counts(
            len(train_set), config.batch_size, self.iters_per_epoch
        )
        if self.iters_per_epoch == 0:
            raise ValueError(
                f"{config.dataset} has {len(train_set)} training images, fewer than one batch of "
                f"{config.batch_size} with drop_last=True"
            )

        torch.manual_seed(config.seed)
        in_channels = int(train_set.images.shape[1])
        net = build_model(
            config.model, self.num_classes, in_channels, stem=config.stem, **config.model_options
        )
        net = net.to(device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
        smallest = self.batch_counts[-1] // W  # the last batch is split evenly over the ranks
        if has_bn and smallest < 2:
            raise ValueError(
                f"the last batch of an epoch ({self.batch_counts[-1]} of {len(train_set)} images) "
                f"leaves a process {smallest} sample(s), too few for BatchNorm in training; set "
                "drop_last=True or change batch_size"
            )
        self.net = net
        self.optimizer = NSF(
            net.parameters(),
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
            momentum=config.momentum,
            bias_correction=config.bias_correction,
            eps_mode=config.eps_mode,
            update_norm=config.update_norm,
        )
        self.p_scheduler = PScheduler(self.optimizer, build_p_schedule(config.p_schedule))
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, LRFactor(config.lr_schedule, self.iters_per_epoch, config.epochs)
        )

        # Progress state: what a checkpoint holds besides the modules.
        self.epoch, self.batch, self.iteration = 0, 0, 0
        self.rows: list[dict[str, float]] = []
        self.p_log: list[list] = []
        self._reset_epoch_accumulators()
        if run.path(CHECKPOINT_FILE).exists():
            self._load_checkpoint(run.load(CHECKPOINT_FILE))

        model: nn.Module = net
        if dist.enabled:
            device_ids = [device.index] if device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
        self.model = torch.compile(model) if config.compile else model
        self.eval_model = torch.compile(net) if config.compile else net
        crash = os.environ.get(CRASH_ENV)
        self.crash_after = int(crash) if crash else None

    # -- state ---------------------------------------------------------------------------------

    def _reset_epoch_accumulators(self) -> None:
        # loss sum and correct count on the device (no sync in the loop); the rest on the host.
        self.acc = torch.zeros(2, dtype=torch.float64, device=self.device)
        self.p_sum = 0.0
        self.epoch_iters = 0
        self.train_time = 0.0

    def _checkpoint_state(self) -> dict[str, Any]:
        acc = self.dist.all_reduce_(self.acc.clone())  # the sum over processes; rank 0 resumes it
        state = {
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "p_scheduler": self.p_scheduler.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "iteration": self.iteration,
            "world_size": self.dist.world_size,
            "accumulators": {
                "acc": acc.cpu(),
                "p_sum": self.p_sum,
                "epoch_iters": self.epoch_iters,
                "train_time": self.train_time,
            },
            "rows": self.rows,
            "p_log": self.p_log,
            "rng": {"torch": torch.get_rng_state()},
        }
        if self.device.type == "cuda":
            state["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _load_checkpoint(self, state: Mapping[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.p_scheduler.load_state_dict(state["p_scheduler"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.epoch, self.batch, self.iteration = state["epoch"], state["batch"], state["iteration"]
        if self.iteration != self.epoch * self.iters_per_epoch + self.batch:
            raise RuntimeError(
                f"{self.run.path(CHECKPOINT_FILE)} is at epoch {self.epoch}, batch {self.batch}, "
                f"iteration {self.iteration}, which does not fit {self.iters_per_epoch} batches "
                "per epoch: the data changed since it was written; delete the run directory"
            )
        self.rows = [dict(row) for row in state["rows"]]
        self.p_log = [list(pair) for pair in state["p_log"]]
        acc = state["accumulators"]
        if self.dist.is_main:
            self.acc = acc["acc"].to(self.device)
        self.p_sum, self.epoch_iters, self.train_time = (
            acc["p_sum"],
            acc["epoch_iters"],
            acc["train_time"],
        )
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        if state.get("world_size", 1) != self.dist.world_size and self.dist.is_main:
            print(
                f"nsf.engine: resuming a run written by {state['world_size']} process(es) with "
                f"{self.dist.world_size}; the global batches are the same",
                file=sys.stderr,
            )

    def _save_checkpoint(self) -> None:
        state = self._checkpoint_state()  # collective (all-reduce): every rank takes part
        if self.dist.is_main:
            self.run.save(state, CHECKPOINT_FILE)
        self.dist.barrier()

    def _write_logs(self) -> None:
        if self.dist.is_main:
            atomic_write_text(self.run.path(METRICS_FILE), _metrics_csv(self.rows))
            atomic_write_json(self.run.path(P_LOG_FILE), self.p_log)

    # -- loop ----------------------------------------------------------------------------------

    def fit(self) -> None:
        config, dist = self.config, self.dist
        while self.epoch < config.epochs:
            self._train_epoch()
        _broadcast_buffers(self.net, dist)
        self._write_logs()
        if dist.is_main:
            self.run.save(
                {k: v.detach().cpu() for k, v in self.net.state_dict().items()}, MODEL_FILE
            )
            last = self.rows[-1]
            self.run.finish(
                {
                    "final": last,
                    "best_val_top1": max(row["val_top1"] for row in self.rows),
                    "iterations": self.iteration,
                    "wall_time_s": sum(row["epoch_time_s"] for row in self.rows),
                    "world_size": dist.world_size,
                    "device": torch.cuda.get_device_name(self.device)
                    if self.device.type == "cuda"
                    else "cpu",
                    "torch": torch.__version__,
                }
            )
        dist.barrier()

    def _train_epoch(self) -> None:
        config, dist, device = self.config, self.dist, self.device
        from tqdm import tqdm

        self.net.train()
        self.model.train()
        W = dist.world_size
        bar = tqdm(
            total=self.iters_per_epoch,
            initial=self.batch,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        start = time.perf_counter()
        for x, y in self.train_loader.epoch(self.epoch, self.batch):
            p = self.optimizer.param_groups[0]["p"]
            lr = self.optimizer.param_groups[0]["lr"]
            with _autocast(device, self.amp):
                logits = self.model(x)
            loss_sum = F.cross_entropy(logits.float(), y, reduction="sum")
            # DDP averages gradients over W processes, so scale the local sum to make the
            # average the gradient of the global mean loss, even for an uneven last batch.
            loss = loss_sum * (W / self.batch_counts[self.batch])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.p_scheduler.step()
            self.lr_scheduler.step()

            self.acc += torch.stack(
                [loss_sum.detach().double(), (logits.argmax(1) == y).sum().double()]
            )
            self.p_sum += p
            _rle_append(self.p_log, p)
            self.batch += 1
            self.iteration += 1
            self.epoch_iters += 1
            bar.update(1)
            if self.progress and self.iteration % config.log_every == 0:
                seen = max(sum(self.batch_counts[: self.batch]), 1)
                bar.set_postfix(
                    loss=f"{self.acc[0].item() / seen * W:.4f}", p=f"{p:+.3f}", lr=f"{lr:.3g}"
                )
            if (
                config.checkpoint_every
                and self.iteration % config.checkpoint_every == 0
                and self.batch < self.iters_per_epoch
            ):
                self.train_time += self._elapsed(start)
                self._save_checkpoint()
                start = time.perf_counter()
            if self.crash_after is not None and self.iteration == self.crash_after:
                os._exit(17)  # simulated kill (test hook, see CRASH_ENV)
        bar.close()
        self.train_time += self._elapsed(start)
        start = time.perf_counter()

        totals = dist.all_reduce_(self.acc.clone()).tolist()
        count = sum(self.batch_counts)
        _broadcast_buffers(self.net, dist)
        val = evaluate(self.eval_model, self.val_loader, self.num_classes, amp=self.amp, dist=dist)
        eval_time = self._elapsed(start)
        row = {
            "epoch": self.epoch + 1,
            "iteration": self.iteration,
            "lr": self._lr_at(self.iteration - 1),
            "p_mean": self.p_sum / max(self.epoch_iters, 1),
            "train_loss": totals[0] / count,
            "train_top1": totals[1] / count,
            "val_loss": val["loss"],
            "val_top1": val["top1"],
            "val_top5": val["topk"],
            "val_ece": val["ece"],
            "epoch_time_s": self.train_time + eval_time,
            "train_images_per_s": count / max(self.train_time, 1e-9),
        }
        self.rows.append(row)
        if self.progress:
            tqdm.write(
                f"epoch {row['epoch']}/{config.epochs}: train loss {row['train_loss']:.4f} "
                f"top1 {row['train_top1']:.4f} | val loss {row['val_loss']:.4f} "
                f"top1 {row['val_top1']:.4f} ece {row['val_ece']:.4f} | p {row['p_mean']:+.3f} "
                f"lr {row['lr']:.3g} | {row['train_images_per_s']:.0f} img/s",
                file=sys.stderr,
            )
        self.epoch += 1
        self.batch = 0
        self._reset_epoch_accumulators()
        self._save_checkpoint()
        self._write_logs()

    def _lr_at(self, it: int) -> float:
        return self.config.lr * self.lr_scheduler.lr_lambdas[0](it)

    def _elapsed(self, start: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start
