"""Tidy tables from the per-run metrics: one row per observation, ready to pivot.

Columns of ``metrics``: the run's coordinates (``RUN_COLUMNS``), then ``replica``, ``split``,
``perturbation``, ``severity``, ``metric``, ``value``. Derived tables: the generalization gap
(train minus held-out accuracy per replica), robustness (accuracy and its drop from clean per
perturbation and severity) and a summary (mean and standard error over replicas).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

RUN_COLUMNS = (
    "dataset",
    "label_noise",
    "size",
    "model",
    "model_name",
    "kind",
    "width",
    "k",
    "regime",
)
KEYS = [*RUN_COLUMNS, "replica"]


def with_run(frame: pd.DataFrame, run: Mapping[str, Any]) -> pd.DataFrame:
    """Prefix a per-run table with the run's coordinates as columns."""
    coords = pd.DataFrame({k: [run[k]] * len(frame) for k in RUN_COLUMNS}, index=frame.index)
    return pd.concat([coords, frame], axis=1)


def gather(paths: Iterable[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _accuracy(metrics: pd.DataFrame, split: str) -> pd.Series:
    sel = metrics[(metrics["split"] == split) & (metrics["metric"] == "accuracy")]
    return sel.set_index(KEYS)["value"]


def generalization_gap(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run and replica: train accuracy (labels as trained on), held-out accuracy, gap."""
    out = pd.DataFrame(
        {
            "train_accuracy": _accuracy(metrics, "train"),
            "heldout_accuracy": _accuracy(metrics, "heldout"),
        }
    )
    out["gap"] = out["train_accuracy"] - out["heldout_accuracy"]
    return out.reset_index()


def robustness(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run, replica, perturbation and severity: accuracy, clean accuracy and the drop."""
    pert = metrics[(metrics["split"] == "perturbed") & (metrics["metric"] == "accuracy")]
    clean = _accuracy(metrics, "heldout").rename("clean_accuracy")
    out = pert[[*KEYS, "perturbation", "severity", "value"]].rename(columns={"value": "accuracy"})
    out = out.join(clean, on=KEYS)
    out["drop"] = out["clean_accuracy"] - out["accuracy"]
    return out.reset_index(drop=True)


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard error and replica count of every metric over replicas."""
    group = [*RUN_COLUMNS, "split", "perturbation", "severity", "metric"]
    g = metrics.groupby(group, sort=True, dropna=False)["value"]
    out = g.agg(mean="mean", std="std", replicas="count").reset_index()
    out["sem"] = out["std"] / np.sqrt(out["replicas"])
    return out.drop(columns="std")
