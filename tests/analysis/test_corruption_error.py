"""mCE and relative mCE (Hendrycks & Dietterich 2019) on hand-made errors, and the baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import full, run_columns, smoke

from memlab.analysis.corruption_error import (
    COLUMNS,
    MEAN,
    corruption_error_table,
    corruption_errors,
    mean_corruption_errors,
    resolve_baselines,
)
from memlab.io import MemlabInputError
from memlab.plan.study import plan_study

BASE = {"d": {"model": "base-w1", "regime": "memorize", "reason": None}}


def test_corruption_errors_by_hand():
    # Two corruptions x three severities; error rates (1 - accuracy).
    model = np.array([[0.10, 0.20, 0.30], [0.30, 0.40, 0.50]])
    base = np.array([[0.20, 0.30, 0.50], [0.20, 0.20, 0.20]])
    ce, rel = corruption_errors(model, 0.05, base, 0.10)
    # CE: 0.6 / 1.0 and 1.2 / 0.6.
    np.testing.assert_allclose(ce, [0.6, 2.0])
    # Relative: (0.6 - 3 x 0.05) / (1.0 - 3 x 0.1) = 0.45 / 0.7; (1.2 - 0.15) / (0.6 - 0.3) = 3.5.
    np.testing.assert_allclose(rel, [0.45 / 0.7, 3.5])
    mce, rel_mce = mean_corruption_errors(model, 0.05, base, 0.10)
    assert mce == pytest.approx(1.3) and rel_mce == pytest.approx((0.45 / 0.7 + 3.5) / 2)
    # Against itself: 1 everywhere.
    np.testing.assert_allclose(corruption_errors(model, 0.05, model, 0.05), np.ones((2, 2)))


def test_undefined_where_the_baseline_has_no_error_or_no_drop():
    model = np.array([[0.1, 0.2], [0.3, 0.3], [0.2, 0.2]])
    # Corruption 0: the baseline makes no error; 1: it loses nothing (at its clean error 0.1);
    # 2: it even gains (a denominator below 0 would flip the sign).
    base = np.array([[0.0, 0.0], [0.1, 0.1], [0.05, 0.05]])
    ce, rel = corruption_errors(model, 0.1, base, 0.1)
    assert np.isnan(ce[0]) and ce[1] == pytest.approx(3.0) and ce[2] == pytest.approx(4.0)
    assert np.isnan(rel).all()
    mce, rel_mce = mean_corruption_errors(model, 0.1, base, 0.1)
    assert mce == pytest.approx(3.5)  # over the corruptions where CE is defined
    assert np.isnan(rel_mce)


def robustness(model, regime, accuracy, clean, **columns):
    """A robustness table for one run: ``accuracy[(name, severity)]`` per replica."""
    run = run_columns(model=model, regime=regime, **columns)
    rows = [
        {
            **run,
            "replica": r,
            "perturbation": name,
            "severity": severity,
            "accuracy": value,
            "clean_accuracy": clean[r],
            "drop": clean[r] - value,
        }
        for (name, severity), values in accuracy.items()
        for r, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def _by(table, model, perturbation):
    row = table[(table["model"] == model) & (table["perturbation"] == perturbation)]
    assert len(row) == 1
    return row.iloc[0]


def test_table_by_hand_with_a_paired_bootstrap():
    # Replicas differ; the model's errors are the baseline's plus a fixed amount per replica.
    base_acc = {("a", 1): [0.8, 0.7, 0.9], ("a", 2): [0.6, 0.5, 0.7], ("b", 1): [0.9] * 3}
    model_acc = {("a", 1): [0.9, 0.8, 1.0], ("a", 2): [0.7, 0.6, 0.8], ("b", 1): [0.8] * 3}
    frame = pd.concat(
        [
            robustness("base-w1", "memorize", base_acc, [0.95, 0.85, 0.95]),
            robustness("m-w2", "memorize", model_acc, [1.0, 0.9, 1.0]),
        ]
    )
    table = corruption_error_table(frame, BASE, seed=0)
    assert list(table.columns) == COLUMNS
    assert list(table["perturbation"]) == ["a", "b", MEAN] * 2
    assert (table["status"] == "ok").all()
    assert set(table["baseline"]) == {"base-w1"} and set(table["baseline_regime"]) == {"memorize"}
    # Mean errors over replicas: baseline a (0.2, 0.4), b 0.1, clean 0.0833; model a (0.1, 0.3),
    # b 0.2, clean 0.0333.
    a, b, mean = (_by(table, "m-w2", p) for p in ("a", "b", MEAN))
    assert a["severities"] == 2 and b["severities"] == 1 and a["replicas"] == 3
    assert a["ce"] == pytest.approx(0.4 / 0.6) and b["ce"] == pytest.approx(2.0)
    assert a["relative_ce"] == pytest.approx((0.4 - 2 / 30) / (0.6 - 2 / 12))
    assert b["relative_ce"] == pytest.approx((0.2 - 1 / 30) / (0.1 - 1 / 12))
    assert mean["ce"] == pytest.approx((0.4 / 0.6 + 2.0) / 2)
    assert mean["relative_ce"] == pytest.approx((a["relative_ce"] + b["relative_ce"]) / 2)
    assert a["error"] == pytest.approx(0.2) and a["baseline_error"] == pytest.approx(0.3)
    assert mean["error"] == pytest.approx((0.2 + 0.2) / 2)
    assert mean["clean_error"] == pytest.approx(1 / 30)
    assert mean["baseline_clean_error"] == pytest.approx(1 / 12)
    for row in (a, b, mean):
        for name in ("ce", "relative_ce"):
            assert row[f"{name}_low"] <= row[name] + 1e-12 <= row[f"{name}_high"] + 2e-12
    # Corruption b's errors are the same in every replica: its CE cannot vary.
    assert b["ce_low"] == pytest.approx(2.0) and b["ce_high"] == pytest.approx(2.0)
    assert a["ce_low"] < a["ce_high"]
    # The baseline against itself: exactly 1, and so is every (paired) bootstrap draw.
    for p in ("a", "b", MEAN):
        row = _by(table, "base-w1", p)
        for name in ("ce", "relative_ce"):
            assert row[name] == row[f"{name}_low"] == row[f"{name}_high"] == pytest.approx(1.0)


def test_each_run_is_matched_to_the_baseline_at_its_noise_and_size():
    acc = {("a", 1): [0.5, 0.5]}
    frame = pd.concat(
        [
            robustness("base-w1", "memorize", {("a", 1): [0.8, 0.8]}, [0.9, 0.9], size=10),
            robustness("base-w1", "memorize", {("a", 1): [0.6, 0.6]}, [0.9, 0.9], size=20),
            # The baseline in a regularized regime is a model like any other.
            robustness("base-w1", "wd", acc, [0.9, 0.9], size=10, weight_decay=1.0),
            robustness("m-w2", "memorize", acc, [0.9, 0.9], size=10),
            robustness("m-w2", "memorize", acc, [0.9, 0.9], size=20),
            robustness("m-w2", "memorize", acc, [0.9, 0.9], size=30),
        ]
    )
    table = corruption_error_table(frame, BASE)
    mean = table[table["perturbation"] == MEAN].set_index(["model", "regime", "size"])
    assert mean.loc[("m-w2", "memorize", 10), "ce"] == pytest.approx(0.5 / 0.2)
    assert mean.loc[("m-w2", "memorize", 20), "ce"] == pytest.approx(0.5 / 0.4)
    assert mean.loc[("base-w1", "wd", 10), "relative_ce"] == pytest.approx(0.4 / 0.1)
    # No baseline run at size 30: the model's own errors, no CE, and why.
    row = mean.loc[("m-w2", "memorize", 30)]
    assert np.isnan(row["ce"]) and row["error"] == pytest.approx(0.5)
    assert "no run at label noise 0 and size 30" in row["status"]


def test_no_baseline_on_a_dataset_says_why():
    frame = robustness("m-w2", "memorize", {("a", 1): [0.5]}, [0.9])
    reason = "the baseline base-w1 does not run on dataset 'd'"
    table = corruption_error_table(
        frame, {"d": {"model": "base-w1", "regime": None, "reason": reason}}
    )
    assert list(table["status"]) == [reason, reason]
    assert table["ce"].isna().all() and table["error"].notna().all()


def test_undefined_corruptions_are_left_out_of_the_mean_and_named():
    base = {("a", 1): [1.0, 1.0], ("b", 1): [0.5, 0.7]}  # no error under a
    model = {("a", 1): [0.9, 0.9], ("b", 1): [0.4, 0.4]}
    frame = pd.concat(
        [
            robustness("base-w1", "memorize", base, [1.0, 1.0]),
            robustness("m-w2", "memorize", model, [1.0, 1.0]),
        ]
    )
    table = corruption_error_table(frame, BASE)
    a, mean = _by(table, "m-w2", "a"), _by(table, "m-w2", MEAN)
    assert np.isnan(a["ce"]) and np.isnan(a["relative_ce"]) and np.isnan(a["ce_low"])
    assert "makes no error" in a["status"] and "loses no accuracy" in a["status"]
    assert mean["ce"] == pytest.approx(0.6 / 0.4) == _by(table, "m-w2", "b")["ce"]
    assert "mCE over 1 of 2 corruptions (undefined: a)" in mean["status"]


def test_a_run_with_every_corruption_undefined_has_no_mean():
    base = {("a", 1): [1.0, 1.0]}  # the baseline makes no error under the only corruption
    frame = pd.concat(
        [
            robustness("base-w1", "memorize", base, [1.0, 1.0]),
            robustness("m-w2", "memorize", {("a", 1): [0.9, 0.8]}, [1.0, 1.0]),
        ]
    )
    mean = _by(corruption_error_table(frame, BASE), "m-w2", MEAN)
    assert np.isnan(mean["ce"]) and np.isnan(mean["ce_low"]) and np.isnan(mean["relative_ce"])


def test_one_replica_has_no_interval_and_the_table_is_reproducible():
    frame = pd.concat(
        [
            robustness("base-w1", "memorize", {("a", 1): [0.8]}, [0.9]),
            robustness("m-w2", "memorize", {("a", 1): [0.6]}, [0.9]),
        ]
    )
    table = corruption_error_table(frame, BASE)
    assert table["ce"].notna().all() and table["ce_low"].isna().all()
    # Several replicas: the same seed gives the same intervals, whatever other runs there are.
    acc = {("a", 1): [0.8, 0.6, 0.7, 0.5], ("a", 2): [0.5, 0.4, 0.45, 0.3]}
    acc2 = {("a", 1): [0.7, 0.65, 0.6, 0.4], ("a", 2): [0.4, 0.2, 0.3, 0.35]}
    runs = [
        robustness("base-w1", "memorize", acc, [0.9, 0.8, 0.85, 0.9]),
        robustness("m-w2", "memorize", acc2, [0.9, 0.9, 0.8, 0.85]),
    ]
    one = corruption_error_table(pd.concat(runs), BASE, seed=3)
    pd.testing.assert_frame_equal(one, corruption_error_table(pd.concat(runs), BASE, seed=3))
    other = robustness("m-w4", "memorize", acc, [0.9, 0.9, 0.9, 0.9])
    more = corruption_error_table(pd.concat([*runs, other]), BASE, seed=3)
    pd.testing.assert_frame_equal(more[more["model"] != "m-w4"].reset_index(drop=True), one)
    assert not one["ce_low"].equals(corruption_error_table(pd.concat(runs), BASE, seed=4)["ce_low"])


def test_empty_robustness_gives_the_header():
    table = corruption_error_table(pd.DataFrame(), BASE)
    assert list(table.columns) == COLUMNS and table.empty


# --------------------------------------------------------------------------- the baseline


def _study(**perturbations):
    config = full(smoke())
    config["perturbations"].update(perturbations)
    return plan_study(config), config["perturbations"]


def test_default_baseline_is_the_first_trained_variant_unregularized():
    study, p = _study()
    assert resolve_baselines(study, p) == {
        "digits": {"model": "mlp-w8", "regime": "memorize", "reason": None}
    }
    assert resolve_baselines(*_study(baseline="knn-k1"))["digits"]["regime"] == "memory"
    chosen = resolve_baselines(*_study(baseline="cnn-w4", baseline_regime="regularized"))
    assert chosen["digits"] == {"model": "cnn-w4", "regime": "regularized", "reason": None}


def test_default_baseline_does_not_depend_on_the_order_of_the_config():
    config = smoke()
    config["models"] = dict(reversed(config["models"].items()))  # knn, cnn, mlp
    config["models"]["mlp"]["widths"] = [16, 8]
    config["regimes"] = {"z_plain": {}, **config["regimes"], "a_plain": {"lr": 0.01}}
    config = full(config)
    chosen = resolve_baselines(plan_study(config), config["perturbations"])
    assert chosen["digits"] == {"model": "mlp-w8", "regime": "a_plain", "reason": None}
    del config["models"]["mlp"]
    assert resolve_baselines(plan_study(config), config["perturbations"])["digits"]["model"] == (
        "cnn-w4"
    )
    del config["models"]["cnn"]
    only_knn = resolve_baselines(plan_study(config), config["perturbations"])["digits"]
    assert only_knn == {"model": "knn-k1", "regime": "memory", "reason": None}


def test_baseline_without_a_run_or_an_unregularized_regime_has_a_reason():
    config = full(smoke())
    config["datasets"]["other"] = {"kind": "digits", "grid": {"models": ["knn"]}}
    config["datasets"]["reg"] = {"kind": "digits", "grid": {"regimes": ["regularized"]}}
    chosen = resolve_baselines(plan_study(config), config["perturbations"])
    assert chosen["other"]["regime"] is None
    assert "does not run on dataset 'other'" in chosen["other"]["reason"]
    assert chosen["reg"]["regime"] is None and "baseline_regime" in chosen["reg"]["reason"]
    assert chosen["digits"]["regime"] == "memorize"


@pytest.mark.parametrize(
    ("perturbations", "match"),
    [
        (
            {"baseline": "mlp-w9"},
            r"perturbations\.baseline 'mlp-w9' is not a model variant.*mlp-w8",
        ),
        ({"baseline_regime": "fast"}, r"baseline_regime 'fast' is not a regime.*memorize"),
        ({"baseline": "knn-k1", "baseline_regime": "memorize"}, r"knn-k1 does not train"),
    ],
)
def test_a_bad_baseline_names_the_key(perturbations, match):
    with pytest.raises(MemlabInputError, match=match):
        resolve_baselines(*_study(**perturbations))
