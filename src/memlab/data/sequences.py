"""A text dataset as the arrays its sequence runs train and are evaluated on (rule prepare_text),
and the subsets of documents each replica trains on (rule subsample_text).

The corpus (:mod:`memlab.data.text`) is generated from the dataset's keys, or read from a user's
file (one document per line). Every document becomes one row of ``context`` tokens: the
start-of-document token ``BOS``, its words, padding. A document longer than ``context - 1`` words
is cut to its first ``context - 1`` (the prepare log counts them; raise ``context`` to keep more).
The model reads a row without its last token and predicts it without its first, so every word
of a document is a prediction, its first included.

Rows of one fact or one canary (its k copies) form a *group*; a subset holds a group whole.
Subsets come in complementary pairs (replicas 2j and 2j + 1, from the pair's own stream):
within every stratum of groups of the same kind and size, half the groups go to each side of the
pair, and single documents fill each side to exactly half the pool. So every document is in
exactly half of the replicas and every replica trains on the same number of documents, what
counterfactual memorization (Zhang et al. 2023) and the membership attacks need. A pool with an
odd number of documents drops its last grammar document (logged) so the halves are equal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memlab.data import text
from memlab.data.canaries import CanarySpec
from memlab.data.dataset_kinds import Text, from_spec
from memlab.io import MemlabInputError
from memlab.seeds import derive_seed

# A word's count in the training pool, bucketed (inclusive bounds; -1: no upper bound):
# rare-word accuracy.
WORD_BUCKETS: tuple[tuple[int, int], ...] = ((1, 2), (3, 10), (11, 100), (101, -1))
# Document kinds that are single documents, which fill each half of a pair's subsets.
FILLERS = ("grammar", "document")
NO_FACTS = np.zeros((0,), np.int64)


@dataclass(frozen=True)
class Documents:
    """The documents of a text dataset before tokens: the pool and what is evaluated apart."""

    pool: list[str]
    kind: np.ndarray  # <U8 [n]: grammar, fact, canary; "document" for a user's file
    fact: np.ndarray  # int64 [n], -1 if none
    canary: np.ndarray  # int64 [n], -1 if none
    held_out: list[str]
    facts: list[str]  # [F] training form of each fact
    paraphrases: list[str]  # [F]
    fact_values: list[str]  # [F]
    fact_candidates: list[tuple[str, ...]]  # [F] the names its relation's values are drawn from
    fact_repetitions: np.ndarray  # int64 [F]
    values_per_relation: int  # 0 without facts
    canaries: list[str]  # [C] controls included
    canary_repetitions: np.ndarray  # int64 [C]
    references: list[str]
    tokenizer: text.Tokenizer


def prepare(
    spec: Mapping[str, Any],
    name: str,
    test_fraction: float,
    root: str | Path = ".",
    log: Callable[[str], None] = print,
) -> dict[str, np.ndarray]:
    """Rule prepare_text's arrays for text dataset ``spec`` (typos from its own ``seed``)."""
    options = _kind(spec, name).options
    docs = documents(spec, name, test_fraction, root)
    return corpus_arrays(docs, options["context"], options["seed"], log)


def _kind(spec: Mapping[str, Any], name: str) -> Text:
    kind = from_spec(spec, name)
    if not isinstance(kind, Text):
        raise MemlabInputError(f"dataset '{name}' is of kind {spec.get('kind')!r}, not text.")
    return kind


def documents(
    spec: Mapping[str, Any], name: str, test_fraction: float, root: str | Path = "."
) -> Documents:
    """The documents of text dataset ``spec`` (its canaries: the schema's defaults unless its
    ``canaries`` entry says otherwise; a user's file has none)."""
    kind = _kind(spec, name)
    path = kind.file(root)
    if path is not None:
        return from_file(path, test_fraction, kind.options["seed"])
    canaries = CanarySpec.from_config(spec.get("canaries", {}), name)
    assert canaries is not None
    return generated(kind.options, canaries)


def generated(settings: Mapping[str, Any], canaries: CanarySpec) -> Documents:
    """The documents of a generated corpus (``settings``: the TextSpec keys and ``seed``)."""
    keys = {k: v for k, v in settings.items() if k in text.TextSpec.__dataclass_fields__}
    keys.pop("canaries", None)
    keys["sentences"] = tuple(keys["sentences"])
    spec = text.TextSpec(**keys, canaries=canaries)
    corpus = text.generate_corpus(spec, int(settings["seed"]))
    facts = corpus.facts
    return Documents(
        pool=list(corpus.documents),
        kind=corpus.kind,
        fact=corpus.fact,
        canary=corpus.canary,
        held_out=list(corpus.held_out),
        facts=[facts.sentence(i) for i in range(spec.facts)],
        paraphrases=list(corpus.paraphrases),
        fact_values=list(facts.value),
        fact_candidates=[corpus.value_names[list(text.RELATIONS).index(r)] for r in facts.relation],
        fact_repetitions=np.asarray(facts.repetitions, np.int64),
        values_per_relation=spec.values,
        canaries=list(corpus.canaries),
        canary_repetitions=np.asarray(corpus.canary_repetitions, np.int64),
        references=list(corpus.references),
        tokenizer=corpus.tokenizer,
    )


