"""Sequences: what a small word-level language model memorizes of its training text.

A synthetic corpus (:mod:`memlab.data.text`) holds grammar documents over a Zipf vocabulary,
facts repeated ``k`` times, canaries (whose exposure is :mod:`memlab.analysis.exposure`'s) and
held-out documents; each of a run's ``R`` replicas trains on a random half of the documents (a
fact's or canary's copies all in or all out). Four tables come from the runs' banks:

- ``sequence_memorization.parquet``: counterfactual memorization per pool document (Zhang,
  Ippolito, Lee, Jagielski, Tramèr & Carlini, NeurIPS 2023, *Counterfactual memorization in
  neural language models*): ``mem(x)`` = the mean per-token accuracy on ``x`` of the models
  trained on ``x`` minus that of the models that never saw it. It is Feldman and Zhang's score
  (:mod:`memlab.analysis.memorization`) for a graded measure, so its interval is Welch's, not a
  difference of binomial proportions.
- ``fact_recall.csv``: the share of facts whose value is the model's top prediction after the
  fact's prefix, by training frequency ``k``, in the trained wording and in a held-out paraphrase,
  for the models that trained on the fact and those that never saw it (the models' recall
  without it: chance, or what the grammar gives away). Recall rising with ``k`` in trained
  models only is the frequency dependence of fact memorization (Kandpal et al., ICML 2023,
  *Large language models struggle to learn long-tail knowledge*); the paraphrase tells stored
  knowledge from a memorized string.
- ``sequence_perplexity.csv``: loss and accuracy per token on the documents a replica trained on,
  pool documents it never saw, held-out documents, and held-out documents with typos by severity:
  the language model's generalization gap and its robustness, as the classifiers' ``gap`` and
  ``robustness`` tables have them.
- ``rare_words.csv``: next-word accuracy by how often the target word occurs in the pool, on
  trained, untrained and held-out text: memorization pays on the long tail (Feldman, STOC 2020,
  *Does learning require memorization?*) where rare words are predicted better in the trained
  documents than anywhere else.

Replicas: every table uses the replicas the memorization scores use
(:func:`memlab.analysis.memorization.used_replicas`: not under-trained), and says how many
(``replicas``). "Trained on" is a replica's training mask (its subset less any validation
documents early stopping carved out); "never seen" is outside its subset, so a document held for
validation counts on neither side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from memlab.analysis.memorization import used_replicas
from memlab.data.long_tail import frequency_bucket
from memlab.io import MemlabInputError
from memlab.plan.study import RUN_COLUMNS, with_run

Evaluations = Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]]

# ``doc_kind``, not ``kind``: ``kind`` is a run column (the model's kind).
SEQUENCE_MEMORIZATION_COLUMNS = [
    *RUN_COLUMNS,
    "document",
    "doc_kind",
    "fact",
    "canary",
    "repetitions",
    "tokens",
    "text",
    "score",
    "se",
    "low",
    "high",
    "p_in",
    "p_out",
    "n_in",
    "n_out",
    "replicas",
]
FACT_RECALL_COLUMNS = [
    *RUN_COLUMNS,
    "form",
    "seen",
    "train_frequency",
    "recall",
    "recall_se",
    "n_facts",
    "pairs",
    "replicas",
    "chance",
]
SEQUENCE_PERPLEXITY_COLUMNS = [
    *RUN_COLUMNS,
    "split",
    "severity",
    "loss",
    "loss_se",
    "perplexity",
    "accuracy",
    "accuracy_se",
    "replicas",
    "tokens",
]
RARE_WORDS_COLUMNS = [
    *RUN_COLUMNS,
    "bucket",
    "low",
    "high",
    "split",
    "accuracy",
    "accuracy_se",
    "tokens",
    "replicas",
]
FACT_FORMS = {"trained": "fact_correct", "paraphrase": "paraphrase_correct"}
FACT_SEEN = ("trained", "not_trained")
PERPLEXITY_SPLITS = ("train", "unseen", "heldout", "typo")
WORD_SPLITS = {"trained": "in", "untrained": "out", "heldout": "heldout"}
# The interval of a counterfactual memorization score (Welch's t, Welch-Satterthwaite df).
INTERVAL = "95% Welch t interval"


def _own(columns: list[str]) -> list[str]:
    return columns[len(RUN_COLUMNS) :]


def counterfactual_memorization(
    accuracy: np.ndarray,
    members: np.ndarray,
    usable: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Counterfactual memorization of each document (Zhang et al. 2023, module doc):
    ``score = p_in - p_out``, the mean of ``accuracy`` [R, n] (per-token accuracy, a graded
    measure) over the replicas whose ``members`` [R, n] hold the document, minus its mean over
    the replicas in ``out`` [R, n] (default: not in ``members``; the table passes "never in the
    subset", so a validation document counts on neither side). ``usable`` [R] keeps replicas.

    ``se = sqrt(var_in / n_in + var_out / n_out)`` (sample variances, ddof 1; NaN where a side
    has under 2 replicas) and ``low``/``high`` = ``score ± t(0.975, df) se`` with Welch-
    Satterthwaite's ``df`` (the two sides' variances differ: a memorized document's in-accuracy
    sits near 1 with little spread); where both variances are 0 the interval is the score.
    A document never in or never out of a usable replica's subset has no score: MemlabInputError.
    """
    acc = np.asarray(accuracy, np.float64)
    inside = np.asarray(members, bool)
    outside = ~inside if out is None else np.asarray(out, bool) & ~inside
    if usable is not None:
        keep = np.asarray(usable, bool)
        acc, inside, outside = acc[keep], inside[keep], outside[keep]
    n_in, n_out = inside.sum(0), outside.sum(0)
    bad = np.flatnonzero((n_in == 0) | (n_out == 0))
    if bad.size:
        raise MemlabInputError(
            f"counterfactual memorization: {bad.size} document(s) (first: {bad[:5].tolist()}) "
            f"are never in, or never out of, the training subset of the {acc.shape[0]} usable "
            "replicas, so mean accuracy in - mean accuracy out is undefined. Train more replicas "
            "(each on a random half of the documents)."
        )
    p_in, var_in = _side(acc, inside, n_in)
    p_out, var_out = _side(acc, outside, n_out)
    a, b = var_in / n_in, var_out / n_out
    se = np.sqrt(a + b)
    with np.errstate(invalid="ignore", divide="ignore"):
        df = (a + b) ** 2 / (a**2 / (n_in - 1) + b**2 / (n_out - 1))
        half = np.where(se == 0, 0.0, stats.t.ppf(0.975, df) * se)
    score = p_in - p_out
    return {
        "score": score,
        "se": se,
        "low": score - half,
        "high": score + half,
        "p_in": p_in,
        "p_out": p_out,
        "n_in": n_in.astype(np.int64),
        "n_out": n_out.astype(np.int64),
    }


