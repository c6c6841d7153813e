"""Cheap memorization estimators scored against the ground truth: the Feldman–Zhang scores of the
whole bank (``estimators.csv``).

Each estimator gives a per-(replica, example) value from one trained model (where it has one):
the training by-products of :mod:`memlab.engine.dynamics` (cumulative sample loss, final loss,
learning time, forgetting events, cartography confidence, and where ``estimators.gradient_every``
asks, the cumulative loss sensitivity and TracIn self-influence) and the input-gradient
estimators of :mod:`memlab.engine.input_gradients` (loss sensitivity, curvature); k-NN label
disagreement and the membership attacks' per-example vulnerabilities are per example only. Scored
two ways:

- ``single``: one model's values on the examples it trained on, what a user without a bank has;
  the statistic is the mean over the first :data:`SINGLE_REPLICAS` replicas of the run;
- ``averaged``: the mean over the replicas that trained on each example.

Against the run's Feldman–Zhang scores of its real examples (inserted canaries are left out:
``memlab.analysis.exposure``) (``memorization.parquet``, from every replica: a single
replica's own training enters its ground truth with weight 1/n_in), per method: Spearman and
Pearson correlation, the Jaccard index of the top k by the estimator and the examples with
score >= 0.25 (k = their number, ``n_memorized``), and the ROC AUC of the estimator for them
(positive class: score >= 0.25), each with a percentile bootstrap 95% interval over examples
(:data:`BOOTSTRAP` resamples, the same resamples for every replica of ``single``). Ravikumar et al.
(ICML 2025) report Pearson; Spearman and the top-k / AUROC views do not let the many zero scores
flatter a proxy (cosine does).

``relative_cost``: what the estimator costs per model, in training runs, counted in
forward-pass equivalents (a backward pass counts two): one training run is
``epochs x n_train x 4`` (a step, forward and backward, and the end-of-epoch evaluation); the
by-products cost that run and nothing more (their running sums' time is measured in
``benchmarks/``); the input-gradient estimators add a forward and backward pass over the pool
(and one per curvature probe); bank methods cost the bank's replicas; k-NN disagreement costs no
training (0).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from memlab.analysis.bank import real_examples
from memlab.engine import dynamics
from memlab.plan.power import PowerGates
from memlab.plan.study import RUN_COLUMNS, RUN_KEYS, with_run

MEMORIZED = 0.25  # Feldman & Zhang's threshold for a memorized example
BOOTSTRAP = 200
SINGLE_REPLICAS = 4
STATISTICS = ("spearman", "pearson", "topk_jaccard", "auroc_memorized")
ESTIMATOR_COLUMNS = [
    *RUN_COLUMNS,
    "method",
    "scope",
    *(f"{s}{side}" for s in STATISTICS for side in ("", "_low", "_high")),
    "n_memorized",
    "n_examples",
    "replicas",
    "relative_cost",
    "status",
]


def _where_trained(a: Mapping[str, np.ndarray], values: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(a["train_mask"], bool), np.asarray(values, np.float64), np.nan)


# Per-replica estimators: name -> (values [R, n] from a bank, NaN where not trained on; or None
# where the run has none), each oriented so that higher = more memorized.
def _dyn(fn: Callable[[Mapping[str, np.ndarray]], np.ndarray], sign: float = 1.0) -> Callable:
    return lambda a: sign * fn(a) if "dyn_epochs" in a else None


def _gradient(name: str) -> Callable:
    return lambda a: _where_trained(a, a[name]) if name in a else None


def _gradient_sum(name: str) -> Callable:
    return lambda a: dynamics.gradient_sum(a, name) if name in a else None


REPLICA_ESTIMATORS: dict[str, Callable[[Mapping[str, np.ndarray]], np.ndarray | None]] = {
    "cumulative_loss": _dyn(dynamics.cumulative_loss),
    "final_loss": _dyn(lambda a: _where_trained(a, a["dyn_final_loss"])),
    "learning_time": _dyn(dynamics.learning_time),
    "forgetting_events": _dyn(dynamics.forgetting_events),
    "cartography_confidence": _dyn(lambda a: _where_trained(a, a["dyn_confidence"]), -1.0),
    "loss_sensitivity": _gradient("pool_sensitivity"),
    "curvature": _gradient("pool_curvature"),
    "cumulative_sensitivity": _gradient_sum("dyn_input_gradient_sq_sum"),
    "tracin_self_influence": _gradient_sum("dyn_tracin"),
}
# Per-example methods from evidence.parquet: method -> (column, sign); they have no single scope.
EXAMPLE_ESTIMATORS: dict[str, tuple[str, float]] = {
    "knn_disagreement": ("knn_disagreement", 1.0),
    "lira_vulnerability": ("lira_vulnerability", 1.0),
    "rmia_vulnerability": ("rmia_vulnerability", 1.0),
}


def replica_values(a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every per-replica estimator the bank ``a`` has, as [R, n] (higher = more memorized)."""
    out = {}
    for name, fn in REPLICA_ESTIMATORS.items():
        values = fn(a)
        if values is not None:
            out[name] = values
    return out


