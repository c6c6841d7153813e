"""Long-tailed data: classes split into subpopulations whose training counts follow a power law.

Feldman (STOC 2020) models natural data as a mixture of subpopulations with long-tailed
frequencies: a subpopulation seen once in training is likely to appear at test time too, so
fitting its one example (memorizing it) is needed for near-optimal accuracy. This module builds
such data from any labelled dataset, as DESIGN.md 4b asks:

1. each class is split into ``subpopulations`` clusters by k-means (scikit-learn, seeded) on the
   pool and held-out examples of that class together;
2. a class's clusters are ranked by their pool examples, most first; rank ``r`` (1-based) keeps
   ``round(head * r ** -exponent)`` of them for training (the same power law in every class, so
   the thinned pool's size follows from the config alone), the rest are left out of the study;
3. every subpopulation keeps its held-out examples; one whose held-out share is empty borrows a
   left-out pool example, so every subpopulation is in the held-out set.

A subpopulation's id is ``class * subpopulations + rank - 1``; its training frequency is its
count in the thinned pool (what a model trained on the whole pool sees; a replica trained on a
subset sees about ``size / pool`` of it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from memlab.io import MemlabInputError

# The keys of a dataset's `long_tail` entry (their defaults live in the schema).
KEYS = ("subpopulations", "head", "exponent")


@dataclass(frozen=True)
class LongTailSpec:
    """A dataset's ``long_tail`` entry: clusters per class and the power law of their counts."""

    subpopulations: int
    head: int
    exponent: float

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> LongTailSpec:
        return cls(**{k: entry[k] for k in KEYS})

    def frequencies(self, dataset: str = "dataset") -> np.ndarray:
        """Training examples per subpopulation by rank (int64 [subpopulations]), head first."""
        ranks = np.arange(1, self.subpopulations + 1, dtype=np.float64)
        counts = np.round(self.head * ranks**-self.exponent).astype(np.int64)
        empty = np.flatnonzero(counts < 1)
        if empty.size:
            raise MemlabInputError(
                f"datasets.{dataset}.long_tail: the power law head {self.head} x rank^-"
                f"{self.exponent:g} leaves subpopulations of rank {empty[0] + 1} to "
                f"{self.subpopulations} of every class without a training example; raise `head`, "
                "lower `exponent` or use fewer `subpopulations`."
            )
        return counts

    def pool_size(self, n_classes: int) -> int:
        """Examples in the thinned training pool (the same law in every class)."""
        return int(n_classes * self.frequencies().sum())


@dataclass(frozen=True, eq=False)
class LongTail:
    """The long-tailed split of a dataset, as indices into it."""

    pool_index: np.ndarray  # int64, sorted: the thinned training pool
    test_index: np.ndarray  # int64, sorted: the held-out set (every subpopulation in it)
    subpopulation: np.ndarray  # int64 [n]: every example's subpopulation id
    frequency: np.ndarray  # int64 [n_classes * subpopulations]: its count in the thinned pool


def _clusters(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)


def _ranked_clusters(
    members: np.ndarray, in_pool: np.ndarray, labels: np.ndarray, m: int
) -> list[np.ndarray]:
    """One class's clusters (arrays of example indices), ranked by pool examples, most first."""
    pool_sizes = [int(np.sum(in_pool[labels == c])) for c in range(m)]
    order = np.argsort(-np.asarray(pool_sizes), kind="stable")
    return [members[labels == c] for c in order]


