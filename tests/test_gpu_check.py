"""benchmarks/gpu_check.py on the CPU: the report of a tiny run, the projection's arithmetic, the
optimizer benchmark read with and without its --json flag, and the fused path's fallback."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "stub.py"
    path.write_text(textwrap.dedent(body))
    return path


WITH_JSON = """
    import argparse, json
    p = argparse.ArgumentParser(); p.add_argument("--device"); p.add_argument("--json")
    a = p.parse_args()
    print("table on", a.device)
    json.dump({"NSF": 1.5, "device": a.device}, open(a.json, "w"))
"""
WITHOUT_JSON = """
    import argparse
    p = argparse.ArgumentParser(); p.add_argument("--device"); p.add_argument("--rounds")
    a = p.parse_args()
    print("table on", a.device, "rounds", a.rounds)
"""
FAILING = """
    import sys
    print("partial output"); sys.exit("boom")
"""


def test_the_optimizer_report_is_read_from_its_json_when_the_flag_exists(gc, tmp_path):
    r = gc.optimizer_section("cpu", stub(tmp_path, WITH_JSON), [], 60)
    assert r["rc"] == 0 and r["json_flag"] is True and "error" not in r
    assert r["result"] == {"NSF": 1.5, "device": "cpu"}
    assert "table on cpu" in r["stdout"]


def test_without_the_flag_the_benchmark_runs_again_and_its_output_is_kept(gc, tmp_path):
    r = gc.optimizer_section("cpu", stub(tmp_path, WITHOUT_JSON), ["--rounds", "1"], 60)
    assert r["json_flag"] is False and r["rc"] == 0 and "result" not in r
    assert "--json" not in r["command"] and "table on cpu rounds 1" in r["stdout"]
    assert "no --json flag" in r["note"] and "error" not in r


def test_a_failing_benchmark_is_recorded_not_raised(gc, tmp_path):
    r = gc.optimizer_section("cpu", stub(tmp_path, FAILING), [], 60)
    assert r["rc"] == 1 and "boom" in r["error"] and "partial output" in r["stdout"]


def test_the_projection_is_epochs_times_train_plus_val_time(gc):
    p = gc.project(1000.0, 4000.0, epochs=200, train_images=100_000, val_images=10_000, once_s=60)
    assert p["epoch_s"] == pytest.approx(100.0 + 2.5)
    assert p["total_s"] == pytest.approx(200 * 102.5 + 60)
    assert p["total_h"] == pytest.approx((200 * 102.5 + 60) / 3600)
    assert gc.project(2000.0, 4000.0)["epoch_s"] == pytest.approx(50.0 + 2.5)  # the paper's sizes
    section = gc.projection_section(
        {"eval_images_per_s": 4000.0, "variants": {
            "nsf_foreach_compile_off": {"train_images_per_s": 1000.0},
            "nsf_fused_compile_on": {"train_images_per_s": 2000.0, "compile_and_warmup_s": 90.0},
            "sgd_foreach_compile_off": {"train_images_per_s": 5000.0},
        }}
    )  # fmt: skip
    assert section["variants"]["nsf_fused_compile_on"]["total_s"] == pytest.approx(200 * 52.5 + 90)
    assert section["fastest_nsf"] == "nsf_fused_compile_on"  # SGD is not an NSF variant
    assert "error" in gc.projection_section({"error": "no throughput"})


def test_a_fused_path_that_fails_falls_back_to_foreach_with_the_reason(gc):
    param = torch.nn.Parameter(torch.ones(3))

    def first_step(opt):
        if opt.defaults["fused"]:
            raise RuntimeError("no triton here")

    opt, message = gc.fused_or_foreach(lambda f: gc._optimizer("nsf", [param], f), first_step)
    assert not opt.defaults["fused"]
    assert "fused path failed" in message and "no triton here" in message
    assert torch.__version__ in message and "foreach path instead" in message
    opt, message = gc.fused_or_foreach(lambda f: gc._optimizer("nsf", [param], f), lambda o: 0)
    assert opt.defaults["fused"] and message is None


def run_check(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "results" / "report.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), *extra]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [p.name for p in out.parent.iterdir()] == ["report.json"]  # no temporary file left
    return json.loads(out.read_text())


def check_report(report: dict) -> None:
    assert report["torch"] == torch.__version__ and report["device"] == "cpu"
    assert report["device_name"] and report["python"]
    assert set(report["sections"]) == {"optimizer_step", "throughput", "torchrun", "projection"}
    t = report["sections"]["throughput"]
    assert set(t["variants"]) == {
        "sgd_foreach_compile_off",
        "nsf_foreach_compile_off",
        "nsf_fused_compile_off",
        "nsf_foreach_compile_on",
        "nsf_fused_compile_on",
    }
    assert t["errors"] == {} and t["eval_images_per_s"] > 0
    for name, v in t["variants"].items():
        b, steps = report["sizes"]["batch_size"], report["sizes"]["steps"]
        median = statistics.median(v["repeat_seconds"])
        assert v["train_images_per_s"] == pytest.approx(b * steps / median), name
        assert ("compile_and_warmup_s" in v) == name.endswith("compile_on")
    w = report["sections"]["torchrun"]["worker"]
    assert report["sections"]["torchrun"]["rc"] == 0 and w["backend"] == "gloo"
    assert w["world_size"] == 1 and w["all_reduce"]["ok"] is True
    assert w["ddp"]["finite"] and w["ddp"]["steps"] == report["sizes"]["ddp_steps"]
    assert w["ddp"]["max_param_diff_vs_single_process"] == 0.0  # DDP at one process is exact
    p = report["sections"]["projection"]
    ev = p["eval_images_per_s"]
    assert ev == t["eval_images_per_s"] and set(p["variants"]) == set(t["variants"])
    for name, v in p["variants"].items():
        rate = t["variants"][name]["train_images_per_s"]
        once = t["variants"][name].get("compile_and_warmup_s", 0.0)
        epoch_s = 100_000 / rate + 10_000 / ev
        assert v["epoch_s"] == pytest.approx(epoch_s) and v["once_s"] == once
        assert v["total_h"] == pytest.approx((200 * epoch_s + once) / 3600)
    assert math.isfinite(report["wall_s"])


def test_a_tiny_cpu_run_reports_every_section_and_a_failing_one_is_not_fatal(tmp_path):
    report = run_check(tmp_path, "--optimizer-script", str(stub(tmp_path, FAILING)))
    check_report(report)
    assert "boom" in report["errors"]["optimizer_step"]
    assert set(report["errors"]) == {"optimizer_step"}


@pytest.mark.slow
def test_the_cpu_run_with_the_real_optimizer_benchmark(tmp_path):
    report = run_check(tmp_path)
    check_report(report)
    o = report["sections"]["optimizer_step"]
    assert o["rc"] == 0 and report["errors"] == {}
    assert "NSF p=-0.15" in o["stdout"] or "NSF p=-0.15" in json.dumps(o.get("result"))
