"""The removal experiment (memlab.analysis.removal): which examples each arm leaves out, the
ranking, the paired accuracy change, the plan's checks, and the second stage in a real Snakemake run
whose subsets depend on the first stage's scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, full, plan_stdout, snakemake

from memlab.analysis.influence import Thresholds
from memlab.analysis.removal import choose, influenced, removal_table, removed
from memlab.io import MemlabInputError, load_npz
from memlab.plan.study import RUN_COLUMNS, plan_study


def test_top_arm_removes_exactly_the_top_k_in_every_replica():
    ranking = np.array([7, 2, 9, 0, 1, 3, 4, 5, 6, 8])
    left_out = removed("top_memorized", 3, ranking, range(4, 8), seed=0)
    assert left_out.shape == (4, 10)
    for row in left_out:
        assert set(np.flatnonzero(row)) == {7, 2, 9}


def test_random_arm_removes_k_per_replica_anew_and_reproducibly():
    ranking = np.arange(50)
    a = removed("random", 5, ranking, range(0, 6), seed=1)
    assert (a.sum(1) == 5).all()
    assert len({tuple(np.flatnonzero(r)) for r in a}) == 6  # each replica its own draw
    # A replica's draw depends on its number only, not on its block.
    assert np.array_equal(removed("random", 5, ranking, range(3, 4), seed=1)[0], a[3])
    assert not removed("none", 0, ranking, range(2), seed=1).any()


def test_k_as_large_as_the_pool_is_rejected():
    with pytest.raises(MemlabInputError, match="at most 9"):
        removed("top_memorized", 10, np.arange(10), range(1), seed=0)


def _bank(pool_correct, test_correct, members):
    return {
        "pool_correct": np.asarray(pool_correct, bool),
        "test_correct": np.asarray(test_correct, bool),
        "train_mask": np.asarray(members, bool),
    }


def test_ranking_puts_examples_in_high_influence_pairs_first():
    # 4 replicas, 3 pool examples. Example 0 and 1: right only when trained on (score 1).
    # Test example 0 is right exactly when pool example 1 is in: a pair (1, 0).
    members = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [0, 0, 0]], bool)
    members[3] = [0, 0, 1]
    pool_correct = members.copy()
    pool_correct[:, 2] = True  # example 2: always right, score 0
    test_correct = members[:, [1]]
    choice = choose(_bank(pool_correct, test_correct, members), np.ones(4, bool), Thresholds())
    assert choice["ranking"].tolist() == [1, 0, 2]  # in a pair, then by memorization
    assert choice["in_pair"].tolist() == [False, True, False]
    assert influenced(choice, 1).tolist() == [True]
    assert influenced(choice, 0).tolist() == [False]


def test_removal_table_pairs_replicas_with_the_baseline():
    run = {c: 0 for c in RUN_COLUMNS} | {"model": "m"}
    choice = {
        "ranking": np.array([0, 1]),
        "in_pair": np.array([True, False]),
        "pairs": np.array([[True, False, False], [False, False, False]]),
    }

    def arm(name, k, correct):
        spec = {"first_stage": "s", "arm": name, "k": k, "columns": run}
        return spec, {"replica": np.array([1, 0]), "test_correct": np.array(correct, bool)}

    # Rows are replicas 1, 0 (sorted back to 0, 1 before pairing).
    base = arm("none", 0, [[1, 1, 1], [1, 1, 0]])
    top = arm("top_memorized", 1, [[0, 1, 1], [0, 1, 0]])
    table = removal_table([top, base], {"s": choice}, RUN_COLUMNS)
    held = table[table["split"] == "heldout"].iloc[0]
    assert held["accuracy_change"] == pytest.approx(-1 / 3)
    assert held["accuracy_change_se"] == pytest.approx(0.0)
    inf = table[table["split"] == "influenced"].iloc[0]
    assert (inf["accuracy_change"], inf["n_test"], inf["top_k_in_pairs"]) == (-1.0, 1, 1)
    assert inf["n_removed"] == 1 and inf["removed"] == "top_memorized"


def _study(**removal):
    config = yaml.safe_load((Path(__file__).parents[2] / "config/smoke.yaml").read_text())
    config.update(
        datasets={"lt": {"kind": "digits", "long_tail": {}}},
        sizes=[0.5],
        label_noise=[0.0],
        replicas=4,
        replicas_per_job=4,
        models={"knn": {"kind": "knn", "k": [1]}},
        analysis={"power": {"min_in_out": 2, "min_shadows": 2}},
        perturbations={"names": ["gaussian_noise"], "severities": [1]},
        removal={"replicas": 2} | removal,
    )
    return config


def test_the_plan_has_a_baseline_and_both_arms_per_k_and_rejects_k_above_the_pool(tmp_path):
    study = plan_study(full(_study(k=[3, 10])), tmp_path)
    arms = sorted((r.arm, r.k) for r in study.removals)
    assert arms == [("none", 0), ("random", 3), ("random", 10), ("top_memorized", 3),
                    ("top_memorized", 10)]  # fmt: skip
    assert [len(r.blocks) for r in study.removals] == [1] * 5
    with pytest.raises(MemlabInputError, match=r"removal\.k 310 is larger than the pool"):
        plan_study(full(_study(k=[3, 310])), tmp_path)


def test_thresholds_outside_0_1_are_one_clear_line():
    config = _study(k=[3])
    config["analysis"]["influence"] = {"min_influence": 1.5}
    with pytest.raises(MemlabInputError, match="min_influence"):
        full(config)


@pytest.fixture(scope="module")
def removal_run(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("removal"))
    (work / "config/removal.yaml").write_text(yaml.safe_dump(_study(k=[3, 10])))
    snakemake(work, "--configfile", "config/removal.yaml", "--cores", "2")
    return work


def test_second_stage_subsets_exclude_exactly_the_chosen_examples(removal_run):
    base = removal_run / "results/removal/lt/noise0/n155/knn-k1/memory"
    ranking = load_npz(base / "choice.npz")["ranking"]
    top = load_npz(base / "top_memorized-k10/block0/subsets.npz")["members"]
    assert top.shape == (2, 310)
    for row in top:
        assert set(np.flatnonzero(~row)) == set(ranking[:10].tolist())
    assert load_npz(base / "none-k0/block0/subsets.npz")["members"].all()
    rand = load_npz(base / "random-k3/block0/subsets.npz")["members"]
    assert ((~rand).sum(1) == 3).all()
    table = pd.read_csv(removal_run / "results/tables/removal.csv")
    assert set(table["removed"]) == {"top_memorized", "random"}
    assert set(table["n_removed"]) == {3, 10}
    assert (table["n_replicas"] == 2).all()
    assert (removal_run / "results/figures/removal.png").stat().st_size > 10_000


def test_changing_k_plans_only_the_removal_stage_and_what_follows(removal_run):
    planned = plan_stdout(removal_run, _study(k=[3, 20]))
    jobs = [line.split()[0] for line in planned.splitlines() if line.startswith("  ")]
    rules = set(jobs)
    assert rules <= {
        "removal_subsample",
        "removal_train",
        "removal_evaluate",
        "removal_analyze",
        "figures",
        "summarize",
    }, planned
    # The new k: 2 arms x (subsample, train, evaluate), then the table and what reads it.
    assert jobs.count("removal_train") == 2 and "removal_analyze" in rules, planned
