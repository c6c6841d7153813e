"""Every registered figure, drawn from one tiny study that holds every model kind and analysis.

A figure that only some configs draw (double descent needs random features, grokking modular
addition, removal its second stage...) must not break unseen. The study is the real workflow:
its DAG is built by Snakemake in this process (``memlab.ops.snakemake``), and each job runs its
own rule script here, with the ``snakemake`` object Snakemake would hand it. Only the separate
Python process per job is skipped: about 1.5 s of imports for each of the study's 142 jobs.
Measured 2026-12-05 on 2 busy cores: the jobs 38 s, drawing and saving the 22 figures 27 s (21
between; 23 with capacity_bits and exposure, whole test 54 s).
"""

from __future__ import annotations

import contextlib
import runpy
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import yaml
from conftest import copy_workflow
from PIL import Image

from memlab.data.perturb import severity_table
from memlab.ops import snakemake as smk
from memlab.plan.registry import FIGURES, study_figures
from memlab.plan.study import plan_study
from memlab.reporting.figures import DRAW, save_figure
from memlab.reporting.tables import StudyTables

CONFIG = "config/every_figure.yaml"
# The figures of the text runs (memlab.analysis.sequences), which this study does not have yet.
SEQUENCE_FIGURES = {"fact_recall", "sequence_memorization", "sequence_perplexity", "rare_words"}
GRID = {"sizes": [0.5], "replicas": 4, "replicas_per_job": 4}
STUDY = {
    "seed": 0,
    # Small pools (digits: 1797 examples), and power gates low enough for 4 replicas.
    "test_fraction": 0.9,
    "label_noise": [0.0, 0.2],
    **GRID,
    "datasets": {
        "digits": {
            "kind": "digits",
            # 8 replicas: the removal stage's choice needs every example in and out of one
            # usable (fitted) replica.
            "grid": {
                "models": ["mlp", "knn", "rf"],
                "replicas": 8,
                "replicas_per_job": 8,
            },
        },
        # A CNN or memory net that cannot fit noisy labels trains to max_epochs: clean only.
        "images": {
            "kind": "digits",
            "grid": {"label_noise": [0.0], "models": ["cnn", "memnet"], "regimes": ["memorize"]},
        },
        "random": {
            "kind": "digits",
            "randomization": {"kind": "random_labels"},
            "recall": True,
            "grid": {"label_noise": [0.0], "models": ["small"], "regimes": ["memorize"]},
        },
        "tail": {
            "kind": "digits",
            "long_tail": {"subpopulations": 2, "head": 8},
            "grid": {"label_noise": [0.0], "test_fraction": 0.5, "models": ["small", "knn"]},
        },
        "few": {
            "kind": "digits",
            # Canaries beside a few-shot draw (exposure; the per-class draw is over real rows).
            "canaries": {"per_repetition": 2},
            "grid": {"label_noise": [0.0], "sizes": [{"per_class": 2}], "models": ["small"]},
        },
        "modular": {
            "kind": "modular_addition",
            "p": 7,
            "grid": {
                "label_noise": [0.0],
                "test_fraction": 0.5,
                "sizes": [1.0],
                "models": ["small", "mlp_tok"],
                "regimes": ["memorize", "decay"],
            },
        },
    },
    "models": {
        "mlp": {"kind": "mlp", "depth": 1, "widths": [16, 32]},
        "small": {"kind": "mlp", "depth": 1, "widths": [16]},  # where no removal stage runs
        "mlp_tok": {"kind": "mlp", "depth": 1, "widths": [8], "embedding": 4},
        "cnn": {"kind": "cnn", "widths": [2]},
        "knn": {"kind": "knn", "k": [1]},
        "rf": {"kind": "random_features", "features": [20, 40]},
        "memnet": {"kind": "memory_net", "widths": [8]},
    },
    "regimes": {"memorize": {}, "decay": {"weight_decay": 1.0}},
    "training": {"batch_size": 32, "lr": 0.03, "max_epochs": 200},
    "perturbations": {"names": ["gaussian_noise", "translate"], "severities": [1, 2]},
    # Gates low enough for 8 replicas (the influence pairs' null expects most pairs false).
    "analysis": {
        "power": {"min_in_out": 1, "min_shadows": 2},
        "influence": {"max_false_share": 1.0},
    },
    "figures": {"dpi": 60},
    "removal": {"k": [2], "replicas": 2, "models": ["mlp"], "regimes": ["memorize"]},
}


