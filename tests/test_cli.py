"""The ``nsf`` command as a user starts it: a refusal is one line on stderr, exit status 2, and no
traceback, before any kernel or training starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nsf.book.provenance import repo_root


def _nsf(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo_root())}
    return subprocess.run(
        [sys.executable, "-m", "nsf", *args], cwd=cwd or repo_root(), env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("nsf: error: ")
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


@pytest.mark.parametrize(
    ("name", "value", "needles"),
    [
        ("keys", "[1, 2", ["keys = '[1, 2'", "a list of int"]),
        ("N", "-5", ["N = -5", "greater than or equal to 1"]),
        ("dt", "abc", ["dt = 'abc'", "a number"]),
        ("no_such_parameter", "3", ["no_such_parameter", "its parameters are"]),
    ],
)
def test_run_refuses_a_bad_parameter(name, value, needles):
    _refused(_nsf("run", "03", "-p", name, value, "--no-progress"), *needles)


def test_run_refuses_an_unknown_chapter():
    _refused(_nsf("run", "99"), "no chapter '99'", "the chapters are")


def test_train_refuses_a_missing_config(tmp_path):
    _refused(_nsf("train", "--config", str(tmp_path / "nope.toml"), "--store", str(tmp_path)))


def test_train_refuses_an_unknown_field_by_name(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('dataset = "digits"\nmodel = "small_cnn"\nepoch = 3\n')
    _refused(_nsf("train", "--config", str(config), "--store", str(tmp_path / "runs")), "epoch")
    assert not (tmp_path / "runs").exists()


def test_train_reads_a_toml_config(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        'dataset = "digits"\nmodel = "small_cnn"\nepochs = 1\nbatch_size = 128\n'
        'lr = 0.01\nseed = 0\n[p_schedule]\nkind = "constant"\np = 0.25\n'
    )
    result = _nsf(
        "train", "--config", str(config), "--store", str(tmp_path / "runs"), "--no-progress"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["from_cache"] is False and summary["final"]["epoch"] == 1
    (recorded,) = (tmp_path / "runs").glob("*/config.json")
    recorded = json.loads(recorded.read_text())
    assert recorded["epochs"] == 1 and recorded["p_schedule"] == {"kind": "constant", "p": 0.25}
