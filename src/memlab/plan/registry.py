"""The study's tables and figures, listed once: names, paths, formats, report captions, and when
a study can draw each figure. The rules, the rule scripts,
:class:`memlab.reporting.tables.StudyTables` and the report read them from here. Light on purpose
(numpy, no pandas, no seaborn): the workflow imports it on every start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from memlab.data.canaries import has_canaries
from memlab.plan.kinds import KNN, MLP, RandomFeatures, Variant
from memlab.plan.study import REGULARIZERS, Study, strength_sweeps

TABLES_DIR = "results/tables"
FIGURES_DIR = "results/figures"
FIGURE_FORMATS = ("png", "svg")  # PNG for the report, SVG (vector) for print
SUMMARY_PAGE = "results/report/summary.html"
# The findings' numbers in DVC's metrics format; `./run.sh record` versions a copy (versions/).
FINDINGS_FILE = "results/findings.json"
# The findings as text, one line each (`python -m memlab.ops.answers` prints it after a study),
# and as an HTML list for the report's front page (workflow/report/workflow.rst includes it).
FINDINGS_TEXT = "results/findings.txt"
FINDINGS_FRONT = "results/report/front.html"


@dataclass(frozen=True)
class Table:
    """One output table of the analyze rule."""

    name: str
    file: str  # under TABLES_DIR; the suffix is the format (.parquet or .csv)
    caption: str | None = None  # workflow/report/<caption>.rst: the table is in the report
    copy_of: str | None = None  # the same frame as another table, in another format
    figures_read: bool = False  # figures and the summary read it (a StudyTables field)
    made_by: str = "analyze"  # the rule that writes it

    @property
    def path(self) -> str:
        return f"{TABLES_DIR}/{self.file}"

    @property
    def format(self) -> str:
        return self.file.rsplit(".", 1)[1]

    @property
    def frame(self) -> str:
        """The name of the frame the analyze step computes for it."""
        return self.copy_of or self.name


TABLES: tuple[Table, ...] = (
    Table("metrics", "metrics.parquet", figures_read=True),
    Table("metrics_csv", "metrics.csv", copy_of="metrics"),
    Table("gap", "generalization_gap.csv"),
    Table("robustness", "robustness.csv"),
    Table("history", "history.parquet", figures_read=True),
    Table("summary", "summary.csv", caption="summary_table"),
    Table("noise_sweep", "noise_sweep.csv", figures_read=True),
    Table("chance_null", "chance_null.csv", figures_read=True),
    Table("memorization", "memorization.parquet", figures_read=True),
    Table(
        "memorization_summary",
        "memorization_summary.csv",
        caption="memorization_summary",
        figures_read=True,
    ),
    Table("example_correlations", "example_correlations.csv", caption="example_correlations"),
    Table("membership", "membership.csv", caption="membership_table", figures_read=True),
    Table("membership_roc", "membership_roc.parquet", figures_read=True),
    Table("membership_slices", "membership_slices.csv"),
    Table("evidence", "evidence.parquet"),
    Table("detectors", "detectors.csv", caption="detectors_table", figures_read=True),
    Table("estimators", "estimators.csv", caption="estimators_table", figures_read=True),
    Table("corruption_error", "corruption_error.csv", caption="corruption_error"),
    Table("few_shot", "few_shot.csv", figures_read=True),
    Table("recall", "recall.csv", figures_read=True),
    Table("memory_effect", "memory_effect.csv", figures_read=True),
    Table("long_tail", "long_tail.csv", figures_read=True),
    Table("influence_pairs", "influence_pairs.csv", figures_read=True),
    Table("influence_summary", "influence_summary.csv", figures_read=True),
    Table("exposure", "exposure.csv", figures_read=True),
    Table("removal", "removal.csv", figures_read=True, made_by="removal_analyze"),
    Table("capacity_bits", "capacity_bits.csv", figures_read=True),
    # Sequences (memlab.analysis.sequences): the text runs' language models, their own rule.
    Table(
        "sequence_memorization",
        "sequence_memorization.parquet",
        figures_read=True,
        made_by="analyze_sequences",
    ),
    Table(
        "fact_recall",
        "fact_recall.csv",
        caption="fact_recall_table",
        figures_read=True,
        made_by="analyze_sequences",
    ),
    Table(
        "sequence_perplexity",
        "sequence_perplexity.csv",
        figures_read=True,
        made_by="analyze_sequences",
    ),
    Table("rare_words", "rare_words.csv", figures_read=True, made_by="analyze_sequences"),
)
TABLE = {t.name: t for t in TABLES}
FIGURE_TABLES = tuple(t.name for t in TABLES if t.figures_read)


def _sequence_runs(study: Study) -> bool:
    """Does the study train language models on text?"""
    return bool(study.sequence_runs)


# Whether a study runs each rule that writes tables: a rule besides analyze runs only where the
# study has its stage, and the figures read its tables only then (StudyTables' empty defaults
# stand in for them otherwise).
RULE_RUNS: dict[str, Callable[[Study], bool]] = {
    "analyze": lambda study: True,
    "removal_analyze": lambda study: bool(study.removals),
    "analyze_sequences": _sequence_runs,
}


def writes_table(study: Study, table: Table) -> bool:
    """Does this study write ``table`` (does the rule that makes it run)?"""
    return RULE_RUNS[table.made_by](study)


def _has_mlp_and_1nn(study: Study) -> bool:
    variants = study.variants.values()
    return any(v.kind == MLP.kind for v in variants) and any(
        isinstance(v, KNN) and v.k == 1 for v in variants
    )


def _sweeps_width(study: Study, kind: type[Variant]) -> bool:
    """Does the study have models of ``kind`` at two or more widths (feature counts)?"""
    return len({v.columns()["width"] for v in study.variants.values() if v.kind == kind.kind}) >= 2


def _sweeps_a_regularizer(study: Study) -> bool:
    """Do the study's regimes vary weight decay or dropout alone, for a model that trains?"""
    regimes = list(study.regimes.values())
    settings = {k: np.array([getattr(r, k) for r in regimes]) for k in REGULARIZERS}
    trains = any(v.trains for v in study.variants.values())
    return trains and bool(regimes) and bool(strength_sweeps(settings))


