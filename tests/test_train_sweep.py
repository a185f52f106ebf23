"""Sweeps (nsf.train.sweep): a plan that is the same everywhere, refusals before anything runs,
runs that survive SIGKILL, array-job indices equal to a local run, failures recorded, locks, and
the SLURM submission submitit writes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from filelock import FileLock

from nsf.train.metrics import TIMING_COLUMNS, read_metrics_csv
from nsf.train.sweep import FAILED_FILE, Sweep, collect, run_local, run_point, status, submit
from nsf.validation import describe

REPO = Path(__file__).resolve().parents[1]
BASE = {
    "dataset": "digits",
    "model": "small_cnn",
    "model_options": {"width": 8},
    "epochs": 1,
    "batch_size": 256,
    "lr": 0.01,
    "device": "cpu",
    "deterministic": True,
}
GRID = {"p_schedule.kind": ["constant"], "p_schedule.p": [0.0, 0.5]}


def _sweep(**changes) -> Sweep:
    return Sweep(**{"base": BASE, "grid": GRID, "seeds": [0, 1], **changes})


def _write(path: Path, sweep: Sweep) -> Path:
    path.write_text(json.dumps(sweep.to_dict()))
    return path


def _nsf(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "nsf", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, **kwargs)


def _metrics(sweep: Sweep, store: Path) -> dict[str, list[dict]]:
    """run directory -> its metrics without the timing columns."""
    out = {}
    for point in sweep.points:
        rows = read_metrics_csv(point.run_dir(store) / "metrics.csv")
        out[point.run_dir(store).name] = [
            {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows
        ]
    return out


# ------------------------------------------------------------------------------ the plan


def test_the_plan_is_the_grid_product_in_order_then_the_seeds():
    sweep = Sweep(base=BASE, grid={"lr": [0.1, 0.2], "p_schedule.p": [0.0, 0.5]}, seeds=[3, 4])
    assert [p.index for p in sweep.points] == list(range(8))
    assert [tuple(p.varied.values()) for p in sweep.points[:3]] == [
        (0.1, 0.0, 3),
        (0.1, 0.0, 4),
        (0.1, 0.5, 3),
    ]
    point = sweep.point(5)
    assert point.config.lr == 0.2 and point.config.seed == 4
    assert point.config.p_schedule == {"kind": "constant", "p": 0.0}  # default kind kept
    assert point.config.epochs == 1  # from base


def test_cases_lay_their_fields_over_base_and_lead_the_plan():
    sweep = Sweep(
        base={**BASE, "lr": 0.1},
        cases={"digits": {"dataset": "digits"}, "bands": {"dataset": "synthetic_bands",
               "data_options": {"size": 8, "n": 64, "n_test": 32}, "lr": 0.2}},
        grid={"p_schedule.p": [0.0, 0.5]},
        seeds=[0],
    )  # fmt: skip
    assert [p.varied["case"] for p in sweep.points] == ["digits", "digits", "bands", "bands"]
    assert [p.config.lr for p in sweep.points] == [0.1, 0.1, 0.2, 0.2]  # a case overrides base
    assert sweep.point(2).config.data_options == {"size": 8, "n": 64, "n_test": 32}
    assert sweep.point(0).config.data_options == {}
    assert Sweep(**sweep.to_dict()).points == sweep.points
    with pytest.raises(ValueError, match="seeds"):
        Sweep(base=BASE, cases={"a": {"seed": 3}})


def test_every_point_has_its_own_run_directory_and_the_plan_is_reproducible(tmp_path):
    first, second = _sweep(), _sweep()
    names = [p.run_dir(tmp_path).name for p in first.points]
    assert len(set(names)) == len(names) == 4
    assert names == [p.run_dir(tmp_path).name for p in second.points]
    assert not tmp_path.joinpath("anything").exists() and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"base": {**BASE, "epoch": 3}}, "epoch"),
        ({"base": {**BASE, "dataset": "cifar11"}}, "cifar11"),
        ({"grid": {"lr": []}}, "grid.lr"),
        ({"grid": {"p_sched.p": [0.5]}}, "p_sched"),
        ({"grid": {"p_schedule.kind": ["tide"]}}, "tide"),
        ({"seeds": [0, 0]}, "repeats a value"),
        ({"seeds": []}, "seeds"),
        ({"grid": {"seed": [1, 2]}}, "seeds = [...]"),
        ({"sections": {}}, "sections"),
    ],
)
def test_a_bad_sweep_is_refused_by_name(spec, needle):
    with pytest.raises(ValueError) as error:
        Sweep(**{"base": BASE, "grid": GRID, **spec})
    message = describe(error.value) if hasattr(error.value, "errors") else str(error.value)
    assert needle in message


def test_the_command_refuses_a_bad_sweep_before_anything_is_written(tmp_path):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"base": {**BASE, "epoch": 3}, "grid": GRID}))
    result = _nsf("sweep", "run", str(path), "--store", str(tmp_path / "runs"), timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("nsf: error: ") and "Traceback" not in result.stderr
    assert "epoch = 3: Unexpected keyword argument" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_toml_sweep_reads_as_written(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        'seeds = [0, 1]\n[base]\ndataset = "digits"\nepochs = 2\n'
        '[grid]\n"p_schedule.p" = [-0.5, 0.5]\nupdate_norm = ["none", "rms_matched"]\n'
    )
    sweep = Sweep.from_file(path)
    assert len(sweep) == 8
    assert sweep.point(7).varied == {"p_schedule.p": 0.5, "update_norm": "rms_matched", "seed": 1}
    with pytest.raises(ValueError, match="does not parse"):
        Sweep.from_file(path.with_name("bad.toml")) if path.with_name("bad.toml").write_text(
            "[base"
        ) else None


# ------------------------------------------------------------------------------ running


@pytest.fixture(scope="module")
def local_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("sweep-local")
    sweep = _sweep()
    assert run_local(sweep, store, workers=2, progress=False) == dict.fromkeys(range(4), "done")
    return sweep, store


def test_a_local_sweep_runs_every_point_once_and_then_nothing(local_store):
    sweep, store = local_store
    assert status(sweep, store) == dict.fromkeys(range(4), "done")
    runs = sorted(p.name for p in store.iterdir() if not p.name.startswith("."))
    assert runs == sorted(p.run_dir(store).name for p in sweep.points)
    stamps = {p: p.stat().st_mtime_ns for p in store.glob("*/finished.json")}
    assert run_local(sweep, store, workers=2, progress=False) == dict.fromkeys(range(4), "done")
    assert {p: p.stat().st_mtime_ns for p in store.glob("*/finished.json")} == stamps


@pytest.mark.slow
def test_array_job_indices_give_the_local_store(local_store, tmp_path):
    """Slow for a reason: four fresh processes, as four array tasks would start."""
    sweep, store = local_store
    spec = _write(tmp_path / "sweep.json", sweep)
    other = tmp_path / "runs"
    for index in range(len(sweep)):
        result = _nsf("sweep", "run", str(spec), "--store", str(other), "--index", str(index),
                      "--no-progress", timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"point {index}: done" in result.stdout
    assert _metrics(sweep, other) == _metrics(sweep, store)


def test_collect_writes_one_row_per_run_and_epoch(local_store, tmp_path):
    import csv

    sweep, store = local_store
    out = collect(sweep, store, tmp_path / "results.csv")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4  # 4 runs x 1 epoch
    assert [r["index"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["p_schedule.p"] for r in rows] == ["0.0", "0.0", "0.5", "0.5"]
    assert [r["seed"] for r in rows] == ["0", "1", "0", "1"]
    metrics = _metrics(sweep, store)
    for row in rows:
        (expected,) = metrics[row["run"]]
        assert float(row["val_top1"]) == expected["val_top1"]


@pytest.mark.slow
def test_a_sweep_killed_twice_completes_with_every_run_once(tmp_path):
    """Slow for a reason: a real ``nsf sweep run --workers 2`` is SIGKILLed twice mid-run."""
    sweep = _sweep(base={**BASE, "epochs": 3, "checkpoint_every": 2})
    spec = _write(tmp_path / "sweep.json", sweep)
    store = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "nsf", "sweep", "run", str(spec), "--store", str(store),
           "--workers", "2", "--no-progress"]  # fmt: skip
    finished_before: dict[Path, int] = {}
    interrupted: set[str] = set()
    for _ in range(2):
        start = time.time()
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 240
        while not [p for p in store.glob("*/checkpoint.pt") if p.stat().st_mtime > start]:
            assert proc.poll() is None and time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        finished_before.update({p: p.stat().st_mtime_ns for p in store.glob("*/finished.json")})
        interrupted |= {
            p.parent.name for p in store.glob("*/checkpoint.pt")
            if not (p.parent / "finished.json").exists()
        }  # fmt: skip
    assert interrupted, "no run was interrupted mid-training"
    assert len(finished_before) < len(sweep), "the kills came too late to interrupt anything"
    result = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert status(sweep, store) == dict.fromkeys(range(4), "done")
    runs = [p for p in store.iterdir() if not p.name.startswith(".")]
    assert len(runs) == 4
    for path, stamp in finished_before.items():
        assert path.stat().st_mtime_ns == stamp, f"{path.parent.name} was recomputed"
    for rows in _metrics(sweep, store).values():
        assert [r["epoch"] for r in rows] == [1, 2, 3]


# ------------------------------------------------------------------------------ failures, locks


def test_a_failing_run_is_recorded_and_retried_only_when_asked(tmp_path):
    sweep = Sweep(base={**BASE, "dataset": "cifar10", "model": "small_cnn"}, grid={"lr": [0.1]})
    empty = tmp_path / "no-data"
    empty.mkdir()
    store = tmp_path / "runs"
    assert run_local(sweep, store, data_root=empty, progress=False) == {0: "failed"}
    record = json.loads((sweep.point(0).run_dir(store) / FAILED_FILE).read_text())
    assert record["error"].startswith("DatasetNotFoundError") and "cifar" in record["error"]
    assert status(sweep, store) == {0: "failed"}
    assert run_point(sweep, store, 0, data_root=empty) == "failed"  # not retried
    with pytest.raises(FileNotFoundError):
        run_point(sweep, store, 0, data_root=empty, retry_failed=True)
    assert status(sweep, store) == {0: "failed"}


def test_a_held_lock_reads_as_running_and_the_status_writes_nothing(tmp_path):
    sweep = _sweep()
    store = tmp_path / "runs"
    assert status(sweep, store) == dict.fromkeys(range(4), "pending")
    assert not store.exists(), "status wrote into the store"
    point = sweep.point(2)
    (store / ".locks").mkdir(parents=True)
    with FileLock(store / ".locks" / f"{point.run_dir(store).name}.lock"):
        held = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(f"""
                from nsf.train.sweep import Sweep, status
                sweep = Sweep(**{_sweep().to_dict()!r})
                print(status(sweep, {str(store)!r}))
            """)], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
            check=True, timeout=120,
        )  # fmt: skip
    assert held.stdout.strip() == str({0: "pending", 1: "pending", 2: "running", 3: "pending"})


# ------------------------------------------------------------------------------ submitit


def test_submitit_local_executor_runs_the_jobs(tmp_path):
    sweep = Sweep(base=BASE, grid={"p_schedule.p": [0.0]}, seeds=[0])
    store = tmp_path / "runs"
    jobs = submit(sweep, store, cluster="local", timeout_min=10)
    assert [job.result() for job in jobs] == ["done"]
    assert status(sweep, store) == {0: "done"}
    assert submit(sweep, store, cluster="local") == []  # nothing left to submit


def test_the_slurm_submission_is_one_array_with_the_requested_resources(tmp_path, monkeypatch):
    """A stand-in ``sbatch`` on PATH records what submitit would hand to SLURM (and a stand-in
    ``srun``, whose presence submitit takes for a SLURM node)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        f'#!/bin/sh\ncp "$1" {tmp_path}/submission.sh\necho "Submitted batch job 4242"\n'
    )
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sweep = _sweep()
    jobs = submit(sweep, tmp_path / "runs", cluster="slurm", gpus_per_job=4, timeout_min=90,
                  array_parallelism=2, slurm_options={"partition": "gpu"})  # fmt: skip
    assert [job.job_id for job in jobs] == [f"4242_{i}" for i in range(4)]
    text = (tmp_path / "submission.sh").read_text()
    for line in ["#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --ntasks-per-node=4", "#SBATCH --nodes=1", "#SBATCH --time=90",
                 "#SBATCH --job-name=nsf-sweep"]:  # fmt: skip
        assert line in text, f"{line!r} missing from\n{text}"
    assert "submitit" in text and str(tmp_path / "runs" / ".submitit") in text
