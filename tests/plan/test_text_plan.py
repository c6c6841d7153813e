"""Planning a study with text datasets: language models' runs beside the classification runs,
models that cannot train on a dataset skipped with a note, and the mistakes only a text dataset
can make refused before any job."""

from __future__ import annotations

import pytest
from snakemake.utils import validate

from memlab.io import MemlabInputError
from memlab.plan.config import check_config, load_schema
from memlab.plan.registry import study_figures
from memlab.plan.study import SEQUENCE_RUNS_DIR, plan_study, run_path_of

SCHEMA = "workflow/schemas/config.schema.yaml"
TEXT = {"kind": "text", "vocab_size": 60, "documents": 40, "held_out": 10, "facts": 8,
        "entities": 8, "values": 4, "canary_names": 4,
        "canaries": {"per_repetition": 2, "repetitions": [0, 1]}}  # fmt: skip


def _plan(datasets: dict, **top) -> object:
    config = {
        "datasets": datasets,
        "sizes": [0.5],
        "replicas": 4,
        "models": {"mlp": {"kind": "mlp", "widths": [8]}, "gru": {"kind": "gru", "widths": [8]}},
        "regimes": {"memorize": {}, "wd": {"weight_decay": 0.1}},
        **top,
    }
    check_config(config, load_schema(SCHEMA))
    validate(config, SCHEMA)
    return plan_study(config)


def test_text_and_digits_each_get_their_own_models_and_the_others_are_noted():
    study = _plan({"digits": {"kind": "digits"}, "text": TEXT})
    assert {r.variant.kind for r in study.runs} == {"mlp"}
    assert {r.variant.kind for r in study.sequence_runs} == {"gru"}
    assert {r.regime_name for r in study.sequence_runs} == {"memorize", "wd"}
    assert any("gru-w8 skipped on dataset 'digits'" in n for n in study.notes)
    assert any("mlp-w8 skipped on dataset 'text'" in n for n in study.notes)
    # Half the (even) pool per replica, and the run's files under their own directory.
    text = study.texts["text"]
    run = study.sequence_runs[0]
    assert text.n_pool % 2 == 0 and run.size == text.n_pool // 2
    file = run.files("evaluation.npz")[0]
    assert file.startswith(f"{SEQUENCE_RUNS_DIR}/text/noise0/n{run.size}/gru-w8/")
    assert run_path_of(file) == run.path


def test_a_study_of_text_alone_draws_only_its_own_figures():
    study = _plan({"text": TEXT})
    powered = _plan({"text": TEXT}, replicas=18)  # 17 shadows: the attacks' default gate
    assert {f.name for f in study_figures(powered)} - {f.name for f in study_figures(study)} == {
        "membership_roc"
    }
    assert not study.runs and study.sequence_runs
    names = {f.name for f in study_figures(study)}
    assert names == {"exposure", "fact_recall", "sequence_memorization", "sequence_perplexity",
                     "rare_words"}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"replicas": 5}, "use an even number >= 4"),
        ({"replicas": 2}, "use an even number >= 4"),
        ({"grid": {"sizes": [0.3]}}, "datasets.text.grid.sizes is [0.3]"),
        ({"grid": {"label_noise": [0.1]}}, "without label noise"),
    ],
)
def test_what_a_text_dataset_cannot_take_is_refused(change, message):
    text = TEXT | {k: v for k, v in change.items() if k == "grid"}
    top = {k: v for k, v in change.items() if k != "grid"}
    with pytest.raises(MemlabInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _plan({"text": text}, **top)


def test_a_text_study_without_a_language_model_has_no_runs():
    config_models = {"mlp": {"kind": "mlp", "widths": [8]}}
    with pytest.raises(MemlabInputError, match="a gru model"):
        _plan({"text": TEXT}, models=config_models)
