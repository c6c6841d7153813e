"""Random features with a closed-form readout: the solve, the stack, the double descent."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import checkpoint_of, full, smoke, train_regime

from memlab.columnar import to_frame
from memlab.data import datasets as data
from memlab.engine import runs
from memlab.engine.random_features import StackedRandomFeatures, readout, solve
from memlab.plan.kinds import RandomFeatures, variant_from_spec
from memlab.plan.study import STOP_REASONS, plan_study


def _phi(r: int, n: int, f: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(r, n, f, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("features", [5, 12, 40])  # under, at and over the 12 examples
def test_ridgeless_readout_is_the_minimum_norm_least_squares_solution(features):
    phi, y = _phi(3, 12, features), _phi(3, 12, 4, seed=1)
    a = readout(phi, y, 0.0)
    np.testing.assert_allclose(a, torch.linalg.pinv(phi) @ y, rtol=1e-8, atol=1e-10)
    if features >= 12:  # enough features: it interpolates
        np.testing.assert_allclose(phi @ a, y, atol=1e-9)


def test_ridge_readout_solves_the_penalized_normal_equations():
    phi, y, ridge = _phi(2, 10, 7), _phi(2, 10, 3, seed=1), 0.05
    a = readout(phi, y, ridge)
    # mean ||phi A - y||^2 + ridge ||A||^2  ->  (phi^T phi + n ridge I) A = phi^T y
    lhs = phi.transpose(1, 2) @ phi + 10 * ridge * torch.eye(7, dtype=torch.float64)
    np.testing.assert_allclose(a, torch.linalg.solve(lhs, phi.transpose(1, 2) @ y), rtol=1e-9)


def test_a_stack_equals_its_replicas_built_and_solved_alone(digits_split):
    split = digits_split
    members = data.balanced_subsets(len(split.y_pool), 50, 3, seed=0)
    stack = StackedRandomFeatures(64, 10, features=30, replica_seeds=[4, 5, 6])
    acc = solve(stack, split.x_pool, split.y_pool, members, 10, 1e-3)
    for r, seed in enumerate([4, 5, 6]):
        alone = StackedRandomFeatures(64, 10, features=30, replica_seeds=[seed])
        acc_r = solve(alone, split.x_pool, split.y_pool, members[r : r + 1], 10, 1e-3)
        for name, p in alone.named_parameters():
            torch.testing.assert_close(p[0], dict(stack.named_parameters())[name][r])
        assert acc_r[0] == acc[r]


def _test_error(split, y, members, features: int, ridge: float) -> float:
    model = StackedRandomFeatures(
        split.x_pool.shape[1], split.n_classes, features=features, replica_seeds=range(4)
    )
    solve(model, split.x_pool, y, members, split.n_classes, ridge)
    with torch.no_grad():
        pred = model(torch.from_numpy(split.x_test)).argmax(2).numpy()
    return float((pred != split.y_test).mean())


def test_held_out_error_peaks_where_features_equal_examples_and_ridge_removes_the_peak():
    """Belkin et al. (2019): the minimum-norm readout's test error rises towards F = n and falls
    beyond it; a ridge penalty flattens the peak. A small synthetic case, 4 replicas."""
    ds = data.load_dataset({"kind": "gaussian", "n_samples": 600, "n_features": 20,
                            "n_classes": 3, "separation": 2.0})  # fmt: skip
    split = data.make_split(ds, *data.split_pool_test(ds.y, 0.5, 0))
    n = 60
    members = data.balanced_subsets(len(split.y_pool), n, 4, seed=0)
    y = split.y_pool
    err = {f: _test_error(split, y, members, f, 0.0) for f in (n // 4, n, 16 * n)}
    assert err[n] > err[n // 4] + 0.1 and err[n] > err[16 * n] + 0.1, err
    ridged = _test_error(split, y, members, n, 1e-2)
    assert ridged < err[n] - 0.1 and ridged < max(err[n // 4], err[16 * n]) + 0.05


def test_train_run_solves_and_evaluate_run_reads_the_checkpoint(digits_split):
    split = digits_split
    members = data.balanced_subsets(len(split.y_pool), 40, 2, seed=0)
    variant, regime = RandomFeatures("rf", 80), train_regime()
    flipped = np.zeros(len(split.y_pool), bool)
    state, arrays, history = runs.train_run(
        split, split.y_pool, flipped, members, variant, regime, seed=0, replicas=[5, 6],
        log=lambda s: None,
    )  # fmt: skip
    assert to_frame(history).empty and (arrays["stop_reason"] == STOP_REASONS.index("solved")).all()
    assert (arrays["fit_epoch"] == 0).all()  # 80 features interpolate 40 examples
    checkpoint = checkpoint_of(state, arrays, variant, regime)
    labels = {"y_pool": split.y_pool, "flipped": flipped}
    _, metrics = runs.evaluate_run(checkpoint, split, labels, {})
    metrics = to_frame(metrics)
    facts = metrics[metrics["split"] == "train"].pivot(index="replica", columns="metric")["value"]
    assert facts.index.tolist() == [5, 6]
    assert (facts["fit"] == 1).all() and (facts["stopped_solved"] == 1).all()
    assert not facts["undertrained"].any()
    # The same replica numbers draw the same features in any block.
    again, *_ = runs.train_run(
        split, split.y_pool, flipped, members[1:], variant, regime, seed=0, replicas=[6],
        log=lambda s: None,
    )  # fmt: skip
    torch.testing.assert_close(again["features_w"][0], state["features_w"][1])
    assert variant_from_spec(variant.spec()) == variant and variant.id == "rf-f80"


def _config_with(models: dict, regimes: list[str]) -> dict:
    config = smoke()
    config["models"] = models
    config["regimes"] |= {"ridge": {"ridge": 1e-3}}
    for entry in config["datasets"].values():
        entry.setdefault("grid", {})["regimes"] = regimes
    return full(config)


def test_random_features_run_with_ridge_and_skip_settings_they_cannot_use():
    """The grid crosses models and regimes; a pair that cannot train is skipped with a note."""
    study = plan_study(_config_with({"rf": {"kind": "random_features", "features": [8]},
                                     "mlp": {"kind": "mlp", "widths": [4]}},
                                    ["memorize", "ridge", "regularized"]))  # fmt: skip
    pairs = {(r.variant.id, r.regime.name) for r in study.runs}
    assert pairs == {("rf-f8", "memorize"), ("rf-f8", "ridge"), ("mlp-w4", "memorize"),
                     ("mlp-w4", "regularized")}  # fmt: skip
    assert {r.regime.ridge for r in study.runs if r.variant.kind == "random_features"} == {0, 1e-3}
    notes = " ".join(study.notes)
    assert "run rf-f8/regularized skipped" in notes and "weight_decay, dropout" in notes
    assert "run mlp-w4/ridge skipped" in notes and "regularize it with weight_decay" in notes


def test_double_descent_figure_draws_from_random_feature_runs():
    """pandas 3 reads a tuple given to groupby as one key: the figure groups by RUN_KEYS as a
    list (it raised KeyError for every study with random features)."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd
    from conftest import run_columns

    from memlab.reporting.figures import double_descent
    from memlab.reporting.tables import StudyTables

    rows = []
    for features in (50, 100, 200):
        for regime, ridge in (("memorize", 0.0), ("ridge", 1e-5)):
            run = run_columns(
                model=f"rf-f{features}", model_name="rf", kind="random_features",
                width=features, regime=regime, ridge=ridge,
            )  # fmt: skip
            for replica, split in itertools.product(range(3), ("heldout", "train")):
                value = 0.5 + features / 1000 + replica / 100
                rows.append(run | dict(replica=replica, split=split, perturbation="none",
                                       severity=0, metric="accuracy", value=value))  # fmt: skip
    fig = double_descent(StudyTables(pd.DataFrame(rows), pd.DataFrame()))
    assert "over 3 replicas" in fig._suptitle.get_text()
    assert len(fig.axes) == 1 and fig.axes[0].get_lines()
