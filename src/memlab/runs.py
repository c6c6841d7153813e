"""One run = all replicas of one configuration: train it, rebuild it, evaluate it.

These are the bodies of the train and evaluate rules, kept here so that scripts stay thin and
tests can call them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from memlab.data import Split
from memlab.evaluate import LogProba, evaluate_replicas, network_log_proba
from memlab.io import MemlabInputError
from memlab.models import StackedModel, build_model, knn_log_proba
from memlab.train import (
    HISTORY_COLUMNS,
    STOP_REASONS,
    Resume,
    TrainResult,
    TrainSettings,
    carve_validation,
    init_seeds,
    train_stacked,
)


def _build(
    variant: Mapping[str, Any],
    split: Split,
    settings: TrainSettings,
    seed: int,
    replicas: int | Sequence[int],
) -> torch.nn.Module:
    """The stacked model of ``replicas`` (a count, or the replica numbers of a chunk)."""
    rows = range(replicas) if isinstance(replicas, int) else replicas
    return build_model(
        variant,
        in_dim=split.x_pool.shape[1],
        n_classes=split.n_classes,
        image_shape=split.image_shape,
        dropout=settings.dropout,
        replica_seeds=init_seeds(seed, rows),
    )


# Replicas stacked into one model at most (MLPs): stacking pays while the stack's parameters fit
# in cache, beyond that it costs time, and memory grows with the stack (the measurements behind
# this cap: benchmarks/README.md).
STACK_PARAMS = 1 << 19


def replicas_per_chunk(variant: Mapping[str, Any], params_per_replica: int, replicas: int) -> int:
    """How many replicas one stacked model trains at once: a function of the configuration only
    (never of timings), so the same config trains to the same bits on any machine.

    Chunks change nothing for a replica but its dropout masks (one dropout stream per stack).
    """
    if variant["kind"] != "mlp":
        return replicas
    return max(1, min(replicas, STACK_PARAMS // max(1, params_per_replica)))


def _merge(parts: list[TrainResult]) -> TrainResult:
    """One result from the results of consecutive chunks of replicas."""
    if len(parts) == 1:
        return parts[0]
    model = StackedModel.concat([p.model for p in parts])
    history = pd.concat([p.history for p in parts], ignore_index=True)
    history = history.sort_values(["epoch", "replica"], kind="stable", ignore_index=True)
    return TrainResult(
        model,
        history,
        np.concatenate([p.fit_epoch for p in parts]),
        np.concatenate([p.stop_epoch for p in parts]),
        [s for p in parts for s in p.stop_reason],
        seconds=sum(p.seconds for p in parts),
    )


def train_run(
    split: Split,
    y_pool: np.ndarray,
    flipped: np.ndarray,
    members: np.ndarray,
    variant: Mapping[str, Any],
    settings: Mapping[str, Any],
    *,
    seed: int,
    resume: Resume | None = None,
    log: Callable[[str], None] = print,
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray], pd.DataFrame]:
    """Train every replica on its subset; return (state dict, per-replica arrays, history).

    ``resume`` (networks only) saves and continues from a resumable state, see ``train_stacked``.
    """
    r = members.shape[0]
    if variant["kind"] == "knn":
        # A k-NN model is its memory: the subsets are the whole model.
        log(f"k-NN (k={variant['k']}) remembers {int(members[0].sum())} examples x {r} replicas")
        arrays = {
            "train_mask": members,
            "val_mask": np.zeros_like(members),
            "fit_epoch": np.full(r, -1, np.int64),
            "stop_epoch": np.zeros(r, np.int64),
            "stop_reason": np.full(r, -1, np.int64),
        }
        return {}, arrays, pd.DataFrame(columns=list(HISTORY_COLUMNS))

    ts = TrainSettings.from_config({}, settings)
    if ts.early_stopping:
        train_mask, val_mask = carve_validation(members, ts.val_fraction, seed)
    else:
        train_mask, val_mask = members, np.zeros_like(members)
    n_params = sum(p[0].numel() for p in _build(variant, split, ts, seed, 1).parameters())
    chunk = replicas_per_chunk(variant, n_params, r)
    log(
        f"{variant['kind']} {dict(variant)}: {n_params} parameters per replica, {r} replicas "
        f"(stacked {chunk} at a time), {int(train_mask[0].sum())} training examples each; "
        f"settings {ts}"
    )
    parts = []
    for start in range(0, r, chunk):
        rows = list(range(start, min(start + chunk, r)))
        # One state file per chunk, so finished chunks are not trained again after a kill.
        state = resume if resume is None or chunk >= r else resume.for_chunk(start)
        parts.append(
            train_stacked(
                _build(variant, split, ts, seed, rows),
                split.x_pool,
                y_pool,
                train_mask[rows],
                val_mask[rows],
                split.x_test,
                split.y_test,
                ts,
                seed=seed,
                replicas=rows,
                flipped=flipped,
                resume=state,
                log=log,
            )
        )
    res = _merge(parts)
    fit = int((res.fit_epoch >= 0).sum())
    log(
        f"trained in {res.seconds:.1f}s; {fit}/{r} replicas reached 100% train accuracy; "
        f"stop reasons {dict(zip(*np.unique(res.stop_reason, return_counts=True), strict=True))}"
    )
    arrays = {
        "train_mask": train_mask,
        "val_mask": val_mask,
        "fit_epoch": res.fit_epoch.astype(np.int64),
        "stop_epoch": res.stop_epoch.astype(np.int64),
        "stop_reason": np.array([STOP_REASONS.index(s) for s in res.stop_reason]),
    }
    return dict(res.model.state_dict()), arrays, res.history


def model_log_proba(checkpoint: Mapping[str, Any], split: Split, y_pool: np.ndarray) -> LogProba:
    """Rebuild a run's model from its checkpoint as a function ``x -> log p [R, n, C]``."""
    settings = checkpoint["settings"]
    variant = settings["model"]
    members = checkpoint["arrays"]["train_mask"]
    if variant["kind"] == "knn":
        x_pool = torch.from_numpy(split.x_pool)
        y_t = torch.from_numpy(np.asarray(y_pool, dtype=np.int64))
        m = torch.from_numpy(members)

        def knn(x: np.ndarray) -> torch.Tensor:
            return knn_log_proba(
                torch.from_numpy(np.asarray(x, np.float32)),
                x_pool,
                y_t,
                m,
                k=variant["k"],
                n_classes=split.n_classes,
            )

        return knn
    ts = TrainSettings.from_config({}, settings["settings"])
    model = _build(variant, split, ts, int(settings["seed"]), members.shape[0])
    try:
        model.load_state_dict(checkpoint["state"])
    except RuntimeError as e:
        raise MemlabInputError(
            f"checkpoint does not match its model {dict(variant)} ({str(e)[:200]}). Delete it "
            "and rerun the workflow to retrain."
        ) from None
    return network_log_proba(model)


