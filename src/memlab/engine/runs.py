"""A block of a configuration's replicas: train it, rebuild it from its checkpoint, evaluate it.

These are the bodies of the train and evaluate rules, kept here so that scripts stay thin and
tests can call them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from memlab import columnar
from memlab.columnar import Columns
from memlab.data.datasets import Split
from memlab.engine import input_gradients
from memlab.engine.builders import build, predictor
from memlab.engine.dynamics import ARRAYS as DYNAMICS_ARRAYS
from memlab.engine.evaluate import (
    LogProba,
    canary_arrays,
    evaluate_replicas,
    network_log_proba,
)
from memlab.engine.memory_net import StackedMemoryNet
from memlab.engine.models import StackedModel
from memlab.engine.train import (
    HISTORY_COLUMNS,
    STOP_REASONS,
    Resume,
    TrainResult,
    carve_validation,
    init_seeds,
    loss_drop,
    train_stacked,
)
from memlab.io import MemlabInputError
from memlab.plan.kinds import Variant, variant_from_spec
from memlab.plan.study import Regime, undertrained
from memlab.seeds import derive_seed


def _build(
    variant: Variant, split: Split, regime: Regime, seed: int, replicas: Sequence[int]
) -> StackedModel:
    """The stacked model of the replicas numbered ``replicas``."""
    return build(variant, split, dropout=regime.dropout, replica_seeds=init_seeds(seed, replicas))


M = TypeVar("M", bound=torch.nn.Module)

# Replicas stacked into one model at most (MLPs): stacking pays while the stack's parameters fit
# in cache, beyond that it costs time, and memory grows with the stack (the measurements behind
# this cap: benchmarks/README.md).
STACK_PARAMS = 1 << 19


def replicas_per_chunk(variant: Variant, params_per_replica: int, replicas: int) -> int:
    """How many replicas one stacked model trains at once: a function of the configuration only
    (never of timings), so the same config trains to the same bits on any machine.

    Chunks change nothing for a replica but its dropout masks (one dropout stream per stack).
    """
    if not variant.chunked:
        return replicas
    return max(1, min(replicas, STACK_PARAMS // max(1, params_per_replica)))


def _merge(parts: list[TrainResult]) -> TrainResult:
    """One result from the results of consecutive chunks of replicas."""
    if len(parts) == 1:
        return parts[0]
    model = StackedModel.concat([p.model for p in parts])
    history = columnar.concat([p.history_columns for p in parts])
    # By epoch, then replica: the order one stack of all the replicas writes.
    history = columnar.take(history, np.lexsort((history["replica"], history["epoch"])))
    return TrainResult(
        model,
        history,
        np.concatenate([p.fit_epoch for p in parts]),
        np.concatenate([p.stop_epoch for p in parts]),
        [s for p in parts for s in p.stop_reason],
        seconds=sum(p.seconds for p in parts),
        dynamics={k: np.concatenate([p.dynamics[k] for p in parts]) for k in parts[0].dynamics},
    )


def _memory_run(
    variant: Variant, members: np.ndarray, replicas: np.ndarray, log: Callable[[str], None]
) -> tuple:
    """A model that does not train is its memory: the subsets are the whole model."""
    r = members.shape[0]
    log(f"{variant.id} remembers {int(members[0].sum())} examples x {r} replicas")
    return {}, _epochless_arrays(replicas, members, np.full(r, -1), -1), _no_history()


def _epochless_arrays(
    replicas: np.ndarray, members: np.ndarray, fit_epoch: np.ndarray, stop_reason: int
) -> dict[str, np.ndarray]:
    """The per-replica arrays of a model made without epochs (a memory, a closed-form solve):
    trained on all its subset, stopped at epoch 0, no loss trend."""
    r = members.shape[0]
    return {
        "replica": replicas,
        "train_mask": members,
        "val_mask": np.zeros_like(members),
        "fit_epoch": np.asarray(fit_epoch, np.int64),
        "stop_epoch": np.zeros(r, np.int64),
        "stop_reason": np.full(r, stop_reason, np.int64),
        "loss_drop": np.full(r, np.nan, np.float32),
    }


def _no_history() -> Columns:
    return columnar.from_rows([], HISTORY_COLUMNS)


def _solved_run(
    split: Split,
    y_pool: np.ndarray,
    members: np.ndarray,
    variant: Variant,
    regime: Regime,
    seed: int,
    replicas: np.ndarray,
    log: Callable[[str], None],
    device: torch.device | str = "cpu",
) -> tuple:
    """A model trained in closed form: one batched solve, no epochs, nothing to resume."""
    from memlab.engine.random_features import StackedRandomFeatures, solve

    model = _build(variant, split, regime, seed, replicas.tolist()).to(device)
    if not isinstance(model, StackedRandomFeatures):
        raise TypeError(f"{variant.id} is solved in closed form but builds {type(model).__name__}")
    r, n = members.shape[0], int(members[0].sum())
    log(f"{variant.id}: solving {r} readouts on {n} examples each, ridge {regime.ridge}")
    train_acc = solve(model, split.x_pool, y_pool, members, split.n_classes, regime.ridge)
    log(f"solved; {int((train_acc >= 1).sum())}/{r} replicas reached 100% train accuracy")
    fit_epoch = np.where(train_acc >= 1, 0, -1)
    arrays = _epochless_arrays(replicas, members, fit_epoch, STOP_REASONS.index("solved"))
    return _cpu_state(model), arrays, _no_history()


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's state dict on the CPU (a checkpoint is read wherever evaluate runs)."""
    return {name: t.cpu() for name, t in model.state_dict().items()}


