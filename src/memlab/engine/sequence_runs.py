"""A block of a language model's replicas on a text dataset: train it, evaluate it (the bodies of
rules train_sequence and evaluate_sequence, kept here so the scripts stay thin).

The evaluation arrays (one ``evaluation.npz`` per block; the bank concatenates :data:`PER_REPLICA`
(memlab.engine.sequence_arrays) over blocks, memlab.analysis.bank) are what
memlab.analysis.sequences reads:

- per document of the pool: ``doc_loss`` (mean nats per predicted token) and ``doc_accuracy``
  (share of its predicted tokens that are the argmax), and the same on held-out documents and
  on held-out documents with typos (token-weighted over all of them, per severity);
- per fact: whether the value is the model's first choice after its prefix among the names its
  relation's values are drawn from, in the training form and in the held-out paraphrase (greedy
  completion of the one-word value, restricted to the values that can follow: a model that never
  saw the fact is then right with probability exactly 1 / values, the values being uniform);
- per canary and reference: the summed nats of its 5 secret digits given the prefix (Carlini et
  al. 2019's log-perplexity of the secret), what memlab.analysis.exposure ranks;
- next-token accuracy by how often the target word occurs in the pool (WORD_BUCKETS), in
  documents the replica trained on, in pool documents it did not, and in held-out documents.

The arrays' names: memlab.engine.sequence_arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memlab.data.text import PAD
from memlab.engine.sequence_arrays import SHARED

if TYPE_CHECKING:
    import torch

    from memlab.columnar import Columns
    from memlab.engine.resume import Resume
    from memlab.plan.kinds import GRU
    from memlab.plan.study import Regime

SECRET_DIGITS = 5
# A block's training facts, passed from its checkpoint into its evaluation (the bank's).
_TRAINING_FACTS = ("fit_epoch", "stop_epoch", "stop_reason", "loss_drop")


def build(variant: GRU, vocab: int, regime: Regime, seed: int, replicas: Sequence[int]) -> Any:
    """The stacked language model of the replicas numbered ``replicas``."""
    from memlab.engine.sequence import StackedGRU
    from memlab.engine.train import init_seeds

    return StackedGRU(
        len(replicas),
        vocab,
        variant.embedding,
        variant.width,
        dropout=regime.dropout,
        replica_seeds=init_seeds(seed, replicas),
    )


def train_sequence_run(
    corpus: Mapping[str, np.ndarray],
    members: np.ndarray,
    variant: GRU,
    regime: Regime,
    *,
    seed: int,
    replicas: Sequence[int],
    resume: Resume | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray], Columns]:
    """Train every replica on its documents: (state dict, per-replica arrays, history)."""
    from memlab.engine.sequence import train_sequences
    from memlab.engine.train import carve_validation

    numbers = np.asarray(replicas, np.int64)
    if regime.early_stopping:
        assert regime.val_fraction is not None  # set wherever a regime stops early
        train_mask, val_mask = carve_validation(members, regime.val_fraction, seed, list(replicas))
    else:
        train_mask, val_mask = members, np.zeros_like(members)
    vocab = len(corpus["vocabulary"])
    model = build(variant, vocab, regime, seed, list(replicas))
    log(
        f"{variant.id}: {variant.parameter_count(vocab, vocab, None)} parameters per replica, "
        f"replicas {numbers[0]}-{numbers[-1]}, {int(train_mask[0].sum())} training documents "
        f"each; settings {regime}"
    )
    res = train_sequences(
        model, corpus["tokens"], train_mask, val_mask if regime.early_stopping else None,
        corpus["heldout"], regime, seed=seed, replicas=list(replicas), resume=resume, log=log,
    )  # fmt: skip
    arrays = {
        "replica": numbers,
        "train_mask": train_mask,
        "val_mask": val_mask,
        "fit_epoch": np.asarray(res.fit_epoch, np.int64),
        "stop_epoch": np.asarray(res.stop_epoch, np.int64),
        "stop_reason": np.asarray(res.stop_reason, np.int64),
        "loss_drop": np.asarray(res.loss_drop, np.float32),
    }
    log(f"trained in {res.seconds:.1f}s; stop epochs {arrays['stop_epoch'].tolist()}")
    state = {name: t.detach().cpu() for name, t in res.model.state_dict().items()}
    return state, arrays, res.history


def load_model(checkpoint: Mapping[str, Any], vocab: int) -> Any:
    """The stacked language model of a checkpoint (eval mode); a mismatch is a clear error."""
    from memlab.engine.runs import checkpoint_regime, restore
    from memlab.plan.kinds import variant_from_spec

    settings = checkpoint["settings"]
    variant = variant_from_spec(settings["model"])
    regime = checkpoint_regime(checkpoint)
    replicas = np.asarray(checkpoint["arrays"]["replica"]).tolist()
    model = build(variant, vocab, regime, int(settings["seed"]), replicas)  # type: ignore[arg-type]
    return restore(model, checkpoint)


def per_document(
    loss: np.ndarray, correct: np.ndarray, tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss and accuracy per (replica, document) over its predicted (non-PAD) tokens."""
    count = np.maximum((tokens[:, 1:] != PAD).sum(1), 1)
    return (loss.sum(2) / count).astype(np.float32), (correct.sum(2) / count).astype(np.float32)