def rowwise_statistics(score: np.ndarray, truth: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``[B, 4]``: :data:`STATISTICS` of ``score`` against ``truth`` in each row of ``[B, n]``
    arrays, over the entries where ``keep``; NaN where undefined (fewer than 3 kept, a constant
    row; no memorized example, or only memorized ones, for top-k and AUROC)."""
    from scipy.stats import rankdata

    keep = np.asarray(keep, bool)
    m = keep.sum(1)
    # Dropped entries rank above every kept one: the kept ones' ranks are theirs alone.
    rs = rankdata(np.where(keep, score, np.inf), axis=1)
    rt = rankdata(np.where(keep, truth, np.inf), axis=1)
    out = np.full((len(score), len(STATISTICS)), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, 0] = _pearson(rs, rt, keep, m)
        out[:, 1] = _pearson(score, truth, keep, m)
        positive = keep & (truth >= MEMORIZED)
        k = positive.sum(1)
        order = np.argsort(np.where(keep, -score, np.inf), axis=1, kind="stable")
        top = np.argsort(order, axis=1) < k[:, None]
        jaccard = (top & positive).sum(1) / (top | positive).sum(1)
        auroc = ((rs * positive).sum(1) - k * (k + 1) / 2) / (k * (m - k))  # ties half
    defined = (k > 0) & (k < m)
    out[:, 2] = np.where(defined, jaccard, np.nan)
    out[:, 3] = np.where(defined, auroc, np.nan)
    out[m < 3] = np.nan
    return out


def _pearson(x: np.ndarray, y: np.ndarray, keep: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation over the kept entries."""
    x, y = np.where(keep, x, 0.0), np.where(keep, y, 0.0)
    dx = np.where(keep, x - (x.sum(1) / m)[:, None], 0.0)
    dy = np.where(keep, y - (y.sum(1) / m)[:, None], 0.0)
    return (dx * dy).sum(1) / np.sqrt((dx * dx).sum(1) * (dy * dy).sum(1))


def statistics(score: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[4]: :data:`STATISTICS` of ``score`` against ``truth`` (1-D, no NaN)."""
    score, truth = np.asarray(score, np.float64), np.asarray(truth, np.float64)
    return rowwise_statistics(score[None], truth[None], np.ones((1, len(score)), bool))[0]


def _bootstrap(
    values: np.ndarray, truth: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate and percentile 95% interval over :data:`BOOTSTRAP` resamples of the
    examples: each row of ``values`` [rows, n] (NaN where undefined) is scored on its own, and
    the statistic is the mean over the rows (the same resamples for every row)."""
    n = len(truth)
    draws = np.vstack([np.arange(n), rng.integers(0, n, (BOOTSTRAP, n))])
    per_row = []
    for row in values:
        v = row[draws]
        per_row.append(rowwise_statistics(v, truth[draws], ~np.isnan(v)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an undefined statistic stays NaN
        stat = np.nanmean(per_row, axis=0)  # [1 + BOOTSTRAP, 4]
        low, high = np.nanpercentile(stat[1:], [2.5, 97.5], axis=0)
    return stat[0], low, high


def training_cost(a: Mapping[str, np.ndarray]) -> float:
    """One training run of the bank, in forward-pass equivalents (module doc): the mean over
    replicas of ``epochs x n_train x 4``."""
    n_train = np.asarray(a["train_mask"]).sum(1)
    return float(np.mean(np.asarray(a["stop_epoch"]) * n_train * 4))


def relative_cost(method: str, a: Mapping[str, np.ndarray]) -> float:
    """``method``'s cost per model in training runs (module doc)."""
    replicas = len(a["replica"])
    if method in EXAMPLE_ESTIMATORS:
        return 0.0 if method == "knn_disagreement" else float(replicas)
    train = training_cost(a)
    n_pool = np.asarray(a["train_mask"]).shape[1]
    passes = {"loss_sensitivity": 1, "curvature": 1 + int(a.get("curvature_probes", 0))}
    extra = 3.0 * n_pool * passes.get(method, 0)
    if method in ("cumulative_sensitivity", "tracin_self_influence"):
        # Both come from one backward pass over each replica's subset per gradient evaluation.
        evaluations = np.asarray(a["dyn_gradient_evaluations"]).max(1)
        extra = 3.0 * float(np.mean(evaluations * np.asarray(a["train_mask"]).sum(1)))
    return 1.0 + extra / train if train > 0 else np.nan


def _row(method: str, scope: str, result: tuple, k: int, n: int, replicas: int) -> dict:
    point, low, high = result
    row: dict[str, Any] = {"method": method, "scope": scope, "n_memorized": k, "n_examples": n}
    for j, s in enumerate(STATISTICS):
        row |= {s: point[j], f"{s}_low": low[j], f"{s}_high": high[j]}
    return row | {"replicas": replicas, "status": "ok"}


def run_estimators(
    a: Mapping[str, np.ndarray], truth: np.ndarray, evidence: pd.DataFrame, seed: int
) -> pd.DataFrame:
    """The estimators table of one run (without its run columns): ``truth`` are its
    Feldman–Zhang scores per pool example (NaN where undefined), ``evidence`` its rows of
    ``evidence.parquet`` (in pool order)."""
    rng = np.random.default_rng(seed)
    scored = ~np.isnan(truth)
    t = truth[scored]
    k = int((t >= MEMORIZED).sum())
    rows = []
    for method, values in replica_values(a).items():
        v = values[:, scored]
        single = min(SINGLE_REPLICAS, len(v))
        rows.append(_row(method, "single", _bootstrap(v[:single], t, rng), k, len(t), single))
        trained = ~np.isnan(v)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(trained, v, 0.0).sum(0) / trained.sum(0)
        replicas = int(trained.any(1).sum())
        rows.append(_row(method, "averaged", _bootstrap(mean[None], t, rng), k, len(t), replicas))
    for method, (column, sign) in EXAMPLE_ESTIMATORS.items():
        mean = sign * evidence[column].to_numpy(np.float64)[scored]
        if np.isnan(mean).all():
            continue
        result = _bootstrap(mean[None], t, rng)
        rows.append(_row(method, "averaged", result, k, len(t), len(a["replica"])))
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["relative_cost"] = [relative_cost(m, a) for m in frame["method"]]
    return frame


def estimator_tables(
    evaluations: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
    memorization: pd.DataFrame,
    evidence: pd.DataFrame,
    gates: PowerGates,
    seed: int,
) -> pd.DataFrame:
    """``estimators.csv``: every run with powered Feldman–Zhang scores and a model that trains
    (module doc)."""
    key = list(RUN_KEYS)
    scores = {k: g for k, g in memorization.groupby(key, sort=False)}
    examples = {k: g for k, g in evidence.groupby(key, sort=False)}
    out = []
    for run, a in evaluations:
        run_key = tuple(run[k] for k in key)
        mem = scores.get(run_key)
        if mem is None or not len(mem) or "dyn_epochs" not in a:
            continue
        if not gates.scores_powered(mem["n_in"], mem["n_out"]):
            continue
        truth = np.full(np.asarray(a["train_mask"]).shape[1], np.nan)
        truth[mem["example"].to_numpy(int)] = mem["score"].to_numpy(np.float64)
        truth[~real_examples(a)] = np.nan  # canaries are scored in exposure.csv, not here
        ev = examples[run_key].sort_values("index")
        frame = run_estimators(a, truth, ev, seed)
        out.append(with_run(frame, run))
    if not out:
        return pd.DataFrame(columns=ESTIMATOR_COLUMNS)
    return pd.concat(out, ignore_index=True).reindex(columns=ESTIMATOR_COLUMNS)
