"""Evaluation: per-example outputs of every replica, and the per-split metrics built from them.

Per example (training pool and held-out set) we keep the predicted label, the loss and the
logit-scaled confidence ``log p_y - log sum_{y' != y} p_y'`` (Carlini et al. 2022): what
memorization scores and membership inference need. Perturbed sets are only aggregated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from memlab.columnar import Columns, from_rows
from memlab.engine.fastpath import cross_entropy
from memlab.engine.models import StackedModel

if TYPE_CHECKING:
    from memlab.data.datasets import Split

LogProba = Callable[[np.ndarray], torch.Tensor]  # x [n, d] -> log p [R, n, C]

METRIC_COLUMNS = ("replica", "split", "perturbation", "severity", "metric", "value")


def network_log_proba(model: StackedModel, chunk: int = 2048) -> LogProba:
    @torch.no_grad()
    def fn(x: np.ndarray) -> torch.Tensor:
        model.eval()
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        parts = [torch.log_softmax(model(xt[s : s + chunk]), -1) for s in range(0, len(xt), chunk)]
        return torch.cat(parts, dim=1)

    return fn


def example_outputs(log_p: torch.Tensor, y: np.ndarray) -> dict[str, np.ndarray]:
    """Predicted label, loss and logit-scaled confidence per (replica, example).

    The loss is :func:`memlab.engine.fastpath.cross_entropy` of the log-probabilities (they differ
    from the logits by a per-example shift, which it ignores): ``log1p(sum_{j != y} p_j / p_y)``,
    not ``-log p_y``, which rounds to exactly 0.0 in float32 for a confident correct prediction.
    """
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64)).expand(log_p.shape[:2])
    lp_y = log_p.gather(2, yt.unsqueeze(2)).squeeze(2)
    others = log_p.scatter(2, yt.unsqueeze(2), float("-inf")).logsumexp(2)
    return {
        "pred": log_p.argmax(2).numpy().astype(np.int16),
        "loss": cross_entropy(log_p, yt).numpy().astype(np.float32),
        "confidence": (lp_y - others).numpy().astype(np.float32),
    }


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    counts = mask.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (values * mask).sum(axis=1) / counts, np.nan)


def _perturbed_means(
    log_proba: LogProba, perturbed: Mapping[tuple[str, int], np.ndarray], y: np.ndarray, r: int
) -> tuple[Sequence[tuple[str, int]], np.ndarray, np.ndarray]:
    """Per replica, accuracy and mean loss on each perturbed set (sorted by name, severity)."""
    keys: Sequence[tuple[str, int]] = sorted(perturbed)
    p_acc = np.zeros((r, len(keys)), np.float32)
    p_loss = np.zeros((r, len(keys)), np.float32)
    for j, key in enumerate(keys):
        out = example_outputs(log_proba(perturbed[key]), y)
        p_acc[:, j] = (out["pred"] == y).mean(1)
        p_loss[:, j] = out["loss"].mean(1)
    return keys, p_acc, p_loss


def evaluate_replicas(
    log_proba: LogProba,
    *,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    flipped: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    members: np.ndarray,
    train_mask: np.ndarray,
    val_mask: np.ndarray,
    perturbed: Mapping[tuple[str, int], np.ndarray],
    perturbed_pool: Mapping[tuple[str, int], np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], Columns]:
    """Evaluate every replica; return per-example arrays and a tidy metrics table (its columns,
    METRIC_COLUMNS: :mod:`memlab.columnar`, ``columnar.to_frame`` for a DataFrame).

    Splits: ``train`` (examples trained on, with the labels trained on), ``train_clean`` and
    ``train_flipped`` (the same, split by label noise), ``val`` (carved for early stopping),
    ``unseen`` (pool examples outside the replica's subset), ``heldout`` (clean test labels) and
    ``perturbed`` (held-out set under each perturbation and severity) and, given
    ``perturbed_pool`` (the pool under each perturbation: exact recall), ``recall``: each
    replica's accuracy on perturbed copies of the examples it trained on, against the labels it
    trained on (memlab.analysis.metrics.recall).
    """
    pool_log_p = log_proba(x_pool)
    pool = example_outputs(pool_log_p, y_pool)
    out = torch.from_numpy(~np.asarray(members, bool))
    test = example_outputs(log_proba(x_test), y_test)
    pool_correct = pool["pred"] == y_pool
    test_correct = test["pred"] == y_test
    r = members.shape[0]
    masks: dict[str, np.ndarray] = {
        "train": train_mask,
        "val": val_mask,
        "unseen": ~members,
    }
    if flipped.any():
        masks["train_clean"] = train_mask & ~flipped
        masks["train_flipped"] = train_mask & flipped
    rows: list[tuple[Any, ...]] = []

    def add(split: str, pert: str, sev: int, acc: np.ndarray, loss: np.ndarray) -> None:
        for i in range(r):
            rows.append((i, split, pert, sev, "accuracy", float(acc[i])))
            rows.append((i, split, pert, sev, "loss", float(loss[i])))

    for split, m in masks.items():
        if m.any():
            add(split, "none", 0, _masked_mean(pool_correct, m), _masked_mean(pool["loss"], m))
    add("heldout", "none", 0, test_correct.mean(1), test["loss"].mean(1))

    keys, p_acc, p_loss = _perturbed_means(log_proba, perturbed, y_test, r)
    for j, key in enumerate(keys):
        add("perturbed", key[0], key[1], p_acc[:, j], p_loss[:, j])

    pool_perturbed = perturbed_pool or {}
    recall_keys: Sequence[tuple[str, int]] = sorted(pool_perturbed)
    r_acc = np.zeros((r, len(recall_keys)), np.float32)
    for j, key in enumerate(recall_keys):
        out_j = example_outputs(log_proba(pool_perturbed[key]), y_pool)
        r_acc[:, j] = _masked_mean(out_j["pred"] == y_pool, train_mask)
        r_loss = _masked_mean(out_j["loss"], train_mask)
        add("recall", key[0], key[1], r_acc[:, j], r_loss)

    arrays = {
        "pool_correct": pool_correct,
        "test_correct": test_correct,
        "pool_label": np.asarray(y_pool, np.int16),
        "test_label": np.asarray(y_test, np.int16),
        "flipped": flipped,
        **{f"pool_{k}": v for k, v in pool.items()},
        **{f"test_{k}": v for k, v in test.items()},
        # Out-of-sample class probabilities (confident learning): per pool example the sum of the
        # probability vectors of the replicas that did not train on it, and their count.
        "pool_out_proba_sum": (pool_log_p.double().exp() * out[..., None]).sum(0).numpy(),
        "pool_out_count": out.sum(0).numpy().astype(np.int64),
        "members": members,
        "train_mask": train_mask,
        "val_mask": val_mask,
        "perturbed_accuracy": p_acc,
        "perturbed_loss": p_loss,
        "perturbation": np.array([k[0] for k in keys], dtype=str),
        "severity": np.array([k[1] for k in keys], dtype=np.int64),
    }
    if recall_keys:
        arrays |= {
            "recall_accuracy": r_acc,
            "recall_perturbation": np.array([k[0] for k in recall_keys], dtype=str),
            "recall_severity": np.array([k[1] for k in recall_keys], dtype=np.int64),
        }
    return arrays, from_rows(rows, METRIC_COLUMNS)


def canary_arrays(log_proba: LogProba, split: Split) -> dict[str, np.ndarray]:
    """Where the split has canaries (memlab.data.canaries): every replica's loss on every canary
    (controls included) and on every never-trained reference point, the loss of ``pool_loss``;
    with which pool rows are canaries and each canary's repetitions, for exposure
    (memlab.analysis.exposure). Empty without canaries."""
    x, y, ref_x, ref_y = split.canary_x, split.canary_y, split.reference_x, split.reference_y
    if x is None or y is None or ref_x is None or ref_y is None:
        return {}
    return {
        "canary_loss": example_outputs(log_proba(x), y)["loss"],
        "reference_loss": example_outputs(log_proba(ref_x), ref_y)["loss"],
        "pool_canary": np.asarray(split.pool_canary, np.int64),
        "canary_repetitions": np.asarray(split.canary_repetitions, np.int64),
    }
