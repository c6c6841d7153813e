"""The removal experiment (Feldman & Zhang 2020, section 4): retrain without the training examples
that are both memorized and influential, and compare with removing as many random ones.

The first stage is an ordinary run on random subsets (its bank gives the memorization scores and
the train -> test influence, :mod:`memlab.analysis.influence`). :func:`choose` ranks its pool: first
the examples in a high-influence pair (memorization >= ``min_memorization`` and influence >=
``min_influence`` on some held-out example), most memorized first, then the rest by memorization
score. The second stage trains new replicas on the whole pool less

- ``top_memorized``: the top ``k`` of that ranking (the same examples in every replica);
- ``random``: ``k`` examples drawn at random, anew for every replica;
- ``none``: nothing (``k`` = 0), the baseline both arms are compared with.

Replica ``r`` of every arm starts from the same initial weights (seeds derive from the replica
number, :func:`memlab.engine.runs.init_seeds`), so an arm's accuracy change is the mean of
per-replica paired differences against the baseline, with the standard error of that mean. It is
reported on the whole held-out set and on the *influenced* held-out examples: those in a
high-influence pair with one of the top ``k`` (the same examples for both arms, as in the paper).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memlab.analysis.influence import Thresholds, influence_matrix, pair_mask
from memlab.io import MemlabInputError
from memlab.seeds import derive_seed

if TYPE_CHECKING:  # pandas only for the table: the choice and subsample jobs import none
    import pandas as pd

ARMS = ("none", "top_memorized", "random")
BASELINE = "none"
SPLITS = ("heldout", "influenced")
# `n_removed`, not `k`: every table's run columns have a `k` (k-NN's neighbours).
COLUMNS = (
    "removed",
    "n_removed",
    "split",
    "accuracy_change",
    "accuracy_change_se",
    "n_replicas",
    "n_test",
    "top_k_in_pairs",
)


def choose(
    bank: Mapping[str, np.ndarray], usable: np.ndarray, thresholds: Thresholds
) -> dict[str, np.ndarray]:
    """The first stage's ranking of its pool (module doc), with what the analysis needs later:
    each example's memorization score and whether it is in a high-influence pair, and the
    boolean [n_pool, n_test] matrix of high-influence pairs."""
    from memlab.analysis.memorization import memorization_arrays

    members = bank["train_mask"]
    infl = influence_matrix(members, bank["test_correct"], usable)
    memorization = memorization_arrays(bank["pool_correct"], members, usable)["score"]
    t = thresholds
    pairs = pair_mask(infl, memorization, t.min_memorization, t.min_influence)
    in_pair = np.any(pairs, axis=1)
    # lexsort: the last key is the primary one.
    ranking = np.lexsort((np.arange(len(memorization)), -memorization, ~in_pair))
    return {
        "ranking": ranking.astype(np.int64),
        "memorization": memorization.astype(np.float32),
        "in_pair": in_pair,
        "pairs": pairs,
    }


def removed(arm: str, k: int, ranking: np.ndarray, replicas: range, seed: int) -> np.ndarray:
    """bool [len(replicas), n_pool]: the pool examples each replica of an arm leaves out."""
    n_pool = len(ranking)
    if arm not in ARMS:
        raise MemlabInputError(f"removal arm {arm!r} is unknown; the arms are {', '.join(ARMS)}.")
    if not 0 <= k < n_pool:
        raise MemlabInputError(
            f"removal.k: {k} examples cannot be removed from a pool of {n_pool}; use at most "
            f"{n_pool - 1}."
        )
    out = np.zeros((len(replicas), n_pool), bool)
    if arm == "top_memorized":
        out[:, ranking[:k]] = True
    elif arm == "random":
        for row, r in enumerate(replicas):
            rng = np.random.default_rng(derive_seed(seed, "removal", k, r))
            out[row, rng.choice(n_pool, size=k, replace=False)] = True
    return out


def influenced(choice: Mapping[str, np.ndarray], k: int) -> np.ndarray:
    """bool [n_test]: the held-out examples in a high-influence pair with one of the top k."""
    return choice["pairs"][choice["ranking"][:k]].any(axis=0)


def _paired_change(arm: np.ndarray, base: np.ndarray) -> tuple[float, float, int]:
    """Mean and standard error of per-replica differences (replicas in the same order)."""
    d = np.asarray(arm, float) - np.asarray(base, float)
    se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.nan
    return float(d.mean()), float(se), len(d)


def removal_table(
    runs: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
    choices: Mapping[str, Mapping[str, np.ndarray]],
    run_columns: Sequence[str],
) -> pd.DataFrame:
    """removal.csv from the second stage's banks. ``runs`` yields (removal, bank) with the
    removal's ``first_stage`` (its run path), ``columns``, ``arm`` and ``k``; ``choices`` maps a
    first stage's run path to its :func:`choose` arrays."""
    import pandas as pd

    groups: dict[str, dict[tuple[str, int], np.ndarray]] = {}
    columns: dict[str, Mapping[str, Any]] = {}
    for removal, bank in runs:
        order = np.argsort(bank["replica"])
        correct = np.asarray(bank["test_correct"], bool)[order]
        groups.setdefault(removal["first_stage"], {})[(removal["arm"], removal["k"])] = correct
        columns[removal["first_stage"]] = removal["columns"]
    rows = []
    for stage, arms in groups.items():
        base = arms.get((BASELINE, 0))
        if base is None:
            continue
        choice = choices[stage]
        for (arm, k), correct in sorted(arms.items()):
            if arm == BASELINE:
                continue
            n = min(len(correct), len(base))
            hit = influenced(choice, k)
            in_pairs = int(choice["in_pair"][choice["ranking"][:k]].sum())
            for split, tests in (("heldout", slice(None)), ("influenced", hit)):
                if split == "influenced" and not hit.any():
                    continue
                change = _paired_change(correct[:n, tests].mean(1), base[:n, tests].mean(1))
                n_test = int(np.sum(hit)) if split == "influenced" else correct.shape[1]
                values = (arm, k, split, *change, n_test, in_pairs)
                rows.append(dict(columns[stage]) | dict(zip(COLUMNS, values, strict=True)))
    return pd.DataFrame(rows, columns=[*run_columns, *COLUMNS])
