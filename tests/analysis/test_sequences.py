"""Sequences (memlab.analysis.sequences): known answers of counterfactual memorization, fact
recall, perplexity by split and rare-word accuracy, on synthetic banks (tests/sequence_bank.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import run_columns
from scipy import stats
from sequence_bank import synthetic_bank

from memlab.analysis.sequences import (
    FACT_RECALL_COLUMNS,
    RARE_WORDS_COLUMNS,
    SEQUENCE_COLUMNS,
    SEQUENCE_FRAMES,
    SEQUENCE_MEMORIZATION_COLUMNS,
    SEQUENCE_PERPLEXITY_COLUMNS,
    bucket_label,
    counterfactual_memorization,
    fact_recall_table,
    rare_words_table,
    sequence_memorization_table,
    sequence_perplexity_table,
)
from memlab.io import MemlabInputError

RUN = run_columns(dataset="text", model="gru", size=100)


def _balanced(replicas: int, docs: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(replicas) < replicas // 2 for _ in range(docs)], 1)


def test_a_model_that_ignores_its_training_data_memorizes_nothing():
    rng = np.random.default_rng(1)
    members = _balanced(64, 500)
    accuracy = rng.beta(2, 3, members.shape)  # independent of membership
    s = counterfactual_memorization(accuracy, members)
    z = np.abs(s["score"]) / s["se"]
    assert (z < 3).mean() >= 0.95
    assert abs(s["score"].mean()) < 0.01 and np.abs(s["score"]).mean() < 0.1
    covered = (s["low"] <= 0) & (s["high"] >= 0)
    assert 0.9 <= covered.mean() <= 0.99  # a 95% interval covers the truth about 95% of the time


def test_a_planted_effect_is_recovered():
    rng = np.random.default_rng(2)
    members = _balanced(32, 200)
    accuracy = np.where(members, 0.9, 0.1) + rng.normal(0, 0.05, members.shape)
    s = counterfactual_memorization(accuracy, members)
    assert np.abs(s["score"] - 0.8).max() < 0.1
    assert ((s["low"] <= 0.8) & (s["high"] >= 0.8)).mean() > 0.9
    assert (s["p_in"] > 0.85).all() and (s["p_out"] < 0.15).all()
    assert (s["n_in"] == 16).all() and (s["n_out"] == 16).all()


def test_the_standard_error_and_interval_match_a_hand_computation():
    members = np.array([[1], [1], [1], [0], [0]], bool)
    accuracy = np.array([[0.9], [0.7], [0.8], [0.2], [0.5]])
    s = counterfactual_memorization(accuracy, members)
    var_in, var_out = np.var([0.9, 0.7, 0.8], ddof=1), np.var([0.2, 0.5], ddof=1)
    se = math.sqrt(var_in / 3 + var_out / 2)
    assert s["score"][0] == pytest.approx(0.8 - 0.35)
    assert s["se"][0] == pytest.approx(se)
    a, b = var_in / 3, var_out / 2
    df = (a + b) ** 2 / (a**2 / 2 + b**2 / 1)  # Welch-Satterthwaite
    assert s["high"][0] - s["score"][0] == pytest.approx(stats.t.ppf(0.975, df) * se)
    # One replica on a side: no variance, no standard error.
    one = counterfactual_memorization(accuracy[:4], members[:4])
    assert math.isnan(one["se"][0]) and math.isnan(one["low"][0])


def test_usable_replicas_and_the_out_side_are_honoured():
    members = np.array([[1], [1], [0], [0], [0]], bool)
    accuracy = np.array([[0.9], [0.7], [0.2], [0.4], [0.0]])
    s = counterfactual_memorization(accuracy, members, usable=np.array([1, 1, 1, 1, 0], bool))
    assert s["p_out"][0] == pytest.approx(0.3) and s["n_out"][0] == 2
    # A validation document (out of training, inside the subset) counts on neither side.
    out = np.array([[0], [0], [1], [1], [0]], bool)
    s = counterfactual_memorization(accuracy, members, out=out)
    assert s["n_out"][0] == 2 and s["p_out"][0] == pytest.approx(0.3)


def test_a_document_always_in_training_has_no_score():
    members = np.ones((4, 2), bool)
    members[:2, 1] = False
    with pytest.raises(MemlabInputError, match=r"1 document\(s\) \(first: \[0\]\)"):
        counterfactual_memorization(np.zeros((4, 2)), members)


def test_the_memorization_table_has_a_row_per_document_and_the_planted_effect():
    bank = synthetic_bank(16)
    t = sequence_memorization_table([(RUN, bank)])
    assert list(t.columns) == SEQUENCE_MEMORIZATION_COLUMNS
    assert len(t) == len(bank["doc_tokens"])
    assert (t["kind"] == RUN["kind"]).all()  # the model's kind, the document's in doc_kind
    assert set(t["doc_kind"]) == {"grammar", "fact", "canary"}
    assert t["score"].mean() == pytest.approx(0.3, abs=0.02)
    assert (t["replicas"] == 16).all() and (t["n_in"] + t["n_out"] == 16).all()
    facts = t[t["doc_kind"] == "fact"]
    assert (facts["repetitions"] == bank["fact_repetitions"][facts["fact"]]).all()


def test_under_trained_replicas_are_left_out():
    bank = synthetic_bank(16)
    bank["stop_reason"] = bank["stop_reason"].copy()
    bank["fit_epoch"] = bank["fit_epoch"].copy()
    bank["stop_reason"][0], bank["fit_epoch"][0], bank["loss_drop"][0] = 2, -1, 0.1
    for frame in SEQUENCE_FRAMES.values():
        assert frame([(RUN, bank)])["replicas"].max() == 15


def test_fact_recall_of_a_model_at_chance_is_chance_for_every_k():
    chance = 0.2
    bank = synthetic_bank(32, facts_per_k=40, chance=chance, fact_p=lambda t, k: 0 * t + chance)
    t = fact_recall_table([(RUN, bank)])
    assert list(t.columns) == FACT_RECALL_COLUMNS
    assert len(t) == 2 * 2 * 5  # form x seen x k
    assert (t["chance"] == chance).all() and (t["n_facts"] == 40).all()
    assert (np.abs(t["recall"] - chance) < 3 * t["recall_se"]).all()


def test_fact_recall_is_grouped_by_training_frequency():
    bank = synthetic_bank(16, facts_per_k=3, fact_p=lambda t, k: np.where(t, k / 16, 0.0))
    t = fact_recall_table([(RUN, bank)]).set_index(["form", "seen", "train_frequency"])
    for k in (1, 2, 4, 8, 16):
        # Every (replica, fact) pair of a trained fact is recalled with p = k / 16: per fact a
        # mean over its 8 trained replicas, exactly k / 16 at k = 16 and on average below.
        row = t.loc[("trained", "trained", k)]
        assert row["n_facts"] == 3 and row["pairs"] == 3 * 8
        assert abs(row["recall"] - k / 16) <= 3 * max(row["recall_se"], 1 / 24) + 1e-9
        assert t.loc[("trained", "not_trained", k), "recall"] == 0.0
    assert t.loc[("trained", "trained", 16), "recall"] == 1.0


def test_fact_recall_counts_exact_replicas_per_fact():
    bank = synthetic_bank(4, facts_per_k=1, fact_k=(1, 2))
    bank["fact_correct"] = bank["fact_correct"].copy()
    trained = np.array([[m.any() for m in _fact_rows(bank, r)] for r in range(4)])
    bank["fact_correct"][:] = False
    bank["fact_correct"][:, 0] = True  # fact 0 (k=1) always right, fact 1 (k=2) never
    t = fact_recall_table([(RUN, bank)]).set_index(["form", "seen", "train_frequency"])
    assert t.loc[("trained", "trained", 1), "recall"] == 1.0
    assert t.loc[("trained", "trained", 2), "recall"] == 0.0
    assert t.loc[("trained", "trained", 1), "pairs"] == trained[:, 0].sum()
    assert math.isnan(t.loc[("trained", "trained", 1), "recall_se"])  # one fact


def _fact_rows(bank, r):
    return [bank["members"][r][bank["pool_fact"] == f] for f in range(2)]


def test_perplexity_weights_documents_by_their_tokens():
    bank = synthetic_bank(2, grammar=2, facts_per_k=0, fact_k=())
    n = len(bank["doc_tokens"])
    bank["members"] = np.zeros((2, n), bool)
    bank["members"][:, 0] = True  # both replicas trained on doc 0 only (not a balanced design)
    bank["members"][0, 1] = True
    bank["train_mask"] = bank["members"].copy()
    bank["doc_tokens"] = np.arange(n, dtype=np.int64) + 10  # doc 0: 10 tokens, doc 1: 11
    loss = np.tile(np.linspace(1.0, 3.0, n, dtype=np.float32), (2, 1))
    bank["doc_loss"], bank["doc_accuracy"] = loss, loss / 10
    t = sequence_perplexity_table([(RUN, bank)])
    assert list(t.columns) == SEQUENCE_PERPLEXITY_COLUMNS
    train = t[t["split"] == "train"].iloc[0]
    r0 = (10 * loss[0, 0] + 11 * loss[0, 1]) / 21  # replica 0: docs 0 and 1
    r1 = loss[1, 0]  # replica 1: doc 0
    assert train["loss"] == pytest.approx((r0 + r1) / 2, rel=1e-6)
    assert train["loss_se"] == pytest.approx(np.std([r0, r1], ddof=1) / math.sqrt(2), rel=1e-6)
    assert train["perplexity"] == pytest.approx(math.exp((r0 + r1) / 2), rel=1e-6)
    assert train["accuracy"] == pytest.approx((r0 + r1) / 20, rel=1e-5)
    assert train["tokens"] == 21 + 10
    held = t[t["split"] == "heldout"].iloc[0]
    w = bank["heldout_tokens"]
    per = (bank["heldout_loss"].astype(float) * w).sum(1) / w.sum()
    assert held["loss"] == pytest.approx(per.mean(), rel=1e-6)
    typo = t[t["split"] == "typo"]
    assert list(typo["severity"]) == [0, 1, 2, 3, 4, 5]
    assert typo["loss"].to_numpy() == pytest.approx(bank["typo_loss"].astype(float).mean(0))
    assert (t.loc[t["split"] != "typo", "severity"] == 0).all()


def test_rare_word_accuracy_equals_hand_counts():
    bank = synthetic_bank(3)
    bank["word_correct_in"] = np.array([[1, 5, 0, 9]] * 3, np.int64)
    bank["word_tokens_in"] = np.array([[2, 10, 0, 10], [2, 10, 0, 10], [4, 10, 0, 10]], np.int64)
    t = rare_words_table([(RUN, bank)])
    assert list(t.columns) == RARE_WORDS_COLUMNS
    trained = t[t["split"] == "trained"].set_index("bucket")
    assert list(trained.index) == ["1-2", "3-10", "11-100", ">=101"]
    assert trained.loc["1-2", "accuracy"] == pytest.approx((0.5 + 0.5 + 0.25) / 3)
    se = np.std([0.5, 0.5, 0.25], ddof=1) / math.sqrt(3)
    assert trained.loc["1-2", "accuracy_se"] == pytest.approx(se)
    assert trained.loc["1-2", "tokens"] == 8 and trained.loc["1-2", "replicas"] == 3
    assert math.isnan(trained.loc["11-100", "accuracy"]) and trained.loc["11-100", "replicas"] == 0
    assert (trained.loc[">=101", ["low", "high"]] == [101, -1]).all()
    assert set(t["split"]) == {"trained", "untrained", "heldout"}


def test_bucket_labels():
    assert bucket_label(1, 2) == "1-2" and bucket_label(5, 5) == "5"
    assert bucket_label(101, -1) == ">=101"
    assert bucket_label(101, np.iinfo(np.int64).max) == ">=101"


def test_runs_without_a_sequence_bank_give_empty_tables_with_the_columns():
    other = {"train_mask": np.ones((2, 3), bool)}  # a classifier's bank
    for name, frame in SEQUENCE_FRAMES.items():
        t = frame([(RUN, other)])
        assert t.empty and list(t.columns) == SEQUENCE_COLUMNS[name]


def test_two_runs_are_kept_apart_by_their_run_columns():
    decay = RUN | {"regime": "decay", "weight_decay": 0.1}
    runs = [(RUN, synthetic_bank(8, seed=0)), (decay, synthetic_bank(8, seed=1))]
    for frame in SEQUENCE_FRAMES.values():
        t = frame(runs)
        assert set(t["regime"]) == {"memorize", "decay"}
        sizes = t.groupby("regime").size()
        assert sizes["memorize"] == sizes["decay"]
    assert isinstance(t, pd.DataFrame)


def test_a_fact_held_for_validation_counts_as_neither_trained_nor_unseen():
    bank = synthetic_bank(8, facts_per_k=2)
    r = int(np.flatnonzero(bank["members"][:, bank["pool_fact"] == 0].any(1))[0])
    bank["train_mask"] = bank["train_mask"].copy()
    bank["train_mask"][r, bank["pool_fact"] == 0] = False  # fact 0 (k=1): validation in r
    t = fact_recall_table([(RUN, bank)])
    k1 = t[(t["form"] == "trained") & (t["train_frequency"] == 1)].set_index("seen")
    # 2 facts x 8 replicas, each fact in 4: one (replica, fact) pair is on neither side.
    assert k1.loc["trained", "pairs"] == 7 and k1.loc["not_trained", "pairs"] == 8
