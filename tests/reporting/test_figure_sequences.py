"""The sequence figures (memlab.analysis.sequences) drawn from synthetic banks through the
analysis's own tables; without text runs a study does not draw them, and their drawings say why."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from conftest import run_columns
from matplotlib.container import ErrorbarContainer
from sequence_bank import synthetic_bank

from memlab.analysis.sequences import SEQUENCE_COLUMNS, SEQUENCE_FRAMES
from memlab.plan.registry import FIGURE, TABLE, writes_table
from memlab.reporting.figures import DRAW, save_figure
from memlab.reporting.tables import StudyTables

# Where the drawn figures are also kept to look at (MEMLAB_FIGS_SEQUENCES=dir to choose another).
LOOK = Path(os.environ.get("MEMLAB_FIGS_SEQUENCES", "/tmp/figs_sequences"))
FIGURES = ("fact_recall", "sequence_memorization", "sequence_perplexity", "rare_words")

RUN = run_columns(dataset="text", model="gru-64", size=200)
DECAY = RUN | {"regime": "decay", "weight_decay": 0.1}


def _tables() -> StudyTables:
    runs = [(RUN, synthetic_bank(16, seed=0)), (DECAY, synthetic_bank(12, seed=1))]
    frames = {name: table(runs) for name, table in SEQUENCE_FRAMES.items()}
    return StudyTables(pd.DataFrame(), pd.DataFrame(), **frames).for_display()


def _errorbars(fig) -> list[ErrorbarContainer]:
    return [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _texts(fig) -> str:
    legends = [t.get_text() for g in fig.legends for t in g.get_texts()]
    titles = [ax.get_title() for ax in fig.axes]
    return " ".join(legends + titles)


@pytest.mark.parametrize("name", FIGURES)
def test_each_sequence_figure_draws_intervals_and_replica_counts(name, tmp_path):
    fig = DRAW[name](_tables())
    bars = _errorbars(fig)
    assert bars, name
    # Every drawn point has an interval (an error bar of finite, non-negative length).
    for bar in bars:
        for segments in bar.lines[2]:
            lengths = np.diff(np.array([s[:, 1] for s in segments.get_segments()]), axis=1)
            assert np.isfinite(lengths).all() and (lengths >= 0).all()
    assert "16 replicas" in _texts(fig) and "12 replicas" in _texts(fig), name
    LOOK.mkdir(parents=True, exist_ok=True)
    save_figure(fig, LOOK / f"{name}.png", tmp_path / f"{name}.svg", dpi=60)
    assert (LOOK / f"{name}.png").stat().st_size > 1000


def test_fact_recall_draws_both_forms_both_groups_and_chance():
    fig = DRAW["fact_recall"](_tables())
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2  # the trained wording and the paraphrase
    for ax in panels:
        assert len(_errorbars_of(ax)) == 4  # 2 regimes x (trained, never seen)
        assert any(t.get_text().strip() == "chance" for t in ax.texts)


def _errorbars_of(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_the_most_memorized_documents_are_listed_with_their_intervals():
    t = _tables()
    fig = DRAW["sequence_memorization"](t)
    listing = " ".join(x.get_text() for ax in fig.axes for x in ax.texts)
    m = t.sequence_memorization
    best = m[m["regime"] == "memorize"].sort_values("score", ascending=False).iloc[0]
    assert best["text"] in listing and f"{best['score']:.2f} [{best['low']:.2f}" in listing


@pytest.mark.parametrize("name", FIGURES)
def test_a_study_without_text_runs_does_not_draw_them_and_their_drawing_says_why(name):
    assert not FIGURE[name].drawable(SimpleNamespace(sequence_runs=()))
    assert FIGURE[name].drawable(SimpleNamespace(sequence_runs=("a run",)))
    empty = StudyTables(pd.DataFrame(), pd.DataFrame())
    for table, columns in SEQUENCE_COLUMNS.items():
        assert list(getattr(empty, table).columns) == columns
    fig = DRAW[name](empty.for_display())
    (ax,) = fig.axes
    assert not ax.axison and "sequence runs" in ax.texts[0].get_text()


def test_the_sequence_tables_are_read_only_where_the_study_writes_them():
    without = SimpleNamespace(sequence_runs=(), removals=())
    for name in SEQUENCE_FRAMES:
        assert not writes_table(without, TABLE[name])
        assert writes_table(SimpleNamespace(sequence_runs=(1,), removals=()), TABLE[name])
    assert writes_table(without, TABLE["metrics"]) and not writes_table(without, TABLE["removal"])
