"""Cheap estimators scored against the Feldman–Zhang scores: known answers for the statistics,
the two scopes and the counted costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memlab.analysis import estimators as est


def test_statistics_of_a_perfect_and_a_reversed_estimator():
    truth = np.array([0.0, 0.05, 0.1, 0.3, 0.6, 0.9])  # three memorized (>= 0.25)
    perfect = est.statistics(truth * 2 + 1, truth)
    np.testing.assert_allclose(perfect, [1.0, 1.0, 1.0, 1.0])
    reverse = est.statistics(-truth, truth)
    np.testing.assert_allclose(reverse, [-1.0, -1.0, 0.0, 0.0])
    # Half of the memorized in the top 3: Jaccard 2 / 4; AUROC from the ranks.
    score = np.array([0.0, 0.5, 0.1, 0.3, 0.6, 0.2])
    got = est.statistics(score, truth)
    assert got[2] == pytest.approx(2 / 4)
    assert got[3] == pytest.approx(7 / 9)  # pairs (memorized above not): 7 of 9


def test_statistics_without_a_memorized_example_leave_top_k_and_auroc_undefined():
    truth = np.array([0.0, 0.1, 0.2, 0.05])
    got = est.statistics(truth, truth)
    assert got[0] == pytest.approx(1.0) and np.isnan(got[2]) and np.isnan(got[3])


def _bank(rng: np.random.Generator, r: int = 6, n: int = 300) -> tuple[dict, np.ndarray]:
    """A bank whose per-replica CSL is the truth plus noise where trained on."""
    truth = np.clip(rng.normal(0.1, 0.3, n), 0, 1)
    train = rng.random((r, n)) < 0.5
    epochs = np.where(train, 10, 0).astype(np.int32)
    loss_sum = truth[None] * 10 + rng.normal(0, 0.5, (r, n))
    a = {
        "replica": np.arange(r),
        "train_mask": train,
        "stop_epoch": np.full(r, 10),
        "dyn_epochs": epochs,
        "dyn_loss_sum": loss_sum,
        "dyn_final_loss": np.where(train, truth[None], np.nan).astype(np.float32),
        "dyn_learning_time": np.where(train, 0, -1).astype(np.int32),
        "dyn_forgotten": np.zeros((r, n), np.int32),
        "dyn_learned": train,
        "dyn_confidence": rng.random((r, n)).astype(np.float32),
        "pool_sensitivity": rng.random((r, n)).astype(np.float32),
    }
    return a, truth


def test_run_estimators_scores_each_scope_with_intervals_and_costs():
    a, truth = _bank(np.random.default_rng(0))
    ev = pd.DataFrame({"knn_disagreement": truth, "lira_vulnerability": np.nan,
                       "rmia_vulnerability": np.nan})  # fmt: skip
    table = est.run_estimators(a, truth, ev, seed=0).set_index(["method", "scope"])
    csl_single = table.loc[("cumulative_loss", "single")]
    csl_mean = table.loc[("cumulative_loss", "averaged")]
    # Averaging over replicas cancels the noise: closer to the truth than one model.
    assert csl_mean["spearman"] > csl_single["spearman"] > 0.5
    assert csl_single["spearman_low"] <= csl_single["spearman"] <= csl_single["spearman_high"]
    assert csl_single["replicas"] == est.SINGLE_REPLICAS and csl_mean["replicas"] == 6
    # Random confidence and sensitivity agree with nothing.
    assert abs(table.loc[("loss_sensitivity", "averaged"), "spearman"]) < 0.2
    assert table.loc[("knn_disagreement", "averaged"), "spearman"] == pytest.approx(1.0)
    assert ("lira_vulnerability", "averaged") not in table.index  # all NaN: not scored
    assert table.loc[("cumulative_loss", "single"), "relative_cost"] == 1.0
    assert table.loc[("knn_disagreement", "averaged"), "relative_cost"] == 0.0
    # Sensitivity: one forward + backward over the pool (3 n_pool) on top of the training run.
    train_cost = np.mean(10 * a["train_mask"].sum(1) * 4)
    expected = 1 + 3 * 300 / train_cost
    assert table.loc[("loss_sensitivity", "single"), "relative_cost"] == pytest.approx(expected)
    assert (table["n_memorized"] == int((truth >= 0.25).sum())).all()
    assert ("curvature", "single") not in table.index  # not computed for this bank


def test_run_estimators_is_reproducible_from_its_seed():
    a, truth = _bank(np.random.default_rng(1))
    ev = pd.DataFrame(np.nan, index=range(len(truth)), columns=["knn_disagreement",
                      "lira_vulnerability", "rmia_vulnerability"])  # fmt: skip
    one = est.run_estimators(a, truth, ev, seed=3)
    two = est.run_estimators(a, truth, ev, seed=3)
    pd.testing.assert_frame_equal(one, two)


def test_estimator_tables_leave_canary_rows_out_of_the_ground_truth():
    from memlab.plan.power import PowerGates

    a, truth = _bank(np.random.default_rng(2))
    n = len(truth)
    a["pool_canary"] = np.where(np.arange(n) < 30, np.arange(n), -1)  # 30 canary rows
    from conftest import run_columns

    run = run_columns(label_noise=0.0, regime="memorize", size=150)
    mem = pd.DataFrame({**run, "example": np.arange(n), "score": truth,
                        "n_in": 3, "n_out": 3})  # fmt: skip
    ev = pd.DataFrame({**run, "index": np.arange(n), "knn_disagreement": truth,
                       "lira_vulnerability": np.nan, "rmia_vulnerability": np.nan})  # fmt: skip
    table = est.estimator_tables([(run, a)], mem, ev, PowerGates(min_in_out=1), seed=0)
    assert (table["n_examples"] == n - 30).all()
    assert (table["n_memorized"] == int((truth[30:] >= 0.25).sum())).all()
