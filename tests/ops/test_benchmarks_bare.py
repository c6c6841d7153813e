"""The overhead benchmark's same-shape baseline (benchmarks/run.py): a bare Snakefile that plans
the study's DAG (jobs per rule, dependency edges) with trivial rules."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import ROOT, copy_workflow


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("memlab_benchmarks", ROOT / "benchmarks/run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# Three rules: a (2 jobs) -> b (3 jobs) -> c (1 job); b's job 6 has no downstream job.
HAND_JOBS = {"1": "a", "2": "a", "4": "b", "5": "b", "6": "b", "9": "c"}
HAND_EDGES = [("1", "4"), ("1", "5"), ("2", "5"), ("2", "6"), ("4", "9"), ("5", "9")]


def test_hand_made_dag(bench, tmp_path: Path):
    inputs = bench.bare_dag_inputs(HAND_JOBS, HAND_EDGES)
    assert inputs["b/1"] == ["out/a/0.txt", "out/a/1.txt"]
    assert inputs["c/0"] == ["out/b/0.txt", "out/b/1.txt"]
    assert inputs["a/0"] == []
    assert inputs["all"] == ["out/b/2.txt", "out/c/0.txt"]  # every job without downstream
    bare = bench.write_bare_dag(tmp_path / "bare", HAND_JOBS, HAND_EDGES)
    stats = bench.dry_run_stats(bare)
    assert stats == {"a": 2, "b": 3, "c": 1, "all": 1}
    jobs, edges = bench.dag_of(bare)
    # The hand-made DAG plus the bare Snakefile's rule all over its two sinks.
    want = ({**HAND_JOBS, "0": "all"}, [*HAND_EDGES, ("6", "0"), ("9", "0")])
    assert len(edges) == len(want[1]) == 8
    assert bench.dag_signature(jobs, edges) == bench.dag_signature(*want)


@pytest.mark.parametrize("directives", [False, True], ids=["bare", "directives"])
def test_smoke_study_dag(bench, tmp_path: Path, directives):
    work = copy_workflow(tmp_path / "study")
    args = ("--configfile", "config/smoke.yaml")
    stats = bench.dry_run_stats(work, *args)
    dag = bench.dag_of(work, *args)
    assert sum(stats.values()) == len(dag[0])
    assert {"prepare", "train", "evaluate", "all"} <= set(stats)
    bare = bench.write_bare_dag(tmp_path / "bare", *dag, directives=directives)
    assert ("script:" in (bare / "Snakefile").read_text()) == directives
    bare_stats = bench.dry_run_stats(bare)
    bare_dag = bench.dag_of(bare)
    assert bare_stats == stats
    assert len(bare_dag[1]) == len(dag[1])
    bench.check_same_shape(stats, bare_stats, dag, bare_dag)
    # The check fails where the shapes differ: one edge less.
    with pytest.raises(RuntimeError, match="edges differ"):
        bench.check_same_shape(stats, bare_stats, dag, (bare_dag[0], bare_dag[1][1:]))


def test_grid_config_counts_jobs(bench, tmp_path: Path, monkeypatch):
    """The grid's size comes from dry runs of the workflow, not from assumed jobs per run: the
    count it returns is that of a dry run of the grid it returns."""
    counted = []

    def dry_run_stats(workdir, *args):
        stats = real(workdir, *args)
        counted.append((bench.yaml.safe_load(Path(args[-1]).read_text()), sum(stats.values())))
        return stats

    real = bench.dry_run_stats
    monkeypatch.setattr(bench, "dry_run_stats", dry_run_stats)
    cfg, n = bench.grid_config(1000, copy_workflow(tmp_path / "study"))
    assert (cfg, n) in counted
    # Near the target, unless one MLP width alone plans more.
    assert abs(n - 1000) <= 500 or len(cfg["models"]["mlp"]["widths"]) == 1
