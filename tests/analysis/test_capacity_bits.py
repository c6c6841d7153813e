"""Capacity in bits per parameter (memlab.analysis.capacity_bits): known answers (chance stores 0
bits, a zero-loss fit ``n log2 K``), the clipping at 0, the maximum over training-set sizes, and
which models get a row."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import run_columns

from memlab.analysis.capacity_bits import (
    bits_stored,
    capacity_bits_table,
    parameter_count,
    variant_of,
)
from memlab.data.datasets import Split
from memlab.plan.kinds import MLP

K = 10


def _split(n_pool: int = 6, in_dim: int = 4, n_classes: int = K) -> Split:
    x = np.zeros((n_pool, in_dim), np.float32)
    y = np.zeros(n_pool, np.int64)
    return Split(x, y, x[:2], y[:2], n_classes, None)


def _bank(loss, trained) -> dict[str, np.ndarray]:
    return {"pool_loss": np.asarray(loss, np.float32), "train_mask": np.asarray(trained, bool)}


def test_a_model_at_chance_stores_no_bits():
    loss = np.full((3, 8), math.log(K))
    assert bits_stored(loss, np.ones((3, 8), bool), K) == pytest.approx(np.zeros(3), abs=1e-9)


def test_a_model_that_fits_every_label_with_zero_loss_stores_n_log2_k():
    trained = np.zeros((2, 8), bool)
    trained[:, :5] = True
    bits = bits_stored(np.zeros((2, 8)), trained, K)
    assert bits == pytest.approx(np.full(2, 5 * math.log2(K)))


def test_worse_than_chance_examples_store_zero_not_negative_bits():
    # One example fitted (0 nats: log2 K bits), one confidently wrong (far above ln K: 0, not
    # negative), one halfway (CE = ln K / 2: half of log2 K).
    loss = np.array([[0.0, 50.0, math.log(K) / 2]])
    bits = bits_stored(loss, np.ones((1, 3), bool), K)
    assert bits[0] == pytest.approx(1.5 * math.log2(K))


def test_only_the_replicas_training_examples_count():
    loss = np.zeros((2, 4))  # every pool example fitted, trained on or not
    trained = np.array([[1, 0, 0, 0], [1, 1, 1, 0]], bool)
    assert bits_stored(loss, trained, 2) == pytest.approx([1.0, 3.0])


def _run(size: int, **overrides):
    return run_columns(dataset="random", size=size, **overrides)


def test_table_gives_mean_se_per_parameter_and_marks_the_largest_size():
    split = _split(n_pool=6)
    runs = []
    # Size 2: both fitted (2 log2 K bits each replica). Size 4: two of four fitted in one
    # replica, three in the other (mean 2.5 log2 K). Size 6: at chance.
    for size, fitted in ((2, (2, 2)), (4, (2, 3)), (6, (0, 0))):
        trained = np.zeros((2, 6), bool)
        trained[:, :size] = True
        loss = np.full((2, 6), math.log(K))
        for r, f in enumerate(fitted):
            loss[r, :f] = 0.0
        runs.append((_run(size), _bank(loss, trained)))
    table = capacity_bits_table(runs, lambda d: split, ["random"])
    assert list(table["train_size"]) == [2, 4, 6]
    parameters = MLP("m", 8, 1).parameter_count(4, K, None)
    assert (table["parameters"] == parameters).all()
    bits = table["bits_stored"].to_numpy()
    assert bits == pytest.approx(np.array([2, 2.5, 0]) * math.log2(K))
    assert table["bits_per_parameter"].to_numpy() == pytest.approx(bits / parameters)
    # Standard error over the 2 replicas: sd(2, 3) log2 K / sqrt 2 = 0.5 log2 K.
    assert table["bits_stored_se"].iloc[1] == pytest.approx(0.5 * math.log2(K))
    assert table["bits_stored_se"].iloc[0] == pytest.approx(0.0)
    assert list(table["replicas"]) == [2, 2, 2]
    assert list(table["label_bits"]) == pytest.approx(np.array([2, 4, 6]) * math.log2(K))
    assert list(table["is_max"]) == [False, True, False]


def test_the_maximum_is_taken_per_model_and_regime():
    split = _split(n_pool=4)
    trained = np.ones((1, 4), bool)
    fitted = _bank(np.zeros((1, 4)), trained)
    chance = _bank(np.full((1, 4), math.log(K)), trained)
    half = _bank(np.where(np.arange(4) < 2, 0.0, math.log(K))[None], trained)
    runs = [
        (_run(4, model="m-w8"), chance),
        (_run(2, model="m-w8"), half),
        (_run(4, model="m-w16", width=16), fitted),
        (_run(4, model="m-w8", regime="decay"), chance),
    ]
    table = capacity_bits_table(runs, lambda d: split, ["random"])
    assert list(table["is_max"]) == [False, True, True, True]
    # One replica: no standard error.
    assert table["bits_stored_se"].isna().all()


def test_models_without_weights_and_other_datasets_have_no_rows():
    split = _split()
    bank = _bank(np.zeros((1, 6)), np.ones((1, 6), bool))
    knn = _run(6, kind="knn", model="knn-k1", model_name="knn", width=0, depth=0, k=1)
    memnet = _run(6, kind="memory_net", model="mn-w8", memory="on")
    true_labels = run_columns(dataset="clean", size=6)
    assert variant_of(knn) is None and variant_of(memnet) is None
    assert parameter_count(knn, split) is None
    runs = [(knn, bank), (memnet, bank), (true_labels, bank)]
    table = capacity_bits_table(runs, lambda d: split, ["random"])
    assert table.empty and "bits_per_parameter" in table and "is_max" in table


def test_parameter_count_is_the_variants_on_the_split():
    split = _split(in_dim=64, n_classes=10)
    assert parameter_count(_run(6), split) == (64 + 1) * 8 + (8 + 1) * 10
    rf = _run(6, kind="random_features", model="rf-f40", model_name="rf", width=40, depth=0)
    assert parameter_count(rf, split) == 40 * 10


def test_the_figure_needs_random_labels_and_a_model_with_weights():
    from conftest import full, smoke

    from memlab.plan.registry import study_figures
    from memlab.plan.study import plan_study

    def drawn(config: dict) -> bool:
        return "capacity_bits" in [f.name for f in study_figures(plan_study(full(config)))]

    config = smoke()
    assert not drawn(config)  # true labels only
    config["datasets"]["random"] = {
        "kind": "digits",
        "randomization": {"kind": "random_labels"},
        "grid": {"models": ["knn"]},
    }
    assert not drawn(config)  # a k-NN has no parameters
    config["datasets"]["random"]["grid"]["models"] = ["knn", "mlp"]
    assert drawn(config)
    config["datasets"]["random"]["randomization"] = {"kind": "shuffled_pixels"}
    assert not drawn(config)