def from_file(path: Path, test_fraction: float, seed: int) -> Documents:
    """A user's documents (one per line), shuffled from ``seed``; ``test_fraction`` held out.
    Words are those of the pool (a held-out word never seen in it is ``<unk>``)."""
    docs = text.read_documents(path)
    order = np.random.default_rng(derive_seed(seed, "text_split")).permutation(len(docs))
    n_test = round(test_fraction * len(docs))
    if n_test < 1 or len(docs) - n_test < 2:
        raise MemlabInputError(
            f"{path}: {len(docs)} documents leave {len(docs) - n_test} to train on and {n_test} "
            f"held out at test_fraction {test_fraction}; a text file needs at least 2 training "
            "and 1 held-out document (add lines or change test_fraction)."
        )
    pool = [docs[i] for i in order[n_test:]]
    none = np.full(len(pool), -1, np.int64)
    return Documents(
        pool=pool,
        kind=np.full(len(pool), "document"),
        fact=none,
        canary=none,
        held_out=[docs[i] for i in order[:n_test]],
        facts=[],
        paraphrases=[],
        fact_values=[],
        fact_candidates=[],
        fact_repetitions=NO_FACTS,
        values_per_relation=0,
        canaries=[],
        canary_repetitions=NO_FACTS,
        references=[],
        tokenizer=text.Tokenizer.from_documents(pool),
    )


def pool_size(docs: Documents) -> int:
    """Documents in the pool once :func:`even_pool` made their count even."""
    return len(docs.pool) - len(docs.pool) % 2


def even_pool(docs: Documents, log: Callable[[str], None]) -> Documents:
    """``docs`` with an even pool: the last single document dropped if the count is odd."""
    if len(docs.pool) % 2 == 0:
        return docs
    single = np.flatnonzero(np.isin(docs.kind, FILLERS))
    if not len(single):
        raise MemlabInputError(
            "text dataset: the pool has an odd number of documents and none outside a fact or "
            "canary group to drop; add a grammar document (documents: +1)."
        )
    keep = np.ones(len(docs.pool), bool)
    keep[single[-1]] = False
    log(f"dropped pool document {single[-1]} so that each replica trains on exactly half")
    return Documents(
        **{
            **docs.__dict__,
            "pool": [d for d, k in zip(docs.pool, keep, strict=True) if k],
            "kind": docs.kind[keep],
            "fact": docs.fact[keep],
            "canary": docs.canary[keep],
        }
    )


def rows(tokenizer: text.Tokenizer, documents: Sequence[str], context: int) -> np.ndarray:
    """int64 [n, context]: BOS, each document's first ``context - 1`` word ids, padding."""
    out = np.zeros((len(documents), context), np.int64)
    out[:, 0] = text.BOS
    for i, doc in enumerate(documents):
        ids = tokenizer.ids(doc)[: context - 1]
        out[i, 1 : 1 + len(ids)] = ids
    return out


def truncated(documents: Sequence[str], context: int) -> int:
    """How many of ``documents`` have more words than a row of ``context`` tokens holds."""
    return sum(len(d.split()) > context - 1 for d in documents)


def word_position(documents: Sequence[str], words: Sequence[str]) -> np.ndarray:
    """int64 [F]: the target index (word index) of ``words[i]`` in ``documents[i]``."""
    return np.array([d.split().index(w) for d, w in zip(documents, words, strict=True)], np.int64)


def word_buckets(pool_tokens: np.ndarray, vocab: int) -> np.ndarray:
    """int64 [vocab]: each word id's WORD_BUCKETS index by its count in the pool (-1: none)."""
    counts = np.bincount(pool_tokens[:, 1:].ravel(), minlength=vocab)
    counts[: len(text.SPECIAL_TOKENS)] = 0
    bucket = np.full(vocab, -1, np.int64)
    for b, (lo, hi) in enumerate(WORD_BUCKETS):
        bucket[(counts >= lo) & ((counts <= hi) | (hi < 0))] = b
    return bucket


