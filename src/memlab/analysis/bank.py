"""The model bank: a run's blocks of replicas read back as one set of per-example arrays.

Each evaluate job writes one block's ``evaluation.npz`` (format: ``config/README.md``, "The
model bank"). Arrays whose first axis is the replica (per-example outputs, memberships, training
facts) are concatenated over the blocks in replica order; sums over a block's replicas
(``SUMMED``) are added up; the rest (labels, the flip mask, the perturbation names) are the same
in every block and are kept once. Every estimator reads the whole bank this way, so a result does
not depend on how the replicas were split into jobs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from memlab.engine.dynamics import ARRAYS as DYNAMICS_ARRAYS
from memlab.engine.sequence_arrays import PER_REPLICA as SEQUENCE_PER_REPLICA
from memlab.io import MemlabInputError, load_npz
from memlab.plan.study import run_path_of

# Arrays with one row per replica; every other array of an evaluation is shared by the blocks.
PER_REPLICA = (
    "replica",
    "pool_correct",
    "test_correct",
    "pool_pred",
    "pool_loss",
    "pool_confidence",
    "test_pred",
    "test_loss",
    "test_confidence",
    "members",
    "train_mask",
    "val_mask",
    "perturbed_accuracy",
    "perturbed_loss",
    "recall_accuracy",
    "fit_epoch",
    "stop_epoch",
    "stop_reason",
    "loss_drop",
    "canary_loss",
    "reference_loss",
    *DYNAMICS_ARRAYS,
    "pool_sensitivity",  # memlab.engine.input_gradients
    "pool_curvature",
    *SEQUENCE_PER_REPLICA,  # a language model's (memlab.engine.sequence_arrays)
)
# Sums over a block's replicas (out-of-sample probabilities): the bank's is the sum of the blocks'.
SUMMED = ("pool_out_proba_sum", "pool_out_count")


def real_examples(bank: Mapping[str, np.ndarray]) -> np.ndarray:
    """bool [n]: the pool rows that are real examples, not canary rows (memlab.data.canaries);
    every row of a bank without canaries."""
    n = np.shape(bank["train_mask"])[1]
    canary = bank.get("pool_canary")
    return np.ones(n, bool) if canary is None else np.asarray(canary) < 0


def concat_blocks(blocks: Sequence[Mapping[str, np.ndarray]], where: str = "") -> dict:
    """One bank from the evaluation arrays of a run's blocks (replicas in ascending order)."""
    if not blocks:
        raise MemlabInputError(f"{where or 'bank'}: no blocks to read.")
    first = blocks[0]
    for name in first:
        if name in PER_REPLICA or name in SUMMED:
            continue
        for b in blocks[1:]:
            if not np.array_equal(b[name], first[name]):
                raise MemlabInputError(
                    f"{where or 'bank'}: blocks disagree on {name!r} (they were evaluated on "
                    "different data); evaluate every block again with "
                    "./run.sh study --forcerun evaluate (add your usual --configfile)."
                )
    bank = {k: v for k, v in first.items() if k not in PER_REPLICA and k not in SUMMED}
    for name in SUMMED:
        if all(name in b for b in blocks):
            bank[name] = functools.reduce(np.add, [b[name] for b in blocks])
    order = np.argsort(np.concatenate([b["replica"] for b in blocks]), kind="stable")
    for name in PER_REPLICA:
        # An array a later version added is read only when every block has it.
        if all(name in b for b in blocks):
            bank[name] = np.concatenate([b[name] for b in blocks])[order]
    replicas = bank["replica"]
    if len(np.unique(replicas)) != len(replicas):
        raise MemlabInputError(f"{where or 'bank'}: a replica is in two blocks.")
    return bank


def read_runs(
    paths: Iterable[str], runs: Mapping[str, Any]
) -> Iterator[tuple[Any, dict[str, np.ndarray]]]:
    """(run, bank) per run, in the order of ``paths`` (block files under ``results/runs``).

    ``runs`` maps a run's path to what is yielded with its bank (the run's columns). One run at a
    time: the banks of a large study need not fit in memory together.
    """
    by_run: dict[str, list[str]] = {}
    for path in paths:
        by_run.setdefault(run_path_of(path), []).append(path)
    for run_path, files in by_run.items():
        yield runs[run_path], concat_blocks([load_npz(f) for f in files], where=run_path)
