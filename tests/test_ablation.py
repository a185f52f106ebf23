"""The p ablation's summaries and checks C1-C4 (nsf.ablation) on hand-made result frames (no
training): for each clause one frame built to pass, one to fail, one within the seed spread."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsf import ablation
from nsf.verdicts import checks_table

D = 0.01  # seed offsets -D, 0, +D: every p has mean m, std (ddof=1) exactly D
SPREAD = 2 * D * math.sqrt(2 / 3)  # k_sigma = 2, pooled std D, n = 3 at both p
GRID5 = [-1.0, -0.5, 0.0, 0.5, 1.0]


def runs(means, *, d=D, dataset="ds", policy="fixed", offsets=None, epochs=2):
    """A per-epoch frame: p -> mean final val_top1, seeds at mean + offsets (default -d, 0, +d);
    earlier epochs carry other values (0.1) so that reading them would show."""
    offsets = (-d, 0.0, d) if offsets is None else offsets
    rows = []
    for p, m in means.items():
        for seed, off in enumerate(offsets):
            for epoch in range(epochs):
                last = epoch == epochs - 1
                rows.append(
                    dict(dataset=dataset, policy=policy, p=float(p), seed=seed, epoch=epoch,
                         val_top1=m + off if last else 0.1, val_loss=1.0, train_loss=1.0,
                         update_rms=(1 + abs(p)) * (1 + seed) if last else 99.0)
                )  # fmt: skip
    return pd.DataFrame(rows)


def final(means, **kw):
    return ablation.final_results(runs(means, **kw))


def grid5(values, **kw):
    return final(dict(zip(GRID5, values)), **kw)


# --- final_results -------------------------------------------------------------------------------


def test_final_results_is_the_last_epoch_of_each_run_in_any_row_order():
    frame = runs({0.0: 0.5, 0.5: 0.6}, epochs=3)
    out = ablation.final_results(frame.sample(frac=1.0, random_state=1))
    assert len(out) == 6 and set(out["epoch"]) == {2}
    assert out.groupby("p")["val_top1"].mean().round(12).to_dict() == {0.0: 0.5, 0.5: 0.6}
    assert out.equals(ablation.final_results(frame))


def test_final_results_refuses_repeated_runs_missing_columns_and_unequal_ends():
    frame = runs({0.0: 0.5})
    with pytest.raises(ValueError, match="repeat"):
        ablation.final_results(pd.concat([frame, frame.iloc[:1]]))
    with pytest.raises(ValueError, match="seed"):
        ablation.final_results(frame.drop(columns="seed"))
    short = frame[~((frame["seed"] == 0) & (frame["epoch"] == 1))]
    with pytest.raises(ValueError, match="different epochs"):
        ablation.final_results(short)
    out = ablation.final_results(short, same_epoch=False)
    assert out.set_index("seed")["epoch"].to_dict() == {0: 0, 1: 1, 2: 1}


# --- by_p -----------------------------------------------------------------------------------------


def test_by_p_mean_std_ddof1_count_and_update_rms():
    f = final({0.0: 0.5}, offsets=(0.0, 0.1, 0.5))
    f = pd.concat([f, final({0.5: 0.7}, offsets=(0.0,))])
    t = ablation.by_p(f).set_index("p")
    assert t.loc[0.0, "top1_mean"] == pytest.approx(np.mean([0.5, 0.6, 1.0]))
    assert t.loc[0.0, "top1_std"] == pytest.approx(np.std([0.5, 0.6, 1.0], ddof=1))
    assert t.loc[0.0, "n_seeds"] == 3 and t.loc[0.5, "n_seeds"] == 1
    assert math.isnan(t.loc[0.5, "top1_std"])  # one seed: no std
    assert t.loc[0.0, "update_rms"] == pytest.approx(2.0)  # (1 + 0) * mean(1, 2, 3)
    assert "update_rms" not in ablation.by_p(f.drop(columns="update_rms"))


def test_by_p_refuses_a_nan_accuracy():
    f = final({0.0: 0.5})
    f.loc[0, "val_top1"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ablation.by_p(f)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_by_p_equals_the_hand_mean_and_std(values):
    f = final({0.25: 0.0}, offsets=values)
    row = ablation.by_p(f).iloc[0]
    assert row["top1_mean"] == pytest.approx(np.mean(values), abs=1e-12)
    if len(values) > 1:
        assert row["top1_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-9)
    assert row["n_seeds"] == len(values)


# --- best_p and the seed spread ------------------------------------------------------------------


def test_best_p_and_the_p_within_the_spread():
    f = final({-0.5: 0.50, 0.0: 0.60 - 0.9 * SPREAD, 0.5: 0.60, 1.0: 0.60 - 1.1 * SPREAD})
    b = ablation.best_p(f, "ds", "fixed")
    assert (b.p, b.within) == (0.5, (0.0, 0.5))
    assert b.mean == pytest.approx(0.60) and b.pooled_std == pytest.approx(D)
    with pytest.raises(ValueError, match="no runs"):
        ablation.best_p(f, "ds", "rms_matched")


def test_pooled_std_weights_each_p_by_its_degrees_of_freedom():
    two, three = final({0.0: 0.5}, offsets=(-0.01, 0.01)), final({0.5: 0.5}, offsets=(-D, 0, D))
    f = pd.concat([two, three])
    hand = math.sqrt((1 * 2e-4 + 2 * 1e-4) / 3)  # ddof=1 variances 2e-4 (n = 2) and 1e-4 (n = 3)
    assert ablation.best_p(f, "ds", "fixed").pooled_std == pytest.approx(hand)


def test_best_p_without_a_spread_keeps_every_p_within():
    f = final({0.0: 0.5, 0.5: 0.9}, offsets=(0.0,))
    b = ablation.best_p(f, "ds", "fixed")
    assert b.p == 0.5 and b.within == (0.0, 0.5) and math.isnan(b.pooled_std)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=6, max_size=6),
    st.randoms(use_true_random=False),
)
def test_best_p_is_invariant_to_row_order(values, rnd):
    f = final({-0.5: 0.0, 0.0: 0.0, 0.5: 0.0}, offsets=(0.0, 0.01))
    f["val_top1"] = values
    order = list(range(len(f)))
    rnd.shuffle(order)
    assert ablation.best_p(f.iloc[order], "ds", "fixed") == ablation.best_p(f, "ds", "fixed")


# --- C1: noisy labels favour p > 0 ---------------------------------------------------------------


def c1(means, **kw):
    return ablation.noisy_favours_positive_p(final(means, **kw), "ds", "fixed")


def test_c1_pass_fail_and_within_the_spread():
    assert c1({-0.5: 0.50, 0.0: 0.52, 0.5: 0.60}).passed is True
    assert c1({-0.5: 0.50, 0.0: 0.52, 0.5: 0.45}).passed is False
    within = c1({-0.5: 0.50, 0.0: 0.52, 0.5: 0.52 + 0.5 * SPREAD})
    assert within.passed is None and "spread" in within.verdict


def test_c1_counts_p0_with_the_nonpositive_p():
    # p = 0 is far best; read as positive it would make C1 pass
    assert c1({-0.5: 0.40, 0.0: 0.60, 0.5: 0.50}).passed is False


def test_c1_spread_is_k_sigma_times_pooled_ddof1_std():
    base = {-0.5: 0.40, 0.0: 0.50}
    assert c1({**base, 0.5: 0.50 + 1.02 * SPREAD}).passed is True
    assert c1({**base, 0.5: 0.50 + 0.98 * SPREAD}).passed is None  # ddof=0 would pass it
    f = final({**base, 0.5: 0.50 + 0.6 * SPREAD})
    assert ablation.noisy_favours_positive_p(f, "ds", "fixed", k_sigma=1).passed is True


def test_c1_undecided_without_both_signs_or_without_seeds():
    assert c1({0.0: 0.5, -0.5: 0.4}).passed is None
    only_pos = c1({0.5: 0.5, 1.0: 0.4})
    assert only_pos.passed is None and "p ≤ 0" in only_pos.verdict
    single = c1({0.0: 0.5, 0.5: 0.9}, offsets=(0.0,))
    assert single.passed is None and "no seed spread" in single.verdict
    assert ablation.noisy_favours_positive_p(
        final({0.0: 0.5, 0.5: 0.9}, offsets=(0.0,)), "ds", "fixed", k_sigma=0
    ).passed  # bare means


# --- C2: clean data tolerate p <= 0 --------------------------------------------------------------


def c2(gap, tolerance=0.02, **kw):
    f = final({-0.5: 0.50, 0.0: 0.60 - gap, 0.5: 0.60}, d=0.005)
    return ablation.clean_tolerates_nonpositive_p(f, "ds", "fixed", tolerance=tolerance, **kw)


def test_c2_pass_fail_and_within_the_spread():
    s = 2 * 0.005 * math.sqrt(2 / 3)
    assert c2(0.005).passed is True
    assert c2(0.02 + 1.1 * s).passed is False
    assert c2(0.02).passed is None
    assert c2(0.02 - 0.9 * s).passed is None  # inside the tolerance, but not by the spread
    assert c2(0.02 - 1.1 * s).passed is True
    assert c2(0.02 + 0.9 * s).passed is None
    assert c2(0.04, tolerance=0.05).passed is True


def test_c2_holds_when_a_nonpositive_p_is_best_and_needs_one():
    assert c2(-0.1).passed is True
    f = final({-0.5: 0.9, 0.5: 0.5}, offsets=(0.0,))  # one seed, but no loss to tell apart
    assert ablation.clean_tolerates_nonpositive_p(f, "ds", "fixed").passed is True
    f = final({0.5: 0.9, 1.0: 0.5})
    assert ablation.clean_tolerates_nonpositive_p(f, "ds", "fixed").passed is None


# --- C3: distinct peaks at intermediate p --------------------------------------------------------


def c3(values, **kw):
    return ablation.intermediate_peak(grid5(values), "ds", "fixed", **kw)


def test_c3_pass_fail_and_within_the_spread():
    assert c3([0.50, 0.55, 0.60, 0.55, 0.50]).passed is True
    assert c3([0.50, 0.52, 0.54, 0.56, 0.60]).passed is False  # the largest p is best
    assert c3([0.60, 0.56, 0.54, 0.52, 0.50]).passed is False  # the smallest p is best
    assert c3([0.50, 0.52, 0.54, 0.52, 0.54 - 0.5 * SPREAD]).passed is None


def test_c3_counts_distinct_local_maxima():
    two = c3([0.50, 0.60, 0.55, 0.60, 0.50])
    assert two.passed is True and "2 distinct local maxima at p = [-0.5, 0.5]" in two.statistic
    broad = [0.50, 0.58, 0.58 + 0.5 * SPREAD, 0.58, 0.50]  # peak not above its neighbours
    assert c3(broad).passed is None and "0 distinct local maxima" in c3(broad).statistic
    assert c3(broad, min_peaks=0).passed is True
    assert c3([0.50, 0.60, 0.55, 0.60, 0.50], min_peaks=3).passed is None


def test_c3_and_c4_need_three_p():
    f = final({0.0: 0.5, 0.5: 0.6})
    assert ablation.intermediate_peak(f, "ds", "fixed").passed is None
    assert ablation.extremes_degrade(f, "ds", "fixed").passed is None


# --- C4: the extremes degrade --------------------------------------------------------------------


def c4(values, **kw):
    return ablation.extremes_degrade(grid5(values), "ds", "fixed", **kw)


def test_c4_pass_fail_and_within_the_spread():
    assert c4([0.50, 0.58, 0.58, 0.58, 0.50]).passed is True  # a plateau suffices
    assert c4([0.40, 0.45, 0.50, 0.58, 0.55]).passed is True  # the noisy shape
    assert c4([0.50, 0.52, 0.54, 0.56, 0.60]).passed is False
    assert c4([0.50, 0.52, 0.54, 0.53, 0.54 - 0.5 * SPREAD]).passed is None
    assert c4([0.54 - 0.5 * SPREAD, 0.52, 0.54, 0.53, 0.50]).passed is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([0.5, 0.51, 0.53, 0.56, 0.6]), min_size=5, max_size=5))
def test_c3_c4_do_not_depend_on_the_direction_of_p(values):
    for check in (ablation.intermediate_peak, ablation.extremes_degrade):
        forward = check(grid5(values), "ds", "fixed").passed
        assert check(grid5(values[::-1]), "ds", "fixed").passed == forward


# --- ablation_checks and the update-size table ---------------------------------------------------


def test_ablation_checks_names_roles_policy_and_parameters():
    f = pd.concat(
        [
            grid5([0.40, 0.45, 0.50, 0.58, 0.55], dataset="noisy_ds"),
            grid5([0.58, 0.58, 0.60, 0.56, 0.50], dataset="clean_ds"),
            grid5([0.50, 0.55, 0.60, 0.55, 0.50], dataset="peak_ds"),
            grid5([0.60, 0.55, 0.50, 0.45, 0.40], dataset="noisy_ds", policy="rms_matched"),
        ]
    )
    roles = {"noisy_ds": "noisy", "clean_ds": "clean", "peak_ds": "peaked", "absent": "noisy"}
    checks = ablation.ablation_checks(f, roles, "fixed")
    names = [c.name for c in checks]
    assert names[:6] == [
        "C1 · noisy_ds · fixed",
        "C4 · noisy_ds · fixed",
        "C2 · clean_ds · fixed",
        "C4 · clean_ds · fixed",
        "C3 · peak_ds · fixed",
        "C4 · peak_ds · fixed",
    ]
    assert [c.passed for c in checks] == [True, True, True, True, True, True, None, None]
    assert "no runs" in checks[-1].verdict
    assert {c.strength for c in checks} == {"independent"}
    assert list(checks_table(checks).index) == names
    other = ablation.ablation_checks(f, {"noisy_ds": "noisy"}, "rms_matched")
    assert [c.passed for c in other] == [False, False]
    tight = ablation.ablation_checks(f, {"noisy_ds": "clean"}, "fixed", tolerance=0.001)
    assert tight[0].passed is False and "0.1 pp" in tight[0].criterion
    loose = ablation.ablation_checks(f, {"noisy_ds": "clean"}, "fixed", tolerance=0.2)
    assert loose[0].passed is True
    with pytest.raises(ValueError, match="unknown roles"):
        ablation.ablation_checks(f, {"noisy_ds": "noisey"}, "fixed")


def test_update_size_table_ratio_to_p0_per_dataset_and_policy():
    f = pd.concat([final({0.0: 0.5, 0.5: 0.5, -1.0: 0.5}), final({0.5: 0.5}, policy="rms")])
    f.loc[f["policy"] == "fixed", "update_rms"] *= 10
    t = ablation.update_size_table(f).set_index(["policy", "p"])
    assert t.loc[("fixed", 0.0), "update_rms"] == pytest.approx(20.0)  # 10 * mean(1, 2, 3)
    assert t.loc[("fixed", 0.5), "ratio_to_p0"] == pytest.approx(1.5)
    assert t.loc[("fixed", -1.0), "ratio_to_p0"] == pytest.approx(2.0)
    assert math.isnan(t.loc[("rms", 0.5), "ratio_to_p0"])  # no p = 0 run under this policy
    per_epoch = ablation.update_size_table(runs({0.0: 0.5}))  # mean over every epoch's rows
    assert per_epoch["update_rms"].iloc[0] == pytest.approx((99 * 3 + 6) / 6)
