"""The run store: one directory per config, atomic writes, finished runs kept."""

from __future__ import annotations

import json
import os

import pytest
import torch

from nsf.runstore import RunStore, atomic_write_bytes, config_hash


def test_hash_is_canonical():
    a = {"p": -0.15, "betas": (0.9, 0.999), "nested": {"b": 1, "a": 2}}
    b = {"nested": {"a": 2, "b": 1}, "betas": [0.9, 0.999], "p": -0.15}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "p": -0.1})


def test_same_config_same_run_and_finish_survives(tmp_path):
    store = RunStore(tmp_path)
    run = store.run({"lr": 0.1})
    assert not run.is_finished
    run.save({"w": torch.arange(3.0)}, "checkpoint.pt")
    run.finish({"top1": 0.9})
    again = store.run({"lr": 0.1})
    assert again.dir == run.dir and again.is_finished and again.summary == {"top1": 0.9}
    assert torch.equal(again.load("checkpoint.pt")["w"], torch.arange(3.0))
    assert store.run({"lr": 0.2}).dir != run.dir
    assert [r.dir for r in store.runs()] == sorted([run.dir, store.run({"lr": 0.2}).dir])


def test_hand_edited_config_is_detected(tmp_path):
    run = RunStore(tmp_path).run({"lr": 0.1})
    (run.dir / "config.json").write_text(json.dumps({"lr": 0.5}))
    with pytest.raises(RuntimeError, match="different config"):
        RunStore(tmp_path).run({"lr": 0.1})


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.csv"
    atomic_write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary left behind