def evaluate_run(
    checkpoint: Mapping[str, Any],
    split: Split,
    labels: Mapping[str, np.ndarray],
    perturbed: Mapping[tuple[str, int], np.ndarray],
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Per-example arrays and the tidy metrics (with training facts) of one run."""
    a = checkpoint["arrays"]
    members = a["train_mask"] | a["val_mask"]
    log_p = model_log_proba(checkpoint, split, labels["y_pool"])
    arrays, metrics = evaluate_replicas(
        log_p,
        x_pool=split.x_pool,
        y_pool=labels["y_pool"],
        flipped=labels["flipped"],
        x_test=split.x_test,
        y_test=split.y_test,
        members=members,
        train_mask=a["train_mask"],
        val_mask=a["val_mask"],
        perturbed=perturbed,
    )
    r = members.shape[0]
    # "fit": the final model gets every example it was trained on right (its label as given).
    train_acc = metrics.query("split == 'train' and metric == 'accuracy'")["value"].to_numpy()
    facts = {"fit": (train_acc >= 1.0).astype(float)}
    if checkpoint["settings"]["model"]["kind"] != "knn":
        facts["epochs_to_fit"] = np.where(a["fit_epoch"] >= 0, a["fit_epoch"], np.nan)
        facts["stop_epoch"] = a["stop_epoch"].astype(float)
    facts_df = pd.DataFrame(
        {
            "replica": np.tile(np.arange(r), len(facts)),
            "split": "train",
            "perturbation": "none",
            "severity": 0,
            "metric": np.repeat(list(facts), r),
            "value": np.concatenate(list(facts.values())),
        }
    )
    arrays.update(
        fit_epoch=a["fit_epoch"], stop_epoch=a["stop_epoch"], stop_reason=a["stop_reason"]
    )
    return arrays, pd.concat([metrics, facts_df], ignore_index=True)
