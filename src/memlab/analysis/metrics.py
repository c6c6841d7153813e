"""Tidy tables from the per-run metrics: one row per observation, ready to pivot.

Columns of ``metrics``: the run's coordinates and settings (``memlab.plan.study.RUN_COLUMNS``), then
``replica``, ``split``, ``perturbation``, ``severity``, ``metric``, ``value``. Derived tables: the
generalization gap (train minus held-out accuracy per replica), robustness (accuracy and its drop
from clean per perturbation and severity) and a summary (mean and standard error over replicas).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from memlab.analysis.bank import real_examples
from memlab.data.long_tail import frequency_bucket
from memlab.plan.kinds import MODEL_KINDS
from memlab.plan.power import PowerGates
from memlab.plan.study import RUN_COLUMNS, RUN_KEYS, STOP_REASONS, with_run

KEYS = [*RUN_COLUMNS, "replica"]
# Columns of the per-example tables, so that a study without such runs still writes a header.
MEMORIZATION_COLUMNS = [
    *RUN_COLUMNS,
    "example",
    "score",
    "se",
    "low",
    "high",
    "p_in",
    "p_out",
    "n_in",
    "n_out",
    "flipped",
    "label",
    "predicted_when_out",
    "agreement",
]
MEMBERSHIP_COLUMNS = [
    *RUN_COLUMNS,
    "attack",
    "auc",
    "advantage",
    "members",
    "non_members",
    "tpr_at_0.01_fpr",
    "tpr_at_0.001_fpr",
    "powered",
    "status",
]
ROC_COLUMNS = [*RUN_COLUMNS, "attack", "fpr", "tpr"]
MEMORIZATION_SUMMARY_COLUMNS = [
    *RUN_COLUMNS,
    "replicas",
    "replicas_trained",
    "replicas_fit",
    "replicas_undertrained",
    "train_accuracy_mean",
    "train_accuracy_min",
    *(f"stopped_{reason}" for reason in STOP_REASONS),
    "min_n_in",
    "min_n_out",
    "powered",
    "status",
    "mean_score",
    "mean_score_flipped",
    "mean_score_clean",
    "auc_flipped",
    "above_half",
    "above_half_flipped",
]


def gather(paths: Iterable[str]) -> pd.DataFrame:
    read = [pd.read_parquet(p) for p in paths]
    frames = [f for f in read if len(f)]
    if frames:
        return pd.concat(frames, ignore_index=True)
    # Every part empty (no run trained by epochs): still the table's columns, no rows.
    return read[0].iloc[0:0].reset_index(drop=True) if read else pd.DataFrame()


def _accuracy(metrics: pd.DataFrame, split: str) -> pd.Series:
    sel = metrics[(metrics["split"] == split) & (metrics["metric"] == "accuracy")]
    return sel.set_index(KEYS)["value"]


def generalization_gap(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run and replica: train accuracy (labels as trained on), held-out accuracy, gap."""
    out = pd.DataFrame(
        {
            "train_accuracy": _accuracy(metrics, "train"),
            "heldout_accuracy": _accuracy(metrics, "heldout"),
        }
    )
    out["gap"] = out["train_accuracy"] - out["heldout_accuracy"]
    return out.reset_index()


