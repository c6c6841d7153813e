"""Your own table: the shipped example CSV (memlab.data.examples), standardization with the training
pool's statistics, the corruptions a table cannot take, and config/tabular.yaml end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, copy_workflow, planned_jobs, snakemake

from memlab.data import datasets as data
from memlab.data import examples
from memlab.data.perturb import NOT_TABULAR, not_applicable
from memlab.io import MemlabInputError
from memlab.plan.registry import SUMMARY_PAGE

SPEC = {"kind": "file", "path": "data/breast_cancer.csv", "label_column": "diagnosis"}

# --------------------------------------------------------------------------- standardization


def _split(x_pool: np.ndarray, x_test: np.ndarray) -> data.Split:
    y_pool, y_test = np.arange(len(x_pool)) % 2, np.arange(len(x_test)) % 2
    return data.Split(x_pool, y_pool, x_test, y_test, 2, None)


def test_standardize_uses_the_training_pool_only():
    rng = np.random.default_rng(0)
    pool = (rng.normal(size=(50, 3)) * [1.0, 10.0, 0.1] + [5.0, -3.0, 0.0]).astype(np.float32)
    test = pool[:20] + 1000.0  # far from the pool: any leak shifts the statistics
    out = data.standardize(_split(pool, test))
    np.testing.assert_allclose(out.feature_mean, pool.mean(0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(out.feature_scale, pool.std(0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(out.x_pool.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(out.x_pool.std(0), 1, atol=1e-5)
    # The held-out rows go through the pool's map, so they stay 1000 / std away from the pool's.
    shift = np.broadcast_to(1000.0 / out.feature_scale, (20, 3))
    np.testing.assert_allclose(out.x_test - out.x_pool[:20], shift, rtol=1e-4)
    other = data.standardize(_split(pool, -test))  # other held-out rows: the same map
    np.testing.assert_array_equal(other.x_pool, out.x_pool)
    assert out.x_pool.dtype == out.x_test.dtype == np.float32


def test_a_constant_feature_is_only_centred():
    pool = np.array([[1.0, 7.0], [3.0, 7.0]], np.float32)
    out = data.standardize(_split(pool, np.array([[2.0, 9.0]], np.float32)))
    np.testing.assert_array_equal(out.feature_scale, [1.0, 1.0])
    np.testing.assert_array_equal(out.x_pool[:, 1], [0.0, 0.0])
    np.testing.assert_array_equal(out.x_test, [[0.0, 2.0]])


def test_the_statistics_are_stored_with_the_split(tmp_path):
    pool = np.arange(12, dtype=np.float32).reshape(6, 2)
    plain = _split(pool, pool[:2])
    data.save_split(tmp_path / "plain.npz", plain)
    # A split that is not standardized is saved as before (no new arrays): old studies unchanged.
    assert "feature_mean" not in np.load(tmp_path / "plain.npz").files
    assert data.load_split(tmp_path / "plain.npz").feature_mean is None
    data.save_split(tmp_path / "std.npz", data.standardize(plain))
    back = data.load_split(tmp_path / "std.npz")
    np.testing.assert_allclose(back.feature_mean, [5.0, 6.0])
    np.testing.assert_allclose(
        back.x_pool * back.feature_scale + back.feature_mean, pool, atol=1e-5
    )


def _gaussian() -> data.Dataset:
    return data.load_dataset({"kind": "gaussian", "n_samples": 20})


def test_on_by_default_for_tabular_files_only(tmp_path):
    table = data.load_dataset(SPEC, root=tmp_path)  # the example, from memory
    assert data.standardizes(SPEC, table)
    assert not data.standardizes({**SPEC, "standardize": False}, table)
    assert not data.standardizes({"kind": "gaussian"}, _gaussian())  # kept as generated
    assert data.standardizes({"kind": "gaussian", "standardize": True}, _gaussian())
    np.savez(tmp_path / "imgs.npz", X=np.zeros((4, 2, 2)), y=[0, 1, 0, 1])
    images = {"kind": "file", "path": "imgs.npz"}
    assert not data.standardizes(images, data.load_dataset(images, root=tmp_path))


def test_standardize_on_images_is_refused_before_any_job(tmp_path):
    np.savez(tmp_path / "imgs.npz", X=np.zeros((4, 2, 2)), y=[0, 1, 0, 1])
    with pytest.raises(MemlabInputError, match=r"'mine'.*`standardize: true` on image data"):
        data.dataset_shape(
            {"kind": "file", "path": "imgs.npz", "standardize": True}, tmp_path, name="mine"
        )
    with pytest.raises(MemlabInputError, match=r"unknown key.*standardize"):
        data.load_dataset({"kind": "digits", "standardize": True})


def test_standardized_one_nn_beats_raw_features_on_breast_cancer(tmp_path):
    """The reason it is on by default: raw features weigh 1-NN's distances by their units."""
    from sklearn.neighbors import KNeighborsClassifier

    ds = data.load_dataset(SPEC, root=tmp_path)
    gains = []
    for seed in range(5):
        split = data.make_split(ds, *data.split_pool_test(ds.y, 0.25, seed))
        scores = [
            KNeighborsClassifier(1).fit(s.x_pool, s.y_pool).score(s.x_test, s.y_test)
            for s in (split, data.standardize(split))
        ]
        gains.append(scores[1] - scores[0])
    assert np.mean(gains) > 0.01 and min(gains) >= 0


