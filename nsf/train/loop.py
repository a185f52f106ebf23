"""The training loop of the image chapters: the p ablation (paper Sec. 3.3, book chapter 02) and
the pulse-tidal ResNet-18 (paper Sec. 5.1, book chapter 06). One function, :func:`train`, runs a
:class:`~nsf.train.config.TrainConfig` from one CPU core to a cluster of GPUs::

    from nsf.train import TrainConfig, train

    config = TrainConfig(dataset="digits", model="small_cnn", epochs=15, batch_size=64,
                         lr=0.05, p_schedule={"kind": "constant", "p": 0.0})
    result = train(config, "runs")          # or: torchrun --nproc_per_node=8 -m nsf train ...
    result.frame                            # one row of metrics per epoch

What one iteration does::

    loss = cross_entropy(model(x), y)               # bf16 autocast on CUDA
    loss.backward()                                 # DDP all-reduces the gradients
    optimizer.step()                                # NSF at the current (p, lr)
    p_scheduler.step(); lr_scheduler.step()         # both are functions of the iteration

A finished run (:mod:`nsf.train.results`) is loaded, never recomputed; an unfinished one resumes
from its checkpoint, written atomically every ``checkpoint_every`` iterations and at every epoch
end, and in deterministic mode on a CPU the resumed run ends with metrics and weights
bit-identical to an uninterrupted one.

Correct by construction:

* A batch is a pure function of (seed, epoch, index) (:class:`nsf.train.loader.DeviceLoader`), and
  the
  p and learning-rate schedules are pure functions of the iteration, so resuming at (epoch, batch)
  replays exactly the batches and hyperparameters that an uninterrupted run sees.
* The loss of a batch is weighted by its share of the global batch
  (``nsf.train.distributed.scaled_loss``), and the epoch's training loss is the sum over
  samples divided by the number of samples, whatever the size of the last batch.
* The inner loop never waits on the device: losses and counts accumulate on the device, p and
  the learning rate are Python floats, and the host reads the device once per ``log_every``
  iterations (only when a progress bar is shown) and at epoch ends.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from nsf import schedules
from nsf.runstore import Run, RunStore, atomic_write_json, atomic_write_text
from nsf.schedules import PScheduler, Scheduler
from nsf.train.config import TrainConfig
from nsf.train.datasets import load_dataset
from nsf.train.device import autocast, determinism, resolve_device
from nsf.train.distributed import (
    Dist,
    broadcast_buffers,
    distributed,
    global_batch_counts,
    scaled_loss,
)
from nsf.train.evaluation import evaluate
from nsf.train.loader import DeviceLoader
from nsf.train.metrics import metrics_csv
from nsf.train.models import build_model
from nsf.train.plog import rle_append
from nsf.train.results import (
    CHECKPOINT_FILE,
    DIAGNOSTIC_COLUMNS,
    DIAGNOSTICS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    P_LOG_FILE,
    RunResult,
    load_result,
)

__all__ = ["train"]


#: Batches between two samples of the update size (``update_rms`` of ``metrics.csv``): a fixed
#: stride, so the metric depends on the run key only (not on ``log_every``), at a cost of one
#: pass over the weights every 10 steps.
UPDATE_SAMPLE_EVERY = 10


def train(
    config: TrainConfig | Mapping[str, Any],
    store_root: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> RunResult:
    """Train ``config`` in its run directory under ``store_root``, or load it if it has finished.

    The run is keyed by ``TrainConfig.run_key`` of the config ``TrainConfig.on`` the
    device it runs on: how often it logs or checkpoints does not make it another run.
    Resumes from ``checkpoint.pt`` if the run was interrupted. Started by ``torchrun`` (the
    environment has WORLD_SIZE > 1), it joins the process group (NCCL on CUDA, gloo on CPUs),
    trains with DistributedDataParallel on its shard of every global batch, and only rank 0
    writes files (every rank reads the checkpoint: across nodes, ``store_root`` must be on a
    shared file system). ``data_root`` is where :func:`nsf.train.datasets.load_dataset` looks for
    the
    downloaded datasets (it is not part of the config: it says where the data is, not what it
    is). ``progress``: tqdm bars on rank 0 (``None``: when stderr is a terminal).
    """
    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(config)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    config = config.on(device)
    with distributed(device) as dist:
        store = RunStore(store_root)
        if dist.is_main:
            run = store.run(config.run_key(), prefix=config.run_prefix)
        dist.barrier()
        if not dist.is_main:
            run = store.run(config.run_key(), prefix=config.run_prefix)
        if run.is_finished:
            return load_result(run)
        with determinism(config.deterministic, device):
            _Trainer(config, run, device, dist, data_root, _show_progress(progress, dist)).fit()
        dist.barrier()
        result = load_result(run)
        result.from_cache = False
        return result


def _summary_writer_class():
    """torch's TensorBoard ``SummaryWriter``, or a clear error when its package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise RuntimeError(
            "tensorboard=True needs the tensorboard package (pip install tensorboard), which "
            f"is not importable here ({error}); or set tensorboard=False"
        ) from None
    return SummaryWriter


