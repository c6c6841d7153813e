"""Cluster job groups: blocks of replicas packed into SLURM jobs by their measured cost."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import full, smoke

from memlab.ops.packing import block_costs, block_groups, measured_seconds, pack
from memlab.plan.study import plan_study


def test_pack_closes_a_pack_once_it_reaches_the_target():
    assert pack([4, 4, 4, 4, 4], 10) == [0, 0, 1, 1, 2]
    assert pack([30, 1, 1, 30], 10) == [0, 1, 1, 2]  # a block above the target is a pack alone
    assert pack([], 10) == []


def _study(tmp_path: Path, **grid):
    config = smoke() | {"replicas": 4, "replicas_per_job": 2, "sizes": [80]} | grid
    config["models"] = {"mlp": {"kind": "mlp", "depth": 1, "widths": [8]}}
    return plan_study(full(config), root=tmp_path)


def _benchmark(tmp_path: Path, run, block, seconds: float) -> None:
    for rule, s in (("train", seconds - 1), ("evaluate", 1.0)):
        path = tmp_path / f"results/benchmarks/{rule}/{run.block_path(block)}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\n{s:.1f}\t0:00:00\t300\n")


def test_measured_seconds_reads_snakemakes_benchmark_file(tmp_path):
    (tmp_path / "b.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t300\n")
    assert measured_seconds(tmp_path / "b.tsv") == 12.5
    assert measured_seconds(tmp_path / "missing.tsv") is None
    (tmp_path / "bad.tsv").write_text("garbage")
    assert measured_seconds(tmp_path / "bad.tsv") is None


def test_costs_come_from_measurements_then_the_same_run_then_the_variant(tmp_path):
    study = _study(tmp_path)
    first, second = study.runs  # mlp-w8 in the two regimes, 2 blocks each
    _benchmark(tmp_path, first, first.blocks[0], 20.0)
    costs = block_costs(study, tmp_path, block_seconds=99.0)
    assert costs[(first.path, 0)] == 20.0  # measured (train + evaluate)
    assert costs[(first.path, 1)] == 20.0  # its run's other block: 10 s per replica x 2
    assert costs[(second.path, 0)] == 20.0  # the same variant in another run
    empty = block_costs(study, tmp_path / "nothing", block_seconds=99.0)
    assert set(empty.values()) == {99.0}  # nothing measured anywhere


def test_blocks_with_outputs_are_packed_apart_from_new_ones(tmp_path):
    study = _study(tmp_path)
    run = study.runs[0]
    done = tmp_path / run.file("evaluation.npz", run.blocks[0])
    done.parent.mkdir(parents=True)
    done.write_bytes(b"")
    costs = block_costs(study, tmp_path, block_seconds=10.0)
    groups = block_groups(study, tmp_path, costs, job_seconds=25.0)
    assert groups[(run.path, 0)] == "reblocks0"
    new = [g for k, g in groups.items() if k != (run.path, 0)]
    assert sorted(new) == ["blocks0", "blocks0", "blocks1"]  # 3 new blocks of 10 s, 25 s a job


@pytest.mark.parametrize("replicas, blocks", [(4, 2), (5, 3)])
def test_every_block_gets_a_group(tmp_path, replicas, blocks):
    study = _study(tmp_path, replicas=replicas)
    groups = block_groups(study, tmp_path, block_costs(study, tmp_path, 10.0), 1000.0)
    assert len(groups) == blocks * len(study.runs)
    assert set(groups.values()) == {"blocks0"}
