"""Exact recall: perturbed copies of each replica's own training examples, mapped to the labels
it trained on (memlab.engine.evaluate, memlab.analysis.metrics.recall), with the real 1-NN and a
real MLP."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_columns

from memlab.analysis.metrics import recall
from memlab.columnar import to_frame
from memlab.data.datasets import balanced_subsets
from memlab.engine.evaluate import evaluate_replicas
from memlab.engine.models import knn_log_proba
from memlab.reporting.figures import recall as recall_figure
from memlab.reporting.findings import study_findings
from memlab.reporting.tables import StudyTables


def _knn(x_pool, y_pool, members):
    def log_proba(x):
        return knn_log_proba(
            torch.from_numpy(np.ascontiguousarray(x, np.float32)),
            torch.from_numpy(x_pool),
            torch.from_numpy(y_pool),
            torch.from_numpy(members),
            k=1,
            n_classes=int(y_pool.max()) + 1,
        )

    return log_proba


def _evaluate(log_proba, x_pool, y_pool, members, perturbed_pool):
    arrays, metrics = evaluate_replicas(
        log_proba,
        x_pool=x_pool,
        y_pool=y_pool,
        flipped=np.zeros(len(y_pool), bool),
        x_test=x_pool[:5],
        y_test=y_pool[:5],
        members=members,
        train_mask=members,
        val_mask=np.zeros_like(members),
        perturbed={},
        perturbed_pool=perturbed_pool,
    )
    return arrays, to_frame(metrics)


def test_recall_of_the_identity_is_training_accuracy_and_noise_costs_1nn_recall():
    rng = np.random.default_rng(0)
    x_pool = rng.random((60, 16)).astype(np.float32)
    y_pool = rng.integers(0, 5, 60)  # random labels: only memory recalls them
    members = balanced_subsets(60, 30, 6, seed=1)
    noisy = (x_pool + rng.normal(0, 0.6, x_pool.shape)).astype(np.float32)
    pools = {("identity", 0): x_pool, ("gaussian_noise", 5): noisy}
    arrays, metrics = _evaluate(_knn(x_pool, y_pool, members), x_pool, y_pool, members, pools)
    acc = metrics[metrics["metric"] == "accuracy"].set_index(["split", "perturbation", "replica"])
    train = acc.xs(("train", "none"), level=("split", "perturbation"))["value"]
    same = acc.xs(("recall", "identity"), level=("split", "perturbation"))["value"]
    pd.testing.assert_series_equal(train, same)
    assert (same == 1.0).all()  # 1-NN stores every training example
    assert arrays["recall_accuracy"].shape == (6, 2)
    order = list(arrays["recall_perturbation"])
    noise, identity = order.index("gaussian_noise"), order.index("identity")
    assert (arrays["recall_accuracy"][:, identity] > arrays["recall_accuracy"][:, noise]).all()


def _metrics_with_recall(values):
    rows = []
    for regime, per_sev in values.items():
        cols = run_columns(regime=regime, **({"weight_decay": 4.0} if regime != "memorize" else {}))
        for replica in range(3):
            rows.append(cols | dict(replica=replica, split="train", perturbation="none"))
            rows[-1] |= dict(severity=0, metric="accuracy", value=per_sev[0][replica])
            rows.append(cols | dict(replica=replica, split="heldout", perturbation="none"))
            rows[-1] |= dict(severity=0, metric="accuracy", value=0.1)
            for sev, acc in per_sev.items():
                if sev:
                    rows.append(cols | dict(replica=replica, split="recall"))
                    rows[-1] |= dict(perturbation="gaussian_noise", severity=sev)
                    rows[-1] |= dict(metric="accuracy", value=acc[replica])
    return pd.DataFrame(rows)


def test_recall_table_figure_and_finding():
    metrics = _metrics_with_recall(
        {
            "memorize": {0: [1, 1, 1], 1: [0.9, 0.95, 1.0], 5: [0.3, 0.35, 0.4]},
            "weight_decay": {0: [0.5, 0.5, 0.5], 1: [0.45, 0.5, 0.55], 5: [0.4, 0.45, 0.5]},
        }
    )
    table = recall(metrics)
    memo = table[table["regime"] == "memorize"].set_index("severity")
    assert memo.loc[0, "perturbation"] == "none" and memo.loc[0, "recall_accuracy"] == 1.0
    assert memo.loc[1, "recall_accuracy"] == pytest.approx(0.95)
    assert memo.loc[1, "recall_accuracy_se"] == pytest.approx(0.05 / np.sqrt(3))
    assert np.allclose(memo["heldout_accuracy"], 0.1)
    assert len(table) == 6
    fig = recall_figure(StudyTables(metrics, pd.DataFrame(), recall=table))
    assert len(fig.axes[0].containers) == 2  # a line per regime
    found = {f.key: f for f in study_findings(StudyTables(metrics, pd.DataFrame(), recall=table))}
    answer = found["recall"].answer
    assert "at severity 1: the MLP of width 8 (no regularization) 95.0%" in answer
    assert "at severity 5: the MLP of width 8 (weight decay 4) 45.0%" in answer
    # What regularization costs recall: the same model unregularized, Welch from the table.
    assert "the MLP of width 8 (weight decay 4) recalls -45.0 points [" in answer
    assert "against the MLP of width 8 (no regularization) at severity 1 (Welch)" in answer
    assert found["recall"].numbers["regularization_cost_m-w8_weight_decay"].value == pytest.approx(
        -0.45
    )
    assert "recall" not in {
        f.key for f in study_findings(StudyTables(metrics, pd.DataFrame(), recall=recall(
            metrics[metrics["split"] != "recall"])))
    }  # fmt: skip


def test_recall_study_end_to_end_and_turning_it_on_retrains_nothing(tmp_path):
    import yaml
    from conftest import copy_workflow, plan_stdout, snakemake

    config = {
        "datasets": {"dr": {"kind": "digits", "randomization": {"kind": "random_labels"}}},
        "sizes": [60],
        "replicas": 2,
        "models": {
            "knn": {"kind": "knn", "k": [1]},
            "mem": {"kind": "memory_net", "widths": [16]},
        },
        "regimes": {"memorize": {}},
        "training": {"max_epochs": 20},
        "perturbations": {"names": ["gaussian_noise"], "severities": [1, 5]},
    }
    work = copy_workflow(tmp_path / "recall")
    (work / "config/off.yaml").write_text(yaml.safe_dump(config))
    snakemake(work, "--configfile", "config/off.yaml", "--cores", "2")
    assert pd.read_csv(work / "results/tables/recall.csv").empty
    config["datasets"]["dr"]["recall"] = True
    planned = plan_stdout(work, config)  # written as config/edited.yaml
    jobs = {line.split()[0] for line in planned.splitlines() if line.startswith("  ")}
    assert "perturb" in jobs and "evaluate" in jobs and "train" not in jobs, planned
    snakemake(work, "--configfile", "config/edited.yaml", "--cores", "2")
    table = pd.read_csv(work / "results/tables/recall.csv")
    assert set(table["severity"]) == {0, 1, 5}
    # 1-NN recalls every stored example exactly (severity 0: its training accuracy).
    knn = table[table["kind"] == "knn"]
    assert (knn.loc[knn["severity"] == 0, "recall_accuracy"] == 1.0).all()
    assert (work / "results/figures/recall.png").stat().st_size > 10_000
    # The memory network: recall with its memory on and off, and what the memory adds.
    mem = table[table["kind"] == "memory_net"]
    assert sorted(mem["memory"].unique()) == ["off", "on"] and len(mem) == 6
    effect = pd.read_csv(work / "results/tables/memory_effect.csv")
    assert set(effect["split"]) == {"heldout", "recall", "train"} and len(effect) == 4
    assert (effect["n_replicas"] == 2).all() and effect["mix"].between(0, 1).all()
    assert (work / "results/figures/memory.png").stat().st_size > 10_000
