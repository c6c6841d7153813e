"""The "when memorization pays" figures (DESIGN 4b) on small hand-made tables."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import run_columns
from matplotlib.container import ErrorbarContainer

from memlab.data.datasets import Split
from memlab.reporting.figures import DRAW, influence_pairs, long_tail, removal, save_figure
from memlab.reporting.tables import StudyTables

# Where the drawn figures are also kept to look at (MEMLAB_FIGS_PAYS=dir to choose another).
LOOK = Path(os.environ.get("MEMLAB_FIGS_PAYS", "/tmp/figs_pays"))

MLP = run_columns(dataset="tail", size=200)
MLP_DECAY = MLP | {"regime": "decay", "weight_decay": 0.1}
KNN = MLP | {"model": "knn-k1", "model_name": "knn", "kind": "knn", "regime": "memory", "k": 1}


def _split(n_pool: int = 60, n_test: int = 40) -> Split:
    rng = np.random.default_rng(0)
    return Split(
        x_pool=rng.random((n_pool, 64)),
        y_pool=rng.integers(0, 10, n_pool),
        x_test=rng.random((n_test, 64)),
        y_test=rng.integers(0, 10, n_test),
        n_classes=10,
        image_shape=(8, 8),
    )


def _tables(**frames: pd.DataFrame) -> StudyTables:
    return StudyTables(pd.DataFrame(), pd.DataFrame(), splits={"tail": _split()}, **frames)


def _long_tail(n_replicas: int = 8) -> pd.DataFrame:
    rows = []
    for run, base in ((MLP, 0.3), (MLP_DECAY, 0.15), (KNN, 0.25)):
        for i, f in enumerate([1, 2, 4, 8, 16]):
            rows.append(
                run
                | dict(
                    train_frequency=f,
                    accuracy=min(1.0, base + 0.15 * i),
                    accuracy_se=0.03,
                    n_test=40,
                    n_replicas=n_replicas,
                )
            )
    # A smaller size of the same dataset: not drawn (only the largest size is).
    rows.append(rows[0] | dict(size=100, accuracy=0.01))
    return pd.DataFrame(rows)


def _errorbars(fig: plt.Figure) -> list[ErrorbarContainer]:
    return [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _message(fig: plt.Figure) -> str:
    (ax,) = fig.axes
    return " ".join(t.get_text() for t in ax.texts)


def _save(fig: plt.Figure, name: str, tmp_path: Path) -> None:
    save_figure(fig, tmp_path / f"{name}.png", tmp_path / f"{name}.svg")
    assert (tmp_path / f"{name}.png").stat().st_size > 0
    LOOK.mkdir(parents=True, exist_ok=True)
    (LOOK / f"{name}.png").write_bytes((tmp_path / f"{name}.png").read_bytes())


def test_the_three_figures_are_drawable_by_name():
    assert DRAW["long_tail"] is long_tail
    assert DRAW["influence_pairs"] is influence_pairs
    assert DRAW["removal"] is removal


def test_long_tail_draws_one_interval_line_per_model_and_regime(tmp_path):
    fig = long_tail(_tables(long_tail=_long_tail()))
    bars = _errorbars(fig)
    assert len(bars) == 3  # mlp / memorize, mlp / decay, knn-k1 / memory
    assert {c.get_label() for c in bars} == {
        f"{MLP['model']} / memorize",
        f"{MLP['model']} / decay",
        "knn-k1 / memory",
    }
    (ax,) = [a for a in fig.axes if a.get_title()]
    assert "n=200" in ax.get_title()  # the largest size only
    assert ax.get_xscale() == "log"
    assert "singletons" in ax.get_xticklabels()[0].get_text()
    # Five buckets per line; the size-100 point (accuracy 0.01) is not among them.
    ys = np.concatenate([c.lines[0].get_ydata() for c in bars])
    assert len(ys) == 15 and ys.min() > 0.1
    _save(fig, "long_tail", tmp_path)


def test_long_tail_panels_per_noise_rate_and_underpowered_rows_left_out():
    lt = _long_tail()
    noisy = lt.assign(label_noise=0.2)
    thin = lt["model"] == "knn-k1"
    lt.loc[thin, "n_replicas"] = 1  # no interval: not drawn
    fig = long_tail(_tables(long_tail=pd.concat([lt, noisy], ignore_index=True)))
    panels = [a for a in fig.axes if a.get_title()]
    assert len(panels) == 2
    assert [len(a.containers) for a in panels] == [2, 3]
    assert "under 2 replicas left out" in fig.get_suptitle()


def test_long_tail_without_rows_or_replicas_says_why():
    assert "subpopulations" in _message(long_tail(_tables()))
    fig = long_tail(_tables(long_tail=_long_tail(n_replicas=1)))
    assert "2 or more replicas" in _message(fig)


def _pairs_and_summary(powered: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    rows = []
    # 10 training examples, each influencing 1-6 test examples: 8 rows of images are drawn.
    for i in range(10):
        for j in range(1 + i % 6):
            rows.append(
                MLP
                | dict(
                    train_index=3 * i,
                    test_index=(4 * i + j) % 40,
                    memorization=0.9 - 0.02 * i,
                    influence=float(rng.uniform(0.15, 0.6)),
                    influence_se=0.05,
                    same_subpopulation=j != 1,
                )
            )
    pairs = pd.DataFrame(rows)
    summary = pd.DataFrame(
        [
            MLP
            | dict(
                n_pairs=len(pairs),
                expected_false_pairs=2.4,
                same_subpopulation_share=0.84,
                same_subpopulation_low=0.71,
                same_subpopulation_high=0.92,
                n_replicas=512,
                powered=powered,
                status="ok" if powered else "needs 1000 replicas, has 512",
            ),
            # A powered 1-NN run with more pairs: the MLP is preferred.
            KNN
            | dict(
                n_pairs=100,
                expected_false_pairs=0.0,
                same_subpopulation_share=np.nan,
                same_subpopulation_low=np.nan,
                same_subpopulation_high=np.nan,
                n_replicas=512,
                powered=True,
                status="ok",
            ),
        ]
    )
    knn_pairs = pairs.assign(**{k: KNN[k] for k in ("model", "kind", "regime")}, influence=0.99)
    return pd.concat([pairs, knn_pairs], ignore_index=True), summary


def test_influence_pairs_show_the_top_training_images_beside_their_test_images(tmp_path):
    pairs, summary = _pairs_and_summary()
    fig = influence_pairs(_tables(influence_pairs=pairs, influence_summary=summary))
    drawn = [ax for ax in fig.axes if ax.images]
    mlp = pairs[pairs["model"] == MLP["model"]]
    top = mlp.sort_values("influence", ascending=False)
    trains = list(dict.fromkeys(top["train_index"]))[:8]
    tests = sum(min(4, int((mlp["train_index"] == i).sum())) for i in trains)
    assert len(drawn) == 8 + tests
    train_labels = [ax.get_xlabel() for ax in drawn if ax.get_xlabel().startswith("train")]
    assert train_labels[0].startswith(f"train #{trains[0]}:")  # highest influence first
    assert len(train_labels) == 8
    title = fig.get_suptitle()
    assert f"{MLP['model']} / memorize" in title and "knn" not in title  # the MLP, not the 1-NN
    assert f"{len(mlp)} pairs; expected false pairs 2.4 (null, 512 replicas)" in title
    assert "84% [71, 92] within one subpopulation" in title
    assert any("infl" in ax.get_xlabel() and "±" in ax.get_xlabel() for ax in drawn)
    _save(fig, "influence_pairs", tmp_path)


def test_influence_pairs_empty_cases_name_the_reason():
    pairs, summary = _pairs_and_summary()
    no_images = _tables(influence_pairs=pairs, influence_summary=summary)
    no_images.splits = {}
    assert "image data" in _message(influence_pairs(no_images))
    weak = summary.assign(powered=False, status="needs 1000 replicas, has 512")
    msg = _message(influence_pairs(_tables(influence_pairs=pairs, influence_summary=weak)))
    assert "512" in msg and "replicas" in msg
    empty = _tables(influence_pairs=pairs.iloc[0:0], influence_summary=summary.assign(n_pairs=0))
    msg = _message(influence_pairs(empty))
    assert "analysis.influence.min_memorization" in msg
    assert "analysis.influence.min_influence" in msg


def _removal(runs: tuple[dict, ...] = (MLP, KNN)) -> pd.DataFrame:
    rows = []
    for run in runs:
        for removed, scale in (("top_memorized", 1.0), ("random", 0.2)):
            for split, factor in (("heldout", 1.0), ("influenced", 8.0)):
                for k in (10, 20, 40):
                    rows.append(
                        run
                        | dict(
                            removed=removed,
                            n_removed=k,
                            split=split,
                            accuracy_change=-0.001 * k * scale * factor,
                            accuracy_change_se=0.004,
                            n_replicas=16,
                        )
                    )
    return pd.DataFrame(rows)


def test_removal_has_a_panel_per_split_and_a_row_per_run(tmp_path):
    fig = removal(_tables(removal=_removal()))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 4  # 2 runs x (held-out, influenced)
    assert ["held-out" in a.get_title() for a in panels] == [True, False, True, False]
    assert all(len(a.containers) == 2 for a in panels)  # top memorized, random
    # Points of accuracy: -0.001 * 40 * 8 = -0.32 -> -32 points on the influenced examples.
    ys = np.concatenate([c.lines[0].get_ydata() for c in _errorbars(fig)])
    assert ys.min() == pytest.approx(-32)
    assert any(line.get_ydata()[0] == 0 for line in panels[0].lines)  # the zero line
    _save(fig, "removal", tmp_path)


def test_removal_single_run_has_two_panels_and_underpowered_rows_are_left_out():
    r = _removal((MLP,))
    r.loc[r["removed"] == "random", "n_replicas"] = 1
    fig = removal(_tables(removal=r))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2
    assert all(len(a.containers) == 1 for a in panels)
    assert "removal.k" in _message(removal(_tables()))
    assert "2 or more replicas" in _message(removal(_tables(removal=r.assign(n_replicas=1))))


def test_detectors_row_gives_the_reason_of_its_own_runs():
    """A method missing from a noisy run's row says why for that run, not with the reason of its
    clean-label twin (which has no flipped labels at all)."""
    from memlab.reporting.figures import detectors

    rows = []
    wide = MLP | {"model": "m-w16", "width": 16, "label_noise": 0.2}
    for method in ("memorization", "loss", "lira"):  # another run where every method works
        rows.append(wide | dict(method=method, roc_auc=0.8, average_precision=0.6,
                                precision_at_flips=0.5, flips=20, examples=100, replicas=8,
                                status="ok"))  # fmt: skip
    for noise, size in ((0.0, 200), (0.2, 200), (0.2, 100)):
        run = MLP | {"label_noise": noise, "size": size}
        for method in ("memorization", "loss", "lira"):
            ok = noise > 0 and size == 200 and method != "lira"
            status = "ok" if ok else "no flipped labels in this run"
            if noise > 0 and size == 200 and method == "lira":
                status = "needs 16 shadow models, has 3"
            rows.append(run | dict(method=method, roc_auc=0.9 if ok else np.nan,
                                   average_precision=0.7 if ok else np.nan,
                                   precision_at_flips=0.6, flips=20, examples=100, replicas=4,
                                   status=status))  # fmt: skip
    fig = detectors(_tables(detectors=pd.DataFrame(rows)))
    notes = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert notes == ["n/a: needs 16 shadow models, has 3"]
    plt.close(fig)


def test_one_slice_figures_show_real_data_not_models_at_chance_on_random_labels():
    from memlab.reporting.figures import real_data

    frame = pd.DataFrame({"dataset": ["bank", "random", "control"], "size": [674, 1347, 100]})
    tables = StudyTables(
        pd.DataFrame(), pd.DataFrame(),
        randomizations={"random": "random_labels", "control": "true_labels"},
    )  # fmt: skip
    assert real_data(frame, tables)["dataset"].tolist() == ["bank", "control"]
    # A study of random labels alone still draws them.
    only = frame[frame["dataset"] == "random"]
    assert real_data(only, tables)["dataset"].tolist() == ["random"]
