"""Intervals that stay honest at 0 and 1, and the power gates on scores and attacks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_columns
from scipy.stats import binomtest

from memlab.analysis import metrics as analysis
from memlab.data.datasets import balanced_subsets
from memlab.plan.power import (
    PowerGates,
    difference_interval,
    planned_scores_powered,
    wilson_interval,
)


def test_wilson_interval_equals_scipy():
    for n in (1, 2, 5, 17, 64):
        k = np.arange(n + 1)
        low, high = wilson_interval(k, np.full(n + 1, n))
        for i in k:
            ci = binomtest(int(i), n).proportion_ci(method="wilson")
            assert low[i] == pytest.approx(ci.low, abs=1e-12)
            assert high[i] == pytest.approx(ci.high, abs=1e-12)


def test_newcombe_interval_known_answers():
    # Newcombe (1998), Table II, example (a): 56/70 - 48/80 = 0.2000, method 10: 0.0524 to 0.3339.
    low, high = difference_interval(56, 70, 48, 80)
    assert (round(float(low), 4), round(float(high), 4)) == (0.0524, 0.3339)
    # A score of 1.00 from 2 in- and 2 out-replicas is not "1.00 +- 0.00": it is wide.
    low, high = difference_interval(2, 2, 0, 2)
    assert low < 0.1 and high == 1.0
    # 8 in and 8 out at p = 0.5 on both sides: still about +-0.40.
    low, high = difference_interval(4, 8, 4, 8)
    assert high - low == pytest.approx(0.805, abs=0.001)


def test_gates_from_config_and_planning():
    gates = PowerGates.from_config({"analysis": {"power": {"min_in_out": 8, "min_shadows": 16}}})
    assert gates == PowerGates() and PowerGates.from_config({}) == PowerGates()
    assert gates.attacks_powered(17) and not gates.attacks_powered(16)
    assert gates.replicas_for_scores(0.5) == 16 and gates.replicas_for_scores(0.7) == 27
    assert planned_scores_powered(gates, 16, 500, 1000)
    assert not planned_scores_powered(gates, 15, 500, 1000)  # 7 in or 7 out for some
    assert not planned_scores_powered(gates, 64, 1000, 1000)  # never out
    # The planned counts are what a balanced design gives.
    for r, size, n in ((16, 500, 1000), (27, 700, 1000), (20, 333, 1000)):
        m = balanced_subsets(n, size, r, seed=0)
        powered = gates.scores_powered(m.sum(0), (~m).sum(0))
        assert planned_scores_powered(gates, r, size, n) == powered


def _bank(replicas: int, n: int = 40, size: int | None = None):
    members = balanced_subsets(n, n // 2 if size is None else size, replicas, seed=0)
    rng = np.random.default_rng(0)
    correct = members | (rng.random(members.shape) < 0.5)
    flipped = np.zeros(n, bool)
    flipped[:8] = True
    return {
        "train_mask": members,
        "pool_correct": correct,
        "pool_pred": np.zeros(members.shape, np.int16),
        "pool_label": np.zeros(n, np.int16),
        "pool_loss": rng.random(members.shape),
        "pool_confidence": rng.normal(size=members.shape),
        "test_loss": rng.random((replicas, 10)),
        "flipped": flipped,
        "stop_reason": np.zeros(replicas, int),
        "fit_epoch": np.ones(replicas, int),
        "replica": np.arange(replicas),
    }


def test_underpowered_scores_keep_their_rows_but_not_their_headline():
    run = run_columns()
    scores, summary = analysis.memorization_tables([(run, _bank(4))])
    row = summary.iloc[0]
    assert not row["powered"] and (row["min_n_in"], row["min_n_out"]) == (2, 2)
    assert row["status"].startswith("underpowered: ") and "16 replicas" in row["status"]
    assert np.isnan(row["mean_score"]) and np.isnan(row["auc_flipped"])
    assert len(scores) == 40 and (scores["high"] - scores["low"] > 0.5).all()
    _, summary = analysis.memorization_tables([(run, _bank(16))])
    assert summary.iloc[0]["powered"] and summary.iloc[0]["status"] == "ok"
    assert not np.isnan(summary.iloc[0]["mean_score"])


def test_attacks_with_too_few_shadows_are_not_powered():
    run = run_columns()
    for replicas, shadowed in ((4, False), (17, True)):
        res, _, _ = analysis.membership_tables([(run, _bank(replicas))])
        by = res.set_index("attack")["powered"]
        assert by["gap"] and by["loss"]  # no shadow models needed
        assert by[[a for a in by.index if a.startswith(("lira", "rmia"))]].eq(shadowed).all()


def test_attack_gate_counts_the_shadows_each_attack_fits_not_replicas():
    # 17 replicas on 30% subsets: the bank has 16 shadows besides each target, but each example
    # is in 5 or 6 of them, so online attacks fit 4 IN shadows per (target, example) at the
    # fewest, below the 7 that 17 replicas on balanced halves give; offline ones fit 10 OUT.
    gates = PowerGates()
    assert gates.min_per_side == 7 and PowerGates(min_shadows=3).min_per_side == 1
    assert gates.shadows_powered(17, {"IN": 7, "OUT": 7})
    assert not gates.shadows_powered(17, {"IN": 6, "OUT": 7})
    assert not gates.shadows_powered(16, {"IN": 7, "OUT": 7})  # the bank's own gate still holds
    run = run_columns()
    res, _, _ = analysis.membership_tables([(run, _bank(17, n=40, size=12))])
    by = res.set_index("attack")
    online = ["lira_online", "lira_online_fixed_variance", "rmia_online"]
    offline = ["lira_offline", "lira_offline_density_fixed_variance", "rmia_offline"]
    assert not by.loc[online, "powered"].any() and by.loc[offline, "powered"].all()
    status = by.loc["lira_online", "status"]
    assert status.startswith("underpowered: lira_online fits 4 IN and 10 OUT shadows")
    # The printed count works as printed: that many replicas at 30% gives every side 7.
    assert status.endswith("at 30% of the pool per subset that takes 27 replicas; this run has 17")
    res, _, _ = analysis.membership_tables([(run, _bank(27, n=40, size=12))])
    assert res.set_index("attack").loc[online + offline, "powered"].all()
    assert (res["status"] == "ok").all()
