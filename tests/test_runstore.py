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


def test_pinned_hash_of_a_fixed_config():
    """A change to how configs are hashed moves every stored run: it must show up here. The
    expected value is SHA-256 of the canonical JSON written out by hand, not computed by the
    function under test."""
    import hashlib

    config = {"lr": 0.1, "betas": (0.9, 0.999), "name": "digits", "epochs": 3}
    text = '{"betas":[0.9,0.999],"epochs":3,"lr":0.1,"name":"digits"}'
    assert config_hash(config) == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert config_hash(config) == "78f1a2be713507de"


def test_tuple_list_path_and_int_float():
    from pathlib import Path

    assert config_hash({"b": (1, 2)}) == config_hash({"b": [1, 2]})
    assert config_hash({"root": Path("data/cifar")}) == config_hash({"root": "data/cifar"})
    # The store keeps JSON's types: 1 and 1.0 are two configs. A typed config (TrainConfig's
    # float fields) makes them one before it reaches the store.
    assert config_hash({"lr": 1}) != config_hash({"lr": 1.0})
    from nsf.train import TrainConfig

    assert TrainConfig(lr=1).run_key() == TrainConfig(lr=1.0).run_key()


def test_eps_differing_in_the_eighth_digit_gets_another_directory(tmp_path):
    store = RunStore(tmp_path)
    a, b = store.run({"eps": 1.0000001e-8}), store.run({"eps": 1.0000002e-8})
    assert a.dir != b.dir
