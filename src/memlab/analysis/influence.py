"""Train -> test influence (Feldman & Zhang 2020, *What neural networks memorize and why*,
NeurIPS): how much training on pool example i helps a model get held-out example j right.

``infl(i, j) = P[j correct | i in subset] - P[j correct | i not in subset]``, estimated from the
same bank of models trained on random subsets that gives the memorization scores
(``memlab.analysis.memorization``, the case j = i): the fraction of replicas holding i that get j
right minus the fraction of those without i that do. A memorized training example with high
influence on a test example marks a test example that memorizing it gets right (a near-duplicate, a
member of the same rare sub-population).

Budget: the standard error of a difference of two proportions is at most
``0.5 / sqrt(share * (1 - share) * R)`` from R replicas that each hold a ``share`` of the pool;
at share 0.7, ``0.5 / sqrt(0.21 R)``: 0.14 at 64 models, 0.035 at 1,000.

False pairs: with n_pool x n_test pairs, some pass any threshold by chance. Under the null that i
has no influence on j, j's correctness is independent of i's membership, so given j's count k_j of
correct replicas among R and i's in-count n_in, the replicas are exchangeable and the number of
correct in-replicas is hypergeometric (R, k_j, n_in): a conditional permutation test, exact
whatever the model's accuracy on j. :func:`expected_false_pairs` sums that null's probability of
passing the threshold over every candidate pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from memlab.io import MemlabInputError

if TYPE_CHECKING:  # pandas only for the tables: the removal choice job imports none
    import pandas as pd

# Influence is stored as float32 (resolution 6e-8 near 1): a pair counts when its influence is at
# least the threshold less this, so that an influence exactly equal to the threshold (0.7 stored
# as 0.69999999) counts. The null (:func:`false_pair_probability`) applies the same rule.
TOLERANCE = 1e-6

# A float32 GEMM of 0/1 matrices is exact while every count is an integer below 2^24.
_FLOAT32_EXACT = 2**24


@dataclass(frozen=True, eq=False)
class Influence:
    """Influence of every pool example on every held-out example, with what it rests on."""

    influence: np.ndarray  # float32 [n_pool, n_test]: P[j correct | i in] - P[j correct | i out]
    se: np.ndarray  # float32 [n_pool, n_test]: standard error of that difference
    n_in: np.ndarray  # int64 [n_pool]: usable replicas trained on i
    n_out: np.ndarray  # int64 [n_pool]: usable replicas not trained on i
    correct_count: np.ndarray  # int64 [n_test]: usable replicas that get j right


def _difference(k_in: np.ndarray, k: np.ndarray, n_in: np.ndarray, n_out: np.ndarray) -> np.ndarray:
    """float32 ``k_in / n_in - (k - k_in) / n_out``: the one arithmetic path for both the estimate
    and its null, so that a pair the null says passes is exactly a pair selection keeps."""
    k_in = np.asarray(k_in, np.float64)
    return (k_in / n_in - (k - k_in) / n_out).astype(np.float32)


def _passes(influence: np.ndarray, min_influence: np.ndarray | float) -> np.ndarray:
    """``influence >= min_influence`` up to float32 rounding (compared in float64)."""
    return np.asarray(influence, np.float64) >= min_influence - TOLERANCE


def _check_threshold(value: float, key: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise MemlabInputError(f"`analysis.influence.{key}` must be a number from 0 to 1.")
    return value


def _bank(
    members: np.ndarray, test_correct: np.ndarray, usable: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The usable replicas' ``members`` and ``test_correct``, checked to match."""
    members = np.asarray(members, bool)
    test_correct = np.asarray(test_correct, bool)
    if members.ndim != 2 or test_correct.ndim != 2 or members.shape[0] != test_correct.shape[0]:
        raise MemlabInputError(
            f"influence needs `members` [R, n_pool] and `test_correct` [R, n_test] with the same "
            f"replicas R; got shapes {members.shape} and {test_correct.shape}."
        )
    if usable is not None:
        usable = np.asarray(usable, bool)
        if usable.shape != (members.shape[0],):
            raise MemlabInputError(
                f"`usable` must be one bool per replica ({members.shape[0]}); got shape "
                f"{usable.shape}."
            )
        members, test_correct = members[usable], test_correct[usable]
    if members.shape[0] < 2:
        raise MemlabInputError(
            f"influence needs at least 2 usable replicas (trained, not under-trained), found "
            f"{members.shape[0]}; raise `replicas` or `max_epochs`."
        )
    return members, test_correct


