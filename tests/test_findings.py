"""The findings: intervals across replicas, and each question answered from a hand-made study."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import run_columns

from memlab.findings import (
    Estimate,
    findings_metrics,
    mean_estimate,
    study_findings,
    welch_difference,
)
from memlab.report import findings_html
from memlab.tables import StudyTables


def test_mean_interval_is_students_t_across_replicas_clipped_to_accuracies():
    # mean 0.9, sd 0.1, n 3: half width t(0.975, 2) * 0.1 / sqrt(3) = 4.3027 * 0.05774 = 0.2484
    est = mean_estimate(np.array([0.8, 0.9, 1.0]))
    assert est.value == pytest.approx(0.9)
    assert est.low == pytest.approx(0.9 - 0.24841, abs=1e-5) and est.high == 1.0
    assert est.n == 3
    diff = mean_estimate(np.array([-0.8, -0.9, -1.0]), clip=False)
    assert diff.low == -1.0 and diff.high == pytest.approx(-0.9 + 0.24841, abs=1e-5)


def test_one_replica_has_no_interval_and_identical_replicas_say_so():
    one = mean_estimate(np.array([1.0]))
    assert math.isnan(one.low) and one.pct() == "100.0% (1 replicas: no interval)"
    same = mean_estimate(np.array([1.0, 1.0, 1.0, 1.0]))
    assert same.pct() == "100.0% in all 4 replicas"
    assert mean_estimate(np.array([0.5, 0.7])).pct() == "60.0% [0.0, 100.0]"


def test_welch_difference_matches_the_textbook_interval():
    a, b = np.array([0.9, 0.8, 0.85, 0.95]), np.array([0.6, 0.7, 0.65, 0.5])
    est = welch_difference(a, b)
    se = math.sqrt(a.var(ddof=1) / 4 + b.var(ddof=1) / 4)
    # Welch-Satterthwaite degrees of freedom
    df = se**4 / ((a.var(ddof=1) / 4) ** 2 / 3 + (b.var(ddof=1) / 4) ** 2 / 3)
    from scipy import stats

    half = stats.t.ppf(0.975, df) * se
    assert est.value == pytest.approx(0.2625)
    assert (est.low, est.high) == pytest.approx((0.2625 - half, 0.2625 + half))
    assert est.pct(points=True) == "+26.3 points [12.9, 39.6]"


def _metrics(runs: dict[tuple[float, str], dict[str, list[float]]]) -> pd.DataFrame:
    """Tidy metrics of MLP runs: (noise, regime) -> split -> per-replica accuracies."""
    settings = {"memorize": {}, "weight_decay": {"weight_decay": 2.0}, "dropout": {"dropout": 0.5}}
    rows = []
    for (noise, regime), splits in runs.items():
        cols = run_columns(label_noise=noise, regime=regime, size=100, **settings[regime])
        for split, values in splits.items():
            pert, sev = ("blur", 5) if split == "perturbed" else ("none", 0)
            for replica, v in enumerate(values):
                rows.append(
                    cols
                    | dict(replica=replica, split=split, perturbation=pert, severity=sev)
                    | dict(metric="accuracy", value=v)
                )
    return pd.DataFrame(rows)


STUDY = {
    (0.0, "memorize"): {"train": [1, 1, 1], "heldout": [0.9, 0.92, 0.91], "perturbed": [0.5] * 3},
    (0.0, "weight_decay"): {"train": [0.95] * 3, "heldout": [0.88, 0.9, 0.89]},
    (0.2, "memorize"): {
        "train": [1, 1, 1],
        "train_flipped": [1.0, 0.98, 0.99],
        "heldout": [0.7, 0.72, 0.71],
        "perturbed": [0.4, 0.42, 0.41],
    },
    (0.2, "weight_decay"): {"train_flipped": [0.1, 0.12, 0.11], "heldout": [0.85, 0.86, 0.84]},
    (0.2, "dropout"): {"train_flipped": [0.5, 0.6, 0.55], "heldout": [0.8, 0.8, 0.8]},
}


def test_each_question_is_answered_from_the_right_runs():
    found = {f.key: f for f in study_findings(StudyTables(_metrics(STUDY), pd.DataFrame()))}
    memorizes = found["memorizes"]
    assert "m-w8 / memorize reproduces 99.0% [96.5, 100.0] of the flipped" in memorizes.answer
    assert memorizes.numbers["flipped_fitted"].n == 3
    # Noisy vs clean labels, same model and regime: 0.71 - 0.91 = -20 points.
    cost = found["heldout_cost"].numbers["accuracy_change"]
    assert cost.value == pytest.approx(-0.20) and cost.high < 0
    # Paired across replicas on the noisy run: 0.41 - 0.71 = -30 points.
    assert found["perturbed_cost"].numbers["blur_change"].value == pytest.approx(-0.30)
    # Weight decay fits fewest flipped labels (11%, not dropout's 55%); on clean labels it costs
    # 0.89 - 0.91 = -2 points.
    reg = found["regularizer"]
    assert reg.answer.startswith("weight_decay (weight decay 2) does most")
    assert reg.numbers["flipped_fitted"].value == pytest.approx(0.11)
    assert reg.numbers["clean_heldout_change"].value == pytest.approx(-0.02)
    # No per-example tables: the two per-example questions say why instead of a number.
    assert found["which_examples"].answer is None and found["leakage"].answer is None
    page = findings_html(list(found.values()))
    assert page.count("<li><b>") == 4 and "What this study cannot answer" in page
    assert set(findings_metrics(list(found.values()))) == {
        "memorizes",
        "heldout_cost",
        "perturbed_cost",
        "regularizer",
    }


def test_a_regularizer_that_fits_more_noise_is_not_said_to_prevent_it():
    study = {k: v for k, v in STUDY.items() if k[1] != "weight_decay"}
    study[(0.2, "dropout")] = {"train_flipped": [1.0, 1.0, 1.0], "heldout": [0.7] * 3}
    found = {f.key: f for f in study_findings(StudyTables(_metrics(study), pd.DataFrame()))}
    assert found["regularizer"].answer is None
    assert "fits fewer flipped labels" in found["regularizer"].why


def test_clean_labels_only_cannot_answer_the_memorization_questions():
    clean = {k: v for k, v in STUDY.items() if k[0] == 0.0}
    found = {f.key: f for f in study_findings(StudyTables(_metrics(clean), pd.DataFrame()))}
    assert "label noise" in found["memorizes"].why
    assert found["perturbed_cost"].answer  # perturbations need no noise
    assert Estimate(0.5, 0.4, 0.6, 10, "examples").json() == {
        "value": 0.5,
        "low": 0.4,
        "high": 0.6,
        "n": 10,
    }


def test_the_memorized_examples_are_those_of_the_memorizing_network_when_powered():
    metrics = _metrics(STUDY)
    base = run_columns(label_noise=0.2, regime="memorize", size=100)
    knn = base | {"model": "knn-k1", "kind": "knn", "regime": "memory"}
    scores = dict(powered=True, status="ok", replicas_trained=16, auc_flipped=0.9)
    summary = pd.DataFrame(
        [
            base | scores | dict(replicas=16, above_half=20, above_half_flipped=15),
            knn | scores | dict(replicas=32, above_half=40, above_half_flipped=10),
        ]
    )
    found = {
        f.key: f
        for f in study_findings(StudyTables(metrics, pd.DataFrame(), memorization_summary=summary))
    }
    answer = found["which_examples"]
    # The memorizing MLP, not the better-replicated 1-NN; 15 of 20 flipped, Wilson interval.
    assert answer.answer.startswith("m-w8 / memorize memorizes 20 training examples")
    share = answer.numbers["memorized_flipped_share"]
    assert share.value == 0.75 and share.n == 20 and 0.5 < share.low < 0.75 < share.high < 0.95
