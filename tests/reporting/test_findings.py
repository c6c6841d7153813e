"""The findings: intervals across replicas, and each question answered from a hand-made study."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from conftest import run_columns

from memlab.ops import answers
from memlab.reporting.findings import (
    MIN_REPLICAS,
    Estimate,
    _uninformative,
    findings_metrics,
    mean_estimate,
    study_findings,
    welch_difference,
)
from memlab.reporting.report import findings_html, findings_text
from memlab.reporting.tables import StudyTables


def test_mean_interval_is_students_t_across_replicas_clipped_to_accuracies():
    # mean 0.9, sd 0.1, n 3: half width t(0.975, 2) * 0.1 / sqrt(3) = 4.3027 * 0.05774 = 0.2484
    est = mean_estimate(np.array([0.8, 0.9, 1.0]))
    assert est.value == pytest.approx(0.9)
    assert est.low == pytest.approx(0.9 - 0.24841, abs=1e-5) and est.high == 1.0
    assert est.n == 3
    diff = mean_estimate(np.array([-0.8, -0.9, -1.0]), clip=False)
    assert diff.low == -1.0 and diff.high == pytest.approx(-0.9 + 0.24841, abs=1e-5)


def test_one_replica_has_no_interval_and_identical_replicas_say_so():
    one = mean_estimate(np.array([1.0]))
    assert math.isnan(one.low) and one.pct() == "100.0% (1 replicas: no interval)"
    same = mean_estimate(np.array([1.0, 1.0, 1.0, 1.0]))
    assert same.pct() == "100.0% (the same in all 4 replicas)"
    assert mean_estimate(np.array([0.5, 0.7])).pct() == "60.0% [0.0, 100.0]"


def test_welch_difference_matches_the_textbook_interval():
    a, b = np.array([0.9, 0.8, 0.85, 0.95]), np.array([0.6, 0.7, 0.65, 0.5])
    est = welch_difference(a, b)
    se = math.sqrt(a.var(ddof=1) / 4 + b.var(ddof=1) / 4)
    # Welch-Satterthwaite degrees of freedom
    df = se**4 / ((a.var(ddof=1) / 4) ** 2 / 3 + (b.var(ddof=1) / 4) ** 2 / 3)
    from scipy import stats

    half = stats.t.ppf(0.975, df) * se
    assert est.value == pytest.approx(0.2625)
    assert (est.low, est.high) == pytest.approx((0.2625 - half, 0.2625 + half))
    assert est.pct(points=True) == "+26.3 points [12.9, 39.6]"


def _metrics(runs: dict[tuple[float, str], dict[str, list[float]]]) -> pd.DataFrame:
    """Tidy metrics of MLP runs: (noise, regime) -> split -> per-replica accuracies."""
    settings = {"memorize": {}, "weight_decay": {"weight_decay": 2.0}, "dropout": {"dropout": 0.5}}
    rows = []
    for (noise, regime), splits in runs.items():
        cols = run_columns(label_noise=noise, regime=regime, size=100, **settings[regime])
        for split, values in splits.items():
            pert, sev = ("blur", 5) if split == "perturbed" else ("none", 0)
            for replica, v in enumerate(values):
                rows.append(
                    cols
                    | dict(replica=replica, split=split, perturbation=pert, severity=sev)
                    | dict(metric="accuracy", value=v)
                )
    return pd.DataFrame(rows)


STUDY = {
    (0.0, "memorize"): {"train": [1, 1, 1], "heldout": [0.9, 0.92, 0.91], "perturbed": [0.5] * 3},
    (0.0, "weight_decay"): {"train": [0.95] * 3, "heldout": [0.88, 0.9, 0.89]},
    (0.2, "memorize"): {
        "train": [1, 1, 1],
        "train_flipped": [1.0, 0.98, 0.99],
        "heldout": [0.7, 0.72, 0.71],
        "perturbed": [0.4, 0.42, 0.41],
    },
    (0.2, "weight_decay"): {"train_flipped": [0.1, 0.12, 0.11], "heldout": [0.85, 0.86, 0.84]},
    (0.2, "dropout"): {"train_flipped": [0.5, 0.6, 0.55], "heldout": [0.8, 0.8, 0.8]},
}


def test_each_question_is_answered_from_the_right_runs():
    found = {f.key: f for f in study_findings(StudyTables(_metrics(STUDY), pd.DataFrame()))}
    memorizes = found["memorizes"]
    assert (
        "the MLP of width 8 (no regularization) reproduces 99.0% [96.5, 100.0] of the flipped"
        in memorizes.answer
    )
    assert memorizes.numbers["flipped_fitted"].n == 3
    # Noisy vs clean labels, same model and regime: 0.71 - 0.91 = -20 points.
    cost = found["heldout_cost"].numbers["accuracy_change"]
    assert cost.value == pytest.approx(-0.20) and cost.high < 0
    # Paired across replicas on the noisy run: 0.41 - 0.71 = -30 points.
    assert found["perturbed_cost"].numbers["blur_change"].value == pytest.approx(-0.30)
    # Weight decay fits fewest flipped labels (11%, not dropout's 55%); on clean labels it costs
    # 0.89 - 0.91 = -2 points.
    reg = found["regularizer"]
    assert reg.answer.startswith("The regime weight_decay (weight decay 2) does most")
    assert reg.numbers["flipped_fitted"].value == pytest.approx(0.11)
    assert reg.numbers["clean_heldout_change"].value == pytest.approx(-0.02)
    # No per-example tables: the two per-example questions say why instead of a number.
    assert found["which_examples"].answer is None and found["leakage"].answer is None
    page = findings_html(list(found.values()))
    assert page.count('<li><div class="finding">') == 4 and "What this study cannot answer" in page
    assert set(findings_metrics(list(found.values()))) == {
        "memorizes",
        "heldout_cost",
        "perturbed_cost",
        "regularizer",
    }


def test_a_regularizer_that_fits_more_noise_is_not_said_to_prevent_it():
    study = {k: v for k, v in STUDY.items() if k[1] != "weight_decay"}
    study[(0.2, "dropout")] = {"train_flipped": [1.0, 1.0, 1.0], "heldout": [0.7] * 3}
    found = {f.key: f for f in study_findings(StudyTables(_metrics(study), pd.DataFrame()))}
    assert found["regularizer"].answer is None
    assert "fits fewer flipped labels" in found["regularizer"].why


def test_clean_labels_only_cannot_answer_the_memorization_questions():
    clean = {k: v for k, v in STUDY.items() if k[0] == 0.0}
    found = {f.key: f for f in study_findings(StudyTables(_metrics(clean), pd.DataFrame()))}
    assert "label noise" in found["memorizes"].why
    assert found["perturbed_cost"].answer  # perturbations need no noise
    assert Estimate(0.5, 0.4, 0.6, 10, "examples").json() == {
        "value": 0.5,
        "low": 0.4,
        "high": 0.6,
        "n": 10,
    }


def test_the_memorized_examples_are_those_of_the_memorizing_network_when_powered():
    metrics = _metrics(STUDY)
    base = run_columns(label_noise=0.2, regime="memorize", size=100)
    knn = base | {"model": "knn-k1", "kind": "knn", "regime": "memory", "k": 1}
    scores = dict(powered=True, status="ok", replicas_trained=16, auc_flipped=0.9)
    summary = pd.DataFrame(
        [
            base | scores | dict(replicas=16, above_half=20, above_half_flipped=15),
            knn | scores | dict(replicas=32, above_half=40, above_half_flipped=10),
        ]
    )
    found = {
        f.key: f
        for f in study_findings(StudyTables(metrics, pd.DataFrame(), memorization_summary=summary))
    }
    answer = found["which_examples"]
    # The memorizing MLP, not the better-replicated 1-NN; 15 of 20 flipped, Wilson interval.
    assert answer.answer.startswith("The MLP of width 8 (no regularization) memorizes 20 training")
    share = answer.numbers["memorized_flipped_share"]
    assert share.value == 0.75 and share.n == 20 and 0.5 < share.low < 0.75 < share.high < 0.95
    # Clean labels only (no memorizer): the unregularized network, not the better-replicated
    # 1-NN, and not the regularized network.
    clean = {k: v for k, v in STUDY.items() if k[0] == 0.0}
    wd = run_columns(label_noise=0.0, regime="weight_decay", size=100, weight_decay=2.0)
    rows = [
        (base | {"label_noise": 0.0}) | scores | dict(replicas=16, above_half=5),
        (knn | {"label_noise": 0.0}) | scores | dict(replicas=32, above_half=9),
        wd | scores | dict(replicas=64, above_half=1),
    ]
    tables = StudyTables(_metrics(clean), pd.DataFrame(), memorization_summary=pd.DataFrame(rows))
    found = {f.key: f for f in study_findings(tables)}
    assert found["which_examples"].answer.startswith("The MLP of width 8 (no regularization) memo")


def _long_tail(regime: str, rows: list[tuple[int, float, float]], n: int = 3) -> list[dict]:
    settings = {"weight_decay": 2.0} if regime == "weight_decay" else {}
    cols = run_columns(label_noise=0.0, regime=regime, size=100, **settings)
    keys = ("train_frequency", "accuracy", "accuracy_se")
    return [cols | dict(zip(keys, r, strict=True)) | {"n_test": 20, "n_replicas": n} for r in rows]


def test_where_memorizing_pays_compares_singletons_with_the_head_and_the_regularizer():
    tail = pd.DataFrame(
        _long_tail("memorize", [(0, 0.5, 0.02), (1, 0.8, 0.01), (16, 1.0, 0.0)])
        + _long_tail("weight_decay", [(1, 0.6, 0.03), (16, 0.98, 0.01)])
    )
    clean = {k: v for k, v in STUDY.items() if k[0] == 0.0}
    tables = StudyTables(_metrics(clean), pd.DataFrame(), long_tail=tail)
    found = {f.key: f for f in study_findings(tables)}["where_it_pays"]
    num = found.numbers
    # t(0.975, 2) = 4.3027: 0.8 +- 0.043
    assert (num["tail_accuracy"].low, num["tail_accuracy"].high) == pytest.approx(
        (0.757, 0.843), abs=1e-3
    )
    assert num["head_accuracy"].value == 1.0 and num["unseen_accuracy"].value == 0.5
    # Welch from the means and standard errors: 0.6 - 0.8, se sqrt(0.03^2 + 0.01^2).
    va, vb = 0.03**2, 0.01**2
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    from scipy import stats

    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    tail_cost = num["regularizer_tail_change"]
    assert tail_cost.value == pytest.approx(-0.2)
    assert (tail_cost.low, tail_cost.high) == pytest.approx((-0.2 - half, -0.2 + half))
    assert num["regularizer_head_change"].value == pytest.approx(-0.02)
    assert "seen once in training" in found.answer and "weight_decay" in found.answer
    # One replica per run: no intervals, so no answer.
    one = pd.DataFrame(_long_tail("memorize", [(1, 0.8, math.nan), (16, 1.0, math.nan)], n=1))
    tables = StudyTables(_metrics(clean), pd.DataFrame(), long_tail=one)
    assert {f.key: f for f in study_findings(tables)}["where_it_pays"].answer is None


def test_influence_and_removal_findings_only_from_powered_runs():
    cols = run_columns(label_noise=0.0, regime="memorize", size=100)
    summary = dict(min_memorization=0.25, min_influence=0.15, n_pairs=40, n_influenced=30)
    summary |= dict(n_test=300, expected_false_pairs=0.5, n_replicas=1000, status="ok")
    summary |= dict(same_subpopulation_share=0.75, same_subpopulation_low=0.6)
    summary |= dict(same_subpopulation_high=0.86, powered=True)
    removal = [
        cols
        | dict(removed=arm, n_removed=k, split=split, accuracy_change=d)
        | dict(accuracy_change_se=0.01, n_replicas=4, n_test=n, top_k_in_pairs=min(k, 10))
        for arm, split, d, n in (
            ("top_memorized", "heldout", -0.03, 300),
            ("top_memorized", "influenced", -0.4, 25),
            ("random", "heldout", -0.005, 300),
            ("random", "influenced", -0.05, 25),
        )
        for k in (10, 20)
    ]
    tables = StudyTables(
        _metrics(STUDY),
        pd.DataFrame(),
        influence_summary=pd.DataFrame([cols | summary]),
        removal=pd.DataFrame(removal),
    )
    found = {f.key: f for f in study_findings(tables)}
    infl = found["influence"]
    assert "has 40 high-influence pairs" in infl.answer and "expects 0.5" in infl.answer
    assert infl.numbers["influenced_share"].value == pytest.approx(0.1)
    assert infl.numbers["same_subpopulation_share"].low == 0.6
    rem = found["removal"]
    # k = 10: the largest k whose top k are all in pairs (20 has only 10 of 20).
    assert "without its 10 most memorized" in rem.answer
    top = rem.numbers["top_memorized_influenced_change"]
    assert top.value == pytest.approx(-0.4) and top.n == 4
    assert top.high - top.value == pytest.approx(stats_t(3) * 0.01)
    # Underpowered pairs: a line saying why, and no removal stage: no question at all.
    weak = pd.DataFrame([cols | summary | {"powered": False, "status": "underpowered: few"}])
    found = {f.key: f for f in study_findings(StudyTables(_metrics(STUDY), pd.DataFrame(),
                                                          influence_summary=weak))}  # fmt: skip
    assert found["influence"].answer is None and found["influence"].why == "few"
    assert "removal" not in found


def stats_t(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def test_few_shot_names_the_best_model_at_the_fewest_and_most_shots_with_its_margin():
    rows = []
    for model, kind, accs in (("knn-k1", "knn", (0.6, 0.9)), ("m-w8", "mlp", (0.5, 0.92))):
        for shots, acc in zip((1, 10), accs, strict=True):
            cols = run_columns(shots=shots, size=10 * shots, model=model, kind=kind)
            cols |= {"k": 1, "regime": "memory"} if kind == "knn" else {}
            rows.append(cols | dict(accuracy=acc, accuracy_se=0.01, n_replicas=8))
    tables = StudyTables(_metrics(STUDY), pd.DataFrame(), few_shot=pd.DataFrame(rows))
    found = {f.key: f for f in study_findings(tables)}["few_shot"]
    assert found.answer.startswith("At 1 per class 1-NN (no training)")
    assert "at 10 per class the MLP of width 8 (no regularization)" in found.answer
    margin = found.numbers["margin_at_1_shots"]
    assert margin.value == pytest.approx(0.1) and margin.low > 0
    assert found.numbers["best_at_10_shots"].value == pytest.approx(0.92)


def _undertrained(noise: float, regime: str, flags: list[int]) -> pd.DataFrame:
    """The metrics rows that say which replicas of a run stopped at max_epochs while improving."""
    cols = run_columns(label_noise=noise, regime=regime, size=100)
    keys = dict(split="train", perturbation="none", severity=0, metric="undertrained")
    return pd.DataFrame([cols | keys | dict(replica=r, value=v) for r, v in enumerate(flags)])


def test_an_answer_from_under_trained_runs_is_held_back_with_its_reason_and_fix():
    # One of the memorizing network's 3 replicas hit max_epochs while its loss still fell: every
    # answer that rests on it is held back, saying why and what to change; the others stand.
    metrics = pd.concat([_metrics(STUDY), _undertrained(0.2, "memorize", [0, 1, 0])])
    found = {f.key: f for f in study_findings(StudyTables(metrics, pd.DataFrame()))}
    for key in ("memorizes", "heldout_cost", "perturbed_cost", "regularizer"):
        f = found[key]
        assert f.answer is None and f.held_back, key
        assert "is under-trained: 1 of 3 replicas stopped at max_epochs=" in f.why, f.why
        assert (
            "Raise training.max_epochs (or the regime's max_epochs) in the config (e.g. to "
            in f.why
        )
        assert "./run.sh study" in f.why
    assert findings_metrics(list(found.values())) == {}
    page = findings_html(list(found.values()))
    assert "Does the model memorize? Held back: The MLP of width 8" in page
    text = findings_text(list(found.values()))
    assert "Held back: Does the model memorize? The MLP of width 8 (no regularization)" in text
    # Fully trained replicas (all flags 0) change nothing.
    metrics = pd.concat([_metrics(STUDY), _undertrained(0.2, "memorize", [0, 0, 0])])
    assert all(f.answer for f in study_findings(StudyTables(metrics, pd.DataFrame()))[:4])


def test_too_few_replicas_or_too_wide_an_interval_is_held_back_with_its_reason():
    # 2 replicas: below MIN_REPLICAS, whatever the interval says.
    two = {k: {s: v[:2] for s, v in splits.items()} for k, splits in STUDY.items()}
    found = {f.key: f for f in study_findings(StudyTables(_metrics(two), pd.DataFrame()))}
    memorizes = found["memorizes"]
    assert memorizes.answer is None and memorizes.held_back
    assert f"rest on 2 replicas per run, fewer than the {MIN_REPLICAS}" in memorizes.why
    assert f"Set replicas: {MIN_REPLICAS} (or more) in the config" in memorizes.why
    # 3 replicas that disagree: 0.5 +- t(0.975, 2) * 0.4 / sqrt(3) = 0.5 +- 0.99, clipped to
    # [0, 1]: wider than MAX_WIDTH, held back; the other answers stand.
    wide = dict(STUDY)
    wide[(0.2, "memorize")] = STUDY[(0.2, "memorize")] | {"train_flipped": [0.1, 0.9, 0.5]}
    found = {f.key: f for f in study_findings(StudyTables(_metrics(wide), pd.DataFrame()))}
    memorizes = found["memorizes"]
    assert memorizes.answer is None and memorizes.held_back
    assert "Its 95% interval [0.0, 100.0] (3 replicas) spans more than 50 percentage" in (
        memorizes.why
    )
    assert "Raise replicas in the config" in memorizes.why
    assert found["perturbed_cost"].answer and not found["perturbed_cost"].held_back
    # A narrow interval from enough replicas passes; the rule's edges.
    assert _uninformative(Estimate(0.5, 0.3, 0.7, 3)) is None
    assert _uninformative(Estimate(0.5, 0.2, 0.75, 3)) is not None
    assert _uninformative(Estimate(0.5, 0.2, 0.75, 200, "examples")).endswith("./run.sh study")


def test_answers_prints_the_findings_and_the_page_to_open(tmp_path, capsys):
    found = study_findings(StudyTables(_metrics(STUDY), pd.DataFrame()))
    findings = tmp_path / "results" / "findings.txt"
    findings.parent.mkdir()
    findings.write_text(findings_text(found))
    assert answers.main([str(findings), "--configfile", "config/smoke.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("1. Does the model memorize? Unregularized networks memorize: the ")
    assert re.match(r"4\. Which regularizer prevents it.*\[-?\d+\.\d, -?\d+\.\d\]", out[4])
    assert out[-1].startswith(f"memlab: open {tmp_path}/results/report/summary.html")
    # A dry run made no findings; a missing file says so (and is no error: the study ran).
    assert answers.main([str(findings), "-n"]) == 0 and capsys.readouterr().out == ""
    assert answers.main([str(tmp_path / "none.txt")]) == 0
    assert "is missing" in capsys.readouterr().err


def test_every_finding_figure_is_a_registered_figure_of_a_finding():
    import inspect

    from memlab.plan.registry import FIGURES, FINDING_FIGURES
    from memlab.reporting import findings, sequence_findings

    source = inspect.getsource(findings) + inspect.getsource(sequence_findings)
    keys = set(re.findall(r'Finding\(\s*"(\w+)"', source))
    assert set(FINDING_FIGURES) == keys
    assert {n for names in FINDING_FIGURES.values() for n in names} <= {f.name for f in FIGURES}


def _estimator_rows(regime: str, values: dict[tuple[str, str], float], **settings) -> list[dict]:
    cols = run_columns(label_noise=0.2, regime=regime, size=100, **settings)
    return [
        cols
        | dict(method=m, scope=s, spearman=v, spearman_low=v - 0.05, spearman_high=v + 0.05)
        | dict(n_memorized=40, n_examples=300, replicas=4 if s == "single" else 32)
        | dict(relative_cost=1.0, status="ok")
        for (m, s), v in values.items()
    ]


def test_the_best_estimator_is_named_for_the_memorizing_network_with_its_interval():
    rows = _estimator_rows(
        "memorize",
        {("cumulative_loss", "single"): 0.7, ("learning_time", "single"): 0.4,
         ("cumulative_loss", "averaged"): 0.8, ("rmia_vulnerability", "averaged"): 0.85},
    ) + _estimator_rows(
        "weight_decay", {("learning_time", "single"): 0.9}, weight_decay=2.0
    )  # fmt: skip
    tables = StudyTables(_metrics(STUDY), pd.DataFrame(), estimators=pd.DataFrame(rows))
    found = {f.key: f for f in study_findings(tables)}["estimators"]
    # The memorizer's rows (not the regularized run's higher learning time), best single first.
    assert found.answer.startswith(
        "From one trained model, the cumulative sample loss agrees best with the Feldman–Zhang "
        "scores of the MLP of width 8 (no regularization) (Spearman 0.70 [0.65, 0.75], 300 "
        "examples, 40 of them memorized"
    )
    assert "the learning time least (0.40 [0.35, 0.45])" in found.answer
    assert "averaged over the replicas, RMIA vulnerability does best (0.85" in found.answer
    assert set(found.numbers) == {"single_cumulative_loss_spearman",
                                  "averaged_rmia_vulnerability_spearman"}  # fmt: skip
    # Not asked without the table.
    keys = {f.key for f in study_findings(StudyTables(_metrics(STUDY), pd.DataFrame()))}
    assert "estimators" not in keys


def test_bits_stored_are_quoted_per_parameter_with_t_intervals_and_wide_ones_held_back():
    def row(width: int, params: int, bits: float, se: float, replicas: int = 4) -> dict:
        cols = run_columns(label_noise=0.0, regime="memorize", size=1000, width=width)
        return cols | dict(model=f"mlp-w{width}", parameters=params, train_size=1000,
                           label_bits=3322.0, bits_stored=bits, bits_stored_se=se,
                           replicas=replicas, bits_per_parameter=bits / params,
                           bits_per_parameter_se=se / params, is_max=True)  # fmt: skip

    table = pd.DataFrame([row(8, 610, 1200.0, 30.0), row(32, 2410, 3000.0, 60.0)])
    tables = StudyTables(_metrics(STUDY), pd.DataFrame(), capacity_bits=table)
    found = {f.key: f for f in study_findings(tables)}["bits"]
    half = stats_t(3) * 30.0 / 610
    per = found.numbers["mlp-w8_memorize_bits_per_parameter"]
    assert per.value == pytest.approx(1200 / 610) and per.high - per.value == pytest.approx(half)
    assert "the MLP of width 8 (no regularization) stores 1200 bits" in found.answer
    assert "1.97 [" in found.answer and "(610 parameters, 4 replicas)" in found.answer
    assert "MLP of width 32" in found.answer and "3.6 bits per parameter" in found.answer
    # An interval wider than the value says nothing: held back with the fix.
    wide = pd.DataFrame([row(8, 610, 100.0, 80.0)])
    found = {f.key: f for f in study_findings(StudyTables(_metrics(STUDY), pd.DataFrame(),
                                                          capacity_bits=wide))}["bits"]  # fmt: skip
    assert found.held_back and "wider than the value" in found.why


def test_bits_quote_canary_exposure_by_repetitions_for_the_widest_network():
    def rows(regime: str, width: int, values: list[float], **settings) -> list[dict]:
        cols = run_columns(label_noise=0.1, regime=regime, size=100, width=width, **settings)
        cols["model"] = f"mlp-w{width}"
        return [
            cols | dict(repetitions=r, method=m, exposure=v + (m == "extrapolated"),
                        exposure_se=0.1, n_canaries=16, n_references=4096, replicas=8)
            for r, v in zip([0, 1, 4, 16], values, strict=True)
            for m in ("rank", "extrapolated")
        ]  # fmt: skip

    table = pd.DataFrame(
        rows("memorize", 64, [1.5, 6.0, 7.0, 8.0])
        + rows("weight_decay", 64, [1.4, 4.0, 6.0, 9.0], weight_decay=2.0)
        + rows("memorize", 8, [1.0, 1.0, 1.0, 1.0])  # narrower: not quoted
    )
    tables = StudyTables(_metrics(STUDY), pd.DataFrame(), exposure=table)
    found = {f.key: f for f in study_findings(tables)}["bits"]
    half = stats_t(15) * 0.1
    assert "the MLP of width 64 (no regularization) 1.5 [" in found.answer
    assert "6.0 / 7.0 / 8.0" not in found.answer  # every level has its interval
    assert (
        f"8.0 [{8 - half:.1f}, {8 + half:.1f}] bits at 0 / 1 / 4 / 16 repetitions" in found.answer
    )
    assert "(weight decay 2) 1.4 [" in found.answer and "width 8" not in found.answer
    est = found.numbers["exposure_mlp-w64_weight_decay_16"]
    assert est.value == 9.0 and est.n == 16 and est.high - est.value == pytest.approx(half)
    assert "among 4096 never-seen references" in found.answer  # the rank method, not extrapolated
