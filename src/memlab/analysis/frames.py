"""The analyze rule's tables: how each table of :data:`memlab.plan.registry.TABLES` that the rule
writes is computed from the runs (``FRAMES``, keyed by :attr:`memlab.plan.registry.Table.frame`),
and how it is written. The work several tables share (the memorization scores, the membership
attacks, the per-example evidence, the influence pairs) is done once, when the first of them asks
for it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from memlab.analysis import (
    bank,
    capacity_bits,
    corruption_error,
    estimators,
    evidence,
    exposure,
    influence,
)
from memlab.analysis import metrics as analysis
from memlab.analysis.neighbours import PoolAgreement
from memlab.data.datasets import split_reader
from memlab.io import atomic_path
from memlab.plan.power import PowerGates
from memlab.plan.registry import TABLES, Table
from memlab.plan.study import run_path_of
from memlab.seeds import derive_seed


@dataclass
class Analysis:
    """What the analyze rule is given (its inputs and params), and what its tables share."""

    metric_files: Sequence[str]
    history_files: Sequence[str]
    evaluation_files: Sequence[str]
    runs: Any  # every run's columns (bank.read_runs)
    split_files: Sequence[str]
    seed: int
    agreement_k: int
    power: Mapping[str, int]  # analysis.power
    influence: Mapping[str, Any]  # analysis.influence
    corruption_baselines: Mapping[str, Mapping[str, Any]]
    randomizations: Mapping[str, str] = field(default_factory=dict)  # dataset -> kind
    log: Callable[[str], None] = field(default=lambda msg: None, repr=False)
    # Language models' runs (memlab.engine.sequence_runs): their rows in exposure and membership.
    sequence_files: Sequence[str] = ()
    sequence_runs: Any = field(default_factory=dict)

    def evaluations(self, datasets: Collection[str] | None = None) -> Iterator[Any]:
        """Each run's blocks as one bank, one run at a time (read again by each use); only the
        runs of ``datasets`` if given (the others' banks are not read)."""
        files = self.evaluation_files
        if datasets is not None:
            files = [f for f in files if self.runs[run_path_of(f)]["dataset"] in datasets]
        return bank.read_runs(files, self.runs)

    def sequence_evaluations(self) -> Iterator[Any]:
        """Each language model's run as one bank (memlab.engine.sequence_runs' arrays)."""
        return bank.read_runs(self.sequence_files, self.sequence_runs)

    def with_sequences(self) -> Iterator[Any]:
        """Every run's bank, the language models' as banks of documents (:func:`as_examples`)."""
        yield from self.evaluations()
        for run, b in self.sequence_evaluations():
            yield run, as_examples(b)

    @property
    def random_labels(self) -> list[str]:
        """The datasets whose pool labels are all drawn uniformly at random."""
        return [ds for ds, kind in self.randomizations.items() if kind == "random_labels"]

    @functools.cached_property
    def metrics(self) -> pd.DataFrame:
        metrics = analysis.gather(self.metric_files)
        self.log(f"{len(self.runs)} runs in {len(self.metric_files)} blocks: {len(metrics)} rows")
        return metrics

    @functools.cached_property
    def history(self) -> pd.DataFrame:
        history = analysis.gather(self.history_files)
        self.log(f"{len(history)} history rows")
        return history

    @functools.cached_property
    def split_of(self) -> Any:
        return split_reader(self.split_files)

    @functools.cached_property
    def agreement(self) -> PoolAgreement:
        return PoolAgreement.from_split_paths(self.split_files, self.agreement_k)

    @functools.cached_property
    def gates(self) -> PowerGates:
        return PowerGates(**self.power)

    @functools.cached_property
    def memorization(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Per-example memorization scores and their per-run summary."""
        scores, summary = analysis.memorization_tables(
            self.evaluations(), self.agreement, self.gates
        )
        scored = int((summary["status"] == "ok").sum()) if len(summary) else 0
        self.log(f"memorization scores for {scored} runs")
        return scores, summary

    @functools.cached_property
    def membership(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """Membership attacks: per attack, their ROC curves, by slice."""
        scores = self.memorization[0] if self.runs else None
        tables = analysis.membership_tables(self.with_sequences(), scores, self.gates)
        self.log(f"membership attacks: {len(tables[0])} rows")
        return tables

    @functools.cached_property
    def evidence(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Per-example evidence and the flip detectors' table."""
        return evidence.evidence_tables(
            self.evaluations(),
            self.memorization[0],
            evidence.true_labels_from_splits(self.split_files),
            self.agreement,
            self.gates,
        )

    @functools.cached_property
    def influence_pairs(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """High-influence pairs and their per-run summary; analysis.influence.enabled: false
        asks no influence question (no pairs, no summary rows)."""
        settings = dict(self.influence)
        asked = self.evaluations() if settings.pop("enabled") else ()
        return influence.influence_tables(
            asked, self.split_of, self.gates, influence.Thresholds(**settings)
        )

    @functools.cached_property
    def robustness(self) -> pd.DataFrame:
        return analysis.robustness(self.metrics)

    def estimators(self) -> pd.DataFrame:
        """Cheap estimators against the Feldman–Zhang scores (memlab.analysis.estimators)."""
        return estimators.estimator_tables(
            self.evaluations(),
            self.memorization[0],
            self.evidence[0],
            self.gates,
            derive_seed(self.seed, "estimators"),
        )

    def corruption_error(self) -> pd.DataFrame:
        for dataset, b in self.corruption_baselines.items():
            against = b["reason"] or f"against {b['model']} / {b['regime']}"
            self.log(f"corruption error on {dataset}: {against}")
        return corruption_error.corruption_error_table(
            self.robustness,
            self.corruption_baselines,
            seed=derive_seed(self.seed, "corruption_error"),
        )


# How each table the analyze rule writes is computed (memlab.plan.registry.Table.frame; a table that
# is a copy of another in another format is not computed twice). A test keeps the two in step.
FRAMES: dict[str, Callable[[Analysis], pd.DataFrame]] = {
    "metrics": lambda a: a.metrics,
    "gap": lambda a: analysis.generalization_gap(a.metrics),
    "robustness": lambda a: a.robustness,
    "history": lambda a: a.history,
    "summary": lambda a: analysis.summarize(a.metrics),
    "noise_sweep": lambda a: analysis.noise_sweep(a.metrics, a.history),
    "chance_null": lambda a: analysis.chance_null(
        a.evaluations(), seed=derive_seed(a.seed, "chance_null")
    ),
    "memorization": lambda a: analysis.with_canaries(
        analysis.with_subpopulations(a.memorization[0], a.split_of), a.split_of
    ),
    "memorization_summary": lambda a: a.memorization[1],
    # Over the real examples: canary rows (noise, random labels) would drive the ranks.
    "example_correlations": lambda a: analysis.example_correlations(
        a.memorization[0][~analysis.with_canaries(a.memorization[0], a.split_of)["canary"]]
    ),
    "membership": lambda a: a.membership[0],
    "membership_roc": lambda a: a.membership[1],
    "membership_slices": lambda a: a.membership[2],
    "evidence": lambda a: analysis.with_subpopulations(a.evidence[0], a.split_of, "index"),
    "detectors": lambda a: a.evidence[1],
    "estimators": Analysis.estimators,
    "corruption_error": Analysis.corruption_error,
    "few_shot": lambda a: analysis.few_shot(a.metrics),
    "recall": lambda a: analysis.recall(a.metrics),
    "memory_effect": lambda a: analysis.memory_effect(a.metrics),
    "long_tail": lambda a: analysis.long_tail_accuracy(a.evaluations(), a.split_of),
    "influence_pairs": lambda a: a.influence_pairs[0],
    "influence_summary": lambda a: a.influence_pairs[1],
    "capacity_bits": lambda a: capacity_bits.capacity_bits_table(
        a.evaluations(a.random_labels), a.split_of, a.random_labels
    ),
    "exposure": lambda a: exposure.exposure_table(a.with_sequences()),
}


def as_examples(b: Mapping[str, Any]) -> dict[str, Any]:
    """A language model's bank read as one of examples, for the attacks and exposure: a
    document is an example, its per-token accuracy its correctness (the gap attack's score),
    its mean token loss its loss, minus that loss its confidence (LiRA's statistic for language
    models, Carlini et al. 2022: a sequence's loss), the held-out documents' losses RMIA's
    population, and its kind (grammar, fact, canary) its class."""
    return {
        **b,
        "pool_correct": b["doc_accuracy"],
        "pool_loss": b["doc_loss"],
        "pool_confidence": -np.asarray(b["doc_loss"], np.float64),
        "test_loss": b["heldout_loss"],
        "pool_label": b["doc_kind"],
    }


def analyze_tables(rule: str = "analyze") -> tuple[Table, ...]:
    """The tables of the registry that ``rule`` writes."""
    return tuple(t for t in TABLES if t.made_by == rule)


def frames(a: Analysis) -> dict[str, pd.DataFrame]:
    """Every frame the analyze rule's tables hold, by :attr:`Table.frame`, each computed once."""
    out: dict[str, pd.DataFrame] = {}
    for table in analyze_tables():
        if table.frame in out:
            continue
        # A study of language models alone: only the tables their runs add rows to.
        alone = not a.runs and table.frame not in SEQUENCE_ROWS
        out[table.frame] = pd.DataFrame() if alone else FRAMES[table.frame](a)
    return out


# The analyze rule's tables that hold language models' runs too (as_examples).
SEQUENCE_ROWS = ("exposure", "membership", "membership_roc", "membership_slices")


def write_table(table: Table, frame: pd.DataFrame, path: str) -> None:
    """Write ``frame`` as ``table`` (its format: parquet, or CSV with 6 significant digits)."""
    with atomic_path(path) as tmp:
        if table.format == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, float_format="%.6g")
