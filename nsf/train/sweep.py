"""Sweeps: a grid of training configs, each run once, from a laptop to a cluster.

A sweep is a TOML file::

    seeds = [0, 1, 2]
    [base]                         # TrainConfig fields every run shares
    model = "small_cnn"
    epochs = 4
    [cases.digits]                 # optional: named variants laid over base
    dataset = "digits"
    [cases.bands]
    dataset = "synthetic_bands"
    data_options = { band = [8.0, 16.0], label_noise = 0.2 }
    [grid]                         # dotted field names -> values; every combination runs
    "p_schedule.p" = [-0.5, 0.0, 0.25, 0.5]
    update_norm = ["none", "rms_matched"]

Its plan (:attr:`Sweep.points`) is every case times the product of the grid, in the order written,
times the seeds:
point ``i`` is always the same config, so ``--index I`` means the same run on every machine.
Every point is built as a :class:`~nsf.train.config.TrainConfig` when the sweep is read, so an
unknown field, an unknown dataset or an empty grid is refused by name before anything runs or is
written.

Runs live in the run store of :func:`nsf.train.loop.train` (a directory per config hash; a
finished run is never recomputed, an interrupted one resumes from its checkpoint). A lock file
per run (``filelock``; the OS releases it when its process dies) means two workers, on one machine
or on many sharing the store, never train the same config; a run that raises is recorded in its
directory (``failed.json``, with the error) and retried only when asked. Runs execute in local
worker processes (:func:`run_local`), one per call for any array-job runner (:func:`run_point`,
``nsf sweep run --index $SLURM_ARRAY_TASK_ID``), or as a SLURM job array through submitit
(:func:`submit`), each job optionally a multi-GPU DDP run.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import functools
import io
import itertools
import json
import os
import time
import tomllib
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from nsf.runstore import RunStore, atomic_write_json, atomic_write_text
from nsf.train.config import TrainConfig
from nsf.train.device import resolve_device
from nsf.train.metrics import METRIC_COLUMNS, read_metrics_csv
from nsf.validation import CONFIG, Seeds, describe

__all__ = [
    "FAILED_FILE",
    "STATUSES",
    "Point",
    "Sweep",
    "collect",
    "plan_lines",
    "point_status",
    "run_local",
    "run_point",
    "status",
    "submit",
]

#: The states a point can be in, in this order (finished, training now as its lock is held,
#: never started or interrupted, raised with a ``failed.json`` in its directory).
STATUSES = ("done", "running", "pending", "failed")
FAILED_FILE = "failed.json"
LOCKS = ".locks"


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its index in the plan, its config, and what the grid set."""

    index: int
    config: TrainConfig
    varied: dict[str, Any]

    def run_dir(self, store: str | os.PathLike) -> Path:
        """The run's directory in ``store``, as :func:`nsf.train.loop.train` names it."""
        return Path(store) / self._run_dir_name

    @functools.cached_property
    def _run_dir_name(self) -> str:
        # The key is that of the config on the device it names; "auto" is resolved as the engine
        # resolves it on this machine (state device = "cuda" in a sweep planned on a CPU node).
        device = resolve_device("auto") if self.config.device == "auto" else self.config.device
        config = self.config.on(torch.device(device))
        return RunStore(".").directory(config.run_key(), config.run_prefix).name


