"""The typed study plan, the model kinds, the registry of tables and figures, the code hash."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, full, smoke

from memlab.io import MemlabInputError
from memlab.ops.codehash import function_hash, library_hash, library_modules
from memlab.plan.config import load_schema
from memlab.plan.kinds import CNN, KNN, MLP, MODEL_KINDS, variant_from_spec
from memlab.plan.registry import FIGURE_TABLES, FIGURES, TABLES
from memlab.plan.study import RUN_COLUMNS, Regime, run_path_of, unregularized
from memlab.reporting.tables import StudyTables

SCHEMA = load_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def test_every_model_kind_is_a_class_and_a_schema_entry():
    entry = SCHEMA["properties"]["models"]["additionalProperties"]
    assert entry["properties"]["kind"]["enum"] == list(MODEL_KINDS)
    for kind in MODEL_KINDS:
        assert SCHEMA["$defs"][kind]["properties"]["kind"] == {"const": kind}


def test_variant_specs_keep_the_checkpoint_form():
    """Checkpoints written before the kinds were classes hold these very dicts."""
    assert MLP("mlp", 8, 2).spec() == {"name": "mlp", "kind": "mlp", "width": 8, "depth": 2}
    assert CNN("cnn", 4).spec() == {"name": "cnn", "kind": "cnn", "width": 4}
    assert KNN("knn", 1).spec() == {"name": "knn", "kind": "knn", "k": 1}
    for v in (MLP("a", 3, 1), CNN("b", 2), KNN("c", 5)):
        assert variant_from_spec(v.spec()) == v
    assert [v.id for v in (MLP("a", 3, 1), KNN("c", 5))] == ["a-w3", "c-k5"]
    # An embedding is part of the id, spec and columns; without one nothing changed above.
    tok = MLP("tok", 8, 1, 32)
    assert (tok.id, tok.spec()["embedding"], tok.columns()["embedding"]) == ("tok-w8-e32", 32, 32)
    assert variant_from_spec(tok.spec()) == tok and MLP("a", 3, 1).columns()["embedding"] == 0


def test_regime_is_merged_once_and_refuses_unknown_keys():
    config = full(smoke())
    study_regimes = {
        name: Regime.from_config(name, r, config["training"])
        for name, r in config["regimes"].items()
    }
    plain, reg = study_regimes["memorize"], study_regimes["regularized"]
    assert plain.settings() == {
        "batch_size": 32,
        "lr": 0.01,
        "max_epochs": 500,
        "weight_decay": 0.0,
        "dropout": 0.0,
        "early_stopping": False,
        "stop_at_fit": True,
        "ridge": 0.0,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
    }
    assert reg.patience == 5 and reg.val_fraction == 0.2  # training's, under early stopping
    assert plain.patience is None and plain.columns()["patience"] == 0
    assert Regime.from_settings("regularized", reg.settings()) == reg
    with pytest.raises(MemlabInputError, match="weight_decy"):
        Regime.from_settings("x", {**plain.settings(), "weight_decy": 1.0})


def test_runs_know_their_path_columns_and_wildcards():
    from memlab.plan.study import plan_study

    study = plan_study(full(smoke()))
    for run in study.runs:
        assert tuple(run.columns()) == RUN_COLUMNS
        assert study.run(run.wildcards()) is run
        # A job's wildcards are text, and a block's job has one more.
        as_job = {k: str(v) for k, v in run.wildcards().items()} | {"block": "0"}
        assert study.run(as_job) is run
        assert all(run_path_of(f) == run.path for f in run.files("evaluation.npz"))
    knn = next(r for r in study.runs if r.variant.kind == "knn")
    assert knn.regime is None and knn.columns()["lr"] == 0 and knn.path.endswith("/memory")
    reg = next(r for r in study.runs if r.regime and r.regime.name == "regularized")
    assert reg.columns()["weight_decay"] == 1.0 and reg.columns()["early_stopping"]


def test_removal_arms_know_their_paths_from_the_patterns():
    from memlab.plan.study import REMOVAL_DIR, plan_study

    config = smoke()
    config["removal"] = {"k": [2], "replicas": 2, "models": ["mlp"], "regimes": ["memorize"]}
    # Scores to choose by: half the pool in each replica, a low power gate.
    config |= {"sizes": [0.5], "replicas": 4, "analysis": {"power": {"min_in_out": 1}}}
    study = plan_study(full(config))
    assert study.removals
    for removal in study.removals:
        assert removal.path == f"{removal.run.path}/{removal.arm}-k{removal.k}"
        as_job = {k: str(v) for k, v in removal.wildcards().items()} | {"block": "0"}
        assert study.removal(as_job) is removal
        assert removal.files("evaluation.npz")[0] == (
            f"{REMOVAL_DIR}/{removal.path}/block0/evaluation.npz"
        )


def test_log_every_has_one_default_the_schemas():
    """A regime that trains takes training.log_every from the config, whose default the schema
    fills in; a regime read back to rebuild a model has none (it trains no more)."""
    from conftest import train_regime

    default = SCHEMA["properties"]["training"]["properties"]["log_every"]["default"]
    config = full(smoke())
    regime = Regime.from_config("memorize", config["regimes"]["memorize"], config["training"])
    assert regime.log_every == default
    assert train_regime().log_every == default and train_regime(log_every=3).log_every == 3
    assert Regime.from_settings("memorize", train_regime().settings()).log_every is None


def test_unregularized_is_chosen_by_settings_not_by_name():
    frame = pd.DataFrame(
        {
            "kind": ["mlp", "mlp", "mlp", "knn", "random_features"],
            "weight_decay": [0.0, 0.5, 0.0, 0.0, 0.0],
            "dropout": [0.0, 0.0, 0.0, 0.0, 0.0],
            "ridge": [0.0, 0.0, 0.0, 0.0, 1e-3],
            "early_stopping": [False, False, True, False, False],
            "regime": ["anything", "wd", "es", "memory", "ridge"],
        }
    )
    assert unregularized(frame).tolist() == [True, False, False, False, False]


def test_a_regularizer_swept_alone_is_found_in_runs_and_in_the_plan():
    from memlab.plan.registry import study_figures
    from memlab.plan.study import plan_study, strength_sweeps

    frame = pd.DataFrame(
        {
            "weight_decay": [0.0, 2.0, 0.0, 1.0, 0.5],
            "dropout": [0.0, 0.0, 0.5, 0.3, 0.0],
            "early_stopping": [False, False, False, True, True],
            "ridge": [0.0] * 5,
        }
    )
    sweeps = strength_sweeps(frame)
    # Weight decay 0 and 2 with nothing else on; the 0.5 run also stops early, so it is out.
    assert sweeps["weight_decay"].tolist() == [True, True, False, False, False]
    assert sweeps["dropout"].tolist() == [True, False, True, False, False]
    assert strength_sweeps(frame.iloc[[0, 3, 4]]) == {}  # only combinations: no sweep
    # The smoke study's regularized regime combines three regularizers: no figure; give it
    # weight decay alone and there is one.
    config = smoke()
    assert "regularization" not in [f.name for f in study_figures(plan_study(full(config)))]
    config["regimes"]["decay"] = {"weight_decay": 0.1}
    assert "regularization" in [f.name for f in study_figures(plan_study(full(config)))]


def test_registry_matches_figures_tables_and_captions():
    from memlab.reporting.figures import DRAW

    # Each declared figure has one drawing function, of its name (memlab.reporting.figures.draws).
    assert [f.name for f in FIGURES] == list(DRAW)
    assert all(draw.__name__ == name for name, draw in DRAW.items())
    report = ROOT / "workflow" / "report"
    for figure in FIGURES:
        assert (report / f"{figure.name}.rst").is_file(), figure.name
    for table in TABLES:
        assert table.caption is None or (report / f"{table.caption}.rst").is_file(), table.name
        assert table.format in ("csv", "parquet")
    # No caption of a figure or table that is gone (the report's own pages besides).
    captions = {f.name for f in FIGURES} | {t.caption for t in TABLES if t.caption}
    pages = {"figure", "summary", "workflow"}
    assert {p.stem for p in report.glob("*.rst")} == captions | pages
    assert len({t.path for t in TABLES}) == len(TABLES)
    fields = [f.name for f in dataclasses.fields(StudyTables)]
    assert {f for f in fields if f not in ("splits", "randomizations", "severity_table")} == set(
        FIGURE_TABLES
    )


def _src_copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return src


def test_figures_register_themselves_once_each_as_the_registry_declares(monkeypatch):
    from memlab.plan.registry import Figure
    from memlab.reporting import figures

    def not_a_figure(t):
        return None

    with pytest.raises(ValueError, match="not_a_figure draws no figure"):
        figures.draws(not_a_figure)

    def capacity(t):  # a second drawing of a figure that has one
        return None

    with pytest.raises(ValueError, match="'capacity' has two drawing functions"):
        figures.draws(capacity)
    assert figures.DRAW["capacity"] is figures.capacity
    # A declared figure without a drawing function: memlab.reporting.figures does not import.
    monkeypatch.setattr(figures, "FIGURES", (*FIGURES, Figure("undrawn")))
    with pytest.raises(ValueError, match=r"no drawing function .* undrawn"):
        figures._drawings()


def test_analyze_computes_every_table_of_the_registry_it_writes():
    from memlab.analysis.frames import FRAMES, analyze_tables
    from memlab.analysis.sequences import SEQUENCE_FRAMES

    tables = analyze_tables()
    assert {t.frame for t in tables} == set(FRAMES)
    assert {t.name for t in tables} == {t.name for t in TABLES} - {"removal"} - set(SEQUENCE_FRAMES)
    # The sequence tables have their own rule, analyze_sequences, and frames.
    assert {t.frame for t in analyze_tables("analyze_sequences")} == set(SEQUENCE_FRAMES)
    assert all(t.copy_of is None or t.copy_of in FRAMES for t in TABLES)


def test_code_hash_follows_imports_and_ignores_comments(tmp_path):
    src = _src_copy(tmp_path)
    scripts = ROOT / "scripts"
    modules = {s.stem: set(library_modules(s, src)) for s in scripts.glob("*.py")}
    assert (
        "memlab.engine.train" in modules["train"]
        and "memlab.reporting.figures" in modules["figures"]
    )
    # Jobs that do not train do not run the engine (so editing it does not rerun them).
    for data_step in ("prepare", "label_noise", "subsample", "perturb"):
        assert (
            not {"memlab.engine.train", "memlab.engine.models", "memlab.engine.runs"}
            & modules[data_step]
        )
    assert "memlab.reporting.figures" not in modules["summarize"] | modules["analyze"]
    before = {s: library_hash(scripts / f"{s}.py", src) for s in modules}
    train = src / "memlab" / "engine" / "train.py"
    train.write_text(train.read_text() + "\n# a comment only\n")
    library_modules.cache_clear()
    assert {s: library_hash(scripts / f"{s}.py", src) for s in modules} == before
    train.write_text(train.read_text() + "\nEDITED = 1\n")
    after = {s: library_hash(scripts / f"{s}.py", src) for s in modules}
    # The language model's jobs share the seeds and the validation carve with train.py.
    changed = {"train", "evaluate", "train_sequence", "evaluate_sequence"}
    assert {s for s in modules if after[s] != before[s]} == changed


def test_a_figure_code_hash_follows_its_function_and_what_it_calls(tmp_path):
    src = _src_copy(tmp_path)
    figures = src / "memlab" / "reporting" / "figures.py"
    names = ("capacity", "few_shot", "recall", "long_tail", "memory", "removal")
    before = {n: function_hash(figures, n) for n in names}
    text = figures.read_text()
    # A comment changes nothing; a change inside one figure's function changes its hash alone.
    figures.write_text(
        text.replace("def few_shot(t: StudyTables)", "# note\ndef few_shot(t: StudyTables)")
    )
    assert {n: function_hash(figures, n) for n in names} == before
    edited = text.replace("Few-shot: held-out accuracy", "Few-shot: the held-out accuracy")
    assert edited != text
    figures.write_text(edited)
    after = {n: function_hash(figures, n) for n in names}
    assert {n for n in names if after[n] != before[n]} == {"few_shot"}
    # A helper several figures call (the t quantile of their intervals) changes each of theirs.
    figures.write_text(text.replace("ppf(0.975, n_replicas", "ppf(0.976, n_replicas"))
    after = {n: function_hash(figures, n) for n in names}
    assert {n for n in names if after[n] != before[n]} == set(names) - {"capacity"}
    with pytest.raises(KeyError, match="no top-level function 'nope'"):
        function_hash(figures, "nope")


def test_schema_reserves_the_memory_regime():
    config = smoke()
    config["regimes"]["memory"] = {}
    from memlab.plan.config import check_config

    with pytest.raises(MemlabInputError, match="reserved name 'memory'"):
        check_config(config, SCHEMA)