def run_in_process(work: Path, args: list[str], skip: tuple[str, ...] = ()) -> list[Any]:
    """Run every job ``snakemake ARGS`` would run in ``work`` (but those of the rules ``skip``),
    in DAG order, each through its rule script in this process, with the ``snakemake`` object
    Snakemake would pickle for it; those objects, in order (skipped jobs' too), each with its
    script as ``.script`` (to run a skipped one later: :func:`run_job`)."""
    from snakemake.iocontainers import Snakemake

    ran = []
    for job, dag in smk.dag_jobs(work, args):
        rule = job.rule
        if rule.script is None:  # the target rule `all`
            continue
        script = Path(rule.basedir.join(rule.script).get_path_or_uri(secret_free=False))
        for f in [*job.output, *job.log]:
            Path(f).parent.mkdir(parents=True, exist_ok=True)
        sm = Snakemake(
            job.input,
            job.output,
            job.params,
            job.wildcards,
            job.threads,
            job.resources,
            job.log,
            dag.workflow.config,
            rule.name,
            None,
            str(script.parent),
        )
        sm.script = script
        if rule.name not in skip:
            run_job(sm)
        ran.append(sm)
    return ran


def run_job(sm: Any) -> None:
    """Run one job's rule script in this process, as :func:`run_in_process` does."""
    runpy.run_path(str(sm.script), init_globals={"snakemake": sm}, run_name="__rule__")


def is_blank(fig: plt.Figure) -> str | None:
    """The message of a figure that only says why it has nothing to draw (figures._empty)."""
    (ax, *more) = fig.axes
    if more or ax.axison or ax.lines or ax.images or ax.collections or ax.patches:
        return None
    return " ".join(t.get_text() for t in ax.texts)


def test_every_registered_figure_draws_from_one_study_holding_every_analysis(tmp_path):
    work = copy_workflow(tmp_path / "work")
    (work / CONFIG).write_text(yaml.safe_dump(STUDY, sort_keys=False))
    t0 = time.perf_counter()
    # The figures jobs are drawn below, all from one reading of the tables (as each job reads
    # them: scripts/figures.py), to look inside each figure before it is saved; the findings
    # page (summarize), which shows some of them, after them.
    jobs = run_in_process(work, ["--configfile", CONFIG], skip=("figures", "summarize"))
    took = time.perf_counter() - t0
    assert {sm.rule for sm in jobs} >= {"train", "analyze", "removal_analyze", "summarize"}
    # The study holds every analysis but the sequences (no text runs yet: their figures are
    # drawn in tests/reporting/test_figure_sequences.py): the workflow asks for every other
    # registered figure.
    figure_jobs = {sm.wildcards.figure: sm for sm in jobs if sm.rule == "figures"}
    drawn = [name for name in DRAW if name not in SEQUENCE_FIGURES]
    assert sorted(DRAW) == sorted(f.name for f in FIGURES)
    assert sorted(figure_jobs) == sorted(drawn)
    sm = figure_jobs["accuracy_vs_size"]
    assert [f.name for f in study_figures(plan_study(sm.config, work))] == drawn

    splits = {Path(p).parent.name: str(work / p) for p in sm.input.splits}
    severities = severity_table(sm.params.perturbations.get("parameters"))
    paths = {k: str(work / v) for k, v in sm.input.items() if isinstance(v, str)}
    tables = StudyTables.read(paths, splits, sm.params.randomizations, severities)
    blank = {}
    t1 = time.perf_counter()
    for name, job in figure_jobs.items():
        fig = DRAW[name](tables)
        blank[name] = is_blank(fig)
        png, svg = (work / f for f in job.output)
        save_figure(fig, png, svg, dpi=job.params.dpi)
        with Image.open(png) as img:
            assert min(img.size) > 50, name
        assert svg.stat().st_size > 1000, name
    with contextlib.chdir(work):  # its paths are relative to the workflow, as in a job
        for job in jobs:
            if job.rule == "summarize":
                run_job(job)
                assert "data:image/png;base64," in Path(job.output.summary).read_text()
    print(
        f"{len(jobs)} jobs in {took:.1f} s, {len(figure_jobs)} figures in "
        f"{time.perf_counter() - t1:.1f} s"
    )
    assert {k: v for k, v in blank.items() if v is not None} == {}