# --------------------------------------------------------------------------- the example CSV


def test_the_example_csv_reads_back_as_the_table_in_memory(tmp_path):
    in_memory = data.load_dataset(SPEC, root=tmp_path)
    assert (len(in_memory.y), in_memory.X.shape[1], in_memory.n_classes) == (569, 30, 2)
    rows = examples.write_example("breast_cancer", tmp_path / "data" / "breast_cancer.csv")
    assert rows == 569
    from_file = data.load_dataset(SPEC, root=tmp_path)
    np.testing.assert_array_equal(from_file.X, in_memory.X)
    np.testing.assert_array_equal(from_file.y, in_memory.y)
    assert examples.missing_examples(tmp_path) == []


def test_a_missing_file_that_is_not_an_example_is_still_an_error(tmp_path):
    assert examples.example_named_by("data/mine.csv", tmp_path) is None
    assert examples.example_named_by(tmp_path / "data/breast_cancer.csv", tmp_path)
    with pytest.raises(MemlabInputError, match=r"data/mine\.csv was not found"):
        data.load_dataset({**SPEC, "path": "data/mine.csv"}, root=tmp_path)


# --------------------------------------------------------------------------- corruptions


def test_every_image_corruption_says_why_a_table_cannot_take_it():
    names = ["gaussian_noise", "blur", "shot_noise", "blur"]
    assert list(not_applicable(names, None)) == ["blur", "shot_noise"]
    assert not_applicable(names, (8, 8)) == {}
    assert set(NOT_TABULAR) == set(not_applicable([*NOT_TABULAR, "gaussian_noise"], None))


def test_the_findings_page_lists_the_skipped_corruptions():
    from memlab.reporting.report import skipped_corruptions_html

    metrics = pd.DataFrame(
        {
            "dataset": ["table", "table", "digits", "digits"],
            "split": ["heldout", "perturbed", "perturbed", "perturbed"],
            "perturbation": ["none", "gaussian_noise", "gaussian_noise", "blur"],
        }
    )
    config = {"perturbations": {"names": ["gaussian_noise", "blur", "translate", "contrast"]}}
    page = skipped_corruptions_html(metrics, config)
    assert "blur, translate on table (tabular data): needs a 2-D pixel grid" in page
    assert "contrast on table" in page and "on digits" not in page
    assert (
        skipped_corruptions_html(metrics, {"perturbations": {"names": ["blur"]}}).count("<li>") == 1
    )
    assert skipped_corruptions_html(metrics[metrics.dataset == "digits"], config) == ""


# --------------------------------------------------------------------------- end to end

FAST = {  # config/tabular.yaml made small: the data, models and regimes kept, fewer of each
    "replicas": 4,
    "replicas_per_job": 4,
    "models": {
        "mlp": {"kind": "mlp", "depth": 2, "widths": [16]},
        "cnn": {"kind": "cnn", "widths": [4]},  # skipped: it needs images
        "knn": {"kind": "knn", "k": [1]},
    },
    "regimes": {
        "memorize": {},
        "regularized": {"weight_decay": 1.0, "dropout": 0.3, "early_stopping": True},
    },
    "training": {"batch_size": 64, "lr": 0.003, "max_epochs": 40, "patience": 5},
    # 2 in and 2 out per example: below the default power gates, which this test is not about.
    "analysis": {"power": {"min_in_out": 2, "min_shadows": 3}, "influence": {"enabled": False}},
}


GAUSS = {"kind": "gaussian", "n_samples": 300, "n_features": 8, "n_classes": 3}