def _side(acc: np.ndarray, mask: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the mean of ``acc`` over the rows of ``mask`` and its sample variance (NaN
    for under 2 rows)."""
    mean = np.where(mask, acc, 0.0).sum(0) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(mask, (acc - mean) ** 2, 0.0).sum(0) / (n - 1)
    return mean, np.where(n >= 2, var, np.nan)


def run_sequence_memorization(
    bank: Mapping[str, np.ndarray], usable: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per pool document of a run's bank: what it is, its counterfactual memorization
    (:func:`counterfactual_memorization` of ``doc_accuracy``, in = trained on, out = never in
    the subset) and the usable replicas it rests on; no rows where the usable replicas do not
    hold every document both in and out (under-trained replicas left out: no scores)."""
    try:
        scores = counterfactual_memorization(
            bank["doc_accuracy"], bank["train_mask"], usable, out=~np.asarray(bank["members"], bool)
        )
    except MemlabInputError:
        return pd.DataFrame(columns=_own(SEQUENCE_MEMORIZATION_COLUMNS))
    frame = pd.DataFrame(
        {
            "document": np.arange(len(bank["doc_tokens"]), dtype=np.int64),
            "doc_kind": np.asarray(bank["doc_kind"]).astype(str),
            "fact": np.asarray(bank["pool_fact"], np.int64),
            "canary": np.asarray(bank["pool_canary"], np.int64),
            "repetitions": np.asarray(bank["doc_repetitions"], np.int64),
            "tokens": np.asarray(bank["doc_tokens"], np.int64),
            "text": np.asarray(bank["doc_text"]).astype(str),
            **scores,
        }
    )
    frame["replicas"] = _count(usable, len(bank["replica"]))
    return frame[_own(SEQUENCE_MEMORIZATION_COLUMNS)]


def _count(usable: np.ndarray | None, replicas: int) -> int:
    return replicas if usable is None else int(np.asarray(usable, bool).sum())


def groups_in(pool_group: np.ndarray, n_groups: int, mask: np.ndarray) -> np.ndarray:
    """bool [R, n_groups]: whether each replica's ``mask`` [R, n] holds a pool row of each group
    (``pool_group`` [n]: the row's fact or canary id, -1 for none): a fact's copies are one group,
    trained on where any copy is (as :func:`memlab.analysis.exposure.canary_trained`)."""
    pool_group = np.asarray(pool_group)
    mask = np.asarray(mask, bool)
    rows = pool_group >= 0
    out = np.zeros((mask.shape[0], n_groups), bool)
    for r in range(mask.shape[0]):
        out[r, np.unique(pool_group[rows][mask[r, rows]])] = True
    return out


def run_fact_recall(
    bank: Mapping[str, np.ndarray], usable: np.ndarray | None = None
) -> pd.DataFrame:
    """Fact recall rows of a run's bank (module doc), one per form, seen-group and training
    frequency bucket (``train_frequency``: the power-of-two bucket of a fact's copies k, as the
    long-tail table buckets, 1, 2-3 -> 2, 4-7 -> 4, ...): ``recall`` is the mean over facts of each
    fact's recall over the replicas in the group (a fact is the unit: its replicas are not
    independent draws), ``recall_se`` the standard error over facts (NaN for one fact, ``recall``
    NaN for none); ``pairs`` the (replica, fact) pairs counted."""
    reps = frequency_bucket(np.asarray(bank["fact_repetitions"], np.int64))
    keep = np.ones(len(bank["replica"]), bool) if usable is None else np.asarray(usable, bool)
    trained = groups_in(bank["pool_fact"], len(reps), bank["train_mask"])[keep]
    never = ~groups_in(bank["pool_fact"], len(reps), bank["members"])[keep]
    rows = []
    for form, key in FACT_FORMS.items():
        correct = np.asarray(bank[key], bool)[keep]
        for seen, group in zip(FACT_SEEN, (trained, never), strict=True):
            for k in np.unique(reps):
                rows.append(
                    {"form": form, "seen": seen, "train_frequency": int(k)}
                    | _recall(correct[:, reps == k], group[:, reps == k])
                )
    own = ["form", "seen", "train_frequency", "recall", "recall_se", "n_facts", "pairs"]
    frame = pd.DataFrame(rows, columns=own)
    frame["replicas"] = int(keep.sum())
    frame["chance"] = float(np.asarray(bank["recall_chance"]))
    return frame.reindex(columns=_own(FACT_RECALL_COLUMNS))


def _recall(correct: np.ndarray, group: np.ndarray) -> dict[str, Any]:
    seen = group.any(0)
    per_fact = (correct & group).sum(0)[seen] / group.sum(0)[seen]
    n = int(seen.sum())
    return {
        "recall": float(per_fact.mean()) if n else math.nan,
        "recall_se": float(per_fact.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        "n_facts": n,
        "pairs": int(group.sum()),
    }


def _over_replicas(per_replica: np.ndarray) -> tuple[float, float]:
    """Mean and standard error (ddof 1) over replicas of a per-replica measure (its finite
    values; NaN standard error under 2)."""
    x = per_replica[np.isfinite(per_replica)]
    if not x.size:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan


def _token_mean(values: np.ndarray, mask: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Per replica, the token-weighted mean of ``values`` [R, n] over the documents of ``mask``
    [R, n] (a per-document mean per token, weighted back to the mean per token); NaN where the
    mask holds no token."""
    w = np.where(mask, np.asarray(tokens, np.float64)[None, :], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.asarray(values, np.float64) * w).sum(1) / w.sum(1)


def run_sequence_perplexity(
    bank: Mapping[str, np.ndarray], usable: np.ndarray | None = None
) -> pd.DataFrame:
    """Loss, perplexity and accuracy per token by split (module doc): per replica a token-weighted
    mean (train: the documents it trained on; unseen: pool documents outside its subset; heldout:
    the held-out documents; typo: the bank's per-severity means, already token-weighted), then the
    mean and standard error over replicas. ``perplexity = exp(loss)`` of the mean loss.
    ``tokens``: the tokens summed over replicas (typo rows: the held-out documents' unless the
    bank has ``typo_tokens``, as a typo changes a word, not the count)."""
    keep = np.ones(len(bank["replica"]), bool) if usable is None else np.asarray(usable, bool)
    doc_tokens = np.asarray(bank["doc_tokens"], np.int64)
    held_tokens = np.asarray(bank["heldout_tokens"], np.int64)
    members = np.asarray(bank["members"], bool)[keep]
    pool = {"train": np.asarray(bank["train_mask"], bool)[keep], "unseen": ~members}
    rows = []
    for split, mask in pool.items():
        loss = _token_mean(np.asarray(bank["doc_loss"])[keep], mask, doc_tokens)
        acc = _token_mean(np.asarray(bank["doc_accuracy"])[keep], mask, doc_tokens)
        rows.append(_split_row(split, 0, loss, acc, int((mask * doc_tokens).sum())))
    everywhere = np.ones((int(keep.sum()), len(held_tokens)), bool)
    loss = _token_mean(np.asarray(bank["heldout_loss"])[keep], everywhere, held_tokens)
    acc = _token_mean(np.asarray(bank["heldout_accuracy"])[keep], everywhere, held_tokens)
    rows.append(_split_row("heldout", 0, loss, acc, int(held_tokens.sum() * keep.sum())))
    typo_tokens = np.asarray(
        bank.get("typo_tokens", np.full(len(bank["typo_severity"]), held_tokens.sum()))
    )
    for s, severity in enumerate(np.asarray(bank["typo_severity"], np.int64)):
        loss = np.asarray(bank["typo_loss"], np.float64)[keep, s]
        acc = np.asarray(bank["typo_accuracy"], np.float64)[keep, s]
        rows.append(_split_row("typo", int(severity), loss, acc, int(typo_tokens[s] * keep.sum())))
    frame = pd.DataFrame(rows)
    frame["replicas"] = int(keep.sum())
    return frame[_own(SEQUENCE_PERPLEXITY_COLUMNS)]


def _split_row(split: str, severity: int, loss: np.ndarray, acc: np.ndarray, tokens: int) -> dict:
    mean_loss, loss_se = _over_replicas(loss)
    mean_acc, acc_se = _over_replicas(acc)
    return {
        "split": split,
        "severity": severity,
        "loss": mean_loss,
        "loss_se": loss_se,
        "perplexity": math.exp(mean_loss) if math.isfinite(mean_loss) else math.nan,
        "accuracy": mean_acc,
        "accuracy_se": acc_se,
        "tokens": tokens,
    }


def bucket_label(low: int, high: int) -> str:
    """A word-frequency bucket's name: "3-10", "1" for a single count, ">=101" for the last,
    open bucket (a ``high`` below 0 or at int64's maximum: no upper bound)."""
    if high < 0 or high >= np.iinfo(np.int64).max:
        return f">={low}"
    return f"{low}" if low == high else f"{low}-{high}"


def run_rare_words(
    bank: Mapping[str, np.ndarray], usable: np.ndarray | None = None
) -> pd.DataFrame:
    """Next-word accuracy by word-frequency bucket and split (module doc): per replica the share
    of the bucket's target tokens predicted right, then the mean and standard error over the
    replicas with any such token (``replicas``); ``tokens`` summed over them."""
    keep = np.ones(len(bank["replica"]), bool) if usable is None else np.asarray(usable, bool)
    lows = np.asarray(bank["word_bucket_low"], np.int64)
    highs = np.asarray(bank["word_bucket_high"], np.int64)
    rows = []
    for split, suffix in WORD_SPLITS.items():
        correct = np.asarray(bank[f"word_correct_{suffix}"], np.float64)[keep]
        tokens = np.asarray(bank[f"word_tokens_{suffix}"], np.int64)[keep]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(tokens > 0, correct / tokens, np.nan)
        for b, (low, high) in enumerate(zip(lows, highs, strict=True)):
            mean, se = _over_replicas(share[:, b])
            rows.append(
                {
                    "bucket": bucket_label(int(low), int(high)),
                    "low": int(low),
                    "high": int(high),
                    "split": split,
                    "accuracy": mean,
                    "accuracy_se": se,
                    "tokens": int(tokens[:, b].sum()),
                    "replicas": int((tokens[:, b] > 0).sum()),
                }
            )
    return pd.DataFrame(rows, columns=_own(RARE_WORDS_COLUMNS))


def _table(
    evaluations: Evaluations,
    per_run: Callable[[Mapping[str, np.ndarray], np.ndarray | None], pd.DataFrame],
    columns: list[str],
) -> pd.DataFrame:
    """``per_run`` over the runs with a sequence bank (those with ``doc_loss``), with the run's
    columns and its usable replicas; an empty frame with ``columns`` where there is none."""
    frames = [
        with_run(per_run(bank, used_replicas(run, bank)), run)
        for run, bank in evaluations
        if "doc_loss" in bank
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def sequence_memorization_table(evaluations: Evaluations) -> pd.DataFrame:
    """``sequence_memorization.parquet``: counterfactual memorization per pool document."""
    return _table(evaluations, run_sequence_memorization, SEQUENCE_MEMORIZATION_COLUMNS)


def fact_recall_table(evaluations: Evaluations) -> pd.DataFrame:
    """``fact_recall.csv``: recall by form, seen-group and training frequency."""
    return _table(evaluations, run_fact_recall, FACT_RECALL_COLUMNS)


def sequence_perplexity_table(evaluations: Evaluations) -> pd.DataFrame:
    """``sequence_perplexity.csv``: loss, perplexity and accuracy per token by split."""
    return _table(evaluations, run_sequence_perplexity, SEQUENCE_PERPLEXITY_COLUMNS)


def rare_words_table(evaluations: Evaluations) -> pd.DataFrame:
    """``rare_words.csv``: next-word accuracy by word-frequency bucket and split."""
    return _table(evaluations, run_rare_words, RARE_WORDS_COLUMNS)


# The tables of rule ``analyze_sequences`` (memlab.plan.registry: made_by), by name: each takes
# the runs' (run columns, bank) pairs. Evaluations are iterated once per table: pass a list.
SEQUENCE_FRAMES: dict[str, Callable[[Evaluations], pd.DataFrame]] = {
    "sequence_memorization": sequence_memorization_table,
    "fact_recall": fact_recall_table,
    "sequence_perplexity": sequence_perplexity_table,
    "rare_words": rare_words_table,
}
# Each table's columns, for the empty frames of a study without sequence runs.
SEQUENCE_COLUMNS: dict[str, list[str]] = {
    "sequence_memorization": SEQUENCE_MEMORIZATION_COLUMNS,
    "fact_recall": FACT_RECALL_COLUMNS,
    "sequence_perplexity": SEQUENCE_PERPLEXITY_COLUMNS,
    "rare_words": RARE_WORDS_COLUMNS,
}