def _with(fields: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """``fields`` with ``a.b.c`` set to ``value`` (nested dicts created as needed)."""
    out = copy.deepcopy(dict(fields))
    *parents, leaf = dotted.split(".")
    node = out
    for name in parents:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ValueError(f"grid key {dotted!r}: {name!r} is not a table of fields")
    node[leaf] = value
    return out


#: A grid axis: a non-empty list of the values to try.
Axis = Annotated[list[Any], Field(min_length=1)]


@pydantic_dataclass(frozen=True, config=CONFIG)
class Sweep:
    """A sweep: shared fields, a grid of dotted fields, and seeds; every point checked when built.

    Attributes:
        base: :class:`~nsf.train.config.TrainConfig` fields every run shares.
        cases: named variants, each a table of fields laid over ``base`` (a dataset with the
            options and model stem it needs); the grid runs in every case. None: one case,
            ``base`` itself.
        grid: dotted field name (``"p_schedule.p"``) -> the values to try; the plan is their
            product, in the order written, with the last name varying fastest.
        seeds: each grid point runs once per seed (the innermost loop of the plan).

    The plan is cases x grid x seeds, in that nesting; a point's ``varied`` names its case
    (``"case"``), its grid values and its seed.
    """

    base: dict[str, Any] = dataclasses.field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    grid: dict[str, Axis] = dataclasses.field(default_factory=dict)
    seeds: Seeds = (0,)

    @model_validator(mode="after")
    def _points_are_configs(self) -> Sweep:
        tables = [self.base, *self.cases.values()]
        if "seed" in self.grid or any("seed" in t for t in tables):
            raise ValueError("set the seeds with `seeds = [...]`, not as a field of base or grid")
        _ = self.points  # builds (and so checks) every point now, before anything runs
        return self

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Sweep:
        """A sweep from its ``.toml`` (or ``.json``) file; a missing or malformed file is refused
        by name."""
        path = Path(path)
        if path.suffix not in (".toml", ".json"):
            raise ValueError(f"{path}: a sweep is a .toml (or .json) file")
        text = path.read_text()
        try:
            spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} does not parse: {error}") from None
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: a sweep is a table with [base], [grid] and seeds")
        return cls(**spec)

    def to_dict(self) -> dict[str, Any]:
        out = {"base": self.base, "grid": self.grid, "seeds": list(self.seeds)}
        return {**out, "cases": self.cases} if self.cases else out

    @functools.cached_property
    def points(self) -> tuple[Point, ...]:
        """Every point of the plan, in index order."""
        names = list(self.grid)
        defaults = TrainConfig().to_dict()
        nested = {}  # a dotted key edits the default of a field that base leaves out
        for name in names:
            top = name.split(".")[0]
            if "." in name and top not in defaults:
                raise ValueError(f"grid key {name!r}: TrainConfig has no field {top!r}")
            if "." in name:
                nested[top] = defaults[top]
        points: list[Point] = []
        cases = self.cases or {None: {}}
        for (case, overrides), values in itertools.product(
            cases.items(), itertools.product(*self.grid.values())
        ):
            fields = {**nested, **self.base, **overrides}
            for name, value in zip(names, values, strict=True):
                fields = _with(fields, name, value)
            named = {} if case is None else {"case": case}
            for seed in self.seeds:
                varied = {**named, **dict(zip(names, values, strict=True)), "seed": seed}
                try:
                    config = TrainConfig.from_dict({**fields, "seed": seed})
                except ValidationError as error:
                    why = describe(error)
                    raise ValueError(f"sweep point {varied} is refused: {why}") from None
                points.append(Point(len(points), config, varied))
        return tuple(points)

    def __len__(self) -> int:
        return len(self.points)

    def point(self, index: int) -> Point:
        if not 0 <= index < len(self):
            raise ValueError(f"index {index} is outside this sweep's plan (0 .. {len(self) - 1})")
        return self.points[index]


# ------------------------------------------------------------------------------ the run store


def _lock(store: Path, point: Point):
    from filelock import FileLock

    (store / LOCKS).mkdir(parents=True, exist_ok=True)
    return FileLock(store / LOCKS / f"{point.run_dir(store).name}.lock")


def point_status(store: str | os.PathLike, point: Point) -> str:
    """One of :data:`STATUSES` for ``point`` in ``store`` (reads only; writes nothing)."""
    from filelock import Timeout

    store = Path(store)
    run_dir = point.run_dir(store)
    if (run_dir / "finished.json").exists():
        return "done"
    if (run_dir / FAILED_FILE).exists():
        return "failed"
    if not (store / LOCKS).is_dir():
        return "pending"
    try:
        with _lock(store, point).acquire(timeout=0):
            return "pending"
    except Timeout:
        return "running"


def status(sweep: Sweep, store: str | os.PathLike) -> dict[int, str]:
    """index -> status of every point."""
    return {p.index: point_status(store, p) for p in sweep.points}


