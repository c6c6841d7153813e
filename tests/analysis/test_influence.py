"""Train -> test influence (Feldman & Zhang 2020) and its null: estimators on cases with known
answers."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import hypergeom

from memlab.analysis.influence import (
    Influence,
    expected_false_pairs,
    false_pair_probability,
    high_influence_pairs,
    influence_matrix,
)
from memlab.data.datasets import balanced_subsets
from memlab.engine.models import knn_log_proba
from memlab.io import MemlabInputError


def _loop_influence(members, correct):
    """The definition, one pair at a time."""
    n_pool, n_test = members.shape[1], correct.shape[1]
    infl, se = np.zeros((n_pool, n_test)), np.zeros((n_pool, n_test))
    for i in range(n_pool):
        held = members[:, i]
        for j in range(n_test):
            p_in, p_out = correct[held, j].mean(), correct[~held, j].mean()
            infl[i, j] = p_in - p_out
            se[i, j] = np.sqrt(p_in * (1 - p_in) / held.sum() + p_out * (1 - p_out) / (~held).sum())
    return infl, se


# R = 4 replicas, 3 pool examples (each in 2 replicas), 2 held-out examples.
MEMBERS = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 0], [0, 0, 1]], bool)
CORRECT = np.array([[1, 0], [1, 1], [0, 1], [1, 0]], bool)


def test_tiny_bank_by_hand_and_by_loop():
    inf = influence_matrix(MEMBERS, CORRECT)
    # pool 0 is in replicas 0, 1 and out of 2, 3.
    # test 0: right on 0, 1 (in: 1.0) and on 3 of 2, 3 (out: 0.5) -> 0.5, se sqrt(0 + 0.25/2)
    assert inf.influence[0, 0] == 0.5
    assert inf.se[0, 0] == pytest.approx(np.sqrt(0.125))
    # test 1: right on 1 of 0, 1 (0.5) and on 2 of 2, 3 (0.5) -> 0, se sqrt(0.125 + 0.125)
    assert inf.influence[0, 1] == 0.0
    assert inf.se[0, 1] == pytest.approx(0.5)
    infl, se = _loop_influence(MEMBERS, CORRECT)
    np.testing.assert_allclose(inf.influence, infl, atol=1e-7)
    np.testing.assert_allclose(inf.se, se, atol=1e-7)
    assert inf.influence.dtype == np.float32 and inf.se.dtype == np.float32
    assert inf.n_in.tolist() == [2, 2, 2] and inf.n_out.tolist() == [2, 2, 2]
    assert inf.n_in.dtype == np.int64 and inf.correct_count.dtype == np.int64
    assert inf.correct_count.tolist() == [3, 2]


def test_usable_selects_replicas():
    rng = np.random.default_rng(0)
    members = balanced_subsets(10, 5, 12, seed=1)
    correct = rng.random((12, 7)) < 0.5
    usable = np.ones(12, bool)
    usable[[3, 8]] = False
    inf = influence_matrix(members, correct, usable)
    infl, se = _loop_influence(members[usable], correct[usable])
    np.testing.assert_allclose(inf.influence, infl, atol=1e-7)
    np.testing.assert_allclose(inf.se, se, atol=1e-7)
    assert (inf.n_in + inf.n_out).tolist() == [10] * 10


def test_design_without_an_out_replica_is_rejected():
    members = MEMBERS.copy()
    members[:, 1] = True
    with pytest.raises(
        MemlabInputError, match=r"influence: 1 example\(s\) \(first: \[1\]\).*never held"
    ):
        influence_matrix(members, CORRECT)
    with pytest.raises(MemlabInputError, match="never in"):
        influence_matrix(MEMBERS, CORRECT, usable=np.array([0, 0, 1, 1], bool))
    with pytest.raises(MemlabInputError, match="same replicas"):
        influence_matrix(MEMBERS, CORRECT[:3])
    with pytest.raises(MemlabInputError, match="at least 2 usable"):
        influence_matrix(MEMBERS, CORRECT, usable=np.array([1, 0, 0, 0], bool))


def test_one_nn_influence_on_an_exact_duplicate_is_one():
    # 12 far-apart points, each its own class: 1-NN gets a copy of point i right iff i is in the
    # subset (distance 0); otherwise its nearest member carries another label.
    rng = np.random.default_rng(3)
    x_pool = (rng.normal(size=(12, 4)) * 10).astype(np.float32)
    y_pool = np.arange(12)
    dup = np.array([0, 3, 4, 7, 11])
    x_test, y_test = x_pool[dup].copy(), y_pool[dup]
    members = balanced_subsets(12, 6, 40, seed=5)
    lp = knn_log_proba(
        torch.from_numpy(x_test),
        torch.from_numpy(x_pool),
        torch.from_numpy(y_pool),
        torch.from_numpy(members),
        k=1,
        n_classes=12,
    )
    correct = lp.argmax(2).numpy() == y_test
    inf = influence_matrix(members, correct)
    np.testing.assert_array_equal(inf.influence[dup, np.arange(len(dup))], 1.0)
    np.testing.assert_array_equal(inf.se[dup, np.arange(len(dup))], 0.0)
    others = np.ones(inf.influence.shape, bool)
    others[dup, np.arange(len(dup))] = False
    assert np.abs(inf.influence[others]).max() < 1.0  # only the original decides its copy


def test_a_model_that_ignores_its_data_has_influence_zero_within_its_error():
    rng = np.random.default_rng(7)
    r, n_pool, n_test = 400, 50, 40
    members = balanced_subsets(n_pool, 25, r, seed=8)
    correct = rng.random((r, n_test)) < 0.6  # independent of membership
    inf = influence_matrix(members, correct)
    z = inf.influence / inf.se
    assert np.abs(z).max() < 4.5
    assert 0.03 < (np.abs(z) > 1.96).mean() < 0.08  # about 5%
    assert abs(inf.influence.mean()) < 0.005
    # Worst-case se at share 0.5: 0.5 / sqrt(0.25 * 400) = 0.05; at p = 0.6 it is 0.049.
    assert inf.se.max() < 0.0505 and inf.se.min() > 0.045


def _enumerated(n_total, n_in, k, t):
    """P[a / n_in - (k - a) / n_out >= t] summed over a in exact rationals (t a Fraction)."""
    n_out = n_total - n_in
    return sum(
        hypergeom.pmf(a, n_total, k, n_in)
        for a in range(max(0, k - n_out), min(k, n_in) + 1)
        if Fraction(a, n_in) - Fraction(k - a, n_out) >= t
    )


def test_false_pair_probability_by_enumeration():
    # Thresholds on and off the grid of attainable influences; at (12, 5, 1, 0.2), (23, 10, 9,
    # 0.9) and (16, 10, 0, 0.8) the closed-form threshold in float64 is one too high.
    thresholds = ["0.1", "0.2", "0.25", "0.3", "0.5", "0.7", "0.8", "0.9", "1"]
    cases = [(12, 5, 1, "0.2"), (23, 10, 9, "0.9"), (16, 10, 0, "0.8"), (64, 45, 30, "0.3")]
    cases += [
        (n_total, n_in, k, t)
        for n_total in (12, 23)
        for n_in in range(1, n_total)
        for k in range(n_total + 1)
        for t in thresholds
    ]
    n_total, n_in, k = (np.array([c[i] for c in cases]) for i in range(3))
    got = false_pair_probability(n_in, n_total, k, np.array([float(c[3]) for c in cases]))
    want = np.array([_enumerated(*c[:3], Fraction(c[3])) for c in cases])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-15)
    # Broadcast: [2, 1] x [3] -> [2, 3]; nobody correct (or everybody) never passes t > 0.
    p = false_pair_probability(np.array([[4], [5]]), 8, np.array([0, 4, 8]), 0.25)
    assert p.shape == (2, 3) and p[:, 0].tolist() == [0.0, 0.0] and p[:, 2].tolist() == [0.0, 0.0]


def test_a_pair_exactly_at_the_threshold_counts_in_selection_and_in_the_null():
    # 20 replicas, pool 0 in the first 10: test 0 right on 8 of them and 1 of the rest, so its
    # influence is 0.8 - 0.1 = 0.7 exactly, which float32 stores as 0.69999999.
    members = (np.arange(20) < 10)[:, None]
    correct = np.zeros((20, 1), bool)
    correct[[0, 1, 2, 3, 4, 5, 6, 7, 15]] = True
    inf = influence_matrix(members, correct)
    assert float(inf.influence[0, 0]) < 0.7
    assert len(high_influence_pairs(inf, np.ones(1), 0.0, 0.7)) == 1
    assert high_influence_pairs(inf, np.ones(1), 0.0, 0.71).empty
    # The null counts that pair too: a >= 8 of k = 9 correct among the 10 in-replicas.
    assert false_pair_probability(10, 20, 9, 0.7) == pytest.approx(
        hypergeom.sf(7, 20, 9, 10), rel=1e-12
    )
    assert expected_false_pairs(inf, np.ones(1, bool), 0.7) == pytest.approx(
        hypergeom.sf(7, 20, 9, 10), rel=1e-12
    )


@pytest.mark.parametrize("share", [0.5, 0.7])
def test_expected_false_pairs_matches_simulation_under_the_null(share):
    rng = np.random.default_rng(11)
    r, n_pool, n_test, t, sims = 64, 60, 40, 0.3, 200
    rates = rng.uniform(0.2, 0.95, n_test)
    counts, expected = np.zeros(sims), np.zeros(sims)
    everyone = np.ones(n_pool)
    for s in range(sims):
        members = balanced_subsets(n_pool, round(share * n_pool), r, seed=100 + s)
        correct = rng.random((r, n_test)) < rates  # ignores the training data
        inf = influence_matrix(members, correct)
        counts[s] = len(high_influence_pairs(inf, everyone, 0.0, t))
        expected[s] = expected_false_pairs(inf, everyone.astype(bool), t)
    se = counts.std(ddof=1) / np.sqrt(sims)
    assert expected.mean() > 5  # a test with something to count
    assert abs(counts.mean() - expected.mean()) < 3.5 * se
    # The null per (n_in, k) group agrees with a direct pair-by-pair sum.
    direct = false_pair_probability(inf.n_in[:, None], r, inf.correct_count[None, :], t).sum()
    assert expected[-1] == pytest.approx(direct, rel=1e-12)
    # Only candidates count: half of them, half the pairs (balanced: n_in is the same for all).
    half = np.arange(n_pool) < n_pool // 2
    if share == 0.5:
        assert expected_false_pairs(inf, half, t) == pytest.approx(expected[-1] / 2, rel=1e-12)
    assert expected_false_pairs(inf, np.zeros(n_pool, bool), t) == 0.0


def test_high_influence_pairs_by_hand():
    # Ties at 0.9 in two rows and two columns: ordered by train_index, then test_index.
    infl = np.array([[0.9, 0.2, 0.9], [0.5, 0.95, -0.4], [0.9, 0.6, 0.5]], np.float32)
    inf = Influence(
        influence=infl,
        se=(np.arange(9, dtype=np.float32) / 100).reshape(3, 3),
        n_in=np.array([4, 4, 4]),
        n_out=np.array([4, 4, 4]),
        correct_count=np.array([4, 4, 4]),
    )
    mem = np.array([0.3, 0.1, 0.25])  # pool 1 is not memorized enough
    got = high_influence_pairs(inf, mem, 0.25, 0.5)
    want = pd.DataFrame(
        {
            "train_index": [0, 0, 2, 2, 2],
            "test_index": [0, 2, 0, 1, 2],
            "memorization": [0.3, 0.3, 0.25, 0.25, 0.25],
            "influence": np.array([0.9, 0.9, 0.9, 0.6, 0.5], np.float32),
            "influence_se": np.array([0.0, 0.02, 0.06, 0.07, 0.08], np.float32),
        }
    )
    pd.testing.assert_frame_equal(got, want)
    assert list(got.columns) == [
        "train_index",
        "test_index",
        "memorization",
        "influence",
        "influence_se",
    ]
    assert high_influence_pairs(inf, mem, 0.5, 0.5).empty
    for bad in (-0.1, 1.5, float("nan"), "high"):
        with pytest.raises(MemlabInputError, match=r"analysis\.influence\.min_memorization"):
            high_influence_pairs(inf, mem, bad, 0.5)
        with pytest.raises(MemlabInputError, match=r"analysis\.influence\.min_influence"):
            high_influence_pairs(inf, mem, 0.25, bad)
        with pytest.raises(MemlabInputError, match=r"analysis\.influence\.min_influence"):
            expected_false_pairs(inf, mem > 0.2, bad)
    with pytest.raises(MemlabInputError, match="one score per pool example"):
        high_influence_pairs(inf, mem[:2], 0.25, 0.5)


def test_a_thousand_model_bank_on_digits_is_fast_and_small():
    rng = np.random.default_rng(13)
    r, n_pool, n_test = 1024, 1348, 450
    members = balanced_subsets(n_pool, round(0.7 * n_pool), r, seed=14)
    correct = rng.random((r, n_test)) < rng.uniform(0.5, 1.0, n_test)
    start = time.perf_counter()
    inf = influence_matrix(members, correct)
    expected_false_pairs(inf, np.ones(n_pool, bool), 0.3)
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0, f"{elapsed:.2f} s"
    total = sum(a.nbytes for a in (inf.influence, inf.se, inf.n_in, inf.n_out, inf.correct_count))
    assert total < 2 * 2**30
    assert inf.influence.shape == (n_pool, n_test)
    # Exact counts through the float32 GEMM: spot-check against the definition.
    i, j = 17, 401
    held = members[:, i]
    want = correct[held, j].mean() - correct[~held, j].mean()
    assert inf.influence[i, j] == np.float32(want)
