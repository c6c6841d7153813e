"""Datasets, the fixed pool/test split, label noise and balanced training subsets.

The dataset kinds (their keys, defaults, shapes and loading) are the classes of
:mod:`memlab.data.dataset_kinds`; :func:`load_dataset` and its siblings take a spec as the config
gives it.

Everything random here takes an explicit seed and draws from ``np.random.default_rng`` (or, for
the stratified split, scikit-learn seeded with that integer), so a config fully determines the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

# Dataset and DATASET_KINDS live with the kinds, and are imported from here as they always were.
from memlab.data.dataset_kinds import DATASET_KINDS as DATASET_KINDS
from memlab.data.dataset_kinds import Dataset, _is_int, _is_real, from_spec
from memlab.io import MemlabInputError, load_npz, save_npz
from memlab.seeds import derive_seed

# --------------------------------------------------------------------------- datasets
# The kinds are the classes of memlab.data.dataset_kinds; these take a spec, as the config gives it.


def load_dataset(
    spec: Mapping[str, Any], *, name: str = "dataset", root: str | Path = "."
) -> Dataset:
    """Load or generate the dataset described by ``spec`` (``spec["kind"]`` in DATASET_KINDS)."""
    return from_spec(spec, name).load(root)


def dataset_shape(
    spec: Mapping[str, Any], root: str | Path = ".", *, name: str = "dataset"
) -> tuple[int, tuple[int, int] | None]:
    """(examples, image shape) of ``load_dataset(spec)``, loading only user files (to check
    them): planning a study on digits must not import scikit-learn on every snakemake start."""
    return from_spec(spec, name).shape(root)


def token_shape(spec: Mapping[str, Any], name: str = "dataset") -> tuple[int, int] | None:
    """(n_tokens, vocab) of ``load_dataset(spec)``'s inputs, None without tokens (no loading)."""
    return from_spec(spec, name).token_shape()


# --------------------------------------------------------------------------- splits and noise


def _check_seed(seed: Any, what: str) -> int:
    if not _is_int(seed) or seed < 0:
        raise MemlabInputError(f"{what} `seed` is {seed!r}; it must be an integer >= 0.")
    return int(seed)


def _check_test_fraction(test_fraction: Any) -> float:
    if not _is_real(test_fraction) or not 0 < test_fraction < 1:
        raise MemlabInputError(
            f"`test_fraction` is {test_fraction!r}; it must be a number strictly between 0 and 1 "
            "(e.g. 0.2)."
        )
    return float(test_fraction)


def pool_size(n: int, test_fraction: float) -> int:
    """Examples left in the training pool by :func:`split_pool_test` (n - ceil(fraction * n))."""
    frac = _check_test_fraction(test_fraction)
    if not _is_int(n) or n < 2:
        raise MemlabInputError(
            f"dataset size is {n!r}; a pool/test split needs at least 2 examples."
        )
    n_test = math.ceil(frac * n)  # exactly sklearn's rule in train_test_split
    if n_test >= n:
        raise MemlabInputError(
            f"`test_fraction` {frac} of {n} examples leaves an empty training pool; lower it."
        )
    return int(n) - n_test