def stores_in_weights(variant: Variant | type[Variant]) -> bool:
    """Does a model hold what it learned in trained parameters alone? Not a k-NN (no parameters)
    nor a memory network (it reads its training subset): their bits per parameter mean nothing
    (memlab.analysis.capacity_bits)."""
    return variant.trains and not variant.remembers


def _random_labels_in_weights(study: Study) -> bool:
    """Does a dataset with uniformly random labels have runs of a model that stores in its
    weights?"""
    random = {
        name
        for name, ds in study.datasets.items()
        if ds.spec.get("randomization", {}).get("kind") == "random_labels"
    }
    return any(r.dataset in random and stores_in_weights(r.variant) for r in study.runs)


def _scored(study: Study) -> list:
    """The datasets with runs whose memorization scores pass the power gate."""
    return [ds for ds in study.datasets.values() if ds.scores_powered(study.power)]


@dataclass(frozen=True)
class Figure:
    """One figure (caption workflow/report/<name>.rst) and whether a study can draw it. How to
    draw it is the function of the same name in memlab.reporting.figures (``@draws``, which refuses
    a function of no figure here; importing memlab.reporting.figures fails while a figure here has
    none)."""

    name: str
    drawable: Callable[[Study], bool] = lambda study: True
    # Drawn from runs on examples (classification): a study of language models alone has none.
    of_examples: bool = True

    def path(self, ext: str) -> str:
        return f"{FIGURES_DIR}/{self.name}.{ext}"


