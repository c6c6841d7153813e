"""Which training examples are memorized or mislabeled: every method's per-example evidence on
one model bank, side by side, and each method scored against the injected label flips.

Per run and pool example (``evidence.parquet``, columns in ``EVIDENCE_COLUMNS``, documented in
``config/README.md``):

- Feldman–Zhang memorization ``P[correct | in] - P[correct | out]``
(``memlab.analysis.memorization``),
  with its 95% interval (``memlab.plan.power``);
- membership vulnerability per example: for LiRA (online, per-example variance; Carlini et al.
  2022) and RMIA (online; Zarifzadeh et al. 2024), the ROC AUC of the attack's scores over the
  bank's replicas as targets, members against non-members of that example: 1.0 when every
  replica that trained on it scores above every one that did not, 0.5 when the attack cannot
  tell (the per-example view of the attacks in ``membership.csv``);
- mean loss over the replicas that trained on the example and over those that did not;
- forgetting events, cartography confidence, variability and correctness, and the cheap
  memorization estimators cumulative sample loss, final loss and learning time
  (``memlab.engine.dynamics``), loss sensitivity and curvature
  (``memlab.engine.input_gradients``), each the mean over the replicas that trained on the
  example (scored against the Feldman–Zhang scores in ``memlab.analysis.estimators``);
- confident learning (Northcutt et al. 2021, the ``cleanlab`` package): the label-quality score
  ``cleanlab.rank.get_label_quality_scores`` (self-confidence) and the issue flag
  ``cleanlab.filter.find_label_issues`` (prune by noise rate), both computed from out-of-sample
  probabilities: per example the mean probability vector of the replicas that did not train on
  it (what Northcutt et al. get by cross-validation);
- k-NN label disagreement: 1 - the share of the example's k nearest pool examples with its given
  label (``memlab.analysis.neighbours``);
- ``canary`` and ``canary_repetitions``: whether the row is an inserted canary
  (``memlab.data.canaries``; its scores are its Feldman–Zhang, LiRA and RMIA views) and its
  repetitions (<NA> for a real example). Canary rows are left out of ``detectors.csv`` and of
  confident learning (their labels are random by design, not flips).

``detectors.csv`` scores each method as a detector of the flipped labels (higher = flipped): ROC
AUC and average precision (scikit-learn) and precision among the examples ranked in the top
"number of flips" (ties at the cut shared in proportion, so a binary flag gets its expected
precision). Where a method is undefined for a run (no training history, an example with no
out-of-sample replica, no flipped label) its row has no numbers and its ``status`` says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from memlab.analysis.bank import real_examples
from memlab.engine import dynamics
from memlab.plan.power import PowerGates
from memlab.plan.study import RUN_COLUMNS, RUN_KEYS, with_run

EVIDENCE_COLUMNS = [
    *RUN_COLUMNS,
    "index",
    "label",
    "true_label",
    "flipped",
    "n_in",
    "n_out",
    "memorization",
    "memorization_low",
    "memorization_high",
    "lira_vulnerability",
    "rmia_vulnerability",
    "loss_in",
    "loss_out",
    "forgetting_events",
    "confidence",
    "variability",
    "correctness",
    "cumulative_loss",
    "final_loss",
    "learning_time",
    "loss_sensitivity",
    "curvature",
    "cumulative_sensitivity",
    "tracin_self_influence",
    "label_quality",
    "label_issue",
    "knn_disagreement",
    "canary",
    "canary_repetitions",
]
DETECTOR_COLUMNS = [
    *RUN_COLUMNS,
    "method",
    "roc_auc",
    "average_precision",
    "precision_at_flips",
    "flips",
    "examples",
    "replicas",
    "status",
]
# Each detector: (evidence column, sign): sign * column is higher for a flipped label.
DETECTORS: dict[str, tuple[str, float]] = {
    "memorization": ("memorization", 1.0),
    "lira_vulnerability": ("lira_vulnerability", 1.0),
    "rmia_vulnerability": ("rmia_vulnerability", 1.0),
    "loss_out": ("loss_out", 1.0),
    "forgetting_events": ("forgetting_events", 1.0),
    "cartography_confidence": ("confidence", -1.0),
    "cartography_correctness": ("correctness", -1.0),
    "cumulative_loss": ("cumulative_loss", 1.0),
    "final_loss": ("final_loss", 1.0),
    "learning_time": ("learning_time", 1.0),
    "loss_sensitivity": ("loss_sensitivity", 1.0),
    "curvature": ("curvature", 1.0),
    "cumulative_sensitivity": ("cumulative_sensitivity", 1.0),
    "tracin_self_influence": ("tracin_self_influence", 1.0),
    "cleanlab_label_quality": ("label_quality", -1.0),
    "cleanlab_label_issue": ("label_issue", 1.0),
    "knn_disagreement": ("knn_disagreement", 1.0),
}


def per_example_auc(scores: np.ndarray, members: np.ndarray) -> np.ndarray:
    """[n]: per example (column), the ROC AUC of ``scores`` [R, n] for members against
    non-members among the R replicas (Mann-Whitney, ties half); NaN without both."""
    from scipy.stats import rankdata

    members = np.asarray(members, bool)
    ranks = rankdata(np.asarray(scores, np.float64), axis=0)
    n_pos, n_neg = members.sum(0), (~members).sum(0)
    u = (ranks * members).sum(0) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[n]: the mean over replicas (rows) where ``mask``; NaN where none (or values NaN)."""
    values = np.asarray(values, np.float64)
    count = mask.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(mask, values, 0.0).sum(0) / count, np.nan)