def _show_progress(progress: bool | None, dist: Dist) -> bool:
    if not dist.is_main:
        return False
    return sys.stderr.isatty() if progress is None else bool(progress)


class _Trainer:
    """One training run: builds everything, resumes, loops, checkpoints. Use :func:`train`."""

    def __init__(
        self,
        config: TrainConfig,
        run: Run,
        device: torch.device,
        dist: Dist,
        data_root: str | os.PathLike | None,
        progress: bool,
    ) -> None:
        self.config, self.run, self.device, self.dist, self.progress = (
            config,
            run,
            device,
            dist,
            progress,
        )
        self.events = None  # the TensorBoard writer, opened by fit (where the run resumes)
        if config.tensorboard:
            _summary_writer_class()  # refuse a missing package before any data loads
        W = dist.world_size
        if config.batch_size % W or config.eval_batch_size % W:
            raise ValueError(
                f"batch_size={config.batch_size} and eval_batch_size={config.eval_batch_size} "
                f"must be divisible by the number of processes ({W})"
            )

        train_set, val_set = (
            load_dataset(
                config.dataset,
                split,
                root=data_root,
                holdout_fraction=config.holdout_fraction,
                **config.data_options,
            )
            for split in (config.train_split, config.val_split)
        )
        self.num_classes = train_set.num_classes
        common = dict(
            device=device,
            seed=config.seed,
            rank=dist.rank,
            world_size=W,
            channels_last=config.channels_last,
        )
        self.train_loader = DeviceLoader(
            train_set,
            config.batch_size // W,
            train=True,
            crop_pad=config.crop_pad,  # None: the dataset's own (TrainConfig.on fills them in)
            flip=config.flip,
            vflip=config.vflip,
            drop_last=config.drop_last,  # explicit: the loader's default depends on W
            **common,
        )
        self.val_loader = DeviceLoader(val_set, config.eval_batch_size // W, train=False, **common)
        self.augmentation = self.train_loader.augmentation.to_dict()  # recorded in finished.json
        self.iters_per_epoch = len(self.train_loader)
        self.batch_counts = global_batch_counts(
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
        if config.channels_last:
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
        self.optimizer = config.optimizer(net.parameters())
        self.p_scheduler = PScheduler(self.optimizer, schedules.from_spec(config.p_schedule))
        lr_schedule = schedules.from_spec(config.lr_schedule)
        if config.lr_unit == "epoch":
            lr_schedule = schedules.stepped(lr_schedule, self.iters_per_epoch)
        self.lr_scheduler = Scheduler(self.optimizer, "lr", lr_schedule, relative=True)

        # Progress state: what a checkpoint holds besides the modules.
        self.epoch, self.batch, self.iteration = 0, 0, 0
        self.rows: list[dict[str, float]] = []
        self.p_log: list[list] = []
        self.diagnostics: list[list] = []  # rows of DIAGNOSTIC_COLUMNS
        self._reset_epoch_accumulators()
        if run.path(CHECKPOINT_FILE).exists():
            self._load_checkpoint(run.load(CHECKPOINT_FILE))

        model: nn.Module = net
        if dist.enabled:
            device_ids = [device.index] if device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
        self.model = torch.compile(model) if config.compile else model
        self.eval_model = torch.compile(net) if config.compile else net

    # -- state ---------------------------------------------------------------------------------

    def _reset_epoch_accumulators(self) -> None:
        # loss sum and correct count on the device (no sync in the loop); the rest on the host.
        self.acc = torch.zeros(2, dtype=torch.float64, device=self.device)
        self.p_sum = 0.0
        self.epoch_iters = 0
        self.train_time = 0.0
        self.update_sq, self.update_samples = 0.0, 0

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
                "update_sq": self.update_sq,
                "update_samples": self.update_samples,
                "train_time": self.train_time,
            },
            "rows": self.rows,
            "p_log": self.p_log,
            "diagnostics": self.diagnostics,
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
        self.diagnostics = [list(row) for row in state.get("diagnostics", [])]
        acc = state["accumulators"]
        if self.dist.is_main:
            self.acc = acc["acc"].to(self.device)
        self.p_sum, self.epoch_iters, self.train_time = (
            acc["p_sum"],
            acc["epoch_iters"],
            acc["train_time"],
        )
        self.update_sq, self.update_samples = acc["update_sq"], acc["update_samples"]
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        if state.get("world_size", 1) != self.dist.world_size and self.dist.is_main:
            print(
                f"nsf.train: resuming a run written by {state['world_size']} process(es) with "
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
            atomic_write_text(self.run.path(METRICS_FILE), metrics_csv(self.rows))
            atomic_write_json(self.run.path(P_LOG_FILE), self.p_log)
            if self.config.diagnostics_every:
                lines = [",".join(DIAGNOSTIC_COLUMNS)]
                lines += [",".join(map(str, row)) for row in self.diagnostics]
                atomic_write_text(self.run.path(DIAGNOSTICS_FILE), "\n".join(lines) + "\n")

    # -- loop ----------------------------------------------------------------------------------

    def fit(self) -> None:
        config, dist = self.config, self.dist
        if config.tensorboard and dist.is_main:  # a resumed run drops events past its checkpoint
            writer = _summary_writer_class()
            self.events = writer(str(self.run.path("tensorboard")), purge_step=self.iteration)
        while self.epoch < config.epochs:
            self._train_epoch()
        if self.events is not None:
            self.events.close()
        broadcast_buffers(self.net, dist)
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
                    "augmentation": self.augmentation,
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
            with autocast(device, config.amp):
                logits = self.model(x)
            loss_sum = F.cross_entropy(logits.float(), y, reduction="sum")
            loss = scaled_loss(loss_sum, self.batch_counts[self.batch], W)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.batch % UPDATE_SAMPLE_EVERY == 0:  # before the schedulers move p and lr
                self._sample_update_size(lr)
            every = config.diagnostics_every
            if every and self.iteration % every == 0 and self.dist.is_main:
                self._sample_diagnostics(p, lr)
            self.p_scheduler.step()
            self.lr_scheduler.step()

            self.acc += torch.stack(
                [loss_sum.detach().double(), (logits.argmax(1) == y).sum().double()]
            )
            self.p_sum += p
            rle_append(self.p_log, p)
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
        bar.close()
        self.train_time += self._elapsed(start)
        start = time.perf_counter()

        totals = dist.all_reduce_(self.acc.clone()).tolist()
        count = sum(self.batch_counts)
        broadcast_buffers(self.net, dist)
        val = evaluate(
            self.eval_model, self.val_loader, self.num_classes, amp=config.amp, dist=dist
        )
        eval_time = self._elapsed(start)
        row = {
            "epoch": self.epoch + 1,
            "iteration": self.iteration,
            "lr": self._lr_at(self.iteration - 1),
            "p_mean": self.p_sum / max(self.epoch_iters, 1),
            "update_rms": math.sqrt(self.update_sq / max(self.update_samples, 1)),
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
        if self.events is not None:
            for name, value in row.items():
                self.events.add_scalar(f"epoch/{name}", value, self.iteration)
            self.events.flush()
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

    @torch.no_grad()
    def _sample_update_size(self, lr: float) -> None:
        """Add the squared RMS over all weights of the step just taken, lr * u (Eq. 3's update,
        :meth:`nsf.optim.NSF.update_terms`); sampled at the epoch's batches 0, 10, 20, ...
        (``UPDATE_SAMPLE_EVERY``)."""
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        for param in self.net.parameters():
            if param in self.optimizer.state:
                step = self.optimizer.update_terms(param).step
                total += step.double().square().sum()
                count += step.numel()
        self.update_sq += lr**2 * total.item() / max(count, 1)
        self.update_samples += 1

    @torch.no_grad()
    def _sample_diagnostics(self, p: float, lr: float) -> None:
        """Append, per parameter tensor and for all of them together (layer ``"*"``), the RMS of
        the step just taken, its ratio to the p = 0 step from the same state
        (:meth:`nsf.optim.NSF.update_terms` at ``p=0.0``) and the median of v^
        (:data:`nsf.train.results.DIAGNOSTIC_COLUMNS`); one host sync for all of them."""
        names, values = [], []
        total = torch.zeros(3, dtype=torch.float64, device=self.device)  # sum u^2, sum u0^2, n
        for name, param in self.net.named_parameters():
            if param in self.optimizer.state:
                terms = self.optimizer.update_terms(param)
                sq = terms.step.double().square().sum()
                sq0 = self.optimizer.update_terms(param, p=0.0).step.double().square().sum()
                n = terms.step.numel()
                total += torch.stack([sq, sq0, sq.new_tensor(float(n))])
                values.append(torch.stack([(sq / n).sqrt(), (sq / sq0).sqrt(),
                                           terms.v_hat.double().median()]))  # fmt: skip
                names.append(name)
        if not names:
            return
        everything = torch.stack([(total[0] / total[2]).sqrt(), (total[0] / total[1]).sqrt(),
                                  total.new_tensor(float("nan"))])  # fmt: skip
        rows = torch.stack([*values, everything]).tolist()
        for name, (rms, ratio, vhat) in zip([*names, "*"], rows, strict=True):
            self.diagnostics.append([self.iteration, p, lr, name, lr * rms, ratio, vhat])
        if self.events is not None:
            self.events.add_scalar("step/p", p, self.iteration)
            self.events.add_scalar("step/ratio_to_p0", rows[-1][1], self.iteration)

    def _lr_at(self, it: int) -> float:
        return self.config.lr * self.lr_scheduler.schedules[0](it)

    def _elapsed(self, start: float) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start