def run_point(
    sweep: Sweep,
    store: str | os.PathLike,
    index: int,
    *,
    data_root: str | os.PathLike | None = None,
    retry_failed: bool = False,
    progress: bool | None = False,
) -> str:
    """Run point ``index`` unless it is done (or failed, unless ``retry_failed``); its status after.

    Waits for the point's lock if another worker holds it, then looks again: what that worker
    finished is not trained twice. An exception is recorded in ``failed.json`` (with the
    traceback) and re-raised.
    """
    from nsf.train.loop import train

    store = Path(store)
    point = sweep.point(index)
    with _lock(store, point):
        run_dir = point.run_dir(store)
        if (run_dir / "finished.json").exists():
            return "done"
        failed = run_dir / FAILED_FILE
        if failed.exists():
            if not retry_failed:
                return "failed"
            failed.unlink()
        try:
            train(point.config, store, data_root=data_root, progress=progress)
        except Exception as error:
            record = {
                "index": index,
                "varied": point.varied,
                "error": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            atomic_write_json(failed, record)
            raise
    return "done"


def _run_in_worker(spec: dict, store: str, index: int, data_root, retry_failed: bool) -> str:
    """A worker process's task: the point's status after running it (``failed`` if it raised)."""
    torch.set_num_threads(1)
    try:
        return run_point(
            Sweep(**spec), store, index, data_root=data_root, retry_failed=retry_failed
        )
    except Exception:
        return "failed"


def run_local(
    sweep: Sweep,
    store: str | os.PathLike,
    *,
    workers: int = 1,
    indices: Sequence[int] | None = None,
    data_root: str | os.PathLike | None = None,
    retry_failed: bool = False,
    progress: bool = True,
) -> dict[int, str]:
    """Run the sweep's unfinished points in ``workers`` local processes; index -> status after.

    ``workers=1`` runs in this process. A killed sweep started again continues where it stopped:
    finished points are skipped, interrupted ones resume from their checkpoints.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers = {workers}: give at least 1")
    chosen = list(range(len(sweep))) if indices is None else [sweep.point(i).index for i in indices]
    before = {i: point_status(store, sweep.point(i)) for i in chosen}
    todo = [i for i in chosen if before[i] == "pending" or (retry_failed and before[i] == "failed")]
    after = dict(before)
    bar = tqdm(total=len(chosen), initial=len(chosen) - len(todo), desc="sweep", unit="run",
               disable=not progress)  # fmt: skip
    spec = sweep.to_dict()
    if workers == 1:
        for i in todo:
            after[i] = _run_in_worker(spec, str(store), i, data_root, retry_failed)
            bar.update()
    else:
        context = get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = {
                pool.submit(_run_in_worker, spec, str(store), i, data_root, retry_failed): i
                for i in todo
            }
            for future in as_completed(futures):
                after[futures[future]] = future.result()
                bar.update()
    bar.close()
    return after


def submit(
    sweep: Sweep,
    store: str | os.PathLike,
    *,
    cluster: Literal["slurm", "local"] = "slurm",
    indices: Sequence[int] | None = None,
    data_root: str | os.PathLike | None = None,
    gpus_per_job: int = 1,
    timeout_min: int = 24 * 60,
    array_parallelism: int = 64,
    slurm_options: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Submit the unfinished points as one job array through submitit; returns its jobs.

    ``cluster="slurm"`` writes an ``sbatch`` array (logs and pickled jobs under
    ``<store>/.submitit``); ``"local"`` runs the same jobs as local processes (submitit's own
    executor, for a dry run). ``gpus_per_job > 1`` makes each job a DDP run of that many tasks
    on one node. ``slurm_options`` are passed on as submitit's ``slurm_*`` parameters
    (``{"partition": "gpu", "account": "..."}``).
    """
    import submitit

    chosen = list(range(len(sweep))) if indices is None else list(indices)
    todo = [i for i in chosen if point_status(store, sweep.point(i)) in ("pending", "failed")]
    if not todo:
        return []
    executor = submitit.AutoExecutor(folder=Path(store) / ".submitit", cluster=cluster)
    params: dict[str, Any] = {"timeout_min": timeout_min, "nodes": 1}
    if cluster == "slurm":
        params.update(
            gpus_per_node=gpus_per_job,
            tasks_per_node=gpus_per_job,
            cpus_per_task=max(1, 8 // max(gpus_per_job, 1)) if gpus_per_job else 4,
            slurm_array_parallelism=array_parallelism,
            **{f"slurm_{k}": v for k, v in (slurm_options or {}).items()},
        )
    executor.update_parameters(name="nsf-sweep", **params)
    job = _SubmititJob(sweep.to_dict(), str(store), data_root)
    return executor.map_array(job, todo)


class _SubmititJob:
    """The callable a submitit job runs: one point; under several tasks, one DDP rank each."""

    def __init__(self, spec: dict, store: str, data_root) -> None:
        self.spec, self.store, self.data_root = spec, store, data_root

    def __call__(self, index: int) -> str:
        import submitit

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # torchrun's variables, which nsf.train.distributed reads
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return run_point(Sweep(**self.spec), self.store, index, data_root=self.data_root)


# ------------------------------------------------------------------------------ results


def collect(sweep: Sweep, store: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Write the finished points' metrics as one tidy CSV (a row per run and epoch); its path.

    Columns: ``index``, ``run`` (the directory), ``case`` (if the sweep has cases), every grid
    field and ``seed``, then the epoch
    metrics of ``metrics.csv``. Points that have not finished are left out (:func:`status`
    says which). Written atomically.
    """
    store = Path(store)
    varied = [*(["case"] if sweep.cases else []), *sweep.grid, "seed"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "run", *varied, *METRIC_COLUMNS])
    for point in sweep.points:
        run_dir = point.run_dir(store)
        if not (run_dir / "finished.json").exists():
            continue
        for row in read_metrics_csv(run_dir / "metrics.csv"):
            values = [_cell(point.varied[k]) for k in varied]
            metrics = [row[c] for c in METRIC_COLUMNS]
            writer.writerow([point.index, run_dir.name, *values, *metrics])
    return atomic_write_text(output, buffer.getvalue())


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def plan_lines(sweep: Sweep, store: str | os.PathLike) -> Iterator[str]:
    """One line per point: index, run directory, status, what the grid set."""
    statuses = status(sweep, store)
    for point in sweep.points:
        varied = " ".join(f"{k}={_cell(v)}" for k, v in point.varied.items())
        name = point.run_dir(store).name
        yield f"{point.index:>4}  {name}  {statuses[point.index]:<7}  {varied}"