def _log_result(res: TrainResult, log: Callable[[str], None]) -> None:
    fit, r = int((res.fit_epoch >= 0).sum()), len(res.fit_epoch)
    names, counts = np.unique(res.stop_reason, return_counts=True)
    reasons = {str(k): int(v) for k, v in zip(names, counts, strict=True)}
    log(
        f"trained in {res.seconds:.1f}s; {fit}/{r} replicas reached 100% train accuracy; "
        f"stop reasons {reasons}"
    )


def train_run(
    split: Split,
    y_pool: np.ndarray,
    flipped: np.ndarray,
    members: np.ndarray,
    variant: Variant,
    regime: Regime | None,
    *,
    seed: int,
    replicas: Sequence[int] | None = None,
    resume: Resume | None = None,
    log: Callable[[str], None] = print,
    device: torch.device | str = "cpu",
    gradient_every: int = 0,
) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray], Columns]:
    """Train every replica on its subset; return (state dict, per-replica arrays, history as
    columns: :mod:`memlab.columnar`, ``columnar.to_frame`` for a DataFrame).

    ``replicas`` are the replica numbers of the rows of ``members`` (a block of the run; default
    ``0..R-1``): every seed of a replica derives from its number, so a replica trains the same in
    any block (but for its dropout masks: one stream per stack). ``resume`` (networks only) saves
    and continues from a resumable state, see ``train_stacked``. ``device`` (memlab.engine.device)
    is where networks train and readouts are solved; the state dict returned is on the CPU.
    ``gradient_every`` (the config's ``estimators.gradient_every``): see ``train_stacked``.
    """
    r = members.shape[0]
    numbers = np.arange(r) if replicas is None else np.asarray(replicas, np.int64)
    if len(numbers) != r:
        raise ValueError(f"{len(numbers)} replica numbers for {r} subsets")
    if regime is None:
        return _memory_run(variant, members, numbers, log)
    if variant.solved:
        return _solved_run(split, y_pool, members, variant, regime, seed, numbers, log, device)
    if regime.early_stopping:
        assert regime.val_fraction is not None  # set wherever a regime stops early
        fraction = regime.val_fraction
        train_mask, val_mask = carve_validation(members, fraction, seed, numbers.tolist())
    else:
        train_mask, val_mask = members, np.zeros_like(members)
    n_params = variant.parameter_count(
        split.x_pool.shape[1], split.n_classes, split.image_shape, split.token_shape
    )
    chunk = replicas_per_chunk(variant, n_params, r)
    log(
        f"{variant.kind} {variant.spec()}: {n_params} parameters per replica, replicas "
        f"{numbers[0]}-{numbers[-1]} "
        f"(stacked {chunk} at a time), {int(train_mask[0].sum())} training examples each; "
        f"settings {regime}"
    )
    parts = []
    for start in range(0, r, chunk):
        rows = list(range(start, min(start + chunk, r)))
        # One state file per chunk, so finished chunks are not trained again after a kill.
        state = resume if resume is None or chunk >= r else resume.for_chunk(start)
        chunk_replicas = numbers[rows].tolist()
        parts.append(
            train_stacked(
                _build(variant, split, regime, seed, chunk_replicas),
                split.x_pool,
                y_pool,
                train_mask[rows],
                val_mask[rows],
                split.x_test,
                split.y_test,
                regime,
                seed=seed,
                replicas=chunk_replicas,
                flipped=flipped,
                resume=state,
                log=log,
                device=device,
                gradient_every=gradient_every,
            )
        )
    res = _merge(parts)
    _log_result(res, log)
    arrays = {
        "replica": numbers,
        "train_mask": train_mask,
        "val_mask": val_mask,
        "fit_epoch": res.fit_epoch.astype(np.int64),
        "stop_epoch": res.stop_epoch.astype(np.int64),
        "stop_reason": np.array([STOP_REASONS.index(s) for s in res.stop_reason]),
        # How much the train loss still fell at the end: the convergence check's input.
        "loss_drop": loss_drop(res.history_columns, numbers.tolist()),
        **res.dynamics,
    }
    return _cpu_state(res.model), arrays, res.history_columns