def influence_matrix(
    members: np.ndarray, test_correct: np.ndarray, usable: np.ndarray | None = None
) -> Influence:
    """Influence of each pool example on each held-out example, from ``members`` ([R, n_pool]
    bool: replica r trained on i) and ``test_correct`` ([R, n_test] bool: r gets j right).

    ``usable`` ([R] bool) selects the replicas to use, as in ``memorization_scores``. Every pool
    example must be both in and out of at least one usable replica, or its influence is
    undefined: that design is rejected with a MemlabInputError. One matrix product gives the
    in-counts; the out-counts are what is left of each test example's correct count, so a
    1,000-model bank on digits takes well under a second.
    """
    members, test_correct = _bank(members, test_correct, usable)
    from memlab.analysis.memorization import in_out_counts

    r = members.shape[0]
    n_in, n_out = in_out_counts(members, "influence")
    # Counts are integers <= R: exact in a float32 GEMM below 2^24 replicas, float64 beyond.
    dtype = np.float32 if r < _FLOAT32_EXACT else np.float64
    k_in = np.rint(members.T.astype(dtype) @ test_correct.astype(dtype)).astype(np.int64)
    correct_count = test_correct.sum(0, dtype=np.int64)
    nin, nout = n_in[:, None].astype(np.float64), n_out[:, None].astype(np.float64)
    p_in = k_in / nin
    p_out = (correct_count - k_in) / nout
    se = np.sqrt(p_in * (1 - p_in) / nin + p_out * (1 - p_out) / nout)
    return Influence(
        influence=_difference(k_in, correct_count, nin, nout),
        se=se.astype(np.float32),
        n_in=n_in,
        n_out=n_out,
        correct_count=correct_count,
    )


def false_pair_probability(
    n_in: np.ndarray,
    n_total: np.ndarray | int,
    correct_count: np.ndarray,
    min_influence: np.ndarray | float,
) -> np.ndarray:
    """P[influence >= min_influence] for a pair with no influence, elementwise (broadcast).

    Under the null, the a correct replicas among the ``n_in`` holding i are
    Hypergeometric(M=n_total, n=correct_count, N=n_in), and the influence
    ``a / n_in - (k - a) / (n_total - n_in)`` grows with a, so the pair passes iff a reaches a
    threshold. The threshold is solved in closed form, then moved by at most one so that it
    agrees with the float32 influence and selection rule that real pairs go through.
    """
    from scipy.stats import hypergeom  # here: train and evaluate jobs import memlab, not scipy

    n_in, n_total, k, t = np.broadcast_arrays(
        np.asarray(n_in, np.int64),
        np.asarray(n_total, np.int64),
        np.asarray(correct_count, np.int64),
        np.asarray(min_influence, np.float64),
    )
    n_out = n_total - n_in
    # a / n_in - (k - a) / n_out >= t  <=>  a >= (t * n_out + k) * n_in / n_total
    a = np.ceil((t * n_out + k) * n_in / n_total).astype(np.int64)
    below = _passes(_difference(a - 1, k, n_in, n_out), t)
    a = np.where(below, a - 1, a)
    fails = ~_passes(_difference(a, k, n_in, n_out), t)
    a = np.where(fails, a + 1, a)
    return hypergeom.sf(a - 1, n_total, k, n_in)


