"""Canaries (Carlini et al., *The Secret Sharer*, USENIX Security 2019): inserted points whose
exposure measures how much a model memorized them.

A dataset's ``canaries`` entry (``{per_repetition, repetitions, references}``, defaults in the
config schema) makes, from the study seed:

- ``per_repetition`` canaries for every repetition count r in ``repetitions``: an input drawn
  uniformly in the pool's per-feature [min, max] (images: [0, 1]) and a label drawn uniformly
  over the classes, so nothing but memory can fit it;
- ``references`` more points from the same distribution that no replica ever trains on: the
  baseline a canary's loss is ranked against (memlab.analysis.exposure).

A canary of r > 0 becomes a *group* of r identical rows appended to the training pool, and the
group is in or out of a replica's subset as a whole (:func:`canary_subsets`): per repetition
level a balanced design puts half of the level's canaries in each replica, so every replica
trains on the same number of rows, and every canary is both in and out of some replicas (what
Feldman–Zhang scores and the LiRA/RMIA attacks need). Canaries of r = 0 (controls) are never
pool rows: they are evaluated like the references.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from memlab.data.dataset_kinds import _is_int
from memlab.io import MemlabInputError
from memlab.seeds import derive_seed

if TYPE_CHECKING:
    from memlab.data.datasets import Split

# The keys of a dataset's `canaries` entry and their defaults (the schema states the same; a
# test keeps the two in step).
DEFAULTS: Mapping[str, Any] = {
    "per_repetition": 16,
    "repetitions": [0, 1, 4, 16],
    "references": 4096,
}
MIN_REFERENCES = 4096  # the issue's |R| >= 4,096: a rank of 1 is then 12 bits


@dataclass(frozen=True)
class CanarySpec:
    """A dataset's ``canaries`` entry, checked."""

    per_repetition: int
    repetitions: tuple[int, ...]
    references: int

    @classmethod
    def from_config(cls, entry: Any, dataset: str = "dataset") -> CanarySpec | None:
        """The spec of ``entry`` (None: no canaries); a bad key raises MemlabInputError."""
        if entry is None or entry is False:
            return None
        where = f"datasets.{dataset}.canaries"
        if not isinstance(entry, Mapping):
            raise MemlabInputError(
                f"{where} is {entry!r}; it must be a mapping such as {{per_repetition: 16, "
                "repetitions: [0, 1, 4, 16], references: 4096}."
            )
        unknown = sorted(str(k) for k in entry if k not in DEFAULTS)
        if unknown:
            raise MemlabInputError(
                f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(DEFAULTS)}."
            )
        values = {**DEFAULTS, **entry}
        per = values["per_repetition"]
        if not _is_int(per) or per < 2 or per % 2:
            raise MemlabInputError(
                f"{where}.per_repetition is {per!r}; it must be an even integer >= 2 (each "
                "replica trains on half of every level's canaries)."
            )
        reps = values["repetitions"]
        if (
            not isinstance(reps, list | tuple)
            or not reps
            or not all(_is_int(r) and r >= 0 for r in reps)
            or len(set(reps)) != len(reps)
        ):
            raise MemlabInputError(
                f"{where}.repetitions is {reps!r}; it must be a list of distinct integers >= 0 "
                "(0: controls, never trained on), e.g. [0, 1, 4, 16]."
            )
        refs = values["references"]
        if not _is_int(refs) or refs < MIN_REFERENCES:
            raise MemlabInputError(
                f"{where}.references is {refs!r}; it must be an integer >= {MIN_REFERENCES} "
                "(exposure's resolution is log2 of it)."
            )
        return cls(int(per), tuple(sorted(int(r) for r in reps)), int(refs))

    @property
    def canary_repetitions(self) -> np.ndarray:
        """int64 [m]: every canary's repetition count, level by level (controls first)."""
        return np.repeat(np.asarray(self.repetitions, np.int64), self.per_repetition)

    def pool_rows(self) -> int:
        """Rows the canaries add to the training pool."""
        return int(self.per_repetition * sum(self.repetitions))


