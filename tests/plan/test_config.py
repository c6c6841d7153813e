"""Config validation: every mistake gives one clear message naming the key and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import full, smoke

from memlab.io import MemlabInputError
from memlab.plan.config import check_config, load_schema
from memlab.plan.study import plan_study

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = load_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def test_shipped_configs_are_valid():
    for name in (
        "config.yaml",
        "smoke.yaml",
        "memorization.yaml",
        "memorization_pays.yaml",
        "tabular.yaml",
        "estimators.yaml",
    ):
        config = yaml.safe_load((ROOT / "config" / name).read_text())
        study = plan_study(full(config))
        assert study.runs


def test_the_pays_studies_plan_what_they_promise():
    from memlab.plan.registry import study_figures

    def planned(name):
        return plan_study(full(yaml.safe_load((ROOT / "config" / name).read_text())))

    pays = planned("memorization_pays.yaml")
    figures = {f.name for f in study_figures(pays)}
    assert {"long_tail", "few_shot", "recall", "influence_pairs", "removal"} <= figures
    assert pays.datasets["digits_fs"].per_class == ((10, 1), (20, 2), (50, 5), (100, 10))
    # Three first stages (MLP in two regimes, 1-NN), a baseline and two arms at 3 values of k.
    assert len(pays.first_stages) == 3 and len(pays.removals) == 3 * 7
    assert pays.datasets["digits_lt"].n_pool == 380
    default = planned("config.yaml")
    assert "long_tail" in {f.name for f in study_figures(default)} and not default.removals


def test_the_estimators_study_plans_every_view_of_memorization():
    from memlab.plan.registry import study_figures

    config = full(yaml.safe_load((ROOT / "config" / "estimators.yaml").read_text()))
    study = plan_study(config)
    figures = {f.name for f in study_figures(study)}
    assert {"estimators", "exposure", "capacity_bits", "detectors"} <= figures
    assert config["estimators"]["curvature_probes"] == 10 and config["estimators"]["gradient_every"]
    # The ground truth needs a bank of at least 64 replicas (the floor).
    assert study.datasets["bank"].replicas >= 64


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c.update(sizez=[10]), ["unknown key 'sizez'", "Did you mean 'sizes'"]),
        (lambda c: c["training"].update(lr="fast"), ["training.lr", "'fast'", "number"]),
        (lambda c: c["models"]["mlp"].update(widths=[-4]), ["models.mlp.widths[0]", "-4", ">= 1"]),
        (lambda c: c["models"]["mlp"].update(kind="transformer"), ["models.mlp.kind", "'mlp'"]),
        (
            lambda c: c["datasets"].update(mnist={"kind": "mnist"}),
            ["datasets.mnist.kind", "'digits'"],
        ),
        (lambda c: c.update(label_noise=[1.5]), ["label_noise[0]", "1.5", "<= 1"]),
        (lambda c: c.update(sizes=[0]), ["sizes[0]", "count", "fraction"]),
        (lambda c: c.update(replicas=0), ["replicas", ">= 1"]),
        (lambda c: c["regimes"].update({"../x": {}}), ["'../x'", "letter"]),
        (lambda c: c["datasets"].update({"a;rm -rf ~": {"kind": "digits"}}), ["'a;rm -rf ~'"]),
        (
            lambda c: c["regimes"]["memorize"].update(dropuot=0.5),
            ["unknown key 'dropuot'", "'dropout'"],
        ),
        (lambda c: c["perturbations"].update(names=["fog"]), ["perturbations.names[0]", "'fog'"]),
        (lambda c: c.pop("models"), ["models"]),
        (lambda c: c.update(analysis={"agreement_k": 0}), ["analysis.agreement_k", ">= 1"]),
        (
            lambda c: c["regimes"]["memorize"].update(beta1=1.5),
            ["regimes.memorize.beta1 = 1.5", "a number >= 0 and < 1"],
        ),
        (lambda c: c["training"].update(beta2=-0.1), ["training.beta2 = -0.1", ">= 0"]),
        (lambda c: c["training"].update(eps=0), ["training.eps = 0", "> 0"]),
        (lambda c: c["models"]["mlp"].update(embedding=-1), ["models.mlp.embedding = -1"]),
        (  # what YAML makes of `eps: 1e-6`
            lambda c: c["regimes"]["memorize"].update(eps="1e-6"),
            ["regimes.memorize.eps = '1e-6'", "a number", "write 1.0e-6"],
        ),
    ],
)
def test_schema_errors_name_the_key(edit, expected):
    config = smoke()
    edit(config)
    with pytest.raises(MemlabInputError) as err:
        check_config(config, SCHEMA)
    for text in expected:
        assert text in str(err.value), str(err.value)


def test_size_larger_than_pool_is_rejected_before_any_job():
    config = full(smoke())
    config["sizes"] = [5000]
    with pytest.raises(MemlabInputError, match=r"sizes\[0\].*5000.*1347"):
        plan_study(config)


def test_agreement_k_beyond_the_pool_is_rejected_before_any_job():
    config = full(smoke())
    assert config["analysis"]["agreement_k"] == 10
    config["analysis"]["agreement_k"] = 1347
    plan_study(config)  # no run gets per-example scores (replicas x size < pool): no check
    config["replicas"] = 20  # 20 x 80 >= 1347
    with pytest.raises(MemlabInputError, match=r"analysis\.agreement_k = 1347.*'digits' has 1347"):
        plan_study(config)


def test_model_keys_must_fit_the_kind():
    """Each kind's keys come from its entry in the schema (selected by `kind`)."""
    config = smoke()
    config["models"]["knn"]["widths"] = [3]
    with pytest.raises(MemlabInputError, match=r"models.knn.widths does not apply to kind 'knn'"):
        check_config(config, SCHEMA)
    config = smoke()
    config["models"]["cnn"]["depth"] = 3
    with pytest.raises(MemlabInputError, match=r"models.cnn.depth does not apply.*kind, widths"):
        check_config(config, SCHEMA)
    config = smoke()
    del config["models"]["mlp"]["widths"]
    with pytest.raises(MemlabInputError, match=r"models.mlp \(kind 'mlp'\) needs the key 'widths'"):
        check_config(config, SCHEMA)
    config = smoke()
    config["models"]["mlp"]["depht"] = 3
    with pytest.raises(MemlabInputError, match=r"models.mlp.depht does not apply"):
        check_config(config, SCHEMA)


