"""Memorization scores, membership inference, randomization tests: estimators on cases with
known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import checkpoint_of, run_columns

from memlab.analysis import metrics as analysis
from memlab.analysis.bank import PER_REPLICA
from memlab.analysis.membership import evaluate_attacks, lira_scores
from memlab.analysis.memorization import (
    design_allows_scores,
    memorization_scores,
    roc_auc,
    roc_curve,
    tpr_at_fpr,
)
from memlab.columnar import to_frame
from memlab.data.datasets import Split, balanced_subsets, load_dataset, split_pool_test
from memlab.data.randomization import randomize
from memlab.engine.models import knn_log_proba
from memlab.io import MemlabInputError
from memlab.plan.power import PowerGates
from memlab.plan.study import STOP_REASONS

# Gates any tiny test bank passes: these tests check the headline logic itself.
ANY_POWER = PowerGates(min_in_out=1, min_shadows=1)


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


# Stop reasons as the evaluations store them (indices into STOP_REASONS).
FIT, EARLY, CAPPED = (STOP_REASONS.index(s) for s in ("fit", "early_stopping", "max_epochs"))


def _trained_design():
    """Six replicas on balanced halves of 40 examples: every example in 3 subsets, out of 3.

    0: early-stopped at 95% train accuracy; 1: capped at max_epochs, unfitted and its loss still
    falling (under-trained); 2: capped, unfitted, its loss flat (converged at 95%); 3: capped
    after it fit (stop_at_fit false), loss still falling; 4, 5: stopped at fit.
    """
    rng = np.random.default_rng(3)
    members = balanced_subsets(40, 20, 6, seed=3)
    correct = members | (rng.random(members.shape) < 0.5)
    for r in (0, 1, 2):
        correct[r, np.flatnonzero(members[r])[0]] = False  # 19 of 20: 95% train accuracy
    arrays = {
        "train_mask": members,
        "pool_correct": correct,
        "flipped": np.zeros(40, bool),
        "pool_label": np.zeros(40, int),
        "pool_pred": np.zeros((6, 40), int),
        "stop_reason": np.array([EARLY, CAPPED, CAPPED, CAPPED, FIT, FIT]),
        "fit_epoch": np.array([-1, -1, -1, 50, 30, 40]),
        "stop_epoch": np.array([60, 200, 200, 200, 30, 40]),
        "loss_drop": np.array([0.01, 0.02, 0.0005, 0.03, 0.04, 0.05], np.float32),
    }
    return arrays


def test_undertrained_is_capped_unfitted_and_still_improving():
    from memlab.plan.study import STILL_IMPROVING, undertrained

    a = _trained_design()
    np.testing.assert_array_equal(
        undertrained(a["stop_reason"], a["fit_epoch"], a["loss_drop"]),
        [False, True, False, False, False, False],
    )
    capped, unfit = np.array([CAPPED] * 4), np.array([-1] * 4)
    drops = np.array([STILL_IMPROVING, np.nextafter(STILL_IMPROVING, 1), np.nan, -0.01])
    # At the threshold: converged; NaN (under 2 epochs, or a bank without loss_drop): cannot
    # show it converged; a loss that rose at the end: not improving.
    np.testing.assert_array_equal(undertrained(capped, unfit, drops), [False, True, True, False])
    np.testing.assert_array_equal(undertrained(capped, unfit, None), [True] * 4)
    # Not trained (k-NN, -1) or stopped by a rule other than the cap: never under-trained.
    assert not undertrained(np.array([-1, FIT, EARLY]), np.array([-1] * 3), np.full(3, 9.0)).any()


def test_loss_drop_compares_the_last_window_with_the_one_before():
    from memlab.engine.train import LOSS_WINDOW, loss_drop

    assert LOSS_WINDOW == 20
    epochs = np.arange(1, 51)
    # 50 epochs, loss 2 for 10, then 1 for 20 (the window before), then 0.5 for 20: halved in 20
    # epochs, 1 - 0.5 ** (1 / 20) per epoch.
    halving = np.r_[[2.0] * 10, [1.0] * 20, [0.5] * 20]
    history = pd.concat(
        [
            pd.DataFrame({"replica": 7, "epoch": epochs, "train_loss": halving}),
            pd.DataFrame({"replica": 3, "epoch": [1, 2, 3], "train_loss": [4.0, 2.0, 1.5]}),  # w=1
            pd.DataFrame({"replica": 5, "epoch": [1], "train_loss": [1.0]}),  # one epoch: NaN
            pd.DataFrame({"replica": 9, "epoch": epochs, "train_loss": 0.3}),  # a plateau
        ]
    ).sample(frac=1.0, random_state=0)  # any row order
    drop = loss_drop(history, [7, 3, 5, 9, 11])  # 11: no history
    np.testing.assert_allclose(drop[:2], [1 - 0.5 ** (1 / 20), 0.25], rtol=1e-6)
    assert np.isnan(drop[2]) and drop[3] == 0.0 and np.isnan(drop[4])
    assert drop.dtype == np.float32


def test_memorization_tables_use_trained_replicas_whatever_their_train_accuracy():
    """Replicas at 95% train accuracy that stopped by a rule count; the under-trained one is
    left out and counted; the summary says how far each fitted and how each stopped."""
    a = _trained_design()
    scores, summary = analysis.memorization_tables([(_run(), a)], gates=ANY_POWER)
    row = summary.iloc[0]
    assert row["status"] == "ok"
    assert (row["replicas"], row["replicas_trained"], row["replicas_fit"]) == (6, 5, 3)
    assert row["replicas_undertrained"] == 1
    assert row["train_accuracy_mean"] == pytest.approx((0.95 + 0.95 + 1 + 1 + 1) / 5)
    assert row["train_accuracy_min"] == pytest.approx(0.95)
    # fit, early stopping, max_epochs, solved
    assert [row[f"stopped_{s}"] for s in STOP_REASONS] == [2, 1, 3, 0]
    used = np.array([1, 0, 1, 1, 1, 1], bool)
    expected = memorization_scores(a["pool_correct"][used], a["train_mask"][used])
    np.testing.assert_allclose(scores["score"], expected["score"])
    # By hand for one example, counted over the 5 used replicas only.
    m, c = a["train_mask"][used], a["pool_correct"][used]
    e = 0
    p_in, p_out = c[m[:, e], e].mean(), c[~m[:, e], e].mean()
    assert scores.loc[e, "score"] == pytest.approx(p_in - p_out)
    assert (scores["n_in"] + scores["n_out"] == 5).all()
    # A bank written before loss_drop existed: capped unfitted replicas count as under-trained.
    old = {k: v for k, v in a.items() if k != "loss_drop"}
    _, summary = analysis.memorization_tables([(_run(), old)], gates=ANY_POWER)
    assert summary.loc[0, "replicas_undertrained"] == 2 and summary.loc[0, "replicas_trained"] == 4


def test_memorization_tables_say_why_a_run_has_no_scores():
    a = _trained_design()
    capped = {
        **a,
        "stop_reason": np.full(6, CAPPED),
        "fit_epoch": np.full(6, -1),
        "loss_drop": np.full(6, 0.05, np.float32),
    }
    scores, summary = analysis.memorization_tables([(_run(), capped)], gates=ANY_POWER)
    row = summary.iloc[0]
    assert scores.empty and (row["replicas_trained"], row["replicas_undertrained"]) == (0, 6)
    assert (
        row["status"].startswith("too few trained replicas")
        and "6 of 6 under-trained" in (row["status"])
    )
    assert np.isnan(row["train_accuracy_mean"]) and np.isnan(row["mean_score"])
    full = {**a, "train_mask": np.ones((6, 40), bool), "pool_correct": np.ones((6, 40), bool)}
    scores, summary = analysis.memorization_tables([(_run(), full)], gates=ANY_POWER)
    assert scores.empty and summary.loc[0, "status"] == "no example is ever held out"
    one = {k: (v[:1] if k in PER_REPLICA else v) for k, v in a.items()}  # a single replica
    _, summary = analysis.memorization_tables([(_run(), one)], gates=ANY_POWER)
    status = summary.loc[0, "status"]
    assert status.startswith("too few replicas to hold every example")
    # The count it names works as printed: that many balanced subsets hold every example in
    # and out, one fewer do not.
    need = int(status.split("takes ", 1)[1].split(" replicas")[0])
    size = int(one["train_mask"].sum(1).max())
    assert design_allows_scores(balanced_subsets(40, size, need, seed=0))
    assert not design_allows_scores(balanced_subsets(40, size, need - 1, seed=0))


def test_memorization_tables_count_every_knn_replica():
    """k-NN does not train: every replica counts, whatever its train accuracy (k >= 3 cannot
    fit isolated flips), and no stop reason is counted."""
    a = _trained_design()
    knn = {k: v for k, v in a.items() if k not in ("stop_reason", "fit_epoch", "loss_drop")}
    scores, summary = analysis.memorization_tables([(_run(kind="knn"), knn)], gates=ANY_POWER)
    row = summary.iloc[0]
    assert row["status"] == "ok"
    assert (row["replicas_trained"], row["replicas_undertrained"]) == (6, 0)
    assert row["replicas_fit"] == 3 and row["train_accuracy_min"] == pytest.approx(0.95)
    assert [row[f"stopped_{s}"] for s in STOP_REASONS] == [0, 0, 0, 0]
    expected = memorization_scores(a["pool_correct"], a["train_mask"])
    np.testing.assert_allclose(scores["score"], expected["score"])


def test_train_run_stores_the_loss_drop_and_evaluate_run_passes_it_on(digits_split):
    """The convergence check's input is computed at train time from the history, kept in the
    checkpoint's arrays and the evaluation's, and the metrics say how each replica stopped."""
    from conftest import train_regime

    from memlab.engine import runs
    from memlab.engine.train import loss_drop
    from memlab.plan.kinds import MLP
    from memlab.plan.study import STILL_IMPROVING

    split = digits_split
    members = balanced_subsets(len(split.y_pool), 60, 2, seed=0)
    variant = MLP("mlp", 8, 1)
    regime = train_regime(max_epochs=10, lr=1e-2, batch_size=32)  # capped long before it fits
    state, arrays, history = runs.train_run(
        split, split.y_pool, np.zeros(len(split.y_pool), bool), members, variant, regime,
        seed=0, log=lambda s: None,
    )  # fmt: skip
    np.testing.assert_array_equal(arrays["loss_drop"], loss_drop(history, [0, 1]))
    assert (arrays["stop_reason"] == CAPPED).all() and (arrays["loss_drop"] > STILL_IMPROVING).all()
    checkpoint = checkpoint_of(state, arrays, variant, regime)
    labels = {"y_pool": split.y_pool, "flipped": np.zeros(len(split.y_pool), bool)}
    ev, metrics = runs.evaluate_run(checkpoint, split, labels, {})
    np.testing.assert_array_equal(ev["loss_drop"], arrays["loss_drop"])
    metrics = to_frame(metrics)
    facts = metrics[metrics["split"] == "train"].pivot(index="replica", columns="metric")["value"]
    assert facts["stopped_max_epochs"].tolist() == [1.0, 1.0] and facts["undertrained"].all()
    assert (facts["stopped_fit"] == 0).all() and (facts["stopped_early_stopping"] == 0).all()
    np.testing.assert_allclose(facts["loss_drop"], arrays["loss_drop"], rtol=1e-6)
    _, summary = analysis.memorization_tables([(_run(), ev)], gates=ANY_POWER)
    assert summary.loc[0, "replicas_undertrained"] == 2


def test_undertrained_warnings_name_the_runs_and_the_fix():
    summary = pd.DataFrame(
        {
            **{k: [v, v] for k, v in _run().items()},
            "replicas": [8, 8],
            "replicas_undertrained": [3, 0],
            "status": ["ok", "ok"],
        }
    )
    summary.loc[1, "model"] = "other-w1"
    (warning,) = analysis.undertrained_warnings(summary)
    assert "m-w8" in warning and "3 of 8" in warning and "raise max_epochs" in warning