def has_canaries(spec: Mapping[str, Any]) -> bool:
    """Whether a dataset spec asks for canaries (``canaries: {}`` does: every default)."""
    return spec.get("canaries") not in (None, False)


def check_combination(spec: Mapping[str, Any], dataset: str = "dataset") -> CanarySpec | None:
    """A dataset spec's canaries, refused where another option cannot take them."""
    canaries = CanarySpec.from_config(spec.get("canaries"), dataset)
    if canaries is not None and spec.get("long_tail"):
        raise MemlabInputError(
            f"datasets.{dataset}: `canaries` and `long_tail` cannot be combined (a canary has no "
            "subpopulation, and the long-tail tables index the pool by one); use two dataset "
            "entries, one with each."
        )
    return canaries


def _uniform_inputs(split: Split, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` inputs uniform in the pool's per-feature range (images: the pixel range [0, 1])."""
    if split.image_shape is not None:
        low, high = np.zeros(split.x_pool.shape[1]), np.ones(split.x_pool.shape[1])
    else:
        low, high = split.x_pool.min(0).astype(np.float64), split.x_pool.max(0).astype(np.float64)
    return (low + (high - low) * rng.random((n, len(low)))).astype(np.float32)


def add_canaries(split: Split, spec: CanarySpec | None, seed: int) -> Split:
    """``split`` with the canaries of ``spec``: their groups appended to the pool (after the real
    examples, which keep their positions), the controls and references beside (module doc)."""
    if spec is None:
        return split
    rng = np.random.default_rng(derive_seed(seed, "canaries"))
    reps = spec.canary_repetitions
    m, k = len(reps), split.n_classes
    canary_x, canary_y = _uniform_inputs(split, m, rng), rng.integers(0, k, m).astype(np.int64)
    reference_x = _uniform_inputs(split, spec.references, rng)
    reference_y = rng.integers(0, k, spec.references).astype(np.int64)
    ids = np.repeat(np.arange(m), reps)  # canary i as reps[i] consecutive rows
    n_real = len(split.y_pool)
    return replace(
        split,
        x_pool=np.concatenate([split.x_pool, canary_x[ids]]),
        y_pool=np.concatenate([np.asarray(split.y_pool, np.int64), canary_y[ids]]),
        pool_canary=np.concatenate([np.full(n_real, -1, np.int64), ids]),
        canary_repetitions=reps,
        canary_x=canary_x,
        canary_y=canary_y,
        reference_x=reference_x,
        reference_y=reference_y,
    )


def real_rows(split: Split) -> int:
    """Pool rows that are real examples (they come first; the canary rows follow)."""
    if split.pool_canary is None:
        return len(split.y_pool)
    return int(np.sum(split.pool_canary < 0))


def canary_subsets(split: Split, replicas: range, seed: int) -> np.ndarray:
    """bool [len(replicas), canary pool rows]: which canary groups each replica of a block
    trains on. Per repetition level, a balanced design over the block's replicas with each
    replica holding half of the level's canaries; a group's rows are in or out together. Drawn
    from the study seed, the level and the replica range alone (as block_subsets)."""
    from memlab.data.datasets import balanced_subsets

    assert split.pool_canary is not None and split.canary_repetitions is not None
    reps = split.canary_repetitions
    chosen = np.zeros((len(replicas), len(reps)), bool)  # per canary
    for level in np.unique(reps[reps > 0]):
        ids = np.flatnonzero(reps == level)
        stream = derive_seed(seed, "canaries", int(level), replicas.start, replicas.stop)
        chosen[:, ids] = balanced_subsets(len(ids), len(ids) // 2, len(replicas), stream)
    return chosen[:, split.pool_canary[split.pool_canary >= 0]]
