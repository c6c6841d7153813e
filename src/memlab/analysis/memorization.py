"""Per-example memorization scores (Feldman & Zhang 2020, *What neural networks memorize and
why*) and ROC utilities shared with membership inference.

``mem_i = P[correct on i | i in subset] - P[correct on i | i not in subset]``, estimated from
models trained on random subsets: the fraction of "in" models that get example i right minus the
fraction of "out" models that do. Each estimate carries the standard error of a difference of two
binomial proportions and Newcombe's 95% score interval (``memlab.plan.power``), which stays honest
where the standard error is 0 (a score of 1.00 from 2 in- and 2 out-replicas: [0.07, 1.00]).
The estimator is defined for any training algorithm, regularized ones included: scores mean nothing
for *under-trained* models only (:func:`memlab.plan.study.undertrained`), so every replica that
reached its stopping rule counts whatever its train accuracy (a weight-decayed model that
converges at 95% does), and k-NN, which does not train, always counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from memlab.io import MemlabInputError
from memlab.plan.kinds import MODEL_KINDS
from memlab.plan.power import difference_interval
from memlab.plan.study import undertrained

if TYPE_CHECKING:  # pandas only for the score table: the removal choice job imports none
    import pandas as pd


def in_out_counts(members: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """int64 [n]: per example, the replicas whose subset holds it and those whose does not.
    An example never in, or never out of, a subset makes ``P[... | in] - P[... | out]`` (a
    score, an influence) undefined: that design is rejected with a MemlabInputError."""
    members = np.asarray(members, bool)
    n_in = members.sum(0, dtype=np.int64)
    n_out = members.shape[0] - n_in
    never_out, never_in = np.flatnonzero(n_out == 0), np.flatnonzero(n_in == 0)
    if never_out.size or never_in.size:
        bad, how = (never_out, "never held out") if never_out.size else (never_in, "never in")
        raise MemlabInputError(
            f"{what}: {bad.size} example(s) (first: {bad[:5].tolist()}) are {how} of a subset "
            f"among the {members.shape[0]} usable replicas, so P[correct | in] - "
            "P[correct | out] is undefined. Use a training-set size below the pool (e.g. 0.7) "
            "and enough replicas (a balanced design puts every example in size/pool of them)."
        )
    return n_in, n_out


def used_replicas(run: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """[R] bool: the replicas of a run's bank that the scores use: every replica of a model that
    does not train, and the trained ones that are not :func:`undertrained`."""
    if not MODEL_KINDS[run["kind"]].trains:
        return np.ones(np.asarray(arrays["train_mask"], bool).shape[0], bool)
    reason = np.asarray(arrays["stop_reason"])
    return ~undertrained(reason, arrays["fit_epoch"], arrays.get("loss_drop"))


def memorization_scores(
    correct: np.ndarray, members: np.ndarray, usable: np.ndarray | None = None
) -> pd.DataFrame:
    """Score and standard error per example from ``correct`` and ``members`` ([R, n] bool).

    ``usable`` ([R] bool) selects the replicas to use (those not under-trained). Every
    example must be both in and out of at least one usable replica, or the score is undefined:
    that design is rejected with a MemlabInputError.
    """
    import pandas as pd

    return pd.DataFrame(memorization_arrays(correct, members, usable))


def memorization_arrays(
    correct: np.ndarray, members: np.ndarray, usable: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """:func:`memorization_scores`' columns as arrays (no pandas: the removal choice job)."""
    correct = np.asarray(correct, bool)
    members = np.asarray(members, bool)
    if usable is not None:
        correct, members = correct[usable], members[usable]
    if correct.shape[0] < 2:
        raise MemlabInputError(
            f"memorization scores need at least 2 usable replicas (trained, not under-trained), "
            f"found {correct.shape[0]}; raise `replicas` or `max_epochs`."
        )
    n_in, n_out = in_out_counts(members, "memorization scores")
    k_in, k_out = (correct & members).sum(0), (correct & ~members).sum(0)
    p_in, p_out = k_in / n_in, k_out / n_out
    se = np.sqrt(p_in * (1 - p_in) / n_in + p_out * (1 - p_out) / n_out)
    low, high = difference_interval(k_in, n_in, k_out, n_out)
    return {
        "example": np.arange(correct.shape[1]),
        "score": (p_in - p_out).astype(np.float32),
        "se": se.astype(np.float32),
        # 95%, honest at 0 and 1 where the standard error is not (memlab.plan.power).
        "low": low.astype(np.float32),
        "high": high.astype(np.float32),
        "p_in": p_in.astype(np.float32),
        "p_out": p_out.astype(np.float32),
        "n_in": n_in,
        "n_out": n_out,
    }


def design_allows_scores(members: np.ndarray) -> bool:
    """Whether every example is both in and out of some subset."""
    members = np.asarray(members, bool)
    return bool(members.shape[0] >= 2 and members.any(0).all() and (~members).any(0).all())


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN without both classes."""
    from scipy.stats import rankdata  # here: train and evaluate jobs import this module, not scipy

    positive = np.asarray(positive, bool).ravel()
    scores = np.asarray(scores, float).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every distinct threshold, from (0, 0) to (1, 1); higher score = positive."""
    positive = np.asarray(positive, bool).ravel()
    scores = np.asarray(scores, float).ravel()
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    # Only the last index of each run of equal scores is a threshold.
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(p)[last]
    fp = np.cumsum(~p)[last]
    tpr = np.r_[0.0, tp / max(int(p.sum()), 1)]
    fpr = np.r_[0.0, fp / max(int((~p).sum()), 1)]
    return fpr, tpr


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Largest TPR among thresholds whose FPR does not exceed ``target``."""
    ok = fpr <= target
    return float(tpr[ok].max()) if ok.any() else 0.0