FIGURES: tuple[Figure, ...] = (
    Figure("accuracy_vs_size"),
    Figure("generalization_gap"),
    Figure("robustness"),
    Figure("learning_curves"),
    Figure("memorization_scores", lambda s: bool(_scored(s))),
    Figure("memorized_gallery", lambda s: any(ds.image_shape for ds in _scored(s))),
    Figure("memorization_scatter", lambda s: bool(_scored(s)) and _has_mlp_and_1nn(s)),
    Figure(
        "membership_roc",
        lambda s: (
            any(ds.attacks_powered(s.power) for ds in s.datasets.values())
            or any(s.power.attacks_powered(ds.replicas) for ds in s.texts.values())
        ),
        of_examples=False,
    ),
    Figure(
        "randomization_tests",
        lambda s: any("randomization" in ds.spec for ds in s.datasets.values()),
    ),
    Figure("noise_sweep", lambda s: any(len(ds.label_noise) >= 2 for ds in s.datasets.values())),
    Figure("capacity", lambda s: _sweeps_width(s, MLP)),
    Figure("regularization", _sweeps_a_regularizer),
    Figure("double_descent", lambda s: _sweeps_width(s, RandomFeatures)),
    Figure(
        "detectors",
        lambda s: any(
            ds.scores_possible and any(r > 0 for r in ds.label_noise) for ds in s.datasets.values()
        ),
    ),
    Figure("estimators", lambda s: bool(_scored(s)) and any(v.trains for v in s.variants.values())),
    Figure(
        "grokking",
        lambda s: any(ds.spec["kind"] == "modular_addition" for ds in s.datasets.values()),
    ),
    Figure("long_tail", lambda s: any("long_tail" in ds.spec for ds in s.datasets.values())),
    Figure("few_shot", lambda s: any(ds.per_class for ds in s.datasets.values())),
    Figure("recall", lambda s: any(ds.spec.get("recall") for ds in s.datasets.values())),
    Figure("memory", lambda s: any(v.remembers for v in s.variants.values())),
    Figure("influence_pairs", lambda s: s.influence and any(ds.image_shape for ds in _scored(s))),
    Figure("removal", lambda s: bool(s.removals)),
    Figure("capacity_bits", _random_labels_in_weights),
    Figure(
        "exposure",
        lambda s: (
            any(has_canaries(ds.spec) for ds in s.datasets.values())
            # A generated corpus has canaries.
            or any(not ds.spec.get("path") for ds in s.texts.values())
        ),
        of_examples=False,
    ),
    Figure("fact_recall", _sequence_runs, of_examples=False),
    Figure("sequence_memorization", _sequence_runs, of_examples=False),
    Figure("sequence_perplexity", _sequence_runs, of_examples=False),
    Figure("rare_words", _sequence_runs, of_examples=False),
)


FIGURE = {f.name: f for f in FIGURES}


# The figures that support each finding (memlab.reporting.findings keys), best first: the summary
# page shows an answer next to the first of them the study draws.
FINDING_FIGURES: dict[str, tuple[str, ...]] = {
    "memorizes": ("noise_sweep", "capacity", "accuracy_vs_size"),
    "heldout_cost": ("generalization_gap",),
    "perturbed_cost": ("robustness",),
    "regularizer": ("regularization", "learning_curves"),
    "which_examples": ("memorization_scores",),
    "estimators": ("estimators",),
    "bits": ("capacity_bits",),
    "leakage": ("membership_roc",),
    "where_it_pays": ("long_tail",),
    "few_shot": ("few_shot",),
    "recall": ("recall",),
    "memory": ("memory",),
    "influence": ("influence_pairs",),
    "removal": ("removal",),
    "sequence_memorizes": ("sequence_memorization",),
    "sequence_costs": ("sequence_perplexity",),
    "sequence_pays": ("fact_recall", "rare_words"),
    "sequence_leaks": ("exposure", "membership_roc"),
}


def study_figures(study: Study) -> list[Figure]:
    """The figures this study can draw (an analysis without its runs is left out)."""
    return [f for f in FIGURES if f.drawable(study) and (study.runs or not f.of_examples)]


def finding_figures(study: Study) -> list[Figure]:
    """The figures the summary page shows beside the findings: those the study draws that
    support one (FINDING_FIGURES)."""
    wanted = {name for names in FINDING_FIGURES.values() for name in names}
    return [f for f in study_figures(study) if f.name in wanted]
