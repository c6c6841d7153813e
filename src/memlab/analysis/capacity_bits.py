"""Capacity in bits per parameter (DESIGN.md 4d; Morris et al. 2025, *How much do language models
memorize?*): on uniformly random labels nothing can be learned but the labels themselves, so what
a model's loss says about its training labels is information it stores.

Example ``i`` of a training set with ``K`` classes carries ``log2 K`` bits; a model whose
cross-entropy on it is ``CE_i`` nats has stored ``log2 K - CE_i / ln 2`` of them, clipped at 0 (a
confidently wrong example never stores negative bits). Summed over a replica's training examples,
that is the replica's bits stored: 0 for a model at chance (``CE_i = ln K``), ``n log2 K`` for one
that fits every label with zero loss. It is a lower bound on what the model holds: the code length
of the labels under the model against a uniform prior, per example, not the best code.

Capacity is the most a model stores: the table has one row per run (training-set size), and
``is_max`` marks, per dataset, noise rate, model and regime, the size that stores the most. Only
models whose knowledge lives in trained weights have rows: a k-NN has no parameters and a memory
network reads its training subset at prediction time (its labels are stored outside its weights).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from memlab.data.datasets import Split
from memlab.plan.kinds import MODEL_KINDS, Variant
from memlab.plan.registry import stores_in_weights
from memlab.plan.study import RUN_COLUMNS

COLUMNS = (
    "parameters",
    "n_classes",
    "train_size",
    "label_bits",
    "bits_stored",
    "bits_stored_se",
    "replicas",
    "bits_per_parameter",
    "bits_per_parameter_se",
    "is_max",
)
# The columns of one capacity curve: the run's without its training-set size.
CURVE_COLUMNS = [c for c in RUN_COLUMNS if c not in ("size", "shots")]


def bits_stored(loss: np.ndarray, trained: np.ndarray, n_classes: int) -> np.ndarray:
    """float [R]: each replica's bits stored, ``sum_i max(0, log2 K - CE_i / ln 2)`` over its
    training examples (``loss``: cross-entropy in nats [R, n_pool]; ``trained``: bool [R, n_pool]).
    A NaN loss (a diverged replica) gives NaN bits: no number rather than a wrong one."""
    per_example = np.maximum(math.log2(n_classes) - np.asarray(loss, float) / math.log(2), 0.0)
    return np.where(np.asarray(trained, bool), per_example, 0.0).sum(axis=1)


def variant_of(run: Mapping[str, Any]) -> Variant | None:
    """The model variant of a run's columns, or None for one that stores nothing in weights
    (k-NN, memory network: module doc)."""
    cls = MODEL_KINDS[run["kind"]]
    if not stores_in_weights(cls):
        return None
    fields = {f.name for f in dataclasses.fields(cls)} - {"name"}
    return cls(run["model_name"], **{f: int(run[f]) for f in fields})


def parameter_count(run: Mapping[str, Any], split: Split) -> int | None:
    """Trainable parameters of one replica of ``run`` on ``split``; None: no row (module doc)."""
    variant = variant_of(run)
    if variant is None:
        return None
    dims = (split.x_pool.shape[1], split.n_classes, split.image_shape, split.token_shape)
    return variant.parameter_count(*dims)


def _row(run: Mapping[str, Any], bank: Mapping[str, np.ndarray], split: Split) -> dict | None:
    parameters = parameter_count(run, split)
    if parameters is None:
        return None
    trained = np.asarray(bank["train_mask"], bool)
    bits = bits_stored(bank["pool_loss"], trained, split.n_classes)
    r = len(bits)
    se = float(bits.std(ddof=1) / math.sqrt(r)) if r > 1 else math.nan
    # Every replica trains on as many examples (a size, less any validation carve).
    train_size = round(float(trained.sum(axis=1).mean()))
    mean = float(bits.mean())
    values = (
        parameters,
        split.n_classes,
        train_size,
        train_size * math.log2(split.n_classes),
        mean,
        se,
        r,
        mean / parameters,
        se / parameters,
        False,
    )
    return {c: run[c] for c in RUN_COLUMNS} | dict(zip(COLUMNS, values, strict=True))


def mark_max(frame: pd.DataFrame) -> pd.Series:
    """bool per row: the training-set size that stores the most bits of its capacity curve
    (CURVE_COLUMNS); the smallest such size on a tie, none where every size is NaN."""
    is_max = pd.Series(False, index=frame.index)
    if frame.empty:
        return is_max
    finite = frame[np.isfinite(frame["bits_stored"].to_numpy(float))]
    ordered = finite.sort_values("train_size", kind="stable")
    best = ordered.groupby(CURVE_COLUMNS, sort=False, dropna=False)["bits_stored"].idxmax()
    is_max[best.to_numpy()] = True
    return is_max


def capacity_bits_table(
    evaluations: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
    split_of: Callable[[str], Split],
    random_labels: Collection[str],
) -> pd.DataFrame:
    """capacity_bits.csv: per run on a dataset of ``random_labels`` whose model stores in its
    weights, its bits stored (mean over replicas, standard error), per parameter, and whether its
    size is its curve's maximum (``is_max``). Runs of other datasets are skipped."""
    rows = []
    for run, bank in evaluations:
        if run["dataset"] in random_labels:
            row = _row(run, bank, split_of(run["dataset"]))
            if row is not None:
                rows.append(row)
    frame = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *COLUMNS])
    frame["is_max"] = mark_max(frame)
    return frame
