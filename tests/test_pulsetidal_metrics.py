"""The chapter 06 metrics (nsf.pulsetidal.metrics) on hand-made result frames with closed forms:
linear accuracy curves (known t(a) and S(a)), calibrated and miscalibrated confidences (known
ECE), and per check one frame built to pass and one built to fail."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nsf.pulsetidal import metrics as m
from nsf.train import evaluation as ev
from nsf.verdicts import checks_table

E = 50  # epochs of every run
OFFSETS = (0.01, -0.01, 0.0)  # seed offsets: the mean curve is the curve, the std (ddof=1) 0.01


def linear(rate, cap=1.0, epochs=E):
    """top-1 = min(rate * e, cap) at epochs 1..epochs."""
    return lambda e: min(rate * e, cap)


def frame(arms, *, epochs=E, offsets=OFFSETS, loss=None):
    """A tidy frame: arm name -> top-1 as a function of the epoch, one run per seed offset;
    ``loss`` maps arm name -> val_loss as a function of the epoch (default 1.0)."""
    loss = loss or {}
    rows = []
    for name, top1 in arms.items():
        for seed, off in enumerate(offsets):
            for e in range(1, epochs + 1):
                rows.append(dict(case=name, seed=seed, epoch=e, val_top1=top1(e) + off,
                                 val_loss=loss.get(name, lambda e: 1.0)(e)))  # fmt: skip
    return pd.DataFrame(rows)


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-12)


# ------------------------------------------------------------------------------ curves and times


def test_linear_curves_give_the_closed_form_speedup_at_every_level():
    # baseline 0.01 e (a* = 0.5 at epoch 50), arm 0.04 e: t = a / rate, so S(a) = 1 - 1/4
    f = frame({"baseline": linear(0.01), "pt": linear(0.04, cap=0.6)})
    table = m.speedup_table(f, "baseline", "pt", levels=[0.3])
    assert table["level"].tolist() == approx([q * 0.5 for q in m.FRACTIONS] + [0.3])
    assert table["t_base"].tolist() == approx([q * 50 for q in m.FRACTIONS] + [30.0])
    assert table["t_arm"].tolist() == approx([q * 12.5 for q in m.FRACTIONS] + [7.5])
    assert table["speedup"].tolist() == approx([0.75] * 7)
    assert (table["note"] == "").all()


def test_interpolated_time_lies_on_the_polyline_and_the_discrete_one_is_the_next_epoch():
    curve = m.mean_curve(frame({"b": linear(0.01)}), "b")
    assert m.time_to_accuracy(curve, 0.255) == (approx(25.5), "")
    assert m.time_to_accuracy(curve, 0.255, interpolate=False) == (26.0, "")
    first = m.time_to_accuracy(curve, 0.005)
    assert first.epoch == 1.0 and "first evaluation" in first.note
    never = m.time_to_accuracy(curve, 0.7)
    assert math.isnan(never.epoch) and "never reached" in never.note


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=12),
    st.floats(0.0, 1.0),
)
def test_the_interpolated_time_is_the_first_crossing_of_the_polyline(values, level):
    curve = pd.Series(values, index=np.arange(1, len(values) + 1))
    t = m.time_to_accuracy(curve, level)
    if math.isnan(t.epoch):
        assert max(values) < level
        return
    assert values[0] >= level or m._interp(curve, t.epoch) == pytest.approx(level, abs=1e-9)
    before = [v for e, v in zip(curve.index, values) if e < t.epoch]
    assert all(v < level for v in before)


def test_a_star_is_the_baseline_final_accuracy_not_its_best():
    # the baseline peaks at 0.6 (epoch 40) and ends at a* = 0.5, first reached at epoch 100 / 3
    def baseline(e):
        return 0.015 * e if e <= 40 else 0.6 - 0.01 * (e - 40)

    f = frame({"baseline": baseline, "pt": linear(0.05, cap=0.52)})
    row = m.speedup_table(f, "baseline", "pt").iloc[-1]
    assert row["level"] == approx(0.5) and row["t_base"] == approx(100 / 3)
    assert row["speedup"] == approx(1 - 10 / (100 / 3))


def test_the_speedup_is_nan_with_its_reason_when_the_arm_never_reaches_the_level():
    f = frame({"baseline": linear(0.01), "pt": linear(0.04, cap=0.4)})
    row = m.speedup_table(f, "baseline", "pt").iloc[-1]  # a* = 0.5
    assert math.isnan(row["speedup"]) and "arm: never reached" in row["note"]


def test_final_top1_gives_mean_std_and_variance_over_seeds():
    t = m.final_top1(frame({"baseline": linear(0.01), "pt": linear(0.04, cap=0.6)}))
    t = t.set_index("case")
    assert t.loc["baseline", "top1_mean"] == approx(0.5)
    assert t.loc["baseline", "top1_std"] == approx(0.01)
    assert t.loc["baseline", "top1_var"] == approx(1e-4)
    assert t.loc["pt", "top1_mean"] == approx(0.6)
    assert t.loc["pt", "n_seeds"] == 3 and t.loc["pt", "epoch"] == E
    bumped = frame({"b": lambda e: 0.9 if e == 10 else 0.01 * e})
    assert m.final_top1(bumped)["best_top1_mean"].item() == approx(0.9)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f[~((f.seed == 1) & (f.epoch == E))], "different epochs"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "appears twice"),
        (lambda f: f.assign(val_top1=f.val_top1.where(f.epoch != 3)), "NaN"),
        (lambda f: f.drop(columns="seed"), "lacks the columns"),
    ],
)
def test_malformed_frames_are_refused_by_name(edit, message):
    with pytest.raises(ValueError, match=message):
        m.mean_curve(edit(frame({"b": linear(0.01)})), "b")


# ------------------------------------------------------------------------------ the readings


def readings(arm, baseline=None, **kw):
    baseline = baseline or linear(0.01)
    return m.speedup_readings(frame({"baseline": baseline, "pt": arm}), "baseline", "pt", **kw)


def test_four_times_faster_passes_sec_513_and_the_abstract_and_fails_sec_512():
    early, final, cost = readings(linear(0.04, cap=0.6))
    assert (early.value, final.value, cost.value) == (approx(0.75), approx(0.75), approx(0.25))
    assert (early.passed, final.passed, cost.passed) == (False, True, True)
    assert (early.strength, final.strength, cost.strength) == (
        "lenient",
        "independent",
        "independent",
    )


def test_a_slightly_faster_arm_passes_sec_512_only():
    early, final, cost = readings(linear(0.01 / 0.825, cap=0.6))
    assert early.value == approx(0.175) and final.value == approx(0.175)
    assert (early.passed, final.passed, cost.passed) == (True, False, False)


def test_sec_512_reads_the_median_over_the_early_levels_only():
    # the arm runs at 0.02 e up to 0.36, stays there, and joins the baseline (0.01 e) at epoch
    # 36: S = 0.5 at the levels 0.25, 0.3, 0.35 and 0 at 0.4 and at a* = 0.5; median 0.5
    def arm(e):
        return min(0.02 * e, 0.36) if e < 36 else 0.01 * e

    early, final, _ = readings(arm, early=(0.5, 0.6, 0.7, 0.8))
    table = m.speedup_table(frame({"baseline": linear(0.01), "pt": arm}), "baseline", "pt")
    assert table["speedup"].tolist() == approx([0.5, 0.5, 0.5, 0.0, 0.0, 0.0])
    assert early.value == approx(0.5) and final.value == approx(0.0)


def test_the_abstract_reads_the_cost_against_the_baseline_whole_run():
    # the baseline reaches a* = 0.5 at epoch 25 and stays: S(a*) = 0.5, but C = 12.5 / 50
    _, final, cost = readings(linear(0.04, cap=0.6), baseline=linear(0.02, cap=0.5))
    assert final.value == approx(0.5) and cost.value == approx(0.25)
    assert (final.passed, cost.passed) == (False, True)
    _, _, slow = readings(linear(0.015, cap=0.6))
    assert slow.value == approx(0.5 / 0.015 / 50) and slow.passed is False


def test_the_tolerance_widens_about_on_both_sides_and_only_cost_is_one_sided():
    arm = linear(0.01 / 0.31, cap=0.6)  # S = 0.69 everywhere
    assert readings(arm)[1].passed is False
    assert readings(arm, tolerance=0.07)[1].passed is True
    fast = readings(linear(0.01 / 0.15, cap=0.6))  # S = 0.85, C = 0.15
    assert fast[1].passed is False and fast[2].passed is True
    early = readings(linear(0.01 / 0.88, cap=0.6))[0]  # S = 0.12: within 0.15 - 0.05
    assert early.value == approx(0.12) and early.passed is True
    assert readings(linear(0.01 / 0.88, cap=0.6), tolerance=0.0)[0].passed is False
    assert readings(linear(0.01 / 0.74, cap=0.6))[0].passed is False  # S = 0.26
    with pytest.raises(ValueError, match="tolerance"):
        readings(arm, tolerance=-0.1)


def test_a_level_never_reached_leaves_the_readings_undecided_with_the_reason():
    early, final, cost = readings(linear(0.04, cap=0.45))
    assert early.passed is True or early.passed is False  # early levels are reached
    assert final.passed is None and cost.passed is None
    check = final.check()
    assert check.passed is None and "never reached" in check.verdict
    none = readings(lambda e: 0.1)[0]
    assert none.passed is None and "no early level" in none.reason


def test_the_readings_table_and_the_checks_carry_the_paper_words_and_verdicts():
    f = frame({"baseline": linear(0.01), "pt": linear(0.04, cap=0.6)})
    table = m.readings_table(m.speedup_readings(f, "baseline", "pt"))
    assert list(table.index) == [
        "speed-up, early stages",
        "speed-up at the baseline's final accuracy",
        "cost to match the baseline",
    ]
    assert table["section"].tolist() == ["Sec. 5.1.2", "Sec. 5.1.3", "abstract"]
    assert table["verdict"].tolist() == ["does not hold", "holds", "holds"]
    assert not re.search(r"\bspec\b", table.to_string().lower())  # no private notes
    checks = checks_table(m.speedup_checks(f, "baseline", "pt"))
    assert checks["measured"].tolist() == ["0.750", "0.750", "0.250"]


# ------------------------------------------------------------------------------ loss, seeds


def test_loss_at_matched_accuracy_has_the_closed_form_on_linear_curves():
    # baseline top-1 0.01 e, loss 2 - 0.02 e; arm top-1 0.04 e, loss 2.5 - 0.01 e
    loss = {"baseline": lambda e: 2 - 0.02 * e, "pt": lambda e: 2.5 - 0.01 * e}
    f = frame({"baseline": linear(0.01), "pt": linear(0.04, cap=0.6)}, loss=loss)
    t = m.loss_at_matched_accuracy(f, "baseline", "pt")
    a = t["level"].to_numpy()
    assert t["loss_base"].tolist() == approx(list(2 - 0.02 * a / 0.01))
    assert t["loss_arm"].tolist() == approx(list(2.5 - 0.01 * a / 0.04))
    assert m.divergence_check(t).passed is True


def test_an_arm_with_lower_loss_at_the_same_accuracy_fails_the_divergence():
    loss = {"baseline": lambda e: 2 - 0.02 * e, "pt": lambda e: 1.5 - 0.08 * e}
    f = frame({"baseline": linear(0.01), "pt": linear(0.04, cap=0.6)}, loss=loss)
    t = m.loss_at_matched_accuracy(f, "baseline", "pt")
    assert (t["loss_gap"] < 0).all()
    assert m.divergence_check(t).passed is False


def test_the_divergence_needs_a_strict_majority_and_enough_levels():
    half = pd.DataFrame({"loss_gap": [0.1, -0.1, 0.2, -0.2, math.nan]})
    assert m.divergence_check(half).passed is False
    assert m.divergence_check(pd.DataFrame({"loss_gap": [0.1, math.nan]})).passed is None


def test_epoch_differences_are_arm_minus_baseline():
    f = frame({"baseline": linear(0.01), "pt": linear(0.02)},
              loss={"baseline": lambda e: 2.0, "pt": lambda e: 2.0 + e})  # fmt: skip
    d = m.epoch_differences(f, "baseline", "pt")
    assert d["epoch"].tolist() == list(range(1, E + 1))
    assert d["d_top1"].tolist() == approx([0.01 * e for e in range(1, E + 1)])
    assert d["d_loss"].tolist() == approx([float(e) for e in range(1, E + 1)])


def pair_frame(gains, base_seeds=(0, 1, 2)):
    rows = [dict(case="baseline", seed=s, epoch=1, val_top1=0.5) for s in base_seeds]
    rows += [dict(case="pt", seed=s, epoch=1, val_top1=0.5 + g) for s, g in enumerate(gains)]
    return pd.DataFrame(rows)


def test_seed_pairs_sign_count_and_check():
    pairs = m.seed_pairs(pair_frame([0.01, -0.02, 0.03, 0.04]), "baseline", "pt")
    assert pairs["seed"].tolist() == [0, 1, 2]  # seed 3 has no baseline run
    assert pairs["gain"].tolist() == approx([0.01, -0.02, 0.03])
    assert m.seed_sign_count(pairs) == {"positive": 2, "negative": 1, "zero": 0, "pairs": 3}
    assert m.seed_sign_check(pairs).passed is False
    won = m.seed_pairs(pair_frame([0.01, 0.02, 0.03]), "baseline", "pt")
    assert m.seed_sign_check(won).passed is True
    tied = m.seed_pairs(pair_frame([0.01, 0.0, 0.03]), "baseline", "pt")
    assert m.seed_sign_count(tied)["zero"] == 1 and m.seed_sign_check(tied).passed is False
    alone = m.seed_pairs(pair_frame([0.01], base_seeds=(5,)), "baseline", "pt")
    assert m.seed_sign_check(alone).passed is None


# ------------------------------------------------------------------------------ calibration


def test_a_calibrated_construction_has_zero_ece():
    # bin of 0.8: 8 of 10 right; bin of 0.3: 3 of 10 right
    conf = np.array([0.8] * 10 + [0.3] * 10)
    correct = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 7)
    assert ev.expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-15)


def test_a_miscalibrated_construction_has_the_closed_form_ece():
    # 0.9 with 5 of 10 right (gap 0.4), 0.6 with 6 of 10 right (gap 0): ECE = 0.5 * 0.4
    conf = torch.tensor([0.9] * 10 + [0.6] * 10)
    correct = torch.tensor([True] * 5 + [False] * 5 + [True] * 6 + [False] * 4)
    assert ev.expected_calibration_error(conf, correct) == pytest.approx(0.2)
    # over- and under-confident bins do not cancel: gaps +0.4 and -0.4 give 0.4, not 0
    conf = np.array([0.9] * 10 + [0.1] * 10)
    correct = np.array([1] * 5 + [0] * 5 + [1] * 5 + [0] * 5)
    assert ev.expected_calibration_error(conf, correct) == pytest.approx(0.4)


def test_bins_are_closed_on_the_right_and_averaged_within():
    # 2 bins: 0.5 belongs to (0, 0.5], 0.9 to (0.5, 1]: (|1 - 0.5| + |0 - 0.9|) / 2
    assert ev.expected_calibration_error([0.5, 0.9], [1, 0], bins=2) == pytest.approx(0.7)
    # both in (0.5, 1]: |1 - (0.6 + 1.0)| / 2
    assert ev.expected_calibration_error([0.6, 1.0], [1, 0], bins=2) == pytest.approx(0.3)
    assert ev.expected_calibration_error([0.0], [0], bins=2) == 0.0
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        ev.expected_calibration_error([1.5], [1])
    with pytest.raises(ValueError, match="correctness"):
        ev.expected_calibration_error([0.5, 0.5], [1])


def test_bins_add_over_batches_and_match_the_engine_evaluation():
    from nsf.train.evaluation import evaluate

    torch.manual_seed(0)
    model = torch.nn.Linear(6, 5)
    xs, ys = torch.randn(3, 40, 6), torch.randint(0, 5, (3, 40))

    class Loader:
        def epoch(self, _):
            return zip(xs, ys)

    probs = model(xs.reshape(-1, 6)).detach().softmax(1)
    conf, pred = probs.max(1)
    correct = pred == ys.reshape(-1)
    bins = sum(ev.calibration_bins(conf[i : i + 40], correct[i : i + 40]) for i in (0, 40, 80))
    assert torch.equal(bins, ev.calibration_bins(conf, correct))
    ece = ev.expected_calibration_error(conf, correct)
    assert ece == pytest.approx(evaluate(model, Loader(), 5)["ece"], rel=1e-12)
