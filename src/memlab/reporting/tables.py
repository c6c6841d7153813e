"""The study's tables as one object, read from results/tables (what figures and reports draw on)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from memlab.analysis.sequences import SEQUENCE_COLUMNS
from memlab.data.datasets import Split, load_split
from memlab.plan.registry import FIGURE_TABLES
from memlab.plan.study import MEMORY_REGIME, RUN_KEYS

# Display names of regimes in figures: the k-NN's pseudo-regime is no training regime at all, and
# "memory" beside "memorize" read like one. The tables keep the run ids (paths, joins).
REGIME_LABELS = {MEMORY_REGIME: "k-NN (no training)"}


@dataclass
class StudyTables:
    """The tables of ``memlab.plan.registry.FIGURE_TABLES`` (a test keeps the two in step).

    ``metrics`` holds the models as they are used: a memory network with its memory on. Its
    memory-off metrics are compared in ``memory_effect``, ``few_shot`` and ``recall``.
    """

    metrics: pd.DataFrame
    history: pd.DataFrame
    memorization: pd.DataFrame = field(default_factory=pd.DataFrame)
    memorization_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    membership: pd.DataFrame = field(default_factory=pd.DataFrame)
    membership_roc: pd.DataFrame = field(default_factory=pd.DataFrame)
    chance_null: pd.DataFrame = field(default_factory=pd.DataFrame)
    noise_sweep: pd.DataFrame = field(default_factory=pd.DataFrame)
    detectors: pd.DataFrame = field(default_factory=pd.DataFrame)
    estimators: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Where memorizing pays (DESIGN 4b): accuracy per training frequency of a subpopulation,
    # high-influence train->test pairs with their per-run summary, and the removal experiment.
    long_tail: pd.DataFrame = field(default_factory=pd.DataFrame)
    few_shot: pd.DataFrame = field(default_factory=pd.DataFrame)
    recall: pd.DataFrame = field(default_factory=pd.DataFrame)
    memory_effect: pd.DataFrame = field(default_factory=pd.DataFrame)
    influence_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    influence_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    removal: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Bits stored on random labels, per parameter (DESIGN 4d; memlab.analysis.capacity_bits).
    capacity_bits: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Canary exposure (DESIGN 4d): per run, repetition level and method.
    exposure: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Sequences (memlab.analysis.sequences): a study without text runs has them empty, with their
    # columns.
    sequence_memorization: pd.DataFrame = field(
        default_factory=lambda: _no_rows("sequence_memorization")
    )
    fact_recall: pd.DataFrame = field(default_factory=lambda: _no_rows("fact_recall"))
    sequence_perplexity: pd.DataFrame = field(
        default_factory=lambda: _no_rows("sequence_perplexity")
    )
    rare_words: pd.DataFrame = field(default_factory=lambda: _no_rows("rare_words"))
    splits: Mapping[str, Split] = field(default_factory=dict)  # dataset -> split (for images)
    randomizations: Mapping[str, str] = field(default_factory=dict)  # dataset -> kind
    # corruption -> its parameter per severity 1..5 (memlab.data.perturb.severity_table)
    severity_table: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @classmethod
    def read(
        cls,
        paths: Mapping[str, str | os.PathLike[str]],
        splits: Mapping[str, str | os.PathLike[str]] | None = None,
        randomizations: Mapping[str, str] | None = None,
        severity_table: Mapping[str, tuple[float, ...]] | None = None,
    ) -> StudyTables:
        """Read the tables named like the fields from ``paths`` (.parquet or .csv)."""
        frames = {}
        for name, path in paths.items():
            if name not in FIGURE_TABLES:
                continue
            path = str(path)
            frames[name] = pd.read_parquet(path) if path.endswith(".parquet") else _csv(path)
        if "metrics" in frames and "memory" in frames["metrics"]:
            metrics = frames["metrics"]
            frames["metrics"] = metrics[metrics["memory"] != "off"].reset_index(drop=True)
        if "memorization" in frames and "canary" in frames["memorization"]:
            # The figures read the real examples' scores; a canary's are in memorization.parquet
            # and evidence.parquet, and its exposure in exposure.csv.
            m = frames["memorization"]
            frames["memorization"] = m[~m["canary"].astype(bool)].reset_index(drop=True)
        loaded = {k: load_split(os.fspath(v)) for k, v in (splits or {}).items()}
        return cls(
            **frames,
            splits=loaded,
            randomizations=dict(randomizations or {}),
            severity_table=dict(severity_table or {}),
        )

    def for_display(self) -> StudyTables:
        """The same tables with the regimes' display names (REGIME_LABELS) in ``regime``, for
        figures: legends and titles read them, nothing is joined on them afterwards."""
        frames = {}
        for name in FIGURE_TABLES:
            frame = getattr(self, name)
            if "regime" in frame:
                frame = frame.assign(regime=frame["regime"].replace(REGIME_LABELS))
            frames[name] = frame
        return dataclasses.replace(self, **frames)


def _no_rows(table: str) -> pd.DataFrame:
    """An empty sequence table with its columns (a study without text runs)."""
    return pd.DataFrame(columns=SEQUENCE_COLUMNS[table])


def _csv(path: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    if "memory" in frame:  # empty for the kinds without a memory: "" as written, not NaN
        frame["memory"] = frame["memory"].fillna("")
    return frame


def run_label(frame: pd.DataFrame) -> pd.Series:
    """A short two-line label per row: dataset: model / regime, then noise and size."""
    noise = frame["label_noise"].map(lambda x: f"{x:g}")
    return (
        frame["dataset"]
        + ": "
        + frame["model"]
        + " / "
        + frame["regime"]
        + "\nnoise "
        + noise
        + ", n="
        + frame["size"].astype(str)
        + (frame["memory"].map(memory_note) if "memory" in frame else "")
    )


def memory_note(memory: object) -> str:
    """ " (memory on)" or " (memory off)" after a memory network's name; "" for the kinds without
    a memory (an empty ``memory``, or NaN where a table lacks the column's value)."""
    return f" (memory {memory})" if isinstance(memory, str) and memory else ""


def powered(frame: pd.DataFrame, gate: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """Rows of ``frame`` whose run passes its power gate in ``gate`` (a table with the run keys
    and a boolean ``powered``: ``memorization_summary.csv``, or ``membership.csv``'s shadow
    attacks), keeping the ``limit`` best-replicated such runs if given (most ``replicas``, else
    most ``members``; ties in table order). Figures and sentences show only these; the tables
    keep every run."""
    keys = list(RUN_KEYS)
    if frame.empty or gate.empty or "powered" not in gate:
        return frame.iloc[0:0]
    ok = gate[gate["powered"].eq(True)]  # NaN (no scores at all) is not powered
    weight = "replicas" if "replicas" in ok else "members"
    runs = ok.groupby(keys, sort=False)[weight].max().sort_values(ascending=False, kind="stable")
    if limit is not None:
        runs = runs.iloc[:limit]
    index = pd.MultiIndex.from_frame(frame[keys])
    return frame[index.isin(runs.index)]


def stacked_images(split: Split, index: np.ndarray) -> np.ndarray:
    h, w = split.image_shape or (1, split.x_pool.shape[1])
    return split.x_pool[index].reshape(-1, h, w)
