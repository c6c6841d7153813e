"""Memorization scores, membership inference, randomization tests: estimators on cases with
known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_columns

from memlab import analysis
from memlab.data import Split, balanced_subsets, load_dataset, split_pool_test
from memlab.io import MemlabInputError
from memlab.membership import evaluate_attacks, lira_scores
from memlab.memorization import memorization_scores, roc_auc, roc_curve, tpr_at_fpr
from memlab.models import knn_log_proba
from memlab.randomization import randomize


def _clusters(n=300, k=3, seed=0):
    ds = load_dataset(
        {
            "kind": "gaussian",
            "n_samples": n,
            "n_features": 4,
            "n_classes": k,
            "separation": 40.0,
            "seed": seed,
        }
    )
    return ds.X, ds.y


def test_one_nn_scores_flipped_labels_at_exactly_one():
    x, y = _clusters()
    # Isolated flips (two per cluster, to different classes): no other example carries a
    # flipped example's label nearby, so only memorizing it gets it right.
    flipped = np.zeros(len(y), bool)
    noisy = y.copy()
    for c in range(3):
        first, second = np.flatnonzero(y == c)[:2]
        noisy[first], noisy[second] = (c + 1) % 3, (c + 2) % 3
        flipped[[first, second]] = True
    members = balanced_subsets(len(y), 150, 20, seed=2)
    lp = knn_log_proba(
        torch.from_numpy(x),
        torch.from_numpy(x),
        torch.from_numpy(noisy),
        torch.from_numpy(members),
        k=1,
        n_classes=3,
    )
    correct = lp.argmax(2).numpy() == noisy
    s = memorization_scores(correct, members)
    np.testing.assert_array_equal(s.loc[flipped, "score"], 1.0)
    assert (s.loc[~flipped, "score"].abs() < 0.3).mean() > 0.95
    assert s["n_in"].tolist() == [10] * len(y)  # balanced: 20 replicas x 150/300
    assert roc_auc(s["score"], flipped) > 0.99


def test_score_and_standard_error_by_hand():
    correct = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], bool)
    members = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], bool)
    s = memorization_scores(correct, members)
    # example 0: in on replicas 0,1 (both right), out on 2,3 (both wrong): score 1, se 0
    assert s.loc[0, "score"] == 1.0 and s.loc[0, "se"] == 0.0
    # example 1: in on 1,2 (wrong, right) -> 0.5; out on 0,3 (right, wrong) -> 0.5
    assert s.loc[1, "score"] == 0.0
    assert s.loc[1, "se"] == pytest.approx(np.sqrt(0.25 / 2 + 0.25 / 2))


def test_design_with_an_example_never_held_out_is_rejected():
    members = np.ones((4, 5), bool)
    members[0, :3] = False  # examples 3 and 4 are in every subset
    with pytest.raises(MemlabInputError, match=r"2 example\(s\).*never held out"):
        memorization_scores(np.ones((4, 5), bool), members)
    with pytest.raises(MemlabInputError, match="at least 2 usable replicas"):
        memorization_scores(
            np.ones((4, 5), bool), ~np.eye(4, 5, dtype=bool), usable=np.array([1, 0, 0, 0], bool)
        )


def test_gap_attack_advantage_is_train_minus_heldout_accuracy():
    rng = np.random.default_rng(0)
    members = balanced_subsets(200, 100, 8, seed=0)
    correct = np.where(members, rng.random(members.shape) < 0.95, rng.random(members.shape) < 0.7)
    loss = rng.random(members.shape)
    conf = rng.normal(size=members.shape)
    res, _ = evaluate_attacks(correct, loss, conf, members)
    gap = res.set_index("attack").loc["gap", "advantage"]
    train_acc = np.mean([correct[r][members[r]].mean() for r in range(8)])
    heldout_acc = np.mean([correct[r][~members[r]].mean() for r in range(8)])
    assert gap == pytest.approx(train_acc - heldout_acc, abs=1e-12)


def test_lira_on_perfectly_separated_confidences_has_auc_one():
    rng = np.random.default_rng(1)
    members = balanced_subsets(100, 50, 16, seed=1)
    conf = np.where(members, 5.0, -5.0) + rng.normal(0, 0.5, members.shape)
    for online in (True, False):
        for fixed in (True, False):
            scores = lira_scores(conf, members, online=online, fixed_variance=fixed)
            assert roc_auc(scores, members) == 1.0
    # ... and near chance when confidences carry no membership signal.
    noise = rng.normal(size=members.shape)
    scores = lira_scores(noise, members, online=True, fixed_variance=False)
    assert abs(roc_auc(scores, members) - 0.5) < 0.05


def test_roc_utilities_match_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    y = rng.random(500) < 0.3
    s = np.round(rng.normal(size=500) + y, 1)  # ties included
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr = roc_curve(s, y)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert tpr_at_fpr(fpr, tpr, 1.0) == 1.0
    assert tpr_at_fpr(np.array([0, 0.5, 1]), np.array([0, 0.8, 1]), 0.1) == 0.0


def _digits_split() -> Split:
    ds = load_dataset({"kind": "digits"})
    pool, test = split_pool_test(ds.y, 0.25, 0)
    return Split(ds.X[pool], ds.y[pool], ds.X[test], ds.y[test], 10, (8, 8))


def test_randomizations():
    split = _digits_split()
    same, changed = randomize(split, {"kind": "true_labels"}, 0)
    assert not changed.any() and np.array_equal(same.y_pool, split.y_pool)
    rl, changed = randomize(split, {"kind": "random_labels"}, 0)
    assert 0.85 < changed.mean() < 0.95  # a uniform draw keeps 1/10 by chance
    np.testing.assert_array_equal(rl.y_test, split.y_test)  # held-out labels stay true
    _, changed = randomize(split, {"kind": "partial_labels", "fraction": 0.3}, 0)
    assert 0.22 < changed.mean() < 0.32
    sp, _ = randomize(split, {"kind": "shuffled_pixels"}, 0)
    perm = [
        int(np.flatnonzero((split.x_pool == sp.x_pool[:, [j]]).all(0))[0]) for j in range(3)
    ]  # one permutation for pool and test alike
    np.testing.assert_array_equal(sp.x_test[:, :3], split.x_test[:, perm])
    rp, _ = randomize(split, {"kind": "random_pixels"}, 0)
    np.testing.assert_array_equal(np.sort(rp.x_pool, 1), np.sort(split.x_pool, 1))
    assert not np.array_equal(rp.x_pool, split.x_pool)
    gi, _ = randomize(split, {"kind": "gaussian_inputs"}, 0)
    assert gi.x_pool.min() >= 0 and gi.x_pool.max() <= 1  # clipped to the pixel range
    assert abs(gi.x_pool.mean() - split.x_pool.mean()) < 0.05
    assert abs(np.corrcoef(gi.x_pool[:, 20], split.x_pool[:, 20])[0, 1]) < 0.1


def _run(**kw):
    return run_columns(**kw)


def test_chance_null_of_a_constant_predictor_is_the_class_share():
    y = np.array([0] * 30 + [1] * 70)
    arrays = {"test_label": y, "test_pred": np.zeros((2, 100), int), "replica": np.array([4, 5])}
    null = analysis.chance_null([(_run(), arrays)], permutations=200)
    assert null["replica"].tolist() == [4, 5]  # the bank's replica numbers
    np.testing.assert_allclose(null["null_mean"], 0.3)
    np.testing.assert_allclose(null["heldout_accuracy"], 0.3)


def test_noise_sweep_best_is_at_least_final():
    run = _run()
    metrics = analysis.with_run(
        pd.DataFrame(
            {
                "replica": [0],
                "split": ["heldout"],
                "perturbation": ["none"],
                "severity": [0],
                "metric": ["accuracy"],
                "value": [0.8],
            }
        ),
        run,
    )
    history = analysis.with_run(
        pd.DataFrame({"replica": 0, "epoch": [1, 2, 3], "heldout_accuracy": [0.7, 0.9, 0.8]}), run
    )
    ns = analysis.noise_sweep(metrics, history)
    assert ns.loc[0, "best_heldout_accuracy"] == 0.9 and ns.loc[0, "best_epoch"] == 2
    assert ns.loc[0, "early_stopping_gap"] == pytest.approx(0.1)


def test_memorization_tables_use_only_fitted_replicas():
    rng = np.random.default_rng(3)
    members = balanced_subsets(40, 20, 6, seed=3)
    correct = members | (rng.random(members.shape) < 0.5)
    correct[0, np.flatnonzero(members[0])[0]] = False  # replica 0 did not fit its subset
    arrays = {
        "train_mask": members,
        "pool_correct": correct,
        "flipped": np.zeros(40, bool),
        "pool_label": np.zeros(40, int),
        "pool_pred": np.zeros((6, 40), int),
    }
    scores, summary = analysis.memorization_tables([(_run(), arrays)])
    assert summary.loc[0, "replicas_fit"] == 5 and summary.loc[0, "status"] == "ok"
    expected = memorization_scores(correct[1:], members[1:])
    np.testing.assert_allclose(scores["score"], expected["score"])
    full = {**arrays, "train_mask": np.ones((6, 40), bool), "pool_correct": np.ones((6, 40), bool)}
    scores, summary = analysis.memorization_tables([(_run(), full)])
    assert scores.empty and summary.loc[0, "status"] == "no example is ever held out"