def robustness(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run, replica, perturbation and severity: accuracy, clean accuracy and the drop."""
    pert = metrics[(metrics["split"] == "perturbed") & (metrics["metric"] == "accuracy")]
    clean = _accuracy(metrics, "heldout").rename("clean_accuracy")
    out = pert[[*KEYS, "perturbation", "severity", "value"]].rename(columns={"value": "accuracy"})
    out = out.join(clean, on=KEYS)
    out["drop"] = out["clean_accuracy"] - out["accuracy"]
    return out.reset_index(drop=True)


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard error and replica count of every metric over replicas."""
    group = [*RUN_COLUMNS, "split", "perturbation", "severity", "metric"]
    g = metrics.groupby(group, sort=True, dropna=False)["value"]
    out = g.agg(mean="mean", std="std", replicas="count").reset_index()
    out["sem"] = out["std"] / np.sqrt(out["replicas"])
    return out.drop(columns="std")


FEW_SHOT_COLUMNS = ("accuracy", "accuracy_se", "n_replicas")


def few_shot(metrics: pd.DataFrame) -> pd.DataFrame:
    """few_shot.csv: per few-shot run (``shots`` > 0: that many training examples of every
    class), held-out accuracy, the mean over replicas with its standard error across them."""
    heldout = _accuracy(metrics, "heldout").reset_index()
    heldout = heldout[heldout["shots"] > 0]
    g = heldout.groupby(list(RUN_COLUMNS), sort=True, dropna=False)["value"]
    out = g.agg(accuracy="mean", accuracy_se="sem", n_replicas="count").reset_index()
    return out[[*RUN_COLUMNS, *FEW_SHOT_COLUMNS]]


RECALL_COLUMNS = (
    "perturbation",
    "severity",
    "recall_accuracy",
    "recall_accuracy_se",
    "n_replicas",
    "heldout_accuracy",
)


def recall(metrics: pd.DataFrame) -> pd.DataFrame:
    """recall.csv: per run on a dataset with ``recall`` and per perturbation and severity, the
    accuracy on perturbed copies of each replica's own training examples against the labels it
    trained on (mean over replicas, standard error across them), with severity 0 (perturbation
    ``none``) the unperturbed training accuracy, and the run's mean held-out accuracy."""
    rec = metrics[(metrics["split"] == "recall") & (metrics["metric"] == "accuracy")]
    if rec.empty:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *RECALL_COLUMNS])
    recalled = pd.MultiIndex.from_frame(rec[list(RUN_COLUMNS)].drop_duplicates())
    train = metrics[(metrics["split"] == "train") & (metrics["metric"] == "accuracy")]
    train = train[pd.MultiIndex.from_frame(train[list(RUN_COLUMNS)]).isin(recalled)]
    both = pd.concat([train, rec])
    g = both.groupby([*RUN_COLUMNS, "perturbation", "severity"], sort=True, dropna=False)["value"]
    out = g.agg(recall_accuracy="mean", recall_accuracy_se="sem", n_replicas="count")
    heldout = _accuracy(metrics, "heldout").groupby(list(RUN_COLUMNS), dropna=False).mean()
    out = out.reset_index().join(heldout.rename("heldout_accuracy"), on=list(RUN_COLUMNS))
    return out[[*RUN_COLUMNS, *RECALL_COLUMNS]]


MEMORY_EFFECT_COLUMNS = (
    "split",
    "perturbation",
    "severity",
    "accuracy_on",
    "accuracy_off",
    "difference",
    "difference_se",
    "n_replicas",
    "mix",
    "mix_se",
)


def memory_effect(metrics: pd.DataFrame) -> pd.DataFrame:
    """memory_effect.csv: what a memory network's memory adds (memlab.engine.memory_net), per run
    and per held-out, recall (each perturbation and severity) and unperturbed training accuracy:
    the accuracy with the memory on and off, and their paired difference per replica (mean,
    standard error across replicas); ``mix`` the weight of the memory read (its mean over
    replicas when learned). The run's columns are the model's as used (``memory`` on)."""
    acc = metrics[
        (metrics["metric"] == "accuracy") & metrics["split"].isin(["heldout", "recall", "train"])
    ]
    runs = [k for k in RUN_KEYS if k != "memory"]  # never NaN, unlike some of RUN_COLUMNS
    at = [*runs, "split", "perturbation", "severity"]

    def accuracy(memory: str) -> pd.Series:
        return acc[acc["memory"] == memory].set_index([*at, "replica"])["value"]

    wide = pd.concat({"on": accuracy("on"), "off": accuracy("off")}, axis=1).dropna()
    if wide.empty:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *MEMORY_EFFECT_COLUMNS])
    wide["difference"] = wide["on"] - wide["off"]
    out = wide.groupby(level=at, sort=True).agg(
        accuracy_on=("on", "mean"),
        accuracy_off=("off", "mean"),
        difference=("difference", "mean"),
        difference_se=("difference", "sem"),
        n_replicas=("difference", "count"),
    )
    mix = metrics[(metrics["memory"] == "on") & (metrics["metric"] == "mix")]
    out = out.join(mix.groupby(runs)["value"].agg(mix="mean", mix_se="sem"), on=runs)
    columns = metrics[metrics["memory"] == "on"].drop_duplicates(runs)[list(RUN_COLUMNS)]
    out = columns.merge(out.reset_index(), on=runs)
    return out[[*RUN_COLUMNS, *MEMORY_EFFECT_COLUMNS]].reset_index(drop=True)


# --------------------------------------------------------------------------- per-example analyses
# Each takes (run, evaluation arrays) pairs: run is the dict of RUN_COLUMNS, arrays what the
# evaluate rule wrote (per-example predictions, losses, confidences and memberships).