def expected_false_pairs(
    influence: Influence, candidates: np.ndarray, min_influence: float
) -> float:
    """Expected number of pairs (candidate pool example, any held-out example) whose influence
    reaches ``min_influence`` by chance, were no example to influence any other.

    ``candidates`` ([n_pool] bool) marks the pool examples whose pairs are reported (e.g.
    memorization >= 0.25). A balanced design gives few distinct in-counts and the test examples
    few distinct correct counts, so the null is evaluated once per distinct pair of them.
    """
    min_influence = _check_threshold(min_influence, "min_influence")
    candidates = np.asarray(candidates, bool)
    if candidates.shape != influence.n_in.shape:
        raise MemlabInputError(
            f"`candidates` must be one bool per pool example ({influence.n_in.size}); got shape "
            f"{candidates.shape}."
        )
    if not candidates.any() or influence.correct_count.size == 0:
        return 0.0
    r = int(influence.n_in[0] + influence.n_out[0])
    n_in, n_i = np.unique(influence.n_in[candidates], return_counts=True)
    k, n_j = np.unique(influence.correct_count, return_counts=True)
    p = false_pair_probability(n_in[:, None], r, k[None, :], min_influence)
    return float(n_i @ p @ n_j)


def memorized(memorization: np.ndarray, min_memorization: float) -> np.ndarray:
    """bool [n_pool]: the candidates of a pair (scores are float32 too: the same tolerance)."""
    return _passes(memorization, min_memorization)


def pair_mask(
    influence: Influence, memorization: np.ndarray, min_memorization: float, min_influence: float
) -> np.ndarray:
    """bool [n_pool, n_test]: the high-influence pairs, the one rule every caller applies."""
    return (
        _passes(influence.influence, min_influence)
        & memorized(memorization, min_memorization)[:, None]
    )


def high_influence_pairs(
    influence: Influence, memorization: np.ndarray, min_memorization: float, min_influence: float
) -> pd.DataFrame:
    """Every (memorized pool example, held-out example) pair with influence >= ``min_influence``
    whose pool example has memorization >= ``min_memorization``: the pairs that show what
    memorizing buys on held-out data. Sorted by influence, highest first, then by position.
    """
    import pandas as pd

    min_memorization = _check_threshold(min_memorization, "min_memorization")
    min_influence = _check_threshold(min_influence, "min_influence")
    memorization = np.asarray(memorization, np.float64)
    if memorization.shape != influence.n_in.shape:
        raise MemlabInputError(
            f"`memorization` must be one score per pool example ({influence.n_in.size}); got "
            f"shape {memorization.shape}."
        )
    i, j = np.nonzero(pair_mask(influence, memorization, min_memorization, min_influence))
    infl = influence.influence[i, j]
    order = np.lexsort((j, i, -infl.astype(np.float64)))
    i, j = i[order], j[order]
    return pd.DataFrame(
        {
            "train_index": i.astype(np.int64),
            "test_index": j.astype(np.int64),
            "memorization": memorization[i],
            "influence": influence.influence[i, j],
            "influence_se": influence.se[i, j],
        }
    )


# --------------------------------------------------------------------------- study tables

PAIR_COLUMNS = (
    "train_index",
    "test_index",
    "memorization",
    "influence",
    "influence_se",
    "same_subpopulation",
)
SUMMARY_COLUMNS = (
    "min_memorization",
    "min_influence",
    "n_pairs",
    "n_influenced",
    "n_test",
    "expected_false_pairs",
    "same_subpopulation_share",
    "same_subpopulation_low",
    "same_subpopulation_high",
    "n_replicas",
    "powered",
    "status",
)


@dataclass(frozen=True)
class Thresholds:
    """``analysis.influence``: what makes a high-influence pair, and how many false pairs (the
    null's expectation, as a share of the pairs found) a run may have before its pairs are held
    back as underpowered."""

    min_memorization: float = 0.25
    min_influence: float = 0.15
    max_false_share: float = 0.1


