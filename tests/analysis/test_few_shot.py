"""Few-shot sizes (`sizes: [{per_class: k}]`): exactly k examples of every class per subset,
balanced across replicas, planned before any job runs, and the few-shot table and figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import run_columns, smoke_with_sizes

from memlab.analysis.metrics import few_shot
from memlab.data.datasets import block_few_shot_subsets
from memlab.io import MemlabInputError
from memlab.plan.study import plan_study
from memlab.reporting.figures import few_shot as few_shot_figure
from memlab.reporting.tables import StudyTables


def test_few_shot_subsets_hold_exactly_k_of_every_class_balanced_across_replicas():
    labels = np.repeat([0, 1, 2], [7, 9, 10])
    mask = block_few_shot_subsets(labels, 2, range(0, 12), seed=3)
    for c in range(3):
        per_replica = mask[:, labels == c].sum(axis=1)
        assert (per_replica == 2).all()
        # Each example of the class in floor or ceil of 12 x 2 / n_c subsets.
        counts = mask[:, labels == c].sum(axis=0)
        n_c = (labels == c).sum()
        assert counts.min() >= (12 * 2) // n_c and counts.max() <= -(-12 * 2 // n_c)
    # Reproducible, and a block's subsets depend on its replica range only.
    assert np.array_equal(mask, block_few_shot_subsets(labels, 2, range(0, 12), seed=3))
    assert not np.array_equal(mask[:4], block_few_shot_subsets(labels, 2, range(4, 8), seed=3))


def test_the_plan_gives_per_class_sizes_their_counts_and_shots(tmp_path):
    study = plan_study(smoke_with_sizes({"per_class": 1}, {"per_class": 5}, 0.5), tmp_path)
    ds = study.datasets["digits"]
    assert ds.sizes == (10, 50, 674) and ds.shots(10) == 1 and ds.shots(674) == 0
    shots = {(r.size, r.shots) for r in study.runs}
    assert shots == {(10, 1), (50, 5), (674, 0)}
    assert {r.columns()["shots"] for r in study.runs} == {0, 1, 5}


def test_per_class_above_the_smallest_class_and_a_clash_are_one_clear_line(tmp_path):
    # Digits' smallest class in the pool (25% held out): class 8, 131 examples.
    plan_study(smoke_with_sizes({"per_class": 131}), tmp_path)
    with pytest.raises(
        MemlabInputError,
        match=r"per_class 132 is more than class 8 has in the training pool \(131 "
        r"examples\); use at most 131",
    ):
        plan_study(smoke_with_sizes({"per_class": 132}), tmp_path)
    with pytest.raises(MemlabInputError, match="size 10 is given twice"):
        plan_study(smoke_with_sizes(10, {"per_class": 1}), tmp_path)


def test_few_shot_table_is_heldout_accuracy_of_the_few_shot_runs():
    rows = []
    for shots, values in ((1, [0.5, 0.7]), (0, [0.9, 0.9])):
        cols = run_columns(shots=shots, size=10 if shots else 100)
        for replica, v in enumerate(values):
            for split, value in (("heldout", v), ("train", 1.0)):
                rows.append(
                    cols
                    | dict(replica=replica, split=split, perturbation="none", severity=0)
                    | dict(metric="accuracy", value=value)
                )
    table = few_shot(pd.DataFrame(rows))
    assert len(table) == 1  # the random subset (shots 0) is not a few-shot run
    row = table.iloc[0]
    assert (row["shots"], row["accuracy"], row["n_replicas"]) == (1, 0.6, 2)
    assert row["accuracy_se"] == pytest.approx(np.std([0.5, 0.7], ddof=1) / np.sqrt(2))
    fig = few_shot_figure(StudyTables(pd.DataFrame(), pd.DataFrame(), few_shot=table))
    assert len(fig.axes[0].containers) == 1  # one errorbar line
    empty = few_shot_figure(StudyTables(pd.DataFrame(), pd.DataFrame()))
    assert "per_class" in " ".join(t.get_text() for t in empty.axes[0].texts)