def checkpoint_regime(checkpoint: Mapping[str, Any]) -> Regime | None:
    """The regime a checkpoint was trained in (None for a model that does not train)."""
    settings = checkpoint["settings"]
    if not variant_from_spec(settings["model"]).trains:
        return None
    return Regime.from_settings(settings["wildcards"]["regime"], settings["settings"])


def checkpoint_replicas(checkpoint: Mapping[str, Any]) -> np.ndarray:
    """The replica numbers of a checkpoint's rows."""
    return np.asarray(checkpoint["arrays"]["replica"], np.int64)


def load_network(checkpoint: Mapping[str, Any], split: Split) -> StackedModel:
    """The stacked network of a run that trains, rebuilt from its checkpoint (eval mode)."""
    settings = checkpoint["settings"]
    variant = variant_from_spec(settings["model"])
    regime = checkpoint_regime(checkpoint)
    assert regime is not None, "only a model that trains has a network"
    replicas = checkpoint_replicas(checkpoint).tolist()
    return restore(_build(variant, split, regime, int(settings["seed"]), replicas), checkpoint)


def restore(model: M, checkpoint: Mapping[str, Any]) -> M:
    """``model`` holding a checkpoint's weights, in eval mode; a checkpoint of another model is
    a clear error with the command that retrains it."""
    try:
        model.load_state_dict(checkpoint["state"])
    except RuntimeError as e:
        spec = checkpoint["settings"]["model"]
        raise MemlabInputError(
            f"checkpoint does not match its model {spec} ({str(e)[:200]}). Retrain it "
            "with ./run.sh study --forcerun CHECKPOINT (this job's input checkpoint.pt, named in "
            "its log; add your usual --configfile)."
        ) from None
    model.eval()
    return model


def model_log_proba(
    checkpoint: Mapping[str, Any], split: Split, y_pool: np.ndarray, *, memory: bool = True
) -> LogProba:
    """Rebuild a run's model from its checkpoint as a function ``x -> log p [R, n, C]``.

    A memory network remembers each replica's training examples with the labels it trained on
    (``y_pool``); ``memory=False`` switches its memory off (its head alone).
    """
    variant = variant_from_spec(checkpoint["settings"]["model"])
    members = checkpoint["arrays"]["train_mask"]
    if checkpoint_regime(checkpoint) is None:
        return predictor(variant, split, y_pool, members)
    model = load_network(checkpoint, split)
    if isinstance(model, StackedMemoryNet):  # a kind that remembers (variant.remembers)
        model.remember(
            torch.from_numpy(np.ascontiguousarray(split.x_pool, dtype=np.float32)),
            torch.from_numpy(np.asarray(y_pool, dtype=np.int64)),
            torch.from_numpy(np.stack([np.flatnonzero(m) for m in members])),
        )
        model.memory_on = memory
    return network_log_proba(model)


def input_gradient_arrays(
    checkpoint: Mapping[str, Any],
    split: Split,
    y_pool: np.ndarray,
    estimators: Mapping[str, Any],
) -> dict[str, np.ndarray]:
    """Loss sensitivity and curvature per (replica, pool example) of a network
    (:mod:`memlab.engine.input_gradients`; ``estimators``: the config's ``estimators``); none for
    a model without input gradients (k-NN, a memory) or with them switched off."""
    variant = variant_from_spec(checkpoint["settings"]["model"])
    if not estimators["input_gradients"] or not variant.trains or variant.remembers:
        return {}
    model = load_network(checkpoint, split)
    seed = derive_seed(int(checkpoint["settings"]["seed"]), "curvature")
    return input_gradients.scores(
        model,
        split.x_pool,
        y_pool,
        model.n_replicas,
        curvature_probes=int(estimators["curvature_probes"]),
        curvature_h=float(estimators["curvature_h"]),
        seed=seed,
    )


