"""The per-example evidence table and its detectors: known answers, cleanlab called directly on
the same out-of-sample probabilities, and the bank's sums independent of the block layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from memlab.analysis import bank, evidence
from memlab.analysis.memorization import roc_auc
from memlab.data.datasets import balanced_subsets
from memlab.engine.evaluate import evaluate_replicas


def _bank(r=8, n=60, c=3, m=20, seed=0, flip_share=0.2):
    """Evaluation arrays of a synthetic bank (through ``evaluate_replicas``), in two blocks.

    Examples are rows of a fixed table of per-replica probabilities; a flipped example's label
    is one its probabilities disfavour, and replicas that trained on it fit it."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, n)
    flipped = np.zeros(n, bool)
    flipped[rng.choice(n, int(flip_share * n), replace=False)] = True
    given = np.where(flipped, (true + 1) % c, true)
    members = balanced_subsets(n, n // 2, r, seed=seed)
    logits = rng.normal(0, 1, (r, n, c)) + 3 * np.eye(c)[true]
    logits += 6 * members[..., None] * np.eye(c)[given]  # trained on: fits the given label
    test_logits = rng.normal(0, 1, (r, m, c)) + 3 * np.eye(c)[rng.integers(0, c, m)]
    table = {"pool": torch.log_softmax(torch.tensor(logits), -1).float()}
    table["test"] = torch.log_softmax(torch.tensor(test_logits), -1).float()

    def log_proba(x: np.ndarray) -> torch.Tensor:
        return table["pool"] if len(x) == n else table["test"]

    blocks = []
    for rows in (slice(0, r // 2), slice(r // 2, r)):
        sub = {k: v[rows] for k, v in table.items()}

        def block_proba(x, sub=sub):
            return sub["pool"] if len(x) == n else sub["test"]

        arrays, _ = evaluate_replicas(
            block_proba,
            x_pool=np.zeros((n, 1)),
            y_pool=given,
            flipped=flipped,
            x_test=np.zeros((m, 1)),
            y_test=np.zeros(m, int),
            members=members[rows],
            train_mask=members[rows],
            val_mask=np.zeros_like(members[rows]),
            perturbed={},
        )
        arrays["replica"] = np.arange(r)[rows]
        blocks.append(arrays)
    return bank.concat_blocks(blocks), true, torch.exp(table["pool"]).double().numpy(), members


def test_out_of_sample_probabilities_sum_over_blocks():
    a, _, proba, members = _bank()
    out = ~members
    want = (proba * out[..., None]).sum(0) / out.sum(0)[:, None]
    np.testing.assert_allclose(evidence.out_of_sample_proba(a), want, rtol=1e-6)
    np.testing.assert_array_equal(a["pool_out_count"], out.sum(0))


def test_cleanlab_columns_equal_cleanlab_called_directly():
    a, true, proba, members = _bank()
    e = evidence.run_evidence(a, true, None, None)
    oos = (proba * ~members[..., None]).sum(0) / (~members).sum(0)[:, None]
    oos /= oos.sum(1, keepdims=True)
    labels = a["pool_label"].astype(np.int64)
    np.testing.assert_allclose(
        e["label_quality"], get_label_quality_scores(labels, oos), rtol=1e-6, atol=1e-9
    )
    np.testing.assert_array_equal(e["label_issue"] == 1, find_label_issues(labels, oos, n_jobs=1))
    # On this bank the flipped labels are the ones the out-of-sample models disfavour.
    assert roc_auc(-e["label_quality"], a["flipped"]) > 0.95
    assert (e["true_label"] == true).all() and (e["label"] == labels).all()


def test_cleanlab_is_undefined_without_an_out_of_sample_replica():
    a, true, _, _ = _bank()
    a = dict(a, pool_out_count=np.r_[0, a["pool_out_count"][1:]])
    e = evidence.run_evidence(a, true, None, None)
    assert e["label_quality"].isna().all() and e["label_issue"].isna().all()
    d = evidence.detector_scores(e, 8).set_index("method")
    assert d.loc["cleanlab_label_quality", "status"] == "an example has no out-of-sample replica"
    assert np.isnan(d.loc["cleanlab_label_quality", "roc_auc"])


def test_per_example_auc_is_the_auc_of_each_column():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (9, 30)).astype(float)  # ties
    members = rng.random((9, 30)) < 0.5
    members[:, 0] = True  # no non-member: undefined
    got = evidence.per_example_auc(scores, members)
    assert np.isnan(got[0])
    want = [roc_auc(scores[:, j], members[:, j]) for j in range(1, 30)]
    np.testing.assert_allclose(got[1:], want, rtol=1e-12)


def test_precision_at_flips_shares_ties_at_the_cut():
    score = np.array([3.0, 2.0, 1.0, 1.0, 1.0, 0.0])
    positive = np.array([True, False, True, False, False, True])
    assert evidence.precision_at_k(score, positive, 2) == 0.5
    # k = 3: two above the cut (one positive) and one of three tied (one positive): 1 + 1/3.
    assert evidence.precision_at_k(score, positive, 3) == pytest.approx((1 + 1 / 3) / 3)


def test_detectors_on_known_rankings():
    flipped = np.r_[np.ones(5, bool), np.zeros(15, bool)]
    e = pd.DataFrame({c: np.full(20, np.nan) for c, _ in evidence.DETECTORS.values()})
    e["flipped"] = flipped
    e["loss_out"] = np.where(flipped, 2.0, 0.1) + np.arange(20) * 1e-3  # perfect
    e["confidence"] = np.where(flipped, 0.9, 0.1)  # sign -1: exactly backwards
    d = evidence.detector_scores(e, 16).set_index("method")
    assert d.loc["loss_out", ["roc_auc", "average_precision", "precision_at_flips"]].tolist() == [
        1.0,
        1.0,
        1.0,
    ]
    assert d.loc["cartography_confidence", "roc_auc"] == 0.0
    assert d.loc["cartography_confidence", "precision_at_flips"] == 0.0
    assert "no training history" in d.loc["forgetting_events", "status"]
    assert (d["replicas"] == 16).all() and (d["flips"] == 5).all()
    clean = evidence.detector_scores(e.assign(flipped=False), 16)
    assert (clean["status"] == "no flipped labels in this run").all()
    assert clean["roc_auc"].isna().all()


def test_evidence_tables_join_the_runs_scores_and_label_agreement():
    a, true, _, members = _bank()
    run = {k: 0 for k in evidence.RUN_COLUMNS} | {
        "dataset": "d",
        "label_noise": 0.2,
        "size": 30,
        "model": "m",
        "regime": "g",
    }
    mem = pd.DataFrame(
        {"example": np.arange(60)[::-1], "score": np.linspace(0, 1, 60)[::-1]}
    ).assign(**{k: run[k] for k in evidence.RUN_KEYS}, low=0.0, high=1.0, n_in=4, n_out=4)
    ex, det = evidence.evidence_tables(
        [(run, a)], mem, lambda ds: true, lambda run, labels: np.full(60, 0.25)
    )
    assert list(ex.columns) == evidence.EVIDENCE_COLUMNS and list(det.columns) == (
        evidence.DETECTOR_COLUMNS
    )
    np.testing.assert_allclose(ex["memorization"], np.linspace(0, 1, 60))  # in pool order
    assert (ex["knn_disagreement"] == 0.75).all() and (ex["n_in"] == members.sum(0)).all()
    assert ex["forgetting_events"].isna().all()  # no dynamics in this bank
    assert set(det["method"]) == set(evidence.DETECTORS)
    # 8 replicas, 4 in and 4 out: the gates keep the scores and the attacks out of the numbers.
    d = det.set_index("method")
    for method in ("memorization", "lira_vulnerability", "rmia_vulnerability"):
        assert d.loc[method, "status"].startswith("underpowered: ")
        assert np.isnan(d.loc[method, "roc_auc"])
    assert "16 replicas" in d.loc["memorization", "status"]
    assert "17 replicas" in d.loc["lira_vulnerability", "status"]
    assert d.loc["loss_out", "status"] == "ok"
    _, det = evidence.evidence_tables(
        [(run, a)], mem, lambda ds: true, None, evidence.PowerGates(4, 7)
    )
    assert (
        det.set_index("method").loc[["memorization", "lira_vulnerability"], "status"] == "ok"
    ).all()


def test_canary_rows_are_marked_and_kept_out_of_the_detectors_and_cleanlab():
    a, true, _, _ = _bank()
    # The last 10 pool rows as canaries: 5 groups of 2 rows (repetitions 2), after 50 real rows.
    a = dict(a, pool_canary=np.r_[np.full(50, -1), np.repeat(np.arange(5), 2)])
    a["canary_repetitions"] = np.full(5, 2)
    a["flipped"] = a["flipped"] & (np.arange(60) < 50)  # label noise never flips a canary
    run = {k: 0 for k in evidence.RUN_COLUMNS} | {"dataset": "d", "model": "m", "regime": "g"}
    mem = pd.DataFrame(columns=[*evidence.RUN_KEYS, "example", "score"])
    ex, det = evidence.evidence_tables([(run, a)], mem, lambda ds: true)
    np.testing.assert_array_equal(ex["canary"], np.arange(60) >= 50)
    assert (
        ex["canary_repetitions"].isna().sum() == 50 and (ex["canary_repetitions"][50:] == 2).all()
    )
    # Detectors score the 50 real examples alone, as a bank of only them would be scored.
    assert (det["examples"] == 50).all()
    real = evidence.run_evidence(a, true, None, None)[:50]
    want = evidence.detector_scores(real, 8).set_index("method")
    got = det.set_index("method")
    assert got.loc["loss_out", "roc_auc"] == want.loc["loss_out", "roc_auc"]
    # Confident learning sees only the real examples: canary rows have no value.
    assert ex["label_quality"][50:].isna().all() and ex["label_quality"][:50].notna().all()
    oos = evidence.out_of_sample_proba(a)[:50]
    np.testing.assert_allclose(
        ex["label_quality"][:50], get_label_quality_scores(a["pool_label"][:50].astype(int), oos)
    )


def test_headline_scores_and_attacks_leave_canary_rows_out():
    from memlab.analysis import metrics as analysis

    a, _, _, _ = _bank(r=8)
    canaries = dict(a, pool_canary=np.r_[np.full(50, -1), np.arange(10)])
    canaries["canary_repetitions"] = np.ones(10, np.int64)
    run = {k: 0 for k in evidence.RUN_COLUMNS} | {"dataset": "d", "model": "m", "regime": "g"}
    run["kind"] = "knn"  # no training facts needed: every replica is used
    gates = evidence.PowerGates(1, 1)
    scores, summary = analysis.memorization_tables([(run, canaries)], gates=gates)
    assert len(scores) == 60  # every row keeps its score...
    real = scores["example"] < 50  # ...the headline is the real examples'
    assert summary.loc[0, "mean_score"] == pytest.approx(scores.loc[real, "score"].mean())
    assert summary.loc[0, "mean_score"] != pytest.approx(scores["score"].mean())
    attacks, _, sliced = analysis.membership_tables([(run, canaries)], gates=gates)

    def first_50(v):  # the real examples' columns (per replica) or rows (per example)
        if np.ndim(v) == 2 and np.shape(v)[1] == 60:
            return v[:, :50]
        return v[:50] if np.ndim(v) >= 1 and len(v) == 60 else v

    head = {k: first_50(v) for k, v in a.items()}
    plain, _, _ = analysis.membership_tables([(run, head)], gates=gates)
    loss = attacks.set_index("attack").loc["loss", "auc"]
    assert loss == plain.set_index("attack").loc["loss", "auc"]
    slices = sliced[(sliced["slice_by"] == "label") & (sliced["attack"] == "loss")]
    assert set(slices["slice"]) == {"canary", "clean", "flipped"}
    assert (
        slices.set_index("slice").loc["canary", "members"] == canaries["train_mask"][:, 50:].sum()
    )
