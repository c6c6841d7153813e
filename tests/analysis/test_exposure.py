"""Exposure (memlab.analysis.exposure): the known answers of the rank method, the skew-normal
extrapolation, and the table over a bank's (canary, replica) pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_columns
from scipy.stats import skewnorm

from memlab.analysis.exposure import (
    EXPOSURE_COLUMNS,
    LOG2_E,
    canary_trained,
    exposure_table,
    extrapolated_exposure,
    rank_exposure,
)

REFS = np.linspace(1.0, 2.0, 4096)  # 4,096 distinct reference losses


def test_a_canary_ranked_first_among_4096_references_has_12_bits():
    assert rank_exposure(np.array([0.5]), REFS)[0] == 12.0
    # A tie with the lowest reference: rank 1 or 2 with equal chance, the mean of 12 and 11.
    assert rank_exposure(np.array([1.0]), REFS)[0] == pytest.approx(11.5)
    # Below one reference: rank 2, 11 bits; above every reference: rank 4097, just under 0.
    assert rank_exposure(np.array([(REFS[0] + REFS[1]) / 2]), REFS)[0] == 11.0
    assert rank_exposure(np.array([9.0]), REFS)[0] == pytest.approx(12 - math.log2(4097))


def test_each_model_ranks_its_canaries_among_its_own_references():
    refs = np.stack([REFS, REFS + 10.0])  # two replicas: the second's losses all higher
    canary = np.array([[1.5, 0.0], [1.5, 10.0]])
    e = rank_exposure(canary, refs)
    assert e.shape == (2, 2)
    assert e[1, 0] == 12.0 and e[1, 1] == 12.0  # 1.5 is below all of the second's references
    assert e[0, 1] == 12.0 and e[0, 0] == pytest.approx(12 - math.log2(1 + 2048))


def test_canaries_from_the_reference_distribution_average_log2_e():
    rng = np.random.default_rng(0)
    refs = rng.gamma(2.0, 1.0, 4096)
    canaries = rng.gamma(2.0, 1.0, 3000)
    e = rank_exposure(canaries, refs)
    se = e.std(ddof=1) / math.sqrt(len(e))
    assert abs(e.mean() - LOG2_E) < 3 * se
    # Memorized canaries (losses far below the references') are far above it.
    assert rank_exposure(canaries / 100, refs).mean() > LOG2_E + 3


def test_ties_average_over_the_ranks_a_canary_could_take():
    # Losses of a model that is right (0.1) or wrong (3.0), as a 1-NN's: 10% of the references
    # are right, and never-trained canaries from the same law are right as often.
    rng = np.random.default_rng(2)
    refs = np.where(rng.random(4096) < 0.1, 0.1, 3.0)
    canaries = np.where(rng.random(4000) < 0.1, 0.1, 3.0)
    e = rank_exposure(canaries, refs)
    se = e.std(ddof=1) / math.sqrt(len(e))
    assert abs(e.mean() - LOG2_E) < 3 * se  # ties for the canary would give about 4 bits
    right = int((refs == 0.1).sum())
    want = 12 - np.mean(np.log2(np.arange(1, right + 2)))
    assert e[canaries == 0.1][0] == pytest.approx(want)


def test_extrapolation_recovers_minus_log2_cdf_of_a_skew_normal():
    rng = np.random.default_rng(1)
    law = (4.0, 1.0, 2.0)  # shape, loc, scale
    refs = skewnorm.rvs(*law, size=20000, random_state=rng)
    canaries = np.array([0.5, 1.0, 2.0, 4.0])
    expected = -np.log2(skewnorm.cdf(canaries, *law))
    got = extrapolated_exposure(canaries, refs)
    np.testing.assert_allclose(got, expected, rtol=0.05)
    # Beyond the references it keeps going (the rank method stops at log2 |R|).
    beyond = skewnorm.ppf(2.0**-16, *law)  # 16 bits under the true law
    assert rank_exposure(np.array([beyond]), refs[:4096])[0] == 12.0
    assert extrapolated_exposure(np.array([beyond]), refs[:4096])[0] == pytest.approx(16, rel=0.1)


def _bank(loss: np.ndarray, refs: np.ndarray, reps: np.ndarray, train: np.ndarray) -> dict:
    """A bank with ``reps`` canaries (controls not in the pool), real examples first."""
    in_pool = np.flatnonzero(reps > 0)
    pool_canary = np.r_[np.full(3, -1), np.repeat(in_pool, reps[in_pool])]
    return {
        "canary_loss": loss,
        "reference_loss": refs,
        "canary_repetitions": reps,
        "pool_canary": pool_canary,
        "train_mask": train,
    }


def test_the_table_averages_trained_pairs_and_every_replica_for_controls():
    refs = np.tile(REFS, (2, 1))
    reps = np.array([0, 0, 2, 2])
    # Pool: 3 real rows, canary 2's two rows, canary 3's two rows.
    train = np.array(
        [[1, 0, 1, 1, 1, 0, 0], [0, 1, 1, 0, 0, 1, 1]],
        bool,
    )
    # Losses chosen so each pair's rank exposure is known: 0.5 -> 12 bits, 1.5 -> 12 - log2(2049).
    loss = np.array([[0.5, 1.5, 0.5, 1.5], [1.5, 1.5, 9.0, 0.5]])
    bank = _bank(loss, refs, reps, train)
    np.testing.assert_array_equal(canary_trained(bank), [[0, 0, 1, 0], [0, 0, 0, 1]])
    run = run_columns()
    table = exposure_table([(run, bank)])
    assert list(table.columns) == EXPOSURE_COLUMNS
    rank = table[table["method"] == "rank"].set_index("repetitions")
    mid = 12 - math.log2(2049)
    # Controls: all four (replica, canary) pairs; per-canary means (12 + mid) / 2 and mid.
    assert rank.loc[0, "exposure"] == pytest.approx((12 + 3 * mid) / 4)
    assert rank.loc[0, "pairs"] == 4 and rank.loc[0, "n_canaries"] == 2
    per_canary = np.array([(12 + mid) / 2, mid])
    assert rank.loc[0, "exposure_se"] == pytest.approx(per_canary.std(ddof=1) / math.sqrt(2))
    # Repeated canaries: only the pairs that trained on them (canary 2 in replica 0, canary 3 in
    # replica 1), both at 12 bits; the untrained pairs (1.5 and 9.0) would pull it down.
    assert rank.loc[2, "exposure"] == 12.0 and rank.loc[2, "pairs"] == 2
    assert rank.loc[2, "exposure_se"] == 0.0
    assert (table["n_references"] == 4096).all() and (table["replicas"] == 2).all()
    assert set(table["method"]) == {"rank", "extrapolated"}
    assert table[["dataset", "model", "regime"]].iloc[0].tolist() == [
        run["dataset"],
        run["model"],
        run["regime"],
    ]


def test_runs_without_canaries_add_no_rows():
    bank = {"train_mask": np.ones((2, 3), bool)}
    table = exposure_table([(run_columns(), bank)])
    assert table.empty and list(table.columns) == EXPOSURE_COLUMNS


def test_memorization_rows_are_marked_and_the_figures_read_the_real_ones(tmp_path):
    import pandas as pd

    from memlab.analysis.metrics import with_canaries
    from memlab.data.datasets import Split
    from memlab.reporting.tables import StudyTables

    def split(pool_canary):
        x = np.zeros((4, 1), np.float32)
        y = np.zeros(4, np.int64)
        return Split(x, y, x, y, 2, None, pool_canary=pool_canary)

    splits = {"c": split(np.array([-1, -1, 0, 0])), "p": split(None)}
    frame = pd.DataFrame({"dataset": ["c"] * 4 + ["p"] * 4, "example": [3, 2, 1, 0] * 2})
    marked = with_canaries(frame, splits.__getitem__)
    assert marked["canary"].tolist() == [True, True, False, False] + [False] * 4
    marked.assign(score=0.5).to_parquet(tmp_path / "m.parquet")
    pd.DataFrame({"memory": ["on"]}).to_parquet(tmp_path / "t.parquet")
    paths = {"metrics": tmp_path / "t.parquet", "history": tmp_path / "t.parquet"}
    tables = StudyTables.read({**paths, "memorization": tmp_path / "m.parquet"})
    assert len(tables.memorization) == 6 and not tables.memorization["canary"].any()