def replica_training(run: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Per replica of a bank: its train accuracy (subset as trained on, labels as given), how it
    stopped (a name of STOP_REASONS; "none" for a model that does not train), whether it is
    under-trained (``memlab.plan.study.undertrained``) and whether the scores use it (trained
    and not under-trained: every replica of a model that does not train)."""
    from memlab.analysis.memorization import used_replicas

    tm = np.asarray(arrays["train_mask"], bool)
    r = tm.shape[0]
    accuracy = (arrays["pool_correct"] & tm).sum(1) / np.maximum(tm.sum(1), 1)
    used = used_replicas(run, arrays)
    if MODEL_KINDS[run["kind"]].trains:
        reason = np.asarray(arrays["stop_reason"])
        stopped = np.array([STOP_REASONS[i] if i >= 0 else "none" for i in reason], object)
    else:
        stopped = np.full(r, "none", dtype=object)
    return pd.DataFrame(
        {"train_accuracy": accuracy, "stopped": stopped, "undertrained": ~used, "used": used}
    )


def _no_scores(members: np.ndarray, used: np.ndarray, undertrained: int, gates: PowerGates) -> str:
    """Why a run's design gives no scores (its status), with the replica count that would."""
    from memlab.analysis.memorization import design_allows_scores

    if members.all():
        return "no example is ever held out"
    if undertrained and design_allows_scores(members):
        return (
            f"too few trained replicas to hold every example both in and out: {undertrained} "
            f"of {len(used)} under-trained (stopped by max_epochs while still improving; raise "
            "max_epochs)"
        )
    n_in, n_out = int(members.sum(0).min()), int((~members).sum(0).min())
    share = float(members.sum(1).max()) / members.shape[1]
    why = gates.scores_message(n_in, n_out, len(used), share)
    return f"too few replicas to hold every example both in and out: {why}"


def memorization_tables(
    evaluations: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
    agreement: Callable[[Mapping[str, Any], np.ndarray], np.ndarray] | None = None,
    gates: PowerGates | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feldman-Zhang scores per (run, pool example) and one summary row per run.

    ``gates`` (default ``PowerGates()``): a run whose examples are not all in and out of enough
    used replicas keeps its per-example rows (with their intervals) but not its headline
    columns (mean scores, AUC, counts above 0.5): ``powered`` is false and ``status`` says
    what is missing and how many replicas would provide it.

    Scores come from every trained replica that is not under-trained, whatever its train
    accuracy (``replica_training``); the summary counts the replicas used, fit (100% train
    accuracy) and under-trained (left out), the used replicas' mean and lowest train accuracy,
    and how the replicas stopped. Runs whose design cannot give scores (the whole pool in every
    subset, or too few usable replicas to hold every example both in and out) get a summary row
    whose status says why, and no scores. ``agreement(run, labels as trained on)`` gives each
    pool example's label agreement (``memlab.analysis.neighbours.PoolAgreement``); without it the
    ``agreement`` column is NaN.
    """
    from memlab.analysis.memorization import design_allows_scores, memorization_scores, roc_auc

    gates = gates or PowerGates()
    scores, summary = [], []
    for run, a in evaluations:
        reps = replica_training(run, a)
        usable = reps["used"].to_numpy()
        members = a["train_mask"]
        used_acc = reps.loc[usable, "train_accuracy"]
        row = {
            **{k: run[k] for k in RUN_COLUMNS},
            "replicas": len(reps),
            "replicas_trained": int(usable.sum()),
            "replicas_fit": int((reps["train_accuracy"] >= 1.0).sum()),
            "replicas_undertrained": int(reps["undertrained"].sum()),
            "train_accuracy_mean": float(used_acc.mean()) if len(used_acc) else np.nan,
            "train_accuracy_min": float(used_acc.min()) if len(used_acc) else np.nan,
            **{f"stopped_{s}": int((reps["stopped"] == s).sum()) for s in STOP_REASONS},
        }
        if not design_allows_scores(members[usable]):
            row["status"] = _no_scores(members, usable, row["replicas_undertrained"], gates)
            summary.append(row)
            continue
        s = memorization_scores(a["pool_correct"], members, usable)
        row.update(min_n_in=int(s["n_in"].min()), min_n_out=int(s["n_out"].min()))
        row["powered"] = gates.scores_powered(s["n_in"], s["n_out"])
        flipped = a["flipped"].astype(bool)
        s["flipped"] = flipped
        s["label"] = a["pool_label"]
        # What models that did not train on the example predict (its "natural" label).
        out_pred = np.where(~members[usable], a["pool_pred"][usable], -1)
        s["predicted_when_out"] = [
            np.bincount(col[col >= 0], minlength=1).argmax() for col in out_pred.T
        ]
        s["agreement"] = np.nan if agreement is None else agreement(run, a["pool_label"])
        scores.append(with_run(s, run))
        if not row["powered"]:
            share = float(members.sum(1).mean() / members.shape[1])
            why = gates.scores_message(row["min_n_in"], row["min_n_out"], int(usable.sum()), share)
            summary.append(row | {"status": f"underpowered: {why}"})
            continue
        # The headline numbers are the real examples' (canary rows keep their scores above).
        real = real_examples(a)
        score, flipped = s["score"][real], flipped[real]
        high = score > 0.5
        row.update(
            status="ok",
            mean_score=float(score.mean()),
            mean_score_flipped=float(score[flipped].mean()) if flipped.any() else np.nan,
            mean_score_clean=float(score[~flipped].mean()),
            auc_flipped=roc_auc(score, flipped),
            above_half=int(high.sum()),
            above_half_flipped=int((high & flipped).sum()),
        )
        summary.append(row)
    return (
        pd.concat(scores, ignore_index=True)
        if scores
        else pd.DataFrame(columns=MEMORIZATION_COLUMNS),
        pd.DataFrame(summary, columns=MEMORIZATION_SUMMARY_COLUMNS),
    )


EXAMPLE_CORRELATION_COLUMNS = [
    "dataset",
    "label_noise",
    "size",
    "measure_a",
    "measure_b",
    "spearman",
    "p_value",
    "n",
]
AGREEMENT_MEASURE = "agreement"


def example_correlations(memorization: pd.DataFrame) -> pd.DataFrame:
    """Spearman rank correlation between every pair of per-example measures over the same pool
    examples: per (dataset, label_noise, size), each run's memorization score (measure
    ``<model>/<regime>``, e.g. ``mlp-w64/memorize``, ``knn-k1/memory``) and the label agreement
    (measure ``agreement``, first in every pair it is in). ``n``: the examples both measures
    have; ``spearman`` and ``p_value`` (``scipy.stats.spearmanr``) are NaN where fewer than 3
    or one measure is constant over them."""
    from scipy.stats import spearmanr

    rows: list[tuple] = []
    if memorization.empty:
        return pd.DataFrame(rows, columns=EXAMPLE_CORRELATION_COLUMNS)
    pool = ["dataset", "label_noise", "size"]
    for (dataset, noise, size), g in memorization.groupby(pool, sort=True):
        wide = g.assign(measure=g["model"] + "/" + g["regime"]).pivot(
            index="example", columns="measure", values="score"
        )
        measures = sorted(wide.columns)
        if g["agreement"].notna().any():
            wide[AGREEMENT_MEASURE] = g.groupby("example")["agreement"].first()
            measures = [AGREEMENT_MEASURE, *measures]
        for i, a in enumerate(measures):
            for b in measures[i + 1 :]:
                both = wide[[a, b]].dropna()
                rho = p = np.nan
                if len(both) >= 3 and both[a].nunique() > 1 and both[b].nunique() > 1:
                    rho, p = (float(v) for v in spearmanr(both[a], both[b]))
                rows.append((dataset, noise, size, a, b, rho, p, len(both)))
    return pd.DataFrame(rows, columns=EXAMPLE_CORRELATION_COLUMNS)


def undertrained_warnings(summary: pd.DataFrame) -> list[str]:
    """One warning per run of ``memorization_summary`` with under-trained replicas."""
    return [
        f"WARNING: {r.dataset}, noise {r.label_noise:g}, n={r.size}, {r.model} / {r.regime}: "
        f"{r.replicas_undertrained} of {r.replicas} replicas under-trained (stopped by "
        f"max_epochs={r.max_epochs} while the train loss still fell), left out of the "
        f"memorization scores (status: {r.status}); raise max_epochs"
        for r in summary[summary["replicas_undertrained"] > 0].itertuples()
    ]


def membership_tables(
    evaluations: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
    memorization: pd.DataFrame | None = None,
    gates: PowerGates | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every attack's ROC AUC, TPR at 1% and 0.1% FPR and advantage per run; ROC curves; and
    the same per slice of the pool (``membership_slices.csv``): by ``label`` (``clean`` or
    ``flipped``), by ``class`` (the label as trained on) and, for runs with Feldman-Zhang
    scores in ``memorization`` (:func:`memorization_tables`' first table), by
    ``memorization_quantile`` (``q1`` lowest to ``q4``). Each run's scores are computed once.

    ``powered`` and ``status`` per attack (``gates``, default ``PowerGates()``;
    :func:`memlab.analysis.membership.attack_status`): the gap and loss attacks need no shadow
    models and are always powered; LiRA and RMIA need ``gates.min_shadows`` other replicas and
    ``gates.min_per_side`` shadows on each side they fit; a degenerate estimate has no numbers."""
    from memlab.analysis.membership import (
        SLICE_COLUMNS,
        attack_scores,
        attack_status,
        evaluate_attacks,
        quartile_slices,
        slice_attacks,
    )
    from memlab.analysis.memorization import design_allows_scores

    gates = gates or PowerGates()
    keys = list(RUN_KEYS)
    mem = (
        {}
        if memorization is None or memorization.empty
        else dict(tuple(memorization.groupby(keys, sort=False)[["example", "score"]]))
    )
    results, curves, sliced = [], [], []
    for run, a in evaluations:
        members = np.asarray(a["train_mask"], bool)
        if not design_allows_scores(members):
            continue
        scores = attack_scores(
            a["pool_correct"], a["pool_loss"], a["pool_confidence"], members, a.get("test_loss")
        )
        # The headline attacks over the real examples; canaries are a slice of their own below.
        real = real_examples(a)
        res, curve = evaluate_attacks(
            a["pool_correct"][:, real],
            a["pool_loss"][:, real],
            a["pool_confidence"][:, real],
            members[:, real],
            scores={k: np.asarray(v)[:, real] for k, v in scores.items()},
        )
        gated = [attack_status(attack, members, gates) for attack in res["attack"]]
        res["powered"] = [powered for powered, _ in gated]
        res["status"] = [status for _, status in gated]
        results.append(with_run(res, run))
        curves.append(with_run(curve, run))
        n = members.shape[1]
        flipped = np.asarray(a.get("flipped", np.zeros(n, bool)), bool)
        label = np.where(flipped, "flipped", "clean").astype(object)
        slices = {
            "label": np.where(real, label, "canary").astype(object),
            "class": np.where(real, np.asarray(a["pool_label"]).astype(str), "").astype(object),
        }
        own = mem.get(tuple(run[k] for k in keys))
        if own is not None:
            score = np.full(n, np.nan)
            score[own["example"].to_numpy(int)] = own["score"].to_numpy(float)
            slices["memorization_quantile"] = quartile_slices(score)
        sliced.append(with_run(slice_attacks(scores, members, slices), run))
    if not results:
        return (
            pd.DataFrame(columns=MEMBERSHIP_COLUMNS),
            pd.DataFrame(columns=ROC_COLUMNS),
            pd.DataFrame(columns=[*RUN_COLUMNS, *SLICE_COLUMNS]),
        )
    return (
        pd.concat(results, ignore_index=True),
        pd.concat(curves, ignore_index=True),
        pd.concat(sliced, ignore_index=True),
    )


def chance_null(
    evaluations: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
    permutations: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Permutation null of held-out accuracy per run and replica.

    The accuracy a replica's held-out predictions reach against randomly permuted true labels:
    what "chance" is for this model's prediction distribution (a model that predicts mostly one
    class agrees with shuffled labels more than 1/classes). Reports its mean and 95% quantile.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for run, a in evaluations:
        y = a["test_label"]
        perms = np.stack([rng.permutation(y) for _ in range(permutations)])  # [P, n]
        for r, pred in zip(a["replica"], a["test_pred"], strict=True):
            null = (perms == pred).mean(1)
            rows.append(
                {
                    **{k: run[k] for k in RUN_COLUMNS},
                    "replica": int(r),
                    "heldout_accuracy": float((pred == y).mean()),
                    "null_mean": float(null.mean()),
                    "null_q95": float(np.quantile(null, 0.95)),
                }
            )
    return pd.DataFrame(rows)


def noise_sweep(metrics: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Final vs best-during-training held-out accuracy per run and replica (early-stopping gap)."""
    final = _accuracy(metrics, "heldout").rename("final_heldout_accuracy")
    # Runs with a training history only (not k-NN, not closed-form solves); same columns if none.
    h = history.sort_values("epoch")
    best = h.loc[h.groupby(KEYS)["heldout_accuracy"].idxmax(), [*KEYS, "heldout_accuracy", "epoch"]]
    best = best.rename(
        columns={"heldout_accuracy": "best_heldout_accuracy", "epoch": "best_epoch"}
    ).set_index(KEYS)
    out = final.to_frame().join(best, how="inner")
    out["early_stopping_gap"] = out["best_heldout_accuracy"] - out["final_heldout_accuracy"]
    return out.reset_index()


# --------------------------------------------------------------------------- long-tailed data

SplitOf = Callable[
    [str], Any
]  # dataset -> memlab.data.datasets.Split (memlab.data.datasets.split_reader)
# The columns of long_tail.csv after the run's.
LONG_TAIL_COLUMNS = ("train_frequency", "accuracy", "accuracy_se", "n_test", "n_replicas")
# The columns the per-example tables gain (pandas' nullable integers: empty without a long tail).
SUBPOPULATION_COLUMNS = ("subpopulation", "train_frequency")


def long_tail_accuracy(
    evaluations: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]], split_of: SplitOf
) -> pd.DataFrame:
    """long_tail.csv: per run on long-tailed data (``memlab.data.long_tail``) and power-of-two
    bucket of training frequency, held-out accuracy on the test examples whose subpopulation
    has that many examples in the replica's own training set (0: none; at the whole pool, its
    count in the pool). Per bucket: the mean over replicas of each replica's accuracy, its
    standard error across replicas (NaN with one), the held-out examples per replica (mean,
    rounded) and the replicas with any."""
    rows = []
    for run, bank in evaluations:
        split = split_of(run["dataset"])
        if split.pool_subpopulation is None:
            continue
        n_sub = len(split.subpopulation_frequency)
        trained = np.asarray(bank["train_mask"], bool)
        # [R, subpopulations]: each replica's training examples per subpopulation.
        counts = np.stack(
            [np.bincount(split.pool_subpopulation[m], minlength=n_sub) for m in trained]
        )
        buckets = frequency_bucket(counts[:, split.test_subpopulation])  # [R, n_test]
        correct = np.asarray(bank["test_correct"], bool)
        for bucket in np.unique(buckets):
            hit = buckets == bucket
            seen = hit.any(axis=1)
            acc = (correct & hit).sum(1)[seen] / hit.sum(1)[seen]
            se = acc.std(ddof=1) / math.sqrt(len(acc)) if len(acc) > 1 else math.nan
            n_test = round(hit.sum() / seen.sum())
            values = (int(bucket), acc.mean(), se, n_test, int(seen.sum()))
            rows.append(
                {c: run[c] for c in RUN_COLUMNS} | dict(zip(LONG_TAIL_COLUMNS, values, strict=True))
            )
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, *LONG_TAIL_COLUMNS])


def with_canaries(frame: pd.DataFrame, split_of: SplitOf, example: str = "example") -> pd.DataFrame:
    """A per-example table (columns ``dataset`` and ``example``, a pool position) with a
    ``canary`` column: whether the row is an inserted canary (memlab.data.canaries), so a
    reader of the real examples (the figures) can leave them out."""
    out = frame.assign(canary=False)
    for dataset, rows in frame.groupby("dataset", sort=False).groups.items():
        canary = split_of(dataset).pool_canary
        if canary is not None:
            out.loc[rows, "canary"] = canary[frame.loc[rows, example].to_numpy(int)] >= 0
    return out


def with_subpopulations(
    frame: pd.DataFrame, split_of: SplitOf, example: str = "example"
) -> pd.DataFrame:
    """A per-example table (columns ``dataset`` and ``example``, a pool position) with each
    example's subpopulation and training frequency; empty (<NA>) on data without a long tail."""
    out = frame.copy()
    for column in SUBPOPULATION_COLUMNS:
        out[column] = pd.array([pd.NA] * len(out), dtype="Int64")
    for dataset, rows in frame.groupby("dataset", sort=False).groups.items():
        split = split_of(dataset)
        if split.pool_subpopulation is None:
            continue
        where = frame.loc[rows, example].to_numpy(int)
        out.loc[rows, "subpopulation"] = split.pool_subpopulation[where]
        out.loc[rows, "train_frequency"] = split.train_frequency("pool")[where]
    return out