def long_tail_split(
    X: np.ndarray,
    y: np.ndarray,
    pool_index: np.ndarray,
    test_index: np.ndarray,
    spec: LongTailSpec,
    seed: int,
    dataset: str = "dataset",
) -> LongTail:
    """Thin a pool/test split (indices into ``X``, ``y``) into a long-tailed one (module doc)."""
    n_classes, m = int(y.max()) + 1, spec.subpopulations
    in_pool, in_test = np.zeros(len(y), bool), np.zeros(len(y), bool)
    in_pool[pool_index], in_test[test_index] = True, True
    where = f"datasets.{dataset}.long_tail"
    sizes = np.bincount(y[in_pool | in_test], minlength=n_classes)
    if sizes.min() < m:
        c = int(np.argmin(sizes))
        raise MemlabInputError(
            f"{where}.subpopulations is {m} but class {c} of dataset '{dataset}' has only "
            f"{sizes[c]} examples; use at most {sizes[c]} subpopulations."
        )
    counts = spec.frequencies(dataset)
    rng = np.random.default_rng(seed)
    subpopulation = np.full(len(y), -1, np.int64)
    keep, test = [], [np.asarray(test_index, np.int64)]
    for c in range(n_classes):
        members = np.flatnonzero((y == c) & (in_pool | in_test))
        clusters = _ranked_clusters(
            members, in_pool[members], _clusters(X[members], m, seed + c), m
        )
        for rank, examples in enumerate(clusters):
            pool = examples[in_pool[examples]]
            if len(pool) < counts[rank]:
                raise MemlabInputError(
                    f"{where}: class {c} of dataset '{dataset}' has a subpopulation of rank "
                    f"{rank + 1} with {len(pool)} pool examples, but the power law asks for "
                    f"{counts[rank]}; lower `head` or `subpopulations`."
                )
            chosen = rng.choice(pool, size=counts[rank], replace=False)
            subpopulation[examples] = c * m + rank
            keep.append(chosen)
            if not in_test[examples].any():
                # Every subpopulation must be in the held-out set: borrow a left-out example.
                spare = np.setdiff1d(pool, chosen)
                if not len(spare):
                    raise MemlabInputError(
                        f"{where}: class {c} of dataset '{dataset}' has a subpopulation of rank "
                        f"{rank + 1} with no held-out example and no pool example to spare; "
                        "use fewer `subpopulations` or a lower `head`."
                    )
                test.append(spare[:1])
    return LongTail(
        np.sort(np.concatenate(keep)),
        np.sort(np.concatenate(test)),
        subpopulation,
        np.tile(counts, n_classes),
    )


def frequency_bucket(frequency: np.ndarray) -> np.ndarray:
    """The lower bound of an example's power-of-two frequency bucket: 1, 2-3 -> 2, 4-7 -> 4..."""
    f = np.asarray(frequency, np.int64)
    return np.where(f >= 1, 2 ** np.floor(np.log2(np.maximum(f, 1))).astype(np.int64), 0)


def thin(
    X: np.ndarray,
    y: np.ndarray,
    pool_index: np.ndarray,
    test_index: np.ndarray,
    entry: Mapping[str, Any] | None,
    seed: int,
    dataset: str = "dataset",
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(pool, held-out, arrays for the split file) of a dataset with this ``long_tail`` entry:
    the split as given without one."""
    if not entry:
        return pool_index, test_index, {}
    tail = long_tail_split(
        X, y, pool_index, test_index, LongTailSpec.from_config(entry), seed, dataset
    )
    arrays = {
        "pool_subpopulation": tail.subpopulation[tail.pool_index],
        "test_subpopulation": tail.subpopulation[tail.test_index],
        "subpopulation_frequency": tail.frequency,
    }
    return tail.pool_index, tail.test_index, arrays


def split_indices(
    spec: Mapping[str, Any], test_fraction: float, seed: int, root: Any = ".", name: str = "dataset"
) -> tuple[Any, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The dataset of ``spec``, its pool and held-out indices and the split file's long-tail
    arrays: what rule prepare writes, and what planning a long-tailed dataset checks before any
    job runs (its pool size, and a law its clusters cannot satisfy)."""
    from memlab.data import datasets as data
    from memlab.seeds import derive_seed

    ds = data.load_dataset(spec, name=name, root=root)
    pool, test = data.split_pool_test(ds.y, test_fraction, seed)
    entry = spec.get("long_tail")
    pool, test, arrays = thin(ds.X, ds.y, pool, test, entry, derive_seed(seed, "long_tail"), name)
    return ds, pool, test, arrays
