"""The per_p lr policy (nsf.ablation.search) and the holdout split it scores on: the carve is
disjoint, stratified and fixed; the choice is the argmax with its declared tie rule; the chosen
runs are the configs the table names, and a chosen fixed lr is the fixed run itself."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from nsf import ablation
from nsf.train.config import TrainConfig
from nsf.train.datasets import holdout_indices, load_dataset


def test_holdout_is_a_stratified_disjoint_fixed_part_of_train():
    train = load_dataset("digits", "train")
    fit, held = load_dataset("digits", "fit"), load_dataset("digits", "holdout")
    index = holdout_indices(train.labels, 0.1)
    assert torch.equal(held.images, train.images[index])
    assert len(fit) + len(held) == len(train)
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[index] = False
    assert torch.equal(fit.labels, train.labels[keep])  # the rest, in order: disjoint and whole
    per_class = torch.bincount(train.labels)
    assert torch.equal(torch.bincount(held.labels), (0.1 * per_class.double()).round().long())
    assert torch.equal(index, holdout_indices(train.labels, 0.1))  # the same carve every call
    assert held.mean == train.mean and held.std == train.std  # train's normalisation
    assert not torch.equal(index, holdout_indices(train.labels, 0.1, seed=1))


def test_holdout_keeps_noisy_labels_and_their_clean_twins():
    options = {"n": 200, "n_test": 20, "label_noise": 0.3}
    train = load_dataset("synthetic_bands", "train", **options)
    held = load_dataset("synthetic_bands", "holdout", holdout_fraction=0.25, **options)
    index = holdout_indices(train.labels, 0.25)
    assert torch.equal(held.labels, train.labels[index])
    assert torch.equal(held.clean_labels, train.clean_labels[index])


def test_a_class_of_one_stays_in_fit_and_a_bad_fraction_is_refused():
    labels = torch.tensor([0, 0, 0, 1])
    assert holdout_indices(labels, 0.5).tolist() in ([0, 1], [0, 2], [1, 2], [0], [1], [2])
    assert 3 not in holdout_indices(labels, 0.9).tolist()
    with pytest.raises(ValueError, match="holdout_fraction must lie in"):
        holdout_indices(labels, 1.0)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"val_split": "holdout"}, 'needs train_split="fit"'),
        ({"train_split": "fit", "val_split": "train"}, "overlaps the training split"),
        ({"val_split": "fit"}, "overlaps the training split"),
    ],
)
def test_a_split_that_would_test_on_training_data_is_refused(fields, needle):
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**fields)


def _collected(rows):
    """A frame as collect writes it for the search: case, p, lr, seed, epoch, val_top1."""
    return pd.DataFrame(rows, columns=["case", "p_schedule.p", "lr", "seed", "epoch", "val_top1"])


def test_choose_lr_takes_the_best_mean_of_the_last_epoch():
    rows = []
    for lr, (a, b) in {0.001: (0.5, 0.7), 0.01: (0.6, 0.62), 0.1: (0.9, 0.1)}.items():
        for seed, top1 in enumerate((a, b)):
            rows += [("c", 0.5, lr, seed, 1, 0.99), ("c", 0.5, lr, seed, 2, top1)]
    table = ablation.choose_lr(_collected(rows), fixed_lr=0.01)
    assert table.loc[table["chosen"], "lr"].tolist() == [0.01]  # means 0.6, 0.61, 0.5
    assert table["holdout_top1"].tolist() == pytest.approx([0.6, 0.61, 0.5])
    assert table["n_seeds"].tolist() == [2, 2, 2]


def test_choose_lr_breaks_ties_toward_the_fixed_lr_and_never_picks_a_nan():
    rows = [("c", 0.0, lr, 0, 1, 0.4) for lr in (0.001, 0.1, 1.0)]
    rows += [("c", 0.0, 0.01, 0, 1, math.nan), ("d", 0.0, 0.01, 0, 1, math.nan)]
    rows += [("d", 0.0, 0.001, 0, 1, 0.1)]
    table = ablation.choose_lr(_collected(rows), fixed_lr=0.01)
    chosen = table[table["chosen"]].set_index("dataset")["lr"]
    assert chosen["c"] == 0.001  # 0.001 and 0.1 are equally near 0.01 in log scale: the smaller
    assert chosen["d"] == 0.001  # the only finite score beats the NaN at the fixed lr
    assert table.groupby("dataset")["chosen"].sum().tolist() == [1, 1]


def test_per_p_sweep_runs_the_chosen_lrs_and_reuses_the_fixed_runs(tmp_path):
    setup = ablation.AblationSetup(
        p_values=(0.0, 0.5), policies=("fixed", "per_p"), bands={"low": (1.0, 3.0)},
        label_noise=(0.0,), roles={"digits": "clean"}, seeds=(0,),
    )  # fmt: skip
    search = ablation.search_sweep(setup)
    assert len(search) == 2 * 2 * 3  # cases x p x lr factors x one search seed
    assert {(pt.config.train_split, pt.config.val_split) for pt in search.points} == {
        ("fit", "holdout")
    }
    assert sorted({pt.config.lr for pt in search.points}) == [0.001, 0.01, 0.1]
    chosen = pd.DataFrame(
        [(case, p, lr, 0.5, 1, lr == (0.1 if p else 0.01))
         for case in setup.cases() for p in setup.p_values for lr in (0.001, 0.01, 0.1)],
        columns=list(ablation.search.SEARCH_COLUMNS),
    )  # fmt: skip
    per_p = ablation.per_p_sweep(setup, chosen)
    assert len(per_p) == 2 * 2
    lrs = {(pt.config.dataset, pt.config.p_schedule["p"]): pt.config.lr for pt in per_p.points}
    assert lrs == {("digits", 0.0): 0.01, ("digits", 0.5): 0.1,
                   ("synthetic_bands", 0.0): 0.01, ("synthetic_bands", 0.5): 0.1}  # fmt: skip
    assert {pt.config.train_split for pt in per_p.points} == {"train"}
    fixed_dirs = {pt.run_dir(tmp_path) for pt in setup.sweep().points}
    per_p_dirs = {pt.run_dir(tmp_path) for pt in per_p.points}
    assert len(per_p_dirs & fixed_dirs) == 2  # the two p = 0 points chose the fixed lr
    with pytest.raises(ValueError, match="no lr was chosen"):
        ablation.per_p_sweep(setup, chosen[chosen["p"] == 0.0])
