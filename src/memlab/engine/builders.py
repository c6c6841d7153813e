"""How each model kind runs in the engine: the stacked network of a kind that trains
(:func:`build`), the predictor of one that does not (:func:`predictor`).

Here, not as methods of the kinds (:mod:`memlab.plan.kinds`): the plan is read on every
Snakemake start and sits below the engine (the import-linter contract in ``pyproject.toml``), so
a kind says what it is (its keys, id and size) and the engine says how it runs, one function per
kind, dispatched on the kind's class. Adding a kind that trains is its class there, its schema
entry and its :func:`build` here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch

import numpy as np
import torch

from memlab.data.datasets import Split
from memlab.engine.evaluate import LogProba
from memlab.engine.memory_net import StackedMemoryNet
from memlab.engine.models import StackedCNN, StackedMLP, StackedModel, knn_log_proba
from memlab.engine.random_features import StackedRandomFeatures
from memlab.io import MemlabInputError
from memlab.plan.kinds import CNN, KNN, MLP, MemoryNet, RandomFeatures, Variant


@singledispatch
def build(
    variant: Variant, split: Split, *, dropout: float, replica_seeds: Sequence[int]
) -> StackedModel:
    """The stacked network of ``len(replica_seeds)`` replicas of ``variant`` (kinds that train)."""
    raise TypeError(f"model kind {variant.kind!r} is not trained")


@build.register
def _mlp(
    variant: MLP, split: Split, *, dropout: float, replica_seeds: Sequence[int]
) -> StackedModel:
    if variant.embedding and split.token_shape is None:
        raise MemlabInputError(
            f"model {variant.id} (embedding {variant.embedding}) needs token data "
            "(modular_addition); drop `embedding` for other data."
        )
    return StackedMLP(
        split.x_pool.shape[1],
        split.n_classes,
        width=variant.width,
        depth=variant.depth,
        dropout=dropout,
        replica_seeds=replica_seeds,
        embedding=variant.embedding,
        tokens=split.token_shape,
    )


@build.register
def _cnn(
    variant: CNN, split: Split, *, dropout: float, replica_seeds: Sequence[int]
) -> StackedModel:
    if split.image_shape is None:
        raise MemlabInputError(
            f"model {variant.id} (kind 'cnn') needs image data; use an mlp or knn model for "
            "tabular data."
        )
    return StackedCNN(
        split.image_shape,
        split.n_classes,
        width=variant.width,
        dropout=dropout,
        replica_seeds=replica_seeds,
    )


@build.register
def _random_features(
    variant: RandomFeatures, split: Split, *, dropout: float, replica_seeds: Sequence[int]
) -> StackedModel:
    return StackedRandomFeatures(
        split.x_pool.shape[1], split.n_classes, features=variant.width, replica_seeds=replica_seeds
    )


@build.register
def _memory_net(
    variant: MemoryNet, split: Split, *, dropout: float, replica_seeds: Sequence[int]
) -> StackedModel:
    return StackedMemoryNet(
        split.x_pool.shape[1],
        split.n_classes,
        width=variant.width,
        depth=variant.depth,
        dropout=dropout,
        replica_seeds=replica_seeds,
        mix=variant.mix,
        temperature=variant.temperature,
    )


@singledispatch
def predictor(variant: Variant, split: Split, y_pool: np.ndarray, members: np.ndarray) -> LogProba:
    """``x -> log p [R, n, C]`` of the R models remembering ``members`` (boolean [R, n_pool])
    with labels ``y_pool`` (kinds that do not train)."""
    raise TypeError(f"model kind {variant.kind!r} trains: rebuild it from its checkpoint")


@predictor.register
def _knn(variant: KNN, split: Split, y_pool: np.ndarray, members: np.ndarray) -> LogProba:
    x_pool = torch.from_numpy(split.x_pool)
    y = torch.from_numpy(np.asarray(y_pool, dtype=np.int64))
    m = torch.from_numpy(members)

    def log_proba(x: np.ndarray) -> torch.Tensor:
        query = torch.from_numpy(np.asarray(x, np.float32))
        return knn_log_proba(query, x_pool, y, m, k=variant.k, n_classes=split.n_classes)

    return log_proba