def token_weighted(
    loss: np.ndarray, correct: np.ndarray, tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss and accuracy per replica over every predicted token of ``tokens``."""
    count = max(int((tokens[:, 1:] != PAD).sum()), 1)
    return (loss.sum((1, 2)) / count).astype(np.float32), (correct.sum((1, 2)) / count).astype(
        np.float32
    )


def word_counts(
    correct: np.ndarray, bucket: np.ndarray, rows: np.ndarray, n_buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """int64 [R, B] correct and all target tokens by word bucket, over the documents
    ``rows[r]`` (bool [R, n]) of each replica; targets of bucket -1 (padding, unseen) are not
    counted."""
    r = correct.shape[0]
    right = np.zeros((r, n_buckets), np.int64)
    total = np.zeros((r, n_buckets), np.int64)
    for i in range(r):
        b = bucket[rows[i]]
        c = correct[i][rows[i]]
        keep = b >= 0
        right[i] = np.bincount(b[keep], weights=c[keep], minlength=n_buckets).astype(np.int64)
        total[i] = np.bincount(b[keep], minlength=n_buckets)
    return right, total


def evaluate_sequence_run(
    checkpoint: Mapping[str, Any], corpus: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The evaluation arrays of one block (module doc)."""
    from memlab.engine.sequence import token_outputs

    model = load_model(checkpoint, len(corpus["vocabulary"]))
    a = checkpoint["arrays"]
    members = a["train_mask"] | a["val_mask"]
    tokens = corpus["tokens"]
    loss, correct = token_outputs(model, tokens)
    out = {name: corpus[name] for name in SHARED}
    out |= {k: a[k] for k in ("replica", "train_mask", "val_mask", *_TRAINING_FACTS)}
    out["members"] = members
    out["doc_tokens"] = (tokens[:, 1:] != PAD).sum(1).astype(np.int64)
    out["doc_loss"], out["doc_accuracy"] = per_document(loss, correct, tokens)
    n_buckets = len(corpus["word_bucket_low"])
    bucket = corpus["word_bucket"][tokens[:, 1:]]
    r = members.shape[0]
    for split, rows in (("in", a["train_mask"]), ("out", ~members)):
        right, total = word_counts(correct, bucket, rows, n_buckets)
        out[f"word_correct_{split}"], out[f"word_tokens_{split}"] = right, total
    held = corpus["heldout"]
    h_loss, h_correct = token_outputs(model, held)
    out["heldout_loss"], out["heldout_accuracy"] = per_document(h_loss, h_correct, held)
    out["heldout_tokens"] = (held[:, 1:] != PAD).sum(1).astype(np.int64)
    everyone = np.ones((r, len(held)), bool)
    right, total = word_counts(h_correct, corpus["word_bucket"][held[:, 1:]], everyone, n_buckets)
    out["word_correct_heldout"], out["word_tokens_heldout"] = right, total
    typo = [token_weighted(*token_outputs(model, t), t) for t in corpus["typo_tokens"]]
    out["typo_loss"] = np.stack([t[0] for t in typo], 1)
    out["typo_accuracy"] = np.stack([t[1] for t in typo], 1)
    out |= _recall(model, corpus)
    if len(corpus["canary_tokens"]):  # a user's file has no canaries: no exposure rows
        out |= _secrets(model, corpus)
    return out


def _recall(model: Any, corpus: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Whether each replica's first choice after a fact's prefix, among the names its relation's
    values are drawn from, is the fact's value, in both forms (module doc)."""
    out = {}
    for form in ("fact", "paraphrase"):
        rows, position = corpus[f"{form}_tokens"], corpus[f"{form}_position"]
        if not len(rows):  # a user's file has no facts
            out[f"{form}_correct"] = np.zeros((model.n_replicas, 0), bool)
            continue
        scores = candidate_log_probs(model, rows, position, corpus["fact_candidates"])
        value = rows[np.arange(len(rows)), position + 1]  # the target at that position
        truth = (corpus["fact_candidates"] == value[:, None]).argmax(1)
        out[f"{form}_correct"] = scores.argmax(2) == truth[None, :]
    return out


def candidate_log_probs(
    model: Any, rows: np.ndarray, position: np.ndarray, candidates: np.ndarray, chunk: int = 256
) -> np.ndarray:
    """float32 [R, n, c]: each replica's log-probability of each of row i's ``candidates[i]`` as
    the target at ``position[i]`` (the prediction after reading ``rows[i, :position[i] + 1]``)."""
    import torch

    r, (n, c) = model.n_replicas, candidates.shape
    out = np.zeros((r, n, c), np.float32)
    model.eval()
    with torch.no_grad():
        for s in range(0, n, chunk):
            part = torch.as_tensor(rows[s : s + chunk, :-1]).expand(r, -1, -1)
            logp = model(part).log_softmax(-1)  # [R, b, T-1, V]
            at = torch.as_tensor(position[s : s + chunk])
            picked = logp[:, torch.arange(len(at)), at]  # [R, b, V]
            which = torch.as_tensor(candidates[s : s + chunk]).expand(r, -1, -1)
            out[:, s : s + chunk] = picked.gather(2, which).numpy()
    return out


def _secrets(model: Any, corpus: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Summed nats of each canary's and reference's secret digits (exposure's input)."""
    from memlab.engine.sequence import token_outputs

    start = int(corpus["secret_start"])
    digits = slice(start, start + SECRET_DIGITS)
    out = {}
    for name, rows in (("canary", "canary_tokens"), ("reference", "reference_tokens")):
        loss, _ = token_outputs(model, corpus[rows])
        out[f"{name}_loss"] = loss[:, :, digits].sum(2).astype(np.float32)
    return out