def split_pool_test(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One fixed stratified split; returns sorted int64 ``(pool_idx, test_idx)``."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    if y.ndim != 1:
        raise MemlabInputError(f"labels must be 1-D to split them; found shape {y.shape}.")
    n = len(y)
    n_pool = pool_size(n, test_fraction)
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise MemlabInputError(f"split `seed` is {seed!r}; it must be an integer in [0, 2**32).")
    try:
        pool_idx, test_idx = train_test_split(
            np.arange(n, dtype=np.int64),
            test_size=float(test_fraction),
            random_state=int(seed),
            shuffle=True,
            stratify=y,
        )
    except ValueError as e:  # too few members in a class, or fewer test slots than classes
        counts = np.unique(y, return_counts=True)[1]
        raise MemlabInputError(
            f"cannot make a stratified split with `test_fraction` {test_fraction} of {n} examples "
            f"in {len(counts)} classes (smallest class has {counts.min()}): {e}. Every class needs "
            "at least 2 examples, and both pool and test set at least one per class; use more "
            "data or change `test_fraction`."
        ) from None
    assert len(pool_idx) == n_pool
    return np.sort(pool_idx).astype(np.int64), np.sort(test_idx).astype(np.int64)


def flip_labels(
    y: np.ndarray, fraction: float, n_classes: int, seed: int, n_real: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Give round(fraction * n) random examples a uniformly drawn *different* label.

    Returns ``(noisy_labels, flipped_mask)``. With ``n_real``, only the first ``n_real``
    examples are real (canary rows follow, memlab.data.canaries): those alone are flipped, n is
    their count, and the draws are those of the real examples alone.
    """
    if n_real is not None and n_real < len(y):
        head, flipped = flip_labels(np.asarray(y)[:n_real], fraction, n_classes, seed)
        tail = np.asarray(y)[n_real:].astype(np.int64)
        return np.concatenate([head, tail]), np.concatenate([flipped, np.zeros(len(tail), bool)])
    if not _is_real(fraction) or not 0 <= fraction <= 1:
        raise MemlabInputError(
            f"label noise `fraction` is {fraction!r}; it must be a number in [0, 1] (e.g. 0.1)."
        )
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise MemlabInputError(
            f"labels must be a 1-D integer array; found dtype {y.dtype} and shape {y.shape}."
        )
    noisy = y.astype(np.int64, copy=True)
    flipped = np.zeros(len(y), dtype=bool)
    n_flip = round(fraction * len(y))
    if n_flip == 0:
        return noisy, flipped
    if not _is_int(n_classes) or n_classes < 2:
        raise MemlabInputError(f"`n_classes` is {n_classes!r}; flipping labels needs at least 2.")
    if noisy.min() < 0 or noisy.max() >= n_classes:
        raise MemlabInputError(
            f"labels range over [{noisy.min()}, {noisy.max()}] but `n_classes` is {n_classes}; "
            f"labels must lie in 0..{n_classes - 1}."
        )
    rng = np.random.default_rng(_check_seed(seed, "label noise"))
    idx = rng.choice(len(y), size=n_flip, replace=False)
    # An offset in 1..K-1 (mod K) is uniform over the other K-1 classes and never 0.
    noisy[idx] = (noisy[idx] + rng.integers(1, n_classes, size=n_flip)) % n_classes
    flipped[idx] = True
    return noisy, flipped


def resolve_size(size: int | float, n_pool: int, *, key: str = "sizes") -> int:
    """A training-set size as a count: ints are counts, floats in (0, 1] fractions of the pool."""
    allowed = (
        f"Use an integer count from 1 to {n_pool} or a fraction in (0, 1] of the pool (1.0 = the "
        "whole pool); note 1 means one example."
    )
    if _is_int(size):
        if not 1 <= size <= n_pool:
            raise MemlabInputError(
                f"`{key}`: count {size} is outside the training pool of {n_pool} examples. "
                + allowed
            )
        return int(size)
    if _is_real(size) and isinstance(size, float | np.floating):
        if not 0 < size <= 1:  # also rejects NaN
            hint = (
                " Floats are fractions; write counts as integers (e.g. 500, not 500.0)."
                if size > 1
                else ""
            )
            raise MemlabInputError(
                f"`{key}`: fraction {size} is not in (0, 1] (training pool has {n_pool} "
                f"examples).{hint} " + allowed
            )
        return max(1, round(float(size) * n_pool))
    raise MemlabInputError(
        f"`{key}`: {size!r} ({type(size).__name__}) is not a size (training pool has {n_pool} "
        "examples). " + allowed
    )


def balanced_subsets(n_pool: int, size: int, replicas: int, seed: int) -> np.ndarray:
    """``replicas`` random subsets of ``size`` pool examples, as a bool [replicas, n_pool] mask.

    Every example is in the same number of subsets (±1 when replicas * size is not a multiple of
    n_pool), the balanced design that Feldman & Zhang's in/out memorization estimates rely on.
    """
    if not _is_int(n_pool) or n_pool < 1:
        raise MemlabInputError(f"`n_pool` is {n_pool!r}; it must be an integer >= 1.")
    if not _is_int(replicas) or replicas < 1:
        raise MemlabInputError(f"`replicas` is {replicas!r}; it must be an integer >= 1.")
    if not _is_int(size) or not 1 <= size <= n_pool:
        raise MemlabInputError(
            f"subset `size` is {size!r}; it must be an integer from 1 to the pool size {n_pool}."
        )
    rng = np.random.default_rng(_check_seed(seed, "subset"))
    total = replicas * size
    base, extra = divmod(total, n_pool)
    col_sums = np.full(n_pool, base, dtype=np.int64)
    col_sums[rng.choice(n_pool, size=extra, replace=False)] += 1
    # Each column independently gets col_sums[j] uniformly chosen replicas (ranks of random keys).
    ranks = np.argsort(np.argsort(rng.random((replicas, n_pool)), axis=0), axis=0)
    mask = ranks < col_sums[None, :]
    # Repair row sums without touching column sums: move Trues within columns from an over-full
    # row to an under-full one. Each step fills or drains at least one row, so < replicas steps.
    row_sums = mask.sum(axis=1)
    while True:
        over = np.flatnonzero(row_sums > size)
        if len(over) == 0:
            break
        under = np.flatnonzero(row_sums < size)
        a, b = rng.choice(over), rng.choice(under)
        k = min(row_sums[a] - size, size - row_sums[b])
        # |A \ B| >= |A| - |B| >= k, so there are always enough eligible columns.
        cols = rng.choice(np.flatnonzero(mask[a] & ~mask[b]), size=k, replace=False)
        mask[a, cols] = False
        mask[b, cols] = True
        row_sums[a] -= k
        row_sums[b] += k
    return mask


# --------------------------------------------------------------------------- prepared split


@dataclass(frozen=True, eq=False)
class Split:
    """The fixed training pool and held-out test set of one dataset (as written by prepare)."""

    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, int] | None
    token_shape: tuple[int, int] | None = None  # as Dataset.token_shape
    # Long-tailed data only (memlab.data.long_tail; None otherwise): each pool and held-out
    # example's subpopulation id, and each subpopulation's count in the pool (its training
    # frequency).
    pool_subpopulation: np.ndarray | None = None
    test_subpopulation: np.ndarray | None = None
    subpopulation_frequency: np.ndarray | None = None
    # Standardized tabular data only (:func:`standardize`; None otherwise): the pool's per-feature
    # mean and the scale each feature was divided by, so raw values can be recovered.
    feature_mean: np.ndarray | None = None
    feature_scale: np.ndarray | None = None
    # Canaries only (memlab.data.canaries; None otherwise): each pool row's canary id (-1 for a
    # real example; a canary of r repetitions is r identical rows after the real ones), every
    # canary's repetition count (0: a control, never a pool row), every canary's input and label,
    # and the never-trained reference points exposure ranks a canary among.
    pool_canary: np.ndarray | None = None
    canary_repetitions: np.ndarray | None = None
    canary_x: np.ndarray | None = None
    canary_y: np.ndarray | None = None
    reference_x: np.ndarray | None = None
    reference_y: np.ndarray | None = None

    def train_frequency(self, part: str) -> np.ndarray | None:
        """The training frequency of each ``part`` ('pool' or 'test') example's subpopulation."""
        sub = self.pool_subpopulation if part == "pool" else self.test_subpopulation
        if sub is None or self.subpopulation_frequency is None:
            return None
        return self.subpopulation_frequency[sub]


def block_subsets(n_pool: int, size: int, replicas: range, seed: int) -> np.ndarray:
    """The subsets of one block of replicas (a bool [len(replicas), n_pool] mask).

    Balanced within the block (:func:`balanced_subsets`) and drawn from the study seed, the size
    and the block's replica range alone: a block's subsets never depend on how many replicas the
    study has, so adding replicas adds blocks and leaves the existing ones as they are.
    """
    stream = derive_seed(
        _check_seed(seed, "subset"), "subsample", size, replicas.start, replicas.stop
    )
    return balanced_subsets(n_pool, size, len(replicas), stream)


def block_few_shot_subsets(
    labels: np.ndarray, per_class: int, replicas: range, seed: int
) -> np.ndarray:
    """Few-shot subsets of one block of replicas (bool [len(replicas), n_pool]): exactly
    ``per_class`` examples of every class in each, and within each class a balanced design
    (every example of the class in the same number of the block's subsets, within one). Drawn,
    like :func:`block_subsets`, from the study seed, the size and the replica range alone."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    mask = np.zeros((len(replicas), len(labels)), bool)
    for c in classes:
        members = np.flatnonzero(labels == c)
        stream = derive_seed(
            _check_seed(seed, "subset"),
            "few_shot",
            per_class * len(classes),
            int(c),
            replicas.start,
            replicas.stop,
        )
        mask[:, members] = balanced_subsets(len(members), per_class, len(replicas), stream)
    return mask


def make_split(ds: Dataset, pool_idx: np.ndarray, test_idx: np.ndarray) -> Split:
    return Split(
        ds.X[pool_idx],
        ds.y[pool_idx],
        ds.X[test_idx],
        ds.y[test_idx],
        ds.n_classes,
        ds.image_shape,
        ds.token_shape,
    )


def standardizes(spec: Mapping[str, Any], ds: Dataset, name: str = "dataset") -> bool:
    """Whether ``spec``'s features are standardized: its `standardize` key, by default on for
    tabular user files (csv, npz without an image shape) and off for every other kind (digits'
    pixel scale is what the perturbations corrupt; gaussian and modular_addition data are kept as
    generated, so the shipped studies' tables stay as they were)."""
    return from_spec(spec, name).standardizes(ds)


def standardize(split: Split) -> Split:
    """Pool and held-out features centred and scaled by the training pool's per-feature mean and
    standard deviation: held-out rows never enter the statistics, so nothing about the test set
    leaks into training. A constant feature (std 0) is only centred."""
    mean = split.x_pool.mean(axis=0, dtype=np.float64)
    std = split.x_pool.std(axis=0, dtype=np.float64)
    scale = np.where(std > 0, std, 1.0)

    def scaled(x: np.ndarray) -> np.ndarray:
        return ((x.astype(np.float64) - mean) / scale).astype(np.float32)

    return replace(
        split,
        x_pool=scaled(split.x_pool),
        x_test=scaled(split.x_test),
        feature_mean=mean,
        feature_scale=scale,
    )


CANARY_ARRAYS = (
    "pool_canary",
    "canary_repetitions",
    "canary_x",
    "canary_y",
    "reference_x",
    "reference_y",
)


def _optional(split: Split) -> dict[str, np.ndarray]:
    """The split's optional arrays that are set (a split without them is saved as before)."""
    names = ("feature_mean", "feature_scale", *CANARY_ARRAYS)
    return {n: getattr(split, n) for n in names if getattr(split, n) is not None}


def save_split(path: str | Path, split: Split, **extra: np.ndarray) -> None:
    """Write the split atomically ((0, 0) stands for no image shape, no token shape)."""
    save_npz(
        path,
        x_pool=split.x_pool,
        y_pool=split.y_pool,
        x_test=split.x_test,
        y_test=split.y_test,
        n_classes=np.int64(split.n_classes),
        image_shape=np.array(split.image_shape or (0, 0), dtype=np.int64),
        token_shape=np.array(split.token_shape or (0, 0), dtype=np.int64),
        **_optional(split),
        **extra,
    )


def _pair(a: Mapping[str, np.ndarray], key: str) -> tuple[int, int] | None:
    """A saved shape; (0, 0) or absent (a split written before the key existed): None."""
    h, w = (int(s) for s in a.get(key, (0, 0)))
    return None if (h, w) == (0, 0) else (h, w)


def load_split(path: str | Path) -> Split:
    a = load_npz(path)
    return Split(
        a["x_pool"],
        a["y_pool"],
        a["x_test"],
        a["y_test"],
        int(a["n_classes"]),
        _pair(a, "image_shape"),
        _pair(a, "token_shape"),
        a.get("pool_subpopulation"),
        a.get("test_subpopulation"),
        a.get("subpopulation_frequency"),
        a.get("feature_mean"),
        a.get("feature_scale"),
        **{name: a.get(name) for name in CANARY_ARRAYS},
    )


def split_reader(paths: Iterable[str | Path]) -> Callable[[str], Split]:
    """``dataset -> Split`` from split files at ``.../<dataset>/split.npz``, each read once."""
    from functools import cache

    files = {Path(p).parent.name: p for p in paths}

    @cache
    def split_of(dataset: str) -> Split:
        if dataset not in files:
            raise MemlabInputError(f"no split file for dataset {dataset!r} among {sorted(files)}.")
        return load_split(files[dataset])

    return split_of