def test_schema_fills_each_kinds_defaults():
    config = smoke()
    del config["models"]["mlp"]["depth"]
    study = plan_study(full(config))
    assert study.variants["mlp-w8"].depth == 2  # the schema's default, its only home
    assert not hasattr(study.variants["knn-k1"], "depth")


def test_missing_data_file_and_csv_without_label(tmp_path):
    config = full(smoke())
    config["datasets"] = {"mine": {"kind": "file", "path": str(tmp_path / "nope.csv")}}
    with pytest.raises(MemlabInputError, match=r"nope\.csv"):
        plan_study(config)
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,target\n" + "\n".join(f"{i},{i % 3},{i % 2}" for i in range(40)))
    config["datasets"] = {"mine": {"kind": "file", "path": str(csv)}}
    with pytest.raises(MemlabInputError, match=r"label.*target|target.*label"):
        plan_study(config)
    config["datasets"]["mine"]["label_column"] = "target"
    config["sizes"] = [10]
    study = plan_study(config)
    assert study.datasets["mine"].image_shape is None
    # A CNN cannot run on tabular data: skipped with a note, the rest of the study stands.
    assert not any(r.model.startswith("cnn") for r in study.runs)
    assert any("cnn" in n for n in study.notes)


def test_plan_resolves_fractions_and_expands_variants():
    config = full(smoke())
    config["sizes"] = [100, 0.5, 1.0]
    study = plan_study(config)
    assert study.datasets["digits"].sizes == (100, round(0.5 * 1347), 1347)
    assert {"mlp-w8", "mlp-w16", "cnn-w4", "knn-k1"} <= set(study.variants)
    knn_runs = {r.regime_name for r in study.runs if r.model.startswith("knn")}
    assert knn_runs == {"memory"}
    assert np.unique([r.path for r in study.runs]).size == len(study.runs)


def test_defaults_are_filled():
    config = full(
        {
            "datasets": {"d": {"kind": "digits"}},
            "sizes": [50],
            "models": {"m": {"kind": "mlp", "widths": [4]}},
            "regimes": {"memorize": {}},
        }
    )
    assert config["training"]["max_epochs"] == 200
    assert config["regimes"]["memorize"]["weight_decay"] == 0.0
    assert config["perturbations"]["severities"] == [1, 2, 3, 4, 5]
    assert config["models"]["m"]["depth"] == 2
    assert {k: config["training"][k] for k in ("beta1", "beta2", "eps")} == {
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
    }  # torch.optim.AdamW's