def evaluate_run(
    checkpoint: Mapping[str, Any],
    split: Split,
    labels: Mapping[str, np.ndarray],
    perturbed: Mapping[tuple[str, int], np.ndarray],
    perturbed_pool: Mapping[tuple[str, int], np.ndarray] | None = None,
    estimators: Mapping[str, Any] | None = None,
) -> tuple[dict[str, np.ndarray], Columns]:
    """Per-example arrays and the tidy metrics (with training facts) of one run; the metrics as
    columns (:mod:`memlab.columnar`). ``estimators`` (the config's ``estimators``; None: none)
    adds the input-gradient estimators (:func:`input_gradient_arrays`)."""
    a = checkpoint["arrays"]
    members = a["train_mask"] | a["val_mask"]
    remembers = variant_from_spec(checkpoint["settings"]["model"]).remembers

    def evaluate(memory: bool) -> tuple[dict[str, np.ndarray], Columns]:
        log_p = model_log_proba(checkpoint, split, labels["y_pool"], memory=memory)
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
            perturbed_pool=perturbed_pool,
        )
        arrays |= canary_arrays(log_p, split)  # canaries' and references' losses, if any
        metrics = columnar.concat([metrics, _training_facts(checkpoint, metrics)])
        if remembers:  # the memory column (memlab.plan.study.IDENTITY_COLUMNS): on or off
            n = len(metrics["replica"])
            metrics = {"memory": columnar.constant("on" if memory else "off", n), **metrics}
        return arrays, metrics

    # Per example: the model as it is used, with its memory; a memory network's metrics also
    # with its memory off, so that every table shows what the memory adds.
    arrays, metrics = evaluate(memory=True)
    if remembers:
        metrics = columnar.concat([metrics, evaluate(memory=False)[1]])
    replicas = checkpoint_replicas(checkpoint)
    # The block's replica numbers, not its row numbers, in every table.
    metrics["replica"] = replicas[metrics["replica"]]
    arrays.update(
        replica=replicas,
        fit_epoch=a["fit_epoch"],
        stop_epoch=a["stop_epoch"],
        stop_reason=a["stop_reason"],
        loss_drop=_loss_drop(a),
        # Training dynamics per example (memlab.engine.dynamics), where the run trained by epochs.
        **{k: a[k] for k in DYNAMICS_ARRAYS if k in a},
    )
    if estimators is not None:
        arrays.update(input_gradient_arrays(checkpoint, split, labels["y_pool"], estimators))
    return arrays, metrics


def _loss_drop(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    # A checkpoint written before loss_drop existed: unknown (memlab.plan.study.undertrained).
    r = arrays["train_mask"].shape[0]
    return arrays.get("loss_drop", np.full(r, np.nan, np.float32))


def _training_facts(checkpoint: Mapping[str, Any], metrics: Columns) -> Columns:
    """Per replica row: whether the model fits its training labels, and how training ended."""
    a = checkpoint["arrays"]
    r = a["train_mask"].shape[0]
    # "fit": the final model gets every example it was trained on right (its label as given).
    train = (metrics["split"] == "train") & (metrics["metric"] == "accuracy")
    train_acc = metrics["value"][train]
    facts = {"fit": (train_acc >= 1.0).astype(float)}
    drop = _loss_drop(a)
    variant = variant_from_spec(checkpoint["settings"]["model"])
    if variant.remembers:  # the weight of the memory read, learned or configured
        logit = checkpoint["state"].get("mix_logit")
        learned = None if logit is None else torch.sigmoid(logit).flatten().double().numpy()
        facts["mix"] = np.full(r, getattr(variant, "mix", np.nan)) if learned is None else learned
    if variant.trains:
        facts["epochs_to_fit"] = np.where(a["fit_epoch"] >= 0, a["fit_epoch"], np.nan)
        facts["stop_epoch"] = a["stop_epoch"].astype(float)
        # How each replica stopped (1 for its reason), and whether that left it under-trained.
        for i, reason in enumerate(STOP_REASONS):
            facts[f"stopped_{reason}"] = (a["stop_reason"] == i).astype(float)
        facts["loss_drop"] = drop.astype(float)
        facts["undertrained"] = undertrained(a["stop_reason"], a["fit_epoch"], drop).astype(float)
    n = r * len(facts)
    return {
        "replica": np.tile(np.arange(r), len(facts)),
        "split": columnar.constant("train", n),
        "perturbation": columnar.constant("none", n),
        "severity": columnar.constant(0, n),
        "metric": np.repeat(list(facts), r),
        "value": np.concatenate(list(facts.values())),
    }