def _balanced_halves_give_scores_and_attacks(work) -> None:
    """Halves with 4 replicas: every example is in 2 subsets and out of 2, so k-NN (never
    trained, always counted) gets memorization scores and membership attacks."""
    summary = pd.read_csv(work / "results/tables/memorization_summary.csv")
    assert set(summary.loc[summary.status == "ok", "model"]) >= {"knn-k1"}
    scores = pd.read_parquet(work / "results/tables/memorization.parquet")
    assert scores["score"].between(-1, 1).all() and (scores[["n_in", "n_out"]] >= 1).all().all()
    # The table's pool (426 rows) splits evenly: k-NN (all 4 replicas count) has each in 2,
    # at each of the two label-noise rates.
    knn_table = scores[(scores.model == "knn-k1") & (scores.dataset == "breast_cancer")]
    assert len(knn_table) == 2 * 426 and (knn_table["n_in"] == 2).all()
    mia = pd.read_csv(work / "results/tables/membership.csv")
    assert {"gap", "loss", "lira_online", "lira_offline"} <= set(mia["attack"])
    assert (work / "results/figures/membership_roc.png").exists()


@pytest.mark.e2e
def test_the_tabular_study_runs_from_a_fresh_copy(tmp_path):
    work = copy_workflow(tmp_path / "work")
    assert not (work / "data").exists()  # nothing but the shipped maker writes the CSV
    config = yaml.safe_load((ROOT / "config/tabular.yaml").read_text())
    assert config["datasets"]["breast_cancer"] == SPEC
    config |= FAST
    # A synthetic task beside the user's table goes through the same path.
    config["datasets"]["gauss"] = GAUSS
    (work / "config/fast.yaml").write_text(yaml.safe_dump(config))
    args = ("--configfile", "config/fast.yaml")
    proc = snakemake(work, *args, "--cores", "2")
    assert "cnn-w4 skipped on dataset 'gauss'" in proc.stderr

    made = work / "data/breast_cancer.csv"
    pd.testing.assert_frame_equal(pd.read_csv(made), examples.example_frame("breast_cancer"))
    split = data.load_split(work / "results/data/breast_cancer/split.npz")
    np.testing.assert_allclose(split.x_pool.mean(0), 0, atol=1e-5)
    assert split.feature_mean is not None and split.feature_mean.max() > 100  # raw areas ~ 10^2
    metrics = pd.read_parquet(work / "results/tables/metrics.parquet")
    assert set(metrics["kind"]) == {"mlp", "knn"} and set(metrics["label_noise"]) == {0.0, 0.2}
    heldout = metrics[
        (metrics.split == "heldout") & (metrics.metric == "accuracy") & (metrics.dataset != "gauss")
    ]
    clean = heldout[heldout.label_noise == 0].groupby("model")["value"].mean()
    assert clean.min() > 0.9, clean  # every model learns the table
    assert set(metrics.loc[metrics.split == "perturbed", "perturbation"]) == {"gaussian_noise"}
    assert set(metrics["dataset"]) == {"breast_cancer", "gauss"}
    perturb_log = (work / "results/logs/perturb/gauss.log").read_text()
    assert "skipped (need image data): blur" in perturb_log
    _balanced_halves_give_scores_and_attacks(work)
    page = (work / SUMMARY_PAGE).read_text()
    assert "blur, translate, occlusion on breast_cancer (tabular data): needs a 2-D" in page
    assert (work / "results/figures/robustness.png").stat().st_size > 0

    rerun = snakemake(work, *args, "-n")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
    # The CSV is never remade once there, even when its maker is newer than it (Snakemake's code
    # trigger) and the file is a user's own table at the example's path: the user's edit reruns
    # the study on it.
    own = pd.read_csv(made).iloc[:300]
    own.to_csv(made, index=False)
    (work / "scripts/example_data.py").touch()
    rules = planned_jobs(work, *args)
    assert ("example_data", {}) not in rules and ("prepare", {"dataset": "breast_cancer"}) in rules
    assert all(wc.get("dataset") != "gauss" for _, wc in rules)  # only the edited table reruns
    pd.testing.assert_frame_equal(pd.read_csv(made), own)


def test_tick_labels_that_would_touch_are_tilted():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from memlab.reporting.figures import _unclash_ticks

    labels = ["clean", "0.15", "0.25", "0.35", "0.45", "0.6"]
    for width, tilted in ((1.2, True), (6.0, False)):
        fig, ax = plt.subplots(figsize=(width, 2))
        ax.set_xticks(range(6), labels, fontsize=7)
        _unclash_ticks(fig)
        assert {t.get_rotation() for t in ax.get_xticklabels()} == {45.0 if tilted else 0.0}
        plt.close(fig)