def test_adamw_settings_reach_the_regime_and_the_columns():
    """A regime's beta2 overrides training's; beta1 and eps keep training's (or the schema's)."""
    from memlab.plan.study import REGIME_COLUMNS

    config = smoke()
    config["training"]["eps"] = 1e-6
    config["regimes"]["memorize"]["beta2"] = 0.98
    study = plan_study(full(config))
    memorize, other = study.regimes["memorize"], study.regimes["regularized"]
    assert (memorize.beta1, memorize.beta2, memorize.eps) == (0.9, 0.98, 1e-6)
    assert (other.beta1, other.beta2, other.eps) == (0.9, 0.999, 1e-6)
    assert {"beta1", "beta2", "eps"} <= set(REGIME_COLUMNS)
    assert memorize.settings()["beta2"] == 0.98  # the train rule's params: a change reruns
    run = next(r for r in study.runs if r.regime is memorize)
    assert run.columns()["beta2"] == 0.98 and run.columns()["eps"] == 1e-6
    knn = next(r for r in study.runs if r.regime is None)
    assert knn.columns()["beta2"] == 0


def _perturbations(**keys):
    return lambda c: c["perturbations"].update(**keys)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            _perturbations(parameters={"contrast": [0.9, 0.8, 0.7, 0.6, 1.5]}),
            ["perturbations.parameters.contrast[4] = 1.5", "> 0 and <= 1"],
        ),
        (
            _perturbations(parameters={"impulse_noise": [0.1, 0.2, 0.3, 0.4, -0.1]}),
            ["perturbations.parameters.impulse_noise[4] = -0.1", ">= 0 and <= 1"],
        ),
        (
            _perturbations(parameters={"blur": [0.5, 1.0]}),
            ["perturbations.parameters.blur has 2 values; give exactly 5", "severity 1-5"],
        ),
        (
            _perturbations(parameters={"blur": [1, 2, 3, 4, 5, 6]}),
            ["perturbations.parameters.blur has 6 values; give exactly 5"],
        ),
        (
            _perturbations(parameters={"gausian_noise": [0.1] * 5}),
            ["unknown key 'gausian_noise'", "Did you mean 'gaussian_noise'"],
        ),
        (_perturbations(parameters={"shot_noise": 60}), ["shot_noise = 60", "an array"]),
        (_perturbations(baseline_regime="../x"), ["perturbations.baseline_regime", "letter"]),
    ],
)
def test_severity_table_errors_name_the_key(edit, expected):
    test_schema_errors_name_the_key(edit, expected)


def test_perturbation_tables_and_the_baseline_are_optional_and_shot_noise_opt_in():
    config = full(smoke())
    assert set(config["perturbations"]) == {"names", "severities"}  # as before: no rerun
    default = full(
        {
            "datasets": {"d": {"kind": "digits"}},
            "sizes": [50],
            "models": {"m": {"kind": "mlp", "widths": [4]}},
            "regimes": {"memorize": {}},
        }
    )
    assert "shot_noise" not in default["perturbations"]["names"]
    config = smoke()
    config["perturbations"].update(
        names=["shot_noise"],
        parameters={"shot_noise": [60, 25, 12, 5, 3], "contrast": [1, 0.5, 0.4, 0.3, 0.2]},
        baseline="knn-k1",
    )
    assert plan_study(full(config)).runs


def _modular(**mlp_tok) -> dict:
    config = smoke()
    config["datasets"]["modular"] = {
        "kind": "modular_addition",
        "p": 7,
        "grid": {"sizes": [20], "models": ["mlp", "mlp_tok", "knn"]},
    }
    config["models"]["mlp_tok"] = {"kind": "mlp", "depth": 1, "widths": [16], **mlp_tok}
    config["datasets"]["digits"]["grid"] = {"models": ["mlp", "cnn", "knn"]}
    return config


def test_token_embedding_plans_on_token_data():
    study = plan_study(full(_modular(embedding=8)))
    assert study.datasets["modular"].token_shape == (2, 7)
    assert study.datasets["digits"].token_shape is None
    tok = [r for r in study.runs if r.variant.name == "mlp_tok"]
    assert tok and {r.dataset for r in tok} == {"modular"}
    assert {r.model for r in tok} == {"mlp_tok-w16-e8"} and tok[0].columns()["embedding"] == 8
    plain = next(r for r in study.runs if r.model == "mlp-w8")
    assert plain.columns()["embedding"] == 0 and "embedding" not in plain.variant.spec()


def test_token_embedding_on_data_without_tokens_is_an_error_before_any_job():
    config = _modular(embedding=8)
    del config["datasets"]["digits"]["grid"]  # every model on digits, mlp_tok too
    with pytest.raises(MemlabInputError) as err:
        plan_study(full(config))
    message = str(err.value)
    assert "\n" not in message
    for text in ("mlp_tok-w16-e8", "embedding", "'digits'", "datasets.digits.grid.models"):
        assert text in message, message
    plan_study(full(_modular(embedding=0)))  # no embedding: a plain MLP runs anywhere
