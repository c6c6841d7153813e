"""End to end through the real snakemake CLI: the smoke study, partial reruns, bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, copy_workflow, planned_jobs, snakemake

from memlab.plan.study import RUN_COLUMNS

pytestmark = pytest.mark.e2e

METRIC_COLUMNS = [
    *RUN_COLUMNS,
    "replica",
    "split",
    "perturbation",
    "severity",
    "metric",
    "value",
]


@pytest.fixture(scope="module")
def smoke_run(smoke_study) -> Path:
    return smoke_study[0]


def test_smoke_study_outputs(smoke_run):
    work = smoke_run
    figures = [
        "accuracy_vs_size",
        "generalization_gap",
        "robustness",
        "learning_curves",
        "capacity",
    ]
    for name in figures:
        for ext in ("png", "svg"):
            f = work / "results" / "figures" / f"{name}.{ext}"
            assert f.stat().st_size > 1000, f
    metrics = pd.read_parquet(work / "results/tables/metrics.parquet")
    assert list(metrics.columns) == METRIC_COLUMNS
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    assert set(metrics["regime"]) == set(config["regimes"]) | {"memory"}
    assert set(metrics["split"]) >= {"train", "unseen", "heldout", "perturbed", "train_flipped"}
    assert set(metrics["replica"]) == set(range(config["replicas"]))
    # Only a replica that never fit has no epochs_to_fit; every other value is a number.
    assert metrics.loc[metrics["metric"] != "epochs_to_fit", "value"].notna().all()
    # Every run's settings are columns, as values: the regularized regime's, the MLP's depth.
    reg = metrics[metrics["regime"] == "regularized"]
    assert set(reg["weight_decay"]) == {1.0} and set(reg["dropout"]) == {0.3}
    assert reg["early_stopping"].all() and set(reg["patience"]) == {5}
    assert set(metrics.loc[metrics["kind"] == "mlp", "depth"]) == {1}
    assert set(metrics.loc[metrics["regime"] == "memorize", "patience"]) == {0}
    gap = pd.read_csv(work / "results/tables/generalization_gap.csv")
    assert ((gap["train_accuracy"] - gap["heldout_accuracy"] - gap["gap"]).abs() < 1e-5).all()
    rob = pd.read_csv(work / "results/tables/robustness.csv")
    assert {"perturbation", "severity", "accuracy", "clean_accuracy", "drop"} <= set(rob.columns)
    hist = pd.read_parquet(work / "results/tables/history.parquet")
    assert {"epoch", "replica", "train_accuracy", "heldout_accuracy", "regime"} <= set(hist.columns)
    assert list(hist.columns[: len(RUN_COLUMNS)]) == list(RUN_COLUMNS)
    assert set(hist.loc[hist["regime"] == "memorize", "lr"]) == {config["training"]["lr"]}
    # 1-NN is the pure memorizer: it fits every training label, flipped ones included.
    one_nn = metrics[(metrics.model == "knn-k1") & (metrics.metric == "accuracy")]
    assert (one_nn[one_nn.split.isin(["train", "train_flipped"])]["value"] == 1.0).all()
    summary = (work / "results/report/summary.html").read_text()
    assert "held-out" in summary and "knn-k1" in summary
    # Findings first: the smoke study's 3 replicas answer the accuracy questions, with
    # intervals, and say why they cannot answer the per-example ones; the numbers in DVC form.
    assert summary.index("Does the model memorize?") < summary.index("Headline numbers per run")
    assert "What this study cannot answer" in summary and "too few replicas" in summary
    findings = json.loads((work / "results/findings.json").read_text())
    assert findings["memorizes"]["flipped_fitted"]["n"] == config["replicas"]
    # Provenance: the software that made the numbers, and the study config.
    import torch

    assert f"<td>torch</td><td>{torch.__version__}</td>" in summary
    assert "Study config" in summary and "max_epochs: 500" in summary
    log = next((work / "results/logs/train").rglob("memorize/block0.log")).read_text()
    assert "epoch" in log and "fit" in log
    assert not list((work / "results").rglob("*.tmp*")), "temporary files left behind"


def test_nothing_to_do_after_a_complete_run(smoke_run):
    assert planned_jobs(smoke_run, "--configfile", "config/smoke.yaml") == []
    # The same config with its keys reordered (safe_dump sorts them) is the same study.
    assert planned_jobs(smoke_run, "--configfile", _edited(smoke_run, lambda c: None)) == []


def _edited(work: Path, edit) -> str:
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    edit(config)
    path = work / "config" / "edited.yaml"
    path.write_text(yaml.safe_dump(config))
    return "config/edited.yaml"


def test_changing_one_regime_reruns_only_its_jobs(smoke_run):
    cfg = _edited(smoke_run, lambda c: c["regimes"]["regularized"].update(weight_decay=0.2))
    jobs = planned_jobs(smoke_run, "--configfile", cfg)
    rules = [r for r, _ in jobs]
    trains = [wc for r, wc in jobs if r == "train"]
    assert trains and all(wc["regime"] == "regularized" for wc in trains)
    # Every regularized run (2 MLPs + 1 CNN, x 2 sizes) and nothing else.
    assert len(trains) == 3 * 2
    assert rules.count("evaluate") == len(trains)
    assert not {"prepare", "label_noise", "subsample", "perturb"} & set(rules)
    assert {"analyze", "figures", "summarize"} <= set(rules)


def test_operational_training_keys_rerun_nothing_and_eval_every_retrains(smoke_run):
    """training.device, log_every and resume_every change no number (a GPU-less machine trains
    a `cuda` study on the CPU); eval_every changes the held-out curve: every network retrains."""
    ops = {"device": "cuda", "log_every": 3, "resume_every": 0}
    cfg = _edited(smoke_run, lambda c: c["training"].update(ops))
    assert planned_jobs(smoke_run, "--configfile", cfg) == []
    cfg = _edited(smoke_run, lambda c: c["training"].update(eval_every=4))
    jobs = planned_jobs(smoke_run, "--configfile", cfg)
    trains = [wc for r, wc in jobs if r == "train"]
    # 2 sizes x (2 MLPs + 1 CNN) x 2 regimes; k-NN does not train.
    assert len(trains) == 12 and not any(wc["model"].startswith("knn") for wc in trains)


def test_changing_perturbations_reevaluates_without_retraining(smoke_run):
    cfg = _edited(smoke_run, lambda c: c["perturbations"].update(severities=[2, 4]))
    rules = [r for r, _ in planned_jobs(smoke_run, "--configfile", cfg)]
    assert "train" not in rules and "perturb" in rules
    # 2 sizes x (2 MLPs x 2 regimes + 1 CNN x 2 regimes + 1 k-NN)
    assert rules.count("evaluate") == 2 * 7


def test_corruption_error_table_and_what_its_keys_rerun(smoke_run):
    table = pd.read_csv(smoke_run / "results/tables/corruption_error.csv")
    assert list(table.columns[: len(RUN_COLUMNS)]) == list(RUN_COLUMNS)
    # The default baseline: the narrowest MLP, unregularized; 2 sizes x 7 runs, 3 corruptions.
    assert set(table["baseline"]) == {"mlp-w8"} and set(table["baseline_regime"]) == {"memorize"}
    assert set(table["perturbation"]) == {"gaussian_noise", "translate", "occlusion", "mean"}
    assert (table["perturbation"] == "mean").sum() == 2 * 7 and set(table["severities"]) == {2}
    own = table[(table["model"] == "mlp-w8") & (table["regime"] == "memorize")]
    assert np.allclose(own["ce"], 1.0)
    assert table["ce"].notna().all() and table["clean_error"].between(0, 1).all()
    pert = np.load(smoke_run / "results/data/digits/perturbed.npz")
    assert list(pert["parameters"][:2]) == [0.15, 0.6]  # gaussian_noise at severities 1 and 5

    def rules(edit):
        return [r for r, _ in planned_jobs(smoke_run, "--configfile", _edited(smoke_run, edit))]

    # A configured table of a listed corruption: new perturbed sets, no training.
    listed = rules(lambda c: c["perturbations"].update(parameters={"translate": [1, 1, 1, 1, 2]}))
    assert "train" not in listed and "perturb" in listed and listed.count("evaluate") == 2 * 7
    # A table of an unlisted corruption changes nothing; the baseline only the analysis.
    analysis = rules(
        lambda c: c["perturbations"].update(parameters={"blur": [1, 1, 1, 1, 2]}, baseline="knn-k1")
    )
    assert "analyze" in analysis and set(analysis) <= {"analyze", "figures", "summarize", "all"}


def test_report_builds(smoke_report):
    # Built once for the session (conftest.smoke_report: snakemake --report on the smoke study).
    html = smoke_report.read_text(errors="replace")
    assert len(html) > 10_000 and "accuracy_vs_size" in html


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(sizez=[10]), "unknown key 'sizez'"),
        (lambda c: c["models"]["mlp"].update(widths=[-3]), "models.mlp.widths[0] = -3"),
        (lambda c: c.update(sizes=[99999]), "sizes[0]"),
        (  # a token embedding on digits (no tokens)
            lambda c: c["models"].update(tok={"kind": "mlp", "widths": [4], "embedding": 4}),
            "model tok-w4-e4 has an embedding, which needs token inputs, but dataset 'digits'",
        ),
        (
            lambda c: c["datasets"].update(mine={"kind": "file", "path": "data/missing.csv"}),
            "missing.csv",
        ),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, edit, message):
    work = copy_workflow(tmp_path)
    cfg = _edited(work, edit)
    proc = snakemake(work, "--configfile", cfg, "--cores", "1", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not (work / "results").exists()


def test_lint_and_format_are_clean():
    # --lint needs a plan; it reports rules missing log/conda/... and other style issues.
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("snakemake")),
            "--lint",
            "--configfile",
            "config/smoke.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
    proc = subprocess.run(
        [snakefmt, "--check", "Snakefile", "workflow"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def _finished_copy(smoke_run: Path, dest: Path) -> Path:
    """A copy of the finished smoke study, Snakemake's records included."""
    shutil.copytree(smoke_run, dest, ignore=shutil.ignore_patterns("locks"))
    return dest


