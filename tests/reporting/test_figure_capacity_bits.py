"""The capacity_bits figure (bits stored on random labels against parameters) on small hand-made
tables: one point per model at its best size, the literature's lines, the double-descent peak."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from conftest import run_columns
from matplotlib.container import ErrorbarContainer
from PIL import Image

from memlab.analysis.capacity_bits import mark_max
from memlab.data.datasets import Split
from memlab.plan.kinds import MLP
from memlab.reporting.figures import DRAW, capacity_bits, save_figure
from memlab.reporting.tables import StudyTables

LOOK = Path(os.environ.get("MEMLAB_FIGS_BITS", "/tmp/figs_bits"))
WIDTHS = (8, 16, 32)


def _split() -> Split:
    x = np.zeros((50, 64), np.float32)
    y = np.zeros(50, np.int64)
    return Split(x, y, x[:10], y[:10], 10, (8, 8))


def _parameters(width: int) -> int:
    return MLP("m", width, 1).parameter_count(64, 10, (8, 8))


def _bits_table() -> pd.DataFrame:
    rows = []
    for width in WIDTHS:
        run = run_columns(dataset="random", model=f"m-w{width}", width=width)
        p = _parameters(width)
        for size, per in ((2000, 1.0), (4000, 1.5)):  # the larger size stores more
            bits = per * p
            row = run | {"size": size, "parameters": p, "n_classes": 10, "train_size": size}
            rows.append(
                row
                | {
                    "label_bits": size * np.log2(10),
                    "bits_stored": bits,
                    "bits_stored_se": 0.05 * bits,
                    "replicas": 3,
                    "bits_per_parameter": bits / p,
                    "bits_per_parameter_se": 0.05 * bits / p,
                }
            )
    frame = pd.DataFrame(rows)
    return frame.assign(is_max=mark_max(frame))


def _metrics(errors: tuple[float, ...]) -> pd.DataFrame:
    """Held-out accuracy of a width sweep on data with real labels (2 replicas each)."""
    rows = []
    for width, error in zip(WIDTHS, errors, strict=True):
        run = run_columns(dataset="clean", model=f"m-w{width}", width=width, size=30)
        for replica in range(2):
            rows.append(
                run
                | {
                    "replica": replica,
                    "split": "heldout",
                    "metric": "accuracy",
                    "perturbation": "none",
                    "value": 1 - error,
                }
            )
    return pd.DataFrame(rows)


def _tables(metrics: pd.DataFrame, bits: pd.DataFrame) -> StudyTables:
    return StudyTables(
        metrics,
        pd.DataFrame(),
        capacity_bits=bits,
        splits={"random": _split(), "clean": _split()},
        randomizations={"random": "random_labels"},
    )


def _errorbars(fig) -> list[ErrorbarContainer]:
    return [c for ax in fig.axes for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_capacity_bits_draws_best_sizes_reference_lines_and_the_peak(tmp_path):
    assert DRAW["capacity_bits"] is capacity_bits
    fig = capacity_bits(_tables(_metrics((0.1, 0.4, 0.2)), _bits_table()))
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "trained parameters per replica"
    # One line per model name and regime, through the three widths at their best size.
    (bars,) = _errorbars(fig)
    xs, ys = bars.lines[0].get_data()
    assert list(xs) == [_parameters(w) for w in WIDTHS]
    assert np.allclose(ys, [1.5 * _parameters(w) for w in WIDTHS])
    # The literature's three lines are y = c x.
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    for per, source in ((5.0, "Collins"), (3.6, "Morris"), (2.0, "Allen-Zhu")):
        (line,) = [ln for ln in ax.lines if ln.get_label().startswith(f"{per:g} bits")]
        x, y = line.get_data()
        assert np.allclose(np.asarray(y) / np.asarray(x), per)
        assert any(source in text for text in legend)
    # The peak of held-out error is at width 16: one red line at its parameter count.
    peaks = [t for t in ax.texts if "double-descent peak" in t.get_text()]
    assert len(peaks) == 1 and "m-w16" in peaks[0].get_text()
    assert peaks[0].get_position()[0] == _parameters(16)
    png, svg = tmp_path / "capacity_bits.png", tmp_path / "capacity_bits.svg"
    save_figure(fig, png, svg)
    with Image.open(png) as img:
        assert min(img.size) > 200
    LOOK.mkdir(parents=True, exist_ok=True)
    (LOOK / "capacity_bits.png").write_bytes(png.read_bytes())


def test_no_peak_is_marked_for_a_trend_or_on_random_labels():
    bits = _bits_table()
    rising = capacity_bits(_tables(_metrics((0.4, 0.2, 0.1)), bits))
    assert not [t for t in rising.axes[0].texts if "double-descent" in t.get_text()]
    # The same peak measured on the random-label dataset itself is no double descent.
    on_random = _metrics((0.1, 0.4, 0.2)).assign(dataset="random")
    fig = capacity_bits(_tables(on_random, bits))
    assert not [t for t in fig.axes[0].texts if "double-descent" in t.get_text()]


def test_without_rows_it_says_what_is_needed():
    fig = capacity_bits(_tables(_metrics((0.1, 0.4, 0.2)), pd.DataFrame()))
    (ax,) = fig.axes
    assert "random_labels" in " ".join(t.get_text() for t in ax.texts)