def out_of_sample_proba(a: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """[n, C]: each pool example's mean probability vector over the replicas that did not train
    on it; None if some example has no such replica."""
    count = np.asarray(a["pool_out_count"])
    if (count < 1).any():
        return None
    proba = np.asarray(a["pool_out_proba_sum"], np.float64) / count[:, None]
    return proba / proba.sum(1, keepdims=True)  # exact rows of 1 (cleanlab checks)


def confident_learning(labels: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's label-quality score (self-confidence) and issue flag per example."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, np.int64)
    quality = get_label_quality_scores(labels, proba)
    issue = find_label_issues(labels, proba, n_jobs=1)
    return quality, issue


DYNAMICS_COLUMNS = ("forgetting_events", "confidence", "variability", "correctness",
                    "cumulative_loss", "final_loss", "learning_time")  # fmt: skip


def _training_dynamics(a: Mapping[str, np.ndarray], members: np.ndarray) -> dict[str, np.ndarray]:
    """Forgetting, cartography and the cheap estimators' means over the replicas that trained on
    each example (NaN where the run has no history: k-NN, closed-form solves)."""
    n = members.shape[1]
    if "dyn_epochs" not in a:
        return dict.fromkeys(DYNAMICS_COLUMNS, np.full(n, np.nan))
    seen = np.asarray(a["dyn_epochs"]) > 0
    return {
        "forgetting_events": _masked_mean(dynamics.forgetting_events(a), seen),
        "confidence": _masked_mean(a["dyn_confidence"], seen),
        "variability": _masked_mean(a["dyn_variability"], seen),
        "correctness": _masked_mean(dynamics.correctness(a), seen),
        "cumulative_loss": _masked_mean(dynamics.cumulative_loss(a), seen),
        "final_loss": _masked_mean(a["dyn_final_loss"], seen),
        "learning_time": _masked_mean(dynamics.learning_time(a), seen),
    }


def _input_gradients(a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Loss sensitivity and curvature (memlab.engine.input_gradients), means over the replicas
    that trained on each example; NaN where not computed."""
    trained = np.asarray(a["train_mask"], bool)
    nan = np.full(trained.shape[1], np.nan)
    out = {
        column: _masked_mean(a[name], trained) if name in a else nan
        for column, name in (("loss_sensitivity", "pool_sensitivity"),
                             ("curvature", "pool_curvature"))
    }  # fmt: skip
    for column, name in (("cumulative_sensitivity", "dyn_input_gradient_sq_sum"),
                         ("tracin_self_influence", "dyn_tracin")):  # fmt: skip
        if name in a:
            values = dynamics.gradient_sum(a, name)
            out[column] = _masked_mean(values, ~np.isnan(values))
        else:
            out[column] = nan
    return out


def run_evidence(
    a: Mapping[str, np.ndarray],
    true_label: np.ndarray,
    memorization: pd.DataFrame | None,
    agreement: np.ndarray | None,
) -> pd.DataFrame:
    """The evidence table of one run's bank ``a`` (without the run's columns).

    ``memorization``: the run's rows of ``memorization.parquet`` (None: the design gives no
    scores); ``agreement``: each pool example's k-NN label agreement (None: not computed).
    """
    from memlab.analysis.membership import lira_scores, rmia_scores

    members = np.asarray(a["train_mask"], bool)
    n = members.shape[1]
    nan = np.full(n, np.nan)
    real = real_examples(a)
    out: dict[str, Any] = {
        "index": np.arange(n),
        "label": np.asarray(a["pool_label"], np.int64),
        "true_label": np.asarray(true_label, np.int64),
        "flipped": np.asarray(a["flipped"], bool),
        "n_in": members.sum(0),
        "n_out": (~members).sum(0),
    }
    if memorization is not None and len(memorization):
        m = memorization.sort_values("example")
        out["memorization"] = m["score"].to_numpy(np.float64)
        for side in ("low", "high"):
            out[f"memorization_{side}"] = m[side].to_numpy(np.float64) if side in m else nan
    else:
        out |= dict.fromkeys(("memorization", "memorization_low", "memorization_high"), nan)
    if members.shape[0] >= 3:  # as membership.attack_scores: shadows besides the target
        lira = lira_scores(a["pool_confidence"], members, online=True, fixed_variance=False)
        out["lira_vulnerability"] = per_example_auc(lira, members)
        test_loss = a.get("test_loss")
        rmia = None
        if test_loss is not None and np.shape(test_loss)[1] > 0:
            rmia = rmia_scores(a["pool_loss"], members, test_loss, online=True)
        out["rmia_vulnerability"] = nan if rmia is None else per_example_auc(rmia, members)
    else:
        out["lira_vulnerability"] = out["rmia_vulnerability"] = nan
    out["loss_in"] = _masked_mean(a["pool_loss"], members)
    out["loss_out"] = _masked_mean(a["pool_loss"], ~members)
    out |= _training_dynamics(a, members)
    out |= _input_gradients(a)
    proba = out_of_sample_proba(a) if "pool_out_count" in a else None
    out["label_quality"], out["label_issue"] = nan.copy(), nan.copy()
    if proba is not None:
        # Real examples only: canaries' random labels would shift cleanlab's noise estimates.
        quality, issue = confident_learning(out["label"][real], proba[real])
        out["label_quality"][real], out["label_issue"][real] = quality, issue
    out["knn_disagreement"] = nan if agreement is None else 1.0 - np.asarray(agreement)
    out |= _canary_columns(a, real)
    return pd.DataFrame(out)


def _canary_columns(a: Mapping[str, np.ndarray], real: np.ndarray) -> dict[str, Any]:
    """Whether each pool row is a canary, and its repetitions (<NA> for a real example)."""
    reps = pd.array(np.full(len(real), pd.NA), dtype="Int64")
    if not real.all():
        canary = np.asarray(a["pool_canary"])
        reps[~real] = np.asarray(a["canary_repetitions"])[canary[~real]]
    return {"canary": ~real, "canary_repetitions": reps}


def precision_at_k(score: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Share of positives among the ``k`` highest scores; examples tied at the cut count in
    proportion (the expectation over a random order among them)."""
    order = np.sort(score)[::-1]
    cut = order[k - 1]
    above = score > cut
    tied = score == cut
    take = k - int(above.sum())
    return float((positive[above].sum() + take * positive[tied].mean()) / k)


def _why_undefined(method: str, column: np.ndarray, flips: int, n: int) -> str | None:
    if flips == 0:
        return "no flipped labels in this run"
    if flips == n:
        return "every label flipped"
    if np.isnan(column).all():
        return {
            "memorization": "no memorization scores (see memorization_summary.csv)",
            "lira_vulnerability": "LiRA needs 3 or more replicas",
            "rmia_vulnerability": "RMIA needs 3 or more replicas and a held-out set",
            "forgetting_events": "no training history (the model does not train by epochs)",
            "cartography_confidence": "no training history (the model does not train by epochs)",
            "cartography_correctness": "no training history (the model does not train by epochs)",
            "cumulative_loss": "no training history (the model does not train by epochs)",
            "final_loss": "no training history (the model does not train by epochs)",
            "learning_time": "no training history (the model does not train by epochs)",
            "loss_sensitivity": "no input gradients (estimators.input_gradients, or no network)",
            "curvature": "not computed (estimators.curvature_probes is 0, or no network)",
            "cumulative_sensitivity": "not computed (estimators.gradient_every 0, or not an MLP)",
            "tracin_self_influence": "not computed (estimators.gradient_every 0, or not an MLP)",
            "cleanlab_label_quality": "an example has no out-of-sample replica",
            "cleanlab_label_issue": "an example has no out-of-sample replica",
            "knn_disagreement": "label agreement not computed",
        }.get(method, "undefined")
    if np.isnan(column).any():
        return f"undefined for {int(np.isnan(column).sum())} of {n} examples"
    return None


def detector_scores(
    evidence: pd.DataFrame, replicas: int, underpowered: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per method: how well it finds the run's flipped labels (module doc), from a bank
    of ``replicas`` replicas; ``underpowered`` maps a method the power gates keep out to why
    (its row gets no numbers)."""
    underpowered = underpowered or {}
    from sklearn.metrics import average_precision_score, roc_auc_score

    flipped = evidence["flipped"].to_numpy(bool)
    flips, n = int(flipped.sum()), len(flipped)
    rows = []
    for method, (column, sign) in DETECTORS.items():
        score = sign * evidence[column].to_numpy(np.float64)
        why = _why_undefined(method, score, flips, n)
        if why is None and method in underpowered:
            why = f"underpowered: {underpowered[method]}"
        row = {"method": method, "flips": flips, "examples": n, "replicas": replicas}
        row["status"] = why or "ok"
        if why is None:
            row |= {
                "roc_auc": float(roc_auc_score(flipped, score)),
                "average_precision": float(average_precision_score(flipped, score)),
                "precision_at_flips": precision_at_k(score, flipped, flips),
            }
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=DETECTOR_COLUMNS[len(RUN_COLUMNS) :])


def _underpowered(
    gates: PowerGates, memorization: pd.DataFrame | None, evidence: pd.DataFrame, replicas: int
) -> dict[str, str]:
    """The methods of one run the power gates keep out, and why."""
    out = {}
    if memorization is not None and len(memorization):
        n_in, n_out = memorization["n_in"], memorization["n_out"]
        if not gates.scores_powered(n_in, n_out):
            share = float(evidence["n_in"].mean() / replicas)
            out["memorization"] = gates.scores_message(
                int(n_in.min()), int(n_out.min()), replicas, share
            )
    if not gates.attacks_powered(replicas):
        out["lira_vulnerability"] = out["rmia_vulnerability"] = gates.attacks_message(replicas)
    return out


def true_labels_from_splits(paths: Iterable[str]) -> Callable[[str], np.ndarray]:
    """``dataset -> pool labels before label noise``, read once per dataset from the split files
    at ``.../<dataset>/split.npz``."""
    from memlab.data.datasets import split_reader

    split_of = split_reader(paths)
    return lambda dataset: np.asarray(split_of(dataset).y_pool)


def evidence_tables(
    evaluations: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
    memorization: pd.DataFrame,
    true_labels: Callable[[str], np.ndarray],
    agreement: Callable[[Mapping[str, Any], np.ndarray], np.ndarray] | None = None,
    gates: PowerGates | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``evidence.parquet`` and ``detectors.csv`` of every run (``true_labels(dataset)``: the
    pool's labels before label noise; ``agreement`` as in ``analysis.memorization_tables``).
    ``gates`` (default ``PowerGates()``) keep underpowered memorization scores and attacks out of
    ``detectors.csv``'s numbers; ``evidence.parquet`` keeps every per-example value."""
    gates = gates or PowerGates()
    key = list(RUN_KEYS)  # never NaN, unlike some of RUN_COLUMNS
    by_run = {k: g for k, g in memorization.groupby(key, sort=False)}
    evidence, detectors = [], []
    for run, a in evaluations:
        mem = by_run.get(tuple(run[k] for k in key))
        agree = None if agreement is None else agreement(run, a["pool_label"])
        e = run_evidence(a, true_labels(run["dataset"]), mem, agree)
        evidence.append(with_run(e, run))
        r = len(a["replica"])
        real = e[~e["canary"]]  # the flips are among real examples: canaries are no detection task
        detectors.append(
            with_run(detector_scores(real, r, _underpowered(gates, mem, real, r)), run)
        )
    if not evidence:
        return pd.DataFrame(columns=EVIDENCE_COLUMNS), pd.DataFrame(columns=DETECTOR_COLUMNS)
    return (
        pd.concat(evidence, ignore_index=True)[EVIDENCE_COLUMNS],
        pd.concat(detectors, ignore_index=True).reindex(columns=DETECTOR_COLUMNS),
    )