def test_library_edits_rerun_exactly_the_rules_that_run_them(smoke_run, tmp_path):
    work = _finished_copy(smoke_run, tmp_path / "work")
    args = ("--configfile", "config/smoke.yaml")
    lib = work / "src" / "memlab"
    perturb, figures, train = (
        lib / f"{m}.py" for m in ("data/perturb", "reporting/figures", "engine/train")
    )
    perturb.write_text(perturb.read_text() + "\n# a comment-only edit of a module\n")
    assert planned_jobs(work, *args) == []
    original = figures.read_text()
    figures.write_text(original + "\nEDITED = True\n")
    # The findings page shows the figures inline: it is remade with them.
    assert {r for r, _ in planned_jobs(work, *args)} - {"all"} == {"figures", "summarize"}
    # One figure's code: that figure alone is redrawn.
    figures.write_text(original.replace('"Capacity', '"The capacity', 1))
    jobs = [(r, wc) for r, wc in planned_jobs(work, *args) if r != "all"]
    assert sorted(jobs, key=str) == [("figures", {"figure": "capacity"}), ("summarize", {})]
    figures.write_text(original)
    train.write_text(train.read_text() + "\nEDITED = True\n")
    rules = [r for r, _ in planned_jobs(work, *args)]
    assert set(rules) - {"all"} == {"train", "evaluate", "analyze", "figures", "summarize"}
    assert rules.count("train") == 14  # every trained run and k-NN: runs.py imports train


def test_the_summary_finds_the_unregularized_runs_by_their_settings(smoke_run, tmp_path):
    """Rename the unregularized regime: the summary still states how much noise it fit."""
    work = _finished_copy(smoke_run, tmp_path / "work")
    before = (work / "results/report/summary.html").read_text()
    sentence = re.search(r"Without regularization \(memorize\)[^.]*\.", before)
    assert sentence, before

    def rename(c):
        c["regimes"] = {("plain" if k == "memorize" else k): v for k, v in c["regimes"].items()}

    snakemake(work, "--configfile", _edited(work, rename), "--cores", "2")
    after = (work / "results/report/summary.html").read_text()
    # Seeds depend on the seed and the replica only: the renamed runs give the same numbers.
    assert sentence.group(0).replace("(memorize)", "(plain)") in after
    assert "<td>plain</td>" in after and "<td>memorize</td>" not in after