def run_influence(
    bank: Mapping[str, np.ndarray], usable: np.ndarray, split: Any, thresholds: Thresholds
) -> tuple[pd.DataFrame, dict]:
    """A run's high-influence pairs (PAIR_COLUMNS) and its summary (SUMMARY_COLUMNS less the
    power verdict, which the caller adds): one influence matrix from the bank's subsets and
    held-out correctness, scores from the same replicas, pairs within a subpopulation where the
    split has subpopulations (``memlab.data.long_tail``)."""
    import pandas as pd

    from memlab.analysis.memorization import memorization_scores
    from memlab.plan.power import wilson_interval

    members, t = bank["train_mask"], thresholds
    infl = influence_matrix(members, bank["test_correct"], usable)
    memorization = memorization_scores(bank["pool_correct"], members, usable)["score"].to_numpy()
    pairs = high_influence_pairs(infl, memorization, t.min_memorization, t.min_influence)
    pool_sub = getattr(split, "pool_subpopulation", None)
    test_sub = getattr(split, "test_subpopulation", None)
    if pool_sub is None or test_sub is None:
        pairs["same_subpopulation"] = pd.array([pd.NA] * len(pairs), dtype="boolean")
        share = (np.nan, np.nan, np.nan)
    else:
        same = pool_sub[pairs["train_index"]] == test_sub[pairs["test_index"]]
        pairs["same_subpopulation"] = same
        low, high = wilson_interval(int(same.sum()), len(same))
        share = (same.mean() if len(same) else np.nan, float(low), float(high))
    candidates = memorized(memorization, t.min_memorization)
    summary = {
        "min_memorization": t.min_memorization,
        "min_influence": t.min_influence,
        "n_pairs": len(pairs),
        "n_influenced": int(pairs["test_index"].nunique()),
        "n_test": int(bank["test_correct"].shape[1]),
        "expected_false_pairs": expected_false_pairs(infl, candidates, t.min_influence),
        "same_subpopulation_share": share[0],
        "same_subpopulation_low": share[1],
        "same_subpopulation_high": share[2],
        "n_replicas": int(np.sum(usable)),
    }
    return pairs, summary


def false_pairs_verdict(summary: dict, thresholds: Thresholds) -> tuple[bool, str]:
    """Are a run's pairs mostly real? Powered when the null expects at most ``max_false_share``
    of the pairs found (of one pair, where none was found: a bank that finds no pair and
    expects none answers "no pairs")."""
    n, false = summary["n_pairs"], summary["expected_false_pairs"]
    if false <= thresholds.max_false_share * max(n, 1):
        return True, "ok"
    return False, (
        f"underpowered: the null expects {false:.1f} false pairs among the {n} found at "
        f"influence >= {thresholds.min_influence:g} from {summary['n_replicas']} replicas "
        f"(analysis.influence.max_false_share {thresholds.max_false_share:g}); influence needs "
        "more replicas (about 1,000 at subset ratio 0.7: config/memorization_pays.yaml)"
    )


def influence_tables(
    evaluations: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
    split_of: Callable[[str], Any],
    gates: Any,
    thresholds: Thresholds,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """influence_pairs.csv and influence_summary.csv: per run whose memorization scores pass
    the power gate (``gates.scores_powered``), its high-influence pairs, and a summary row for
    every run with a subset design (its status says why a run has no pairs)."""
    import pandas as pd

    from memlab.analysis.memorization import design_allows_scores, used_replicas
    from memlab.plan.study import RUN_COLUMNS, with_run

    pairs, summary = [], []
    for run, bank in evaluations:
        usable = used_replicas(run, bank)
        members = bank["train_mask"][usable]
        row = {c: run[c] for c in RUN_COLUMNS} | {"n_replicas": int(usable.sum())}
        if not design_allows_scores(members):
            continue  # no subsets (the whole pool): no influence to estimate
        n_in, n_out = members.sum(0), (~members).sum(0)
        if not gates.scores_powered(n_in, n_out):
            share = float(members.mean())
            why = gates.scores_message(int(n_in.min()), int(n_out.min()), len(members), share)
            summary.append(row | {"powered": False, "status": f"underpowered: {why}"})
            continue
        found, stats = run_influence(bank, usable, split_of(run["dataset"]), thresholds)
        ok, status = false_pairs_verdict(stats, thresholds)
        summary.append(row | stats | {"powered": ok, "status": status})
        pairs.append(with_run(found, run))
    columns = [*RUN_COLUMNS, *PAIR_COLUMNS]
    return (
        pd.concat(pairs, ignore_index=True)[columns] if pairs else pd.DataFrame(columns=columns),
        pd.DataFrame(summary, columns=[*RUN_COLUMNS, *SUMMARY_COLUMNS]),
    )
