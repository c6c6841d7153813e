"""config/language.yaml end to end, made small: a generated corpus, a language model in two
regimes, every sequence table, the exposure and membership tables gaining its runs, the findings,
a partial rerun, and a user's text file that is read or refused with a clear message."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from conftest import ROOT, copy_workflow, planned_jobs, snakemake

from memlab.plan.registry import FINDINGS_FILE, SUMMARY_PAGE

FAST = {  # config/language.yaml made small: the corpus, model and regimes kept, fewer of each
    "replicas": 4,
    "replicas_per_job": 4,
    "datasets": {
        "text": {
            "kind": "text",
            "vocab_size": 100,
            "documents": 150,
            "held_out": 30,
            "facts": 48,
            "entities": 24,
            "values": 6,
            "canary_names": 8,
            "canaries": {"per_repetition": 2, "repetitions": [0, 1, 4]},
        }
    },
    "models": {"gru": {"kind": "gru", "widths": [8], "embedding": 8}},
    "regimes": {"memorize": {}, "weight_decay": {"weight_decay": 0.1}},
    "training": {"batch_size": 32, "lr": 0.03, "max_epochs": 400},
    # 2 in and 2 out per document: below the default power gates, which this test is not about.
    "analysis": {"power": {"min_in_out": 2, "min_shadows": 3}},
}


def _config(work, **changes) -> str:
    config = yaml.safe_load((ROOT / "config" / "language.yaml").read_text())
    config.update(FAST | changes)
    (work / "config" / "fast.yaml").write_text(yaml.safe_dump(config))
    return "config/fast.yaml"


@pytest.fixture(scope="module")
def language_study(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("language"))
    config = _config(work)
    snakemake(work, "-c2", "--configfile", config)
    return work, config


def test_every_sequence_table_holds_both_regimes(language_study):
    work, _ = language_study
    tables = work / "results" / "tables"
    for name in ("sequence_perplexity.csv", "fact_recall.csv", "rare_words.csv"):
        frame = pd.read_csv(tables / name)
        assert set(frame["regime"]) == {"memorize", "weight_decay"}, name
        assert (frame["replicas"] > 0).all(), name  # trained to convergence, none left out
    memorized = pd.read_parquet(tables / "sequence_memorization.parquet")
    assert set(memorized["doc_kind"]) == {"grammar", "fact", "canary"}
    assert memorized.groupby("regime").size().nunique() == 1  # one row per document per run
    # The analyze rule's exposure and membership tables gain the language model's runs.
    exposure = pd.read_csv(tables / "exposure.csv")
    assert set(exposure["kind"]) == {"gru"} and set(exposure["repetitions"]) == {0, 1, 4}
    membership = pd.read_csv(tables / "membership.csv")
    assert {"gap", "loss", "lira_online"} <= set(membership["attack"])
    assert set(membership["kind"]) == {"gru"}


def test_the_findings_answer_the_sequence_questions(language_study):
    work, _ = language_study
    found = json.loads((work / FINDINGS_FILE).read_text())
    assert {"sequence_costs", "sequence_pays", "sequence_leaks"} <= set(found)
    page = (work / SUMMARY_PAGE).read_text()
    assert "When does memorizing pay for the language model?" in page
    for figure in ("fact_recall", "sequence_memorization", "sequence_perplexity", "rare_words"):
        assert (work / "results" / "figures" / f"{figure}.png").stat().st_size > 10_000


def test_a_rerun_does_nothing_and_a_regime_edit_reruns_that_regime_alone(language_study):
    work, config = language_study
    assert planned_jobs(work, "--configfile", config) == []
    edited = _config(work, regimes={"memorize": {}, "weight_decay": {"weight_decay": 0.2}})
    rules = {rule for rule, _ in planned_jobs(work, "--configfile", edited)}
    assert {"train_sequence", "evaluate_sequence", "analyze_sequences"} <= rules
    assert not {"prepare_text", "subsample_text"} & rules
    trained = {
        w["regime"] for r, w in planned_jobs(work, "--configfile", edited) if r == "train_sequence"
    }
    assert trained == {"weight_decay"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a b c\n\nd e\n", "docs.txt, line 2: empty line"),
        (b"a b c\nd \xff e\n", "docs.txt, line 2: bytes that are not UTF-8"),
    ],
)
def test_a_bad_text_file_is_refused_before_any_job(tmp_path, content, message):
    work = copy_workflow(tmp_path / "work")
    (work / "docs.txt").write_bytes(content)
    text = {"text": {"kind": "text", "path": "docs.txt"}}
    proc = snakemake(work, "-n", "--configfile", _config(work, datasets=text), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out and "Nothing was run" in out and "Traceback" not in out
