"""A synthetic sequence bank: every array an evaluation of a text run writes
(memlab.analysis.sequences), from a model whose behaviour the caller sets, so that the analysis
has known answers (tests/analysis/test_sequences.py) and the figures something to draw
(tests/reporting/test_figure_sequences.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FACT_K = (1, 2, 4, 8, 16)
CANARY_K = (0, 1, 4, 16)
SEVERITIES = (0, 1, 2, 3, 4, 5)
BUCKETS = ((1, 2), (3, 10), (11, 100), (101, -1))  # -1: the last bucket has no upper bound


def synthetic_bank(
    replicas: int = 16,
    *,
    grammar: int = 40,
    facts_per_k: int = 6,
    fact_k: tuple[int, ...] = FACT_K,
    seed: int = 0,
    doc_accuracy: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    fact_p: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    chance: float = 0.1,
) -> dict[str, np.ndarray]:
    """A bank of ``replicas`` replicas over a pool of ``grammar`` grammar documents, facts (
    ``facts_per_k`` per training frequency in ``fact_k``, each repeated k times) and canaries;
    each replica trains on a random half of the groups (a fact's or canary's copies together).

    ``doc_accuracy(members [R, n], rng) -> [R, n]`` sets per-token accuracy (default: 0.3 out,
    0.6 in); ``fact_p(trained [R, F], k [F]) -> [R, F]`` the probability a fact is recalled in
    either form (default: ``chance`` untrained, ``min(1, chance + k / 16)`` trained)."""
    rng = np.random.default_rng(seed)
    fact_reps = np.repeat(np.asarray(fact_k, np.int64), facts_per_k)
    pool_fact = np.concatenate(
        [np.full(grammar, -1), np.repeat(np.arange(len(fact_reps)), fact_reps)]
    )
    canary_reps = np.asarray(CANARY_K, np.int64)
    trained_canaries = np.flatnonzero(canary_reps > 0)
    pool_canary = np.concatenate(
        [np.full(len(pool_fact), -1), np.repeat(trained_canaries, canary_reps[trained_canaries])]
    )
    pool_fact = np.concatenate([pool_fact, np.full(len(pool_canary) - len(pool_fact), -1)])
    n = len(pool_fact)
    kind = np.where(pool_fact >= 0, "fact", np.where(pool_canary >= 0, "canary", "grammar"))
    # Groups: each grammar document alone, a fact's or a canary's copies together.
    group = np.where(
        pool_fact >= 0,
        grammar + pool_fact,
        np.where(pool_canary >= 0, grammar + len(fact_reps) + pool_canary, np.arange(n)),
    )
    _, group = np.unique(group, return_inverse=True)
    n_groups = group.max() + 1
    # A balanced design: each group in exactly half of the replicas.
    picks = np.stack([rng.permutation(replicas) < replicas // 2 for _ in range(n_groups)], 1)
    members = picks[:, group]
    doc_reps = np.bincount(group)[group]
    doc_tokens = rng.integers(5, 40, n)
    if doc_accuracy is None:
        acc = np.where(members, 0.6, 0.3) + rng.normal(0, 0.05, members.shape)
    else:
        acc = doc_accuracy(members, rng)
    acc = np.clip(acc, 0, 1)
    trained_f = np.zeros((replicas, len(fact_reps)), bool)
    for r in range(replicas):
        trained_f[r, np.unique(pool_fact[(pool_fact >= 0) & members[r]])] = True
    if fact_p is None:
        p = np.where(trained_f, np.minimum(1.0, chance + fact_reps / 16), chance)
    else:
        p = fact_p(trained_f, fact_reps)
    m, n_ref = 30, 64
    held_tokens = rng.integers(5, 40, m)
    held_loss = rng.normal(4.0, 0.2, (replicas, m))
    sev = np.asarray(SEVERITIES, np.int64)
    typo_loss = 4.0 + 0.3 * sev[None, :] + rng.normal(0, 0.05, (replicas, len(sev)))
    words = _word_counts(rng, replicas)
    return {
        "replica": np.arange(replicas, dtype=np.int64),
        "members": members,
        "train_mask": members.copy(),
        "doc_loss": (-np.log(np.clip(acc, 0.01, 1)) + 1).astype(np.float32),
        "doc_accuracy": acc.astype(np.float32),
        "heldout_loss": held_loss.astype(np.float32),
        "heldout_accuracy": np.clip(rng.normal(0.3, 0.03, (replicas, m)), 0, 1).astype(np.float32),
        "typo_loss": typo_loss.astype(np.float32),
        "typo_accuracy": np.clip(0.3 - 0.03 * sev[None, :] + 0 * typo_loss, 0, 1).astype(
            np.float32
        ),
        "fact_correct": rng.random(p.shape) < p,
        "paraphrase_correct": rng.random(p.shape) < np.where(trained_f, (p + chance) / 2, p),
        "canary_loss": rng.normal(10, 1, (replicas, len(canary_reps))).astype(np.float32),
        "reference_loss": rng.normal(10, 1, (replicas, n_ref)).astype(np.float32),
        **words,
        "stop_epoch": np.full(replicas, 20, np.int64),
        "stop_reason": np.zeros(replicas, np.int64),  # "fit"
        "fit_epoch": np.full(replicas, 20, np.int64),
        "loss_drop": np.zeros(replicas, np.float32),
        "doc_tokens": doc_tokens.astype(np.int64),
        "doc_kind": kind,
        "doc_text": np.array([f"{k} document {i}" for i, k in enumerate(kind)]),
        "pool_fact": pool_fact.astype(np.int64),
        "pool_canary": pool_canary.astype(np.int64),
        "doc_repetitions": doc_reps.astype(np.int64),
        "fact_repetitions": fact_reps,
        "recall_chance": np.asarray(chance, np.float64),
        "canary_repetitions": canary_reps,
        "typo_severity": sev,
        "word_bucket_low": np.array([b[0] for b in BUCKETS], np.int64),
        "word_bucket_high": np.array([b[1] for b in BUCKETS], np.int64),
        "heldout_tokens": held_tokens.astype(np.int64),
    }


def _word_counts(rng: np.random.Generator, replicas: int) -> dict[str, np.ndarray]:
    """Counts by word-frequency bucket: rare words right more often in trained text."""
    tokens = np.array([40, 200, 800, 3000])
    base = np.array([0.05, 0.15, 0.3, 0.45])
    out = {}
    for split, lift in (("in", 0.3), ("out", 0.0), ("heldout", 0.0)):
        t = rng.poisson(tokens, (replicas, len(tokens))).astype(np.int64)
        p = np.clip(base + lift * np.array([1.0, 0.6, 0.2, 0.05]), 0, 1)
        out[f"word_correct_{split}"] = rng.binomial(t, p).astype(np.int64)
        out[f"word_tokens_{split}"] = t
    return out
