"""Long-tailed data (memlab.data.long_tail): exact counts per subpopulation, every subpopulation
held out, clear errors for laws the data cannot satisfy, and accuracy per training frequency."""

import numpy as np
import pandas as pd
import pytest
from conftest import full, smoke

from memlab.analysis.metrics import long_tail_accuracy, with_subpopulations
from memlab.data import datasets as data
from memlab.data.long_tail import (
    LongTailSpec,
    frequency_bucket,
    long_tail_split,
    split_indices,
)
from memlab.io import MemlabInputError
from memlab.plan.study import RUN_COLUMNS, plan_study


def _digits_tail(**entry):
    spec = {"kind": "digits", "long_tail": {"subpopulations": 8, "head": 16, "exponent": 1.5}}
    spec["long_tail"].update(entry)
    return split_indices(spec, 0.25, seed=0, name="digits_lt")


def test_power_law_counts_by_rank():
    spec = LongTailSpec(subpopulations=8, head=16, exponent=1.5)
    # round(16 * r^-1.5): 16, 5.66, 3.08, 2, 1.43, 1.09, 0.86, 0.71
    assert spec.frequencies().tolist() == [16, 6, 3, 2, 1, 1, 1, 1]
    assert spec.pool_size(10) == 310
    assert LongTailSpec(4, 5, 0.0).frequencies().tolist() == [5, 5, 5, 5]


def test_digits_tail_has_the_configured_count_in_every_subpopulation():
    ds, pool, test, arrays = _digits_tail()
    counts = np.bincount(arrays["pool_subpopulation"], minlength=80)
    # Every class: ranks 1..8 keep exactly 16, 6, 3, 2, 1, 1, 1, 1 pool examples.
    assert counts.tolist() == [16, 6, 3, 2, 1, 1, 1, 1] * 10
    assert arrays["subpopulation_frequency"].tolist() == counts.tolist()
    # A subpopulation holds one class only, and the id says which.
    assert np.array_equal(ds.y[pool], arrays["pool_subpopulation"] // 8)
    assert np.array_equal(ds.y[test], arrays["test_subpopulation"] // 8)
    # Every subpopulation is in the held-out set; pool and held-out set do not overlap.
    assert set(arrays["test_subpopulation"]) == set(range(80))
    assert not set(pool) & set(test)
    assert len(pool) == 310


def test_held_out_set_is_the_split_plus_borrowed_examples_only():
    ds, _, test, arrays = _digits_tail()
    _, base_test = data.split_pool_test(ds.y, 0.25, 0)
    assert set(base_test) <= set(test)
    borrowed = np.setdiff1d(test, base_test)
    # Each borrowed example fills a subpopulation that had no held-out example.
    sub = dict(zip(test, arrays["test_subpopulation"], strict=True))
    for i in borrowed:
        assert sum(sub[j] == sub[i] for j in base_test) == 0


def test_the_split_is_reproducible():
    a, b = _digits_tail(), _digits_tail()
    for x, y in zip(a[1:3], b[1:3], strict=True):
        assert np.array_equal(x, y)


def test_a_law_the_clusters_cannot_satisfy_is_one_clear_error():
    with pytest.raises(MemlabInputError, match=r"long_tail.*asks for 200; lower `head`"):
        _digits_tail(head=200)


def test_more_subpopulations_than_a_class_has_examples():
    X = np.random.default_rng(0).random((30, 2)).astype(np.float32)
    y = np.repeat([0, 1], 15)
    with pytest.raises(MemlabInputError, match=r"subpopulations is 20 but class 0 .* only 15"):
        long_tail_split(X, y, np.arange(0, 30, 2), np.arange(1, 30, 2), LongTailSpec(20, 1, 0.0), 0)


def test_a_law_that_leaves_subpopulations_empty():
    with pytest.raises(MemlabInputError, match="without a training example; raise `head`"):
        LongTailSpec(8, 2, 3.0).frequencies("d")


def test_the_plan_knows_the_thinned_pool_and_rejects_a_bad_law_before_any_job(tmp_path):
    config = smoke()
    config["datasets"] = {"lt": {"kind": "digits", "long_tail": {}}}
    config["sizes"] = [0.5, 1.0]
    study = plan_study(full(config), tmp_path)
    assert study.datasets["lt"].n_pool == 310  # the schema's defaults: 8, 16, 1.5
    assert study.datasets["lt"].sizes == (155, 310)
    config["datasets"]["lt"]["long_tail"] = {"head": 500}
    with pytest.raises(MemlabInputError, match=r"datasets\.lt\.long_tail"):
        plan_study(full(config), tmp_path)


def test_frequency_buckets_are_powers_of_two():
    assert frequency_bucket(np.array([1, 2, 3, 4, 7, 8, 16, 31])).tolist() == [
        1,
        2,
        2,
        4,
        4,
        8,
        16,
        16,
    ]


def _split_with_tail():
    x = np.zeros((4, 2), np.float32)
    return data.Split(
        x,
        np.array([0, 0, 1, 1]),
        x[:3],
        np.array([0, 1, 1]),
        2,
        None,
        None,
        pool_subpopulation=np.array([0, 0, 1, 2]),
        test_subpopulation=np.array([0, 1, 2]),
        subpopulation_frequency=np.array([2, 1, 1]),
    )


def test_accuracy_by_frequency_counts_each_replicas_own_training_set():
    run = {c: 0 for c in RUN_COLUMNS} | {"dataset": "d"}
    # Pool: subpopulation 0 twice, 1 and 2 once. Replica 0 trains on everything; replica 1
    # leaves out pool example 2 (subpopulation 1), so for it test example 1 is unseen (0).
    trained = np.array([[1, 1, 1, 1], [1, 1, 0, 1]], bool)
    correct = np.array([[1, 1, 0], [1, 0, 0]], bool)
    bank = {"test_correct": correct, "train_mask": trained}
    table = long_tail_accuracy([(run, bank)], lambda d: _split_with_tail())
    by = table.set_index("train_frequency")
    assert sorted(by.index) == [0, 1, 2]
    # Singletons: replica 0 gets test examples 1, 2: 1/2; replica 1 only example 2: 0/1.
    assert by.loc[1, "accuracy"] == 0.25 and by.loc[1, "n_replicas"] == 2
    assert by.loc[1, "accuracy_se"] == pytest.approx(np.std([0.5, 0.0], ddof=1) / np.sqrt(2))
    assert (by.loc[0, "accuracy"], by.loc[0, "n_replicas"], by.loc[0, "n_test"]) == (0.0, 1, 1)
    assert (by.loc[2, "accuracy"], by.loc[2, "accuracy_se"]) == (1.0, 0.0)


def test_per_example_tables_gain_subpopulation_and_frequency():
    frame = pd.DataFrame({"dataset": ["d", "d", "plain"], "example": [3, 0, 1]})
    plain = data.Split(
        *(
            _split_with_tail().__dict__[k]
            for k in ("x_pool", "y_pool", "x_test", "y_test", "n_classes", "image_shape")
        )
    )
    out = with_subpopulations(frame, {"d": _split_with_tail(), "plain": plain}.get)
    assert out["subpopulation"].tolist()[:2] == [2, 0]
    assert out["train_frequency"].tolist()[:2] == [1, 2]
    assert out["subpopulation"].isna().tolist() == [False, False, True]
