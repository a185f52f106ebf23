"""Chapter 02's setup (nsf.ablation.setup) and statements (nsf.ablation.summary): the grid it
builds, its refusals, the mapping of collected sweep results to runs, and the notes."""

from __future__ import annotations

import pandas as pd
import pytest

from nsf import ablation
from nsf.verdicts import Check


def test_the_sweep_is_cases_times_p_times_policies_times_seeds():
    setup = ablation.AblationSetup()
    sweep = setup.sweep()
    cases = setup.cases()
    assert next(iter(cases)) == "digits" and len(cases) == 1 + 2 * 3
    assert len(sweep) == len(cases) * len(setup.p_values) * len(setup.policies) * len(setup.seeds)
    point = sweep.point(len(sweep) - 1)
    assert point.varied == {
        "case": "bands_high_noise40",
        "p_schedule.kind": "constant",
        "p_schedule.p": 0.5,
        "update_norm": "rms_matched",
        "seed": 1,
    }
    config = point.config
    assert config.dataset == "synthetic_bands" and config.update_norm == "rms_matched"
    assert config.data_options["band"] == [5.0, 8.0] and config.data_options["label_noise"] == 0.4
    assert config.lr == setup.lr and config.epochs == setup.epochs and config.device == "cpu"
    fixed = sweep.point(0).config
    assert fixed.dataset == "digits" and fixed.update_norm is None
    assert fixed.p_schedule == {"kind": "constant", "p": -0.5}


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"p_values": [0.25, 0.5]}, "lacks p = 0"),
        ({"p_values": [0.0, 0.5, 0.5]}, "repeats"),
        ({"policies": ["per_lr"]}, "policies"),
        ({"lr_factors": [1.0, 1.0]}, "repeats"),
        ({"holdout_fraction": 1.0}, "holdout_fraction"),
        ({"bands": {"top": [5.0, 20.0]}}, "bands['top']"),
        ({"digits": False, "bands": {}}, "no case to run"),
        ({"roles": {"cifar10": "clean"}}, "not cases"),
        ({"label_noise": [1.0]}, "label_noise"),
        ({"seeds": []}, "seeds"),
    ],
)
def test_a_bad_setting_is_refused_by_name(changes, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        ablation.AblationSetup(**changes)


def test_collected_results_become_runs():
    collected = pd.DataFrame(
        {
            "index": [0, 1],
            "run": ["a", "b"],
            "case": ["digits", "digits"],
            "p_schedule.kind": ["constant", "constant"],
            "p_schedule.p": [0.0, 0.5],
            "update_norm": ["none", "rms_matched"],
            "seed": [0, 0],
            "epoch": [1, 1],
            "val_top1": [0.5, 0.6],
        }
    )
    runs = ablation.runs(collected)
    assert list(runs["dataset"]) == ["digits", "digits"]
    assert list(runs["policy"]) == ["fixed", "rms_matched"]
    assert list(runs["p"]) == [0.0, 0.5]
    assert "update_norm" not in runs and "p_schedule.kind" not in runs
    missing = collected.assign(update_norm=[None, "rms_matched"])  # read back as NaN
    assert list(ablation.runs(missing)["policy"]) == ["fixed", "rms_matched"]


def test_runs_note_refuses_an_incomplete_sweep():
    assert (
        ablation.runs_note({0: "done", 1: "done"}, "store") == "All 2 runs of the sweep finished."
    )
    with pytest.raises(RuntimeError, match="incomplete"):
        ablation.runs_note({0: "done", 1: "failed"}, "store")


def test_confound_note_quotes_the_extreme_ratios():
    sizes = pd.DataFrame(
        {
            "dataset": ["a", "a", "b", "a", "a"],
            "policy": ["fixed", "fixed", "fixed", "rms_matched", "rms_matched"],
            "p": [-0.5, 0.5, 0.5, -0.5, 0.5],
            "update_rms": [1, 2, 3, 4, 5],
            "ratio_to_p0": [0.1, 50.0, 200.0, 0.99, 1.02],
        }
    )
    note = ablation.confound_note(sizes)
    assert "from 0.1x the p = 0 step (a, p = -0.5) to 200x (b, p = 0.5)" in note
    assert "within 0.99-1.02x" in note


def test_findings_note_counts_per_policy():
    def check(name, passed):
        return Check(name, "claim", "criterion", "stat", passed)

    checks = [
        check("C1 · x · fixed", True),
        check("C4 · x · fixed", False),
        check("C2 · y · fixed", None),
        check("C1 · x · rms_matched", None),
    ]
    note = ablation.findings_note(checks, ["fixed", "rms_matched"])
    assert "**fixed**: 1 of 3 hold (C1 x); 1 fail (C4 x); 1 are within" in note
    assert "**rms_matched**: 0 of 1 hold; 0 fail; 1 are within" in note
