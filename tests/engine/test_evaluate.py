"""Per-example outputs, split metrics and the tidy tables built from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_columns

from memlab.analysis import metrics as analysis
from memlab.columnar import to_frame
from memlab.engine.evaluate import evaluate_replicas, example_outputs


def test_logit_scaled_confidence_matches_definition():
    p = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]])
    out = example_outputs(p.log(), np.array([0, 2]))
    expected = [np.log(0.7) - np.log(0.3), np.log(0.6) - np.log(0.4)]
    np.testing.assert_allclose(out["confidence"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(out["loss"][0], [-np.log(0.7), -np.log(0.6)], rtol=1e-5)
    assert out["pred"].tolist() == [[0, 2]]


@pytest.mark.parametrize("margin", [20.0, 30.0, 50.0])
def test_loss_of_confident_prediction_is_not_rounded_to_zero(margin):
    """-log p_y rounds to 0.0 in float32 past a margin of ~17; the loss keeps its value."""
    z = torch.zeros(1, 2, 10)
    z[0, 0, 3], z[0, 1, 5] = margin, margin  # label 3: correct and confident; confidently wrong
    out = example_outputs(torch.log_softmax(z, -1), np.array([3, 3]))
    np.testing.assert_allclose(out["loss"][0, 0], np.log1p(9 * np.exp(-margin)), rtol=1e-5)
    np.testing.assert_allclose(out["loss"][0, 1], margin + np.log1p(9 * np.exp(-margin)), rtol=1e-5)
    assert out["loss"][0, 0] > 0


def _fixed_model(pool_pred, test_pred, n_classes=3):
    """A fake 'model' whose predictions are given per example (for exact expected metrics)."""

    def log_proba(x):
        pred = pool_pred if len(x) == pool_pred.shape[1] else test_pred
        p = np.full((*pred.shape, n_classes), 0.1)
        np.put_along_axis(p, pred[..., None], 0.8, axis=2)
        return torch.from_numpy(np.log(p)).float()

    return log_proba


def test_split_metrics_are_exact():
    y_pool = np.array([0, 1, 2, 0, 1, 2])
    flipped = np.array([0, 0, 0, 0, 1, 1], bool)
    y_test = np.array([0, 1, 2, 2])
    members = np.array([[1, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], bool)
    # replica 0 right on examples 0-3, wrong on 4-5; replica 1 right everywhere.
    pool_pred = np.array([[0, 1, 2, 0, 0, 0], [0, 1, 2, 0, 1, 2]])
    test_pred = np.array([[0, 1, 2, 0], [0, 0, 0, 0]])
    arrays, m = evaluate_replicas(
        _fixed_model(pool_pred, test_pred),
        x_pool=np.zeros((6, 1)),
        y_pool=y_pool,
        flipped=flipped,
        x_test=np.zeros((4, 1)),
        y_test=y_test,
        members=members,
        train_mask=members,
        val_mask=np.zeros_like(members),
        perturbed={},
    )
    m = to_frame(m)
    acc = m[m.metric == "accuracy"].set_index(["replica", "split"])["value"]
    assert acc[(0, "train")] == pytest.approx(4 / 5)
    assert acc[(0, "train_flipped")] == 0.0
    assert acc[(0, "train_clean")] == 1.0
    assert acc[(0, "unseen")] == 0.0
    assert acc[(0, "heldout")] == 0.75
    assert acc[(1, "train")] == 1.0 and acc[(1, "train_flipped")] == 1.0
    assert acc[(1, "heldout")] == 0.25
    assert "val" not in acc.index.get_level_values("split")
    assert arrays["pool_pred"].dtype == np.int16 and arrays["pool_loss"].dtype == np.float32


def test_gap_and_robustness_tables():
    run = run_columns(model="mlp-w8", model_name="mlp")
    rows = pd.DataFrame(
        {
            "replica": [0, 0, 0, 1, 1, 1],
            "split": ["train", "heldout", "perturbed"] * 2,
            "perturbation": ["none", "none", "blur"] * 2,
            "severity": [0, 0, 3] * 2,
            "metric": "accuracy",
            "value": [1.0, 0.8, 0.5, 0.9, 0.7, 0.6],
        }
    )
    m = analysis.with_run(rows, run)
    gap = analysis.generalization_gap(m)
    np.testing.assert_allclose(gap["gap"], [0.2, 0.2])
    rob = analysis.robustness(m)
    np.testing.assert_allclose(rob["drop"], [0.3, 0.1])
    s = analysis.summarize(m)
    heldout = s[s.split == "heldout"].iloc[0]
    assert heldout["mean"] == pytest.approx(0.75) and heldout["replicas"] == 2
    assert heldout["sem"] == pytest.approx(np.std([0.8, 0.7], ddof=1) / np.sqrt(2))


def test_canary_and_reference_losses_are_the_pool_loss_of_each_replica(digits_split):
    from memlab.data.canaries import CanarySpec, add_canaries
    from memlab.engine.evaluate import canary_arrays

    split = add_canaries(digits_split, CanarySpec(2, (0, 1), 4096), seed=0)
    weights = torch.randn(2, 64, 10, generator=torch.Generator().manual_seed(0))

    def log_proba(x):  # two linear "replicas"
        return torch.log_softmax(torch.from_numpy(x).float() @ weights, -1)

    a = canary_arrays(log_proba, split)
    assert a["canary_loss"].shape == (2, 4) and a["reference_loss"].shape == (2, 4096)
    assert a["canary_loss"].dtype == np.float32
    want = example_outputs(log_proba(split.canary_x), split.canary_y)["loss"]
    np.testing.assert_array_equal(a["canary_loss"], want)
    # The canary rows of the pool get the same loss as the canary they repeat.
    n = int((split.pool_canary < 0).sum())
    pool = example_outputs(log_proba(split.x_pool), split.y_pool)["loss"]
    np.testing.assert_allclose(pool[:, n:], a["canary_loss"][:, split.pool_canary[n:]], rtol=1e-6)
    np.testing.assert_array_equal(a["canary_repetitions"], [0, 0, 1, 1])
    assert canary_arrays(log_proba, digits_split) == {}  # no canaries, no arrays