def corpus_arrays(
    docs: Documents, context: int, seed: int, log: Callable[[str], None] = print
) -> dict[str, np.ndarray]:
    """Everything the sequence runs of one text dataset read (module doc)."""
    docs = even_pool(docs, log)
    tok = docs.tokenizer
    cut = truncated(docs.pool, context) + truncated(docs.held_out, context)
    if cut:
        log(f"{cut} documents are longer than {context - 1} words: cut to their first words")
    pool = rows(tok, docs.pool, context)
    group = _groups(docs)
    repetitions = Counter(docs.pool)
    severities = range(len(text.TYPO_RATES) + 1)
    out = {
        "tokens": pool,
        "doc_text": np.array(docs.pool),
        "doc_kind": np.asarray(docs.kind),
        "pool_fact": np.asarray(docs.fact, np.int64),
        "pool_canary": np.asarray(docs.canary, np.int64),
        "doc_repetitions": np.array([repetitions[d] for d in docs.pool], np.int64),
        "group": group,
        "heldout": rows(tok, docs.held_out, context),
        "typo_severity": np.arange(len(severities), dtype=np.int64),
        "typo_tokens": np.stack(
            [rows(tok, text.add_typos(docs.held_out, s, seed), context) for s in severities]
        ),
        "fact_tokens": rows(tok, docs.facts, context),
        "fact_position": word_position(docs.facts, docs.fact_values),
        "paraphrase_tokens": rows(tok, docs.paraphrases, context),
        "paraphrase_position": word_position(docs.paraphrases, docs.fact_values),
        "fact_repetitions": docs.fact_repetitions,
        "fact_candidates": np.array(
            [tok.ids(" ".join(c)) for c in docs.fact_candidates], np.int64
        ).reshape(len(docs.facts), docs.values_per_relation),
        "recall_chance": np.array(
            1.0 / docs.values_per_relation if docs.values_per_relation else np.nan
        ),
        "canary_tokens": rows(tok, docs.canaries, context),
        "canary_repetitions": docs.canary_repetitions,
        "reference_tokens": rows(tok, docs.references, context),
        "secret_start": np.array(len(text.CANARY_TEMPLATE.split()) - 1, np.int64),
        "word_bucket": word_buckets(pool, len(tok)),
        "word_bucket_low": np.array([lo for lo, _ in WORD_BUCKETS], np.int64),
        "word_bucket_high": np.array([hi for _, hi in WORD_BUCKETS], np.int64),
        "vocabulary": np.array(tok.words),
    }
    if out["fact_tokens"].shape[0] and (out["fact_position"] >= context - 1).any():
        raise MemlabInputError(f"text dataset: context {context} cuts facts; use context >= 12.")
    return out


def _groups(docs: Documents) -> np.ndarray:
    """int64 [n]: the subset unit of each document (a fact's or canary's copies share one)."""
    n = len(docs.pool)
    group = np.arange(n, dtype=np.int64)
    for ids, offset in ((docs.fact, n), (docs.canary, 2 * n)):
        grouped = ids >= 0
        group[grouped] = offset + ids[grouped]
    return np.unique(group, return_inverse=True)[1].astype(np.int64)


def document_subsets(
    group: np.ndarray, kind: np.ndarray, replicas: Sequence[int], seed: int
) -> np.ndarray:
    """bool [len(replicas), n]: each replica's documents (module doc: complementary pairs)."""
    out = np.stack([_pair_side(group, kind, r // 2, seed) ^ bool(r % 2) for r in replicas])
    return out


def _pair_side(group: np.ndarray, kind: np.ndarray, pair: int, seed: int) -> np.ndarray:
    """bool [n]: the documents of the first replica of complementary pair ``pair``."""
    rng = np.random.default_rng(derive_seed(seed, "text_subsets", pair))
    n = len(group)
    sizes = np.bincount(group)
    first_kind = kind[np.unique(group, return_index=True)[1]]
    side = np.zeros(len(sizes), bool)
    # Facts and canaries are balanced per stratum (even those seen once); single grammar (or a
    # user's) documents fill each side up to half the pool.
    multi = (sizes > 1) | ~np.isin(first_kind, FILLERS)
    strata = sorted(
        {(str(k), int(s)) for k, s in zip(first_kind[multi], sizes[multi], strict=True)}
    )
    for k, s in strata:
        ids = np.flatnonzero(multi & (first_kind == k) & (sizes == s))
        pick = rng.permutation(ids)
        side[pick[: len(ids) // 2 + int(len(ids) % 2 and rng.random() < 0.5)]] = True
    grouped_in = int(sizes[side].sum())
    singles = rng.permutation(np.flatnonzero(~multi))
    need = n // 2 - grouped_in
    if need < 0 or need > len(singles):
        raise MemlabInputError(
            "text dataset: the fact and canary groups cannot be split into equal halves with the "
            f"{len(singles)} grammar documents there are; add grammar documents (documents)."
        )
    side[singles[:need]] = True
    return side[group]
