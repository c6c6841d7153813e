"""A language model's run evaluated (memlab.engine.sequence_runs), with known answers: a model that
never saw a fact recalls it at chance, one that ignores its training data memorizes nothing, and
canaries drawn like the references have exposure log2 e."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from memlab.analysis.exposure import rank_exposure
from memlab.analysis.sequences import counterfactual_memorization
from memlab.data import sequences
from memlab.engine.sequence import StackedGRU
from memlab.engine.sequence_runs import _recall, _secrets, evaluate_sequence_run, per_document
from memlab.engine.train import init_seeds

SPEC = {
    "kind": "text",
    "vocab_size": 120,
    "documents": 300,
    "held_out": 40,
    "facts": 400,
    "entities": 200,
    "values": 8,
    "canary_names": 16,
    "fact_max_repetitions": 2,
    "canaries": {"per_repetition": 200, "repetitions": [0], "references": 4096},
}


@pytest.fixture(scope="module")
def corpus() -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    return sequences.prepare(SPEC, "t", 0.25, log=lambda m: None)


def untrained(corpus: dict[str, np.ndarray], replicas: int) -> StackedGRU:
    """Replicas that trained on nothing: each its own random initialisation."""
    model = StackedGRU(
        replicas, len(corpus["vocabulary"]), 8, 16, replica_seeds=init_seeds(0, range(replicas))
    )
    return model.eval()


def _checkpoint(model: StackedGRU, members: np.ndarray) -> dict:
    """A train_sequence checkpoint of ``model`` (replicas 0..R-1) trained on ``members``."""
    r = members.shape[0]
    return {
        "state": model.state_dict(),
        "settings": {
            "model": {"kind": "gru", "name": "gru", "width": 16, "embedding": 8},
            "settings": {"batch_size": 8, "lr": 0.01, "max_epochs": 1, "weight_decay": 0.0,
                         "dropout": 0.0, "early_stopping": False, "stop_at_fit": True,
                         "ridge": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
            "seed": 0,
            "wildcards": {"regime": "memorize"},
        },
        "arrays": {
            "replica": np.arange(r), "train_mask": members, "val_mask": np.zeros_like(members),
            "fit_epoch": np.full(r, -1), "stop_epoch": np.ones(r, np.int64),
            "stop_reason": np.zeros(r, np.int64), "loss_drop": np.zeros(r, np.float32),
        },
    }  # fmt: skip


def test_a_model_that_trained_on_nothing_recalls_at_chance(corpus):
    recalled = _recall(untrained(corpus, 4), corpus)
    chance = float(corpus["recall_chance"])
    assert chance == 1 / SPEC["values"]
    for form in ("fact", "paraphrase"):
        hits = recalled[f"{form}_correct"]
        assert hits.shape == (4, SPEC["facts"])
        se = math.sqrt(chance * (1 - chance) / hits.size)
        assert abs(hits.mean() - chance) < 3 * se, (form, hits.mean())


def test_recall_picks_among_the_relations_values(corpus):
    cand, rows, pos = corpus["fact_candidates"], corpus["fact_tokens"], corpus["fact_position"]
    assert cand.shape == (SPEC["facts"], SPEC["values"])
    value = rows[np.arange(len(rows)), pos + 1]
    assert (cand == value[:, None]).sum(1).tolist() == [1] * len(rows)


def test_a_model_that_ignores_its_training_data_memorizes_nothing(corpus):
    """Untrained replicas: their accuracy does not depend on which documents their subset
    holds, so counterfactual memorization is 0 within its interval."""
    r = 16
    members = sequences.document_subsets(corpus["group"], corpus["doc_kind"], range(r), seed=1)
    from memlab.engine.sequence import token_outputs

    loss, correct = token_outputs(untrained(corpus, r), corpus["tokens"])
    _, accuracy = per_document(loss, correct, corpus["tokens"])
    scores = counterfactual_memorization(accuracy, members)
    covered = (scores["low"] <= 0) & (scores["high"] >= 0)
    assert covered.mean() >= 0.9
    assert abs(scores["score"].mean()) < 3 * scores["se"].mean() / math.sqrt(len(covered))


def test_canaries_drawn_like_the_references_have_exposure_log2_e(corpus):
    secrets = _secrets(untrained(corpus, 2), corpus)
    exposure = rank_exposure(secrets["canary_loss"], secrets["reference_loss"])
    per_canary = exposure.mean(0)
    se = per_canary.std(ddof=1) / math.sqrt(len(per_canary))
    assert abs(per_canary.mean() - math.log2(math.e)) < 3 * se


def test_an_evaluation_has_every_array_the_analysis_reads(corpus):
    from memlab.engine.sequence_arrays import PER_REPLICA, SHARED

    r = 2
    model = untrained(corpus, r)
    members = sequences.document_subsets(corpus["group"], corpus["doc_kind"], range(r), seed=1)
    checkpoint = _checkpoint(model, members)
    out = evaluate_sequence_run(checkpoint, corpus)
    for name in (*PER_REPLICA, "canary_loss", "reference_loss", "train_mask", "members"):
        assert out[name].shape[0] == r, name
    assert set(SHARED) <= set(out)
    n = len(corpus["tokens"])
    assert out["doc_loss"].shape == (r, n) and np.isfinite(out["doc_loss"]).all()
    # Every predicted pool token is counted once, in or out of the replica's documents.
    total = out["word_tokens_in"].sum(1) + out["word_tokens_out"].sum(1)
    counted = (corpus["word_bucket"][corpus["tokens"][:, 1:]] >= 0).sum()
    assert (total == counted).all()


def test_a_users_file_is_evaluated_without_facts_or_canaries(tmp_path):
    """A user's documents have neither facts nor canaries: their arrays are empty, exposure has
    nothing to rank, and the sequence tables still come out (memorization, perplexity)."""
    from memlab.analysis.exposure import exposure_table
    from memlab.analysis.sequences import SEQUENCE_FRAMES

    lines = [f"w{i % 7} x{i % 5} y{i % 3} z" for i in range(40)]
    (tmp_path / "docs.txt").write_text("\n".join(lines) + "\n")
    spec = {"kind": "text", "path": "docs.txt", "context": 8}
    corpus = sequences.prepare(spec, "mine", 0.25, root=tmp_path, log=lambda m: None)
    r = 4
    members = sequences.document_subsets(corpus["group"], corpus["doc_kind"], range(r), seed=0)
    model = untrained(corpus, r)
    checkpoint = _checkpoint(model, members)
    out = evaluate_sequence_run(checkpoint, corpus)
    assert "canary_loss" not in out
    assert out["fact_correct"].shape == (r, 0) and out["paraphrase_correct"].shape == (r, 0)
    run = {"dataset": "mine", "regime": "memorize"}
    assert exposure_table([(run, out)]).empty
    from memlab.plan.study import RUN_COLUMNS

    run = dict.fromkeys(RUN_COLUMNS, 0) | {"kind": "gru", "model": "gru-w16", "regime": "memorize"}
    tables = {name: frame([(run, out)]) for name, frame in SEQUENCE_FRAMES.items()}
    assert tables["fact_recall"].empty
    assert len(tables["sequence_memorization"]) == len(corpus["tokens"])
    assert set(tables["sequence_perplexity"]["split"]) == {"train", "unseen", "heldout", "typo"}
