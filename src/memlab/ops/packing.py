"""Cluster job groups: blocks of replicas packed into SLURM jobs by their measured cost.

A SLURM job costs 10-17 s of overhead here (queueing, status polls, a Snakemake start inside the
job: profiles/slurm/config.yaml), while one block's train and evaluate jobs may take seconds or
minutes. So blocks are packed into groups of about ``job_seconds`` of work each: a SLURM job is
neither a few seconds of work nor hours. A block's cost is what its train and evaluate jobs took
when they last ran (Snakemake's ``benchmark:`` files); a block that never ran is estimated from
the measured cost per replica of its run's other blocks, else of the same model variant in any
run, else counts as ``block_seconds``. Blocks are packed in study order, greedily (a pack closes
once it reaches the target; a block above it is a pack of its own), blocks that already have
their outputs apart from those that do not, so the blocks a grown bank adds share SLURM jobs.
Packing decides only where jobs run, never what they compute.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

from memlab.plan.study import Block, Run, Study

# The rules whose jobs are per block, with their benchmark files (see workflow/rules/*.smk).
BLOCK_RULES = ("train", "evaluate")


def measured_seconds(tsv: Path) -> float | None:
    """Wall seconds of a Snakemake benchmark file (its ``s`` column), None if there is none."""
    try:
        header, values = tsv.read_text().splitlines()[:2]
        return float(dict(zip(header.split("\t"), values.split("\t"), strict=False))["s"])
    except (OSError, ValueError, KeyError):
        return None


def _block_measured(root: Path, run: Run, block: Block) -> float | None:
    times = [
        t
        for rule in BLOCK_RULES
        if (t := measured_seconds(root / f"results/benchmarks/{rule}/{run.block_path(block)}.tsv"))
        is not None
    ]
    return sum(times) if len(times) == len(BLOCK_RULES) else None


def block_costs(study: Study, root: Path, block_seconds: float) -> dict[tuple[str, int], float]:
    """Estimated seconds of every block's train and evaluate jobs, keyed (run path, index)."""
    measured = {
        (run.path, b.index): _block_measured(root, run, b) for run in study.runs for b in run.blocks
    }

    def per_replica(pairs: Iterable[tuple[Run, Block]]) -> float | None:
        rates = [
            seconds / len(b.replicas)
            for r, b in pairs
            if (seconds := measured[(r.path, b.index)]) is not None
        ]
        return statistics.median(rates) if rates else None

    by_variant = {
        v: per_replica((r, b) for r in study.runs if r.model == v for b in r.blocks)
        for v in {r.model for r in study.runs}
    }
    costs: dict[tuple[str, int], float] = {}
    for run in study.runs:
        rate = per_replica((run, b) for b in run.blocks) or by_variant[run.model]
        for b in run.blocks:
            known = measured[(run.path, b.index)]
            guess = block_seconds if rate is None else rate * len(b.replicas)
            costs[(run.path, b.index)] = guess if known is None else known
    return costs


def pack(costs: Sequence[float], target: float) -> list[int]:
    """Pack index of each item, consecutive items together until a pack reaches ``target``."""
    packs, index, total = [], 0, 0.0
    for cost in costs:
        if total > 0 and total + cost > target:
            index, total = index + 1, 0.0
        packs.append(index)
        total += cost
    return packs


def block_groups(
    study: Study, root: Path, costs: dict[tuple[str, int], float], job_seconds: float
) -> dict[tuple[str, int], str]:
    """The group name of every block of ``costs`` (:func:`block_costs`): ``blocks<k>`` for
    blocks without outputs yet, ``reblocks<k>`` for those that have them (and run again only if
    a change touched them)."""
    has_outputs = {
        (run.path, b.index): (root / run.file("evaluation.npz", b)).exists()
        for run in study.runs
        for b in run.blocks
    }
    groups = {}
    for prefix, done in (("blocks", False), ("reblocks", True)):
        keys = [k for k in costs if has_outputs[k] == done]
        for key, index in zip(keys, pack([costs[k] for k in keys], job_seconds), strict=True):
            groups[key] = f"{prefix}{index}"
    return groups
