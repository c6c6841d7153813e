"""Seaborn figures of the study, each answering one question at a glance.

Every function takes the tidy tables and returns a matplotlib Figure; ``save_figure`` writes it
atomically as PNG (for the report) and SVG (vector, for print). Lines are means over replicas
with a band of one standard error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from itertools import pairwise
from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats

from memlab.analysis import capacity_bits as bits_analysis
from memlab.analysis import metrics as analysis
from memlab.data.long_tail import frequency_bucket
from memlab.data.perturb import PARAMETER_AXIS
from memlab.data.randomization import RANDOMIZATIONS
from memlab.io import atomic_path
from memlab.plan.kinds import MLP, RandomFeatures, trained
from memlab.plan.registry import FIGURE, FIGURES
from memlab.plan.study import RUN_KEYS, strength_sweeps, unregularized
from memlab.reporting.tables import StudyTables, memory_note, powered, run_label, stacked_images

SPLIT_LABELS = {"train": "train (labels as given)", "heldout": "held-out"}

sns.set_theme(context="notebook", style="whitegrid")
# SVG text stays text and files are reproducible byte for byte (no random ids, no date).
plt.rcParams.update({"svg.hashsalt": "memlab", "svg.fonttype": "none"})

Drawing = Callable[[StudyTables], plt.Figure]
_DRAWN: dict[str, Drawing] = {}


def draws(function: Drawing) -> Drawing:
    """Register ``function`` as the drawing of the figure of its name: memlab.plan.registry.FIGURES
    declares each figure (its name, and when a study can draw it: the workflow reads them without
    matplotlib), this module how to draw it. The name is the function's, as the figures rule's
    code hash has it (memlab.ops.codehash.function_hash hashes the function of that name)."""
    name = function.__name__
    if name not in FIGURE:
        raise ValueError(
            f"{name} draws no figure of memlab.plan.registry.FIGURES: declare it there"
        )
    if name in _DRAWN:
        raise ValueError(f"figure {name!r} has two drawing functions")
    _DRAWN[name] = function
    return function


def _drawings() -> dict[str, Drawing]:
    """The registered drawings in the registry's order; every declared figure must have one."""
    missing = [f.name for f in FIGURES if f.name not in _DRAWN]
    if missing:
        raise ValueError(f"no drawing function (@draws) for the figures {', '.join(missing)}")
    return {f.name: _DRAWN[f.name] for f in FIGURES}


def _regime_order(frame: pd.DataFrame) -> list[str]:
    """Config order, with the unregularized regimes (and the memory of models that do not
    train) first: chosen by their settings, whatever their names."""
    runs = frame.drop_duplicates("regime")
    first = set(runs.loc[unregularized(runs) | ~trained(runs["kind"]), "regime"])
    names = list(runs["regime"])
    return sorted(names, key=lambda r: (r not in first, names.index(r)))


def _accuracy(metrics: pd.DataFrame, splits: tuple[str, ...]) -> pd.DataFrame:
    sel = metrics[
        metrics["split"].isin(splits)
        & (metrics["metric"] == "accuracy")
        & (metrics["perturbation"] == "none")
    ].copy()
    sel["split"] = sel["split"].map(lambda s: SPLIT_LABELS.get(s, s))
    return _with_noise_label(sel)


def _with_noise_label(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{"label noise": frame["label_noise"].map(lambda x: f"{x:g}")})


def _lines(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    xlabel: str,
    ylabel: str,
    col_title: str = "{col_name}",
    row_title: str = "{row_name}",
    title: str | None = None,
    logx: bool = False,
    **kwargs: Any,
) -> plt.Figure:
    """One faceted line plot: mean over replicas with a standard-error band, labelled axes."""
    kwargs.setdefault("height", 2.8)
    facet_kws = {"margin_titles": "row" in kwargs} | kwargs.pop("facet_kws", {})
    g = sns.relplot(
        data=data,
        x=x,
        y=y,
        kind="line",
        markers=True,
        errorbar="se",
        facet_kws=facet_kws,
        **kwargs,
    )
    if logx:
        # Ticks at the values studied, written plainly (not 2x10^2), a label only where it
        # does not run into the previous one.
        ticks = sorted(data[x].unique())
        g.set(xscale="log")
        for ax in g.axes.flat:
            ax.set_xticks(ticks, _spaced_labels(ticks))
            ax.minorticks_off()
    g.set_axis_labels(xlabel, ylabel)
    g.set_titles(col_template=col_title, row_template=row_title, template=col_title)
    if title:
        g.figure.suptitle(title, y=1.02)
    g.tight_layout()  # FacetGrid's own: keeps room for the legend outside the panels
    return g.figure


def _spaced_labels(ticks: list[float], min_decades: float = 0.18) -> list[str]:
    """Labels for log-scale ticks, blank where a tick is too close to the last labelled one."""
    labels, last = [], -np.inf
    for t in ticks:
        far = np.log10(t) - last >= min_decades
        labels.append(f"{t:g}" if far else "")
        last = np.log10(t) if far else last
    return labels


def _empty(message: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


@draws
def accuracy_vs_size(t: StudyTables) -> plt.Figure:
    """Train vs held-out accuracy against training-set size, a panel per regime and noise."""
    metrics = t.metrics
    d = _accuracy(metrics, ("train", "heldout"))
    return _lines(
        d,
        x="size",
        y="value",
        hue="model",
        style="split",
        col="regime",
        col_order=_regime_order(d),
        row="label noise",
        logx=True,
        xlabel="training-set size (examples)",
        ylabel="accuracy",
        row_title="label noise {row_name}",
    )


@draws
def generalization_gap(t: StudyTables) -> plt.Figure:
    """Train minus held-out accuracy against size, a panel per model and noise."""
    metrics = t.metrics
    d = _with_noise_label(analysis.generalization_gap(metrics))
    fig = _lines(
        d,
        x="size",
        y="gap",
        hue="regime",
        hue_order=_regime_order(d),
        col="model",
        row="label noise",
        logx=True,
        xlabel="training-set size (examples)",
        ylabel="train − held-out accuracy",
        row_title="label noise {row_name}",
    )
    for ax in fig.axes:
        ax.axhline(0, color="0.5", lw=0.8)
    return fig


def real_data(frame: pd.DataFrame, t: StudyTables) -> pd.DataFrame:
    """The rows of datasets whose labels and inputs are not randomized (``true_labels`` is the
    control, kept), where the study has any: a figure that shows one slice of the study should
    not show models at chance on random labels."""
    randomized = {d for d, kind in t.randomizations.items() if kind != "true_labels"}
    real = frame[~frame["dataset"].isin(randomized)]
    return real if len(real) else frame


@draws
def robustness(t: StudyTables) -> plt.Figure:
    """Held-out accuracy against severity, a panel per (model, perturbation); the least label
    noise, then the largest size among those runs (real data first: :func:`real_data`)."""
    metrics = t.metrics
    rob = analysis.robustness(metrics)
    if rob.empty:
        return _empty("No perturbations in this study.")
    rob = real_data(rob, t)
    noise = rob["label_noise"].min()
    size = rob[rob["label_noise"] == noise]["size"].max()
    rob = rob[(rob["size"] == size) & (rob["label_noise"] == noise)]
    # Severity 0 is the clean held-out set, so every curve starts from the same point.
    clean = rob.drop_duplicates([*analysis.KEYS, "perturbation"]).assign(
        severity=0, accuracy=lambda f: f["clean_accuracy"]
    )
    d = pd.concat([clean, rob], ignore_index=True)
    names = sorted(set(d["perturbation"]))
    fig = _lines(
        d,
        x="severity",
        y="accuracy",
        hue="regime",
        hue_order=_regime_order(d),
        col="perturbation",
        col_order=names,
        row="model",
        facet_kws={"sharex": False},  # each column its own tick labels (set below)
        height=2.2,
        # Wider panels when there are few (a table has gaussian_noise only): room for the ticks.
        aspect=1.1 if len(names) > 2 else 1.8,
        xlabel="severity (0 = clean)",
        ylabel="held-out accuracy",
        title=f"Robustness at training-set size {size}, label noise {noise:g}",
    )
    _severity_units(fig, names, t.severity_table)
    return fig


def _column(ax: plt.Axes) -> int:
    """The grid column of a panel (of a figure made by plt.subplots)."""
    spec = ax.get_subplotspec()
    if spec is None:
        raise ValueError("a panel outside the figure's grid")
    return spec.colspan.start


def _severity_units(
    fig: plt.Figure, names: list[str], table: Mapping[str, tuple[float, ...]]
) -> None:
    """Tick labels in each corruption's own unit (its parameter at each severity) and an axis
    label naming it, where the table is known; the severities stay the positions."""
    if not table:
        return
    for ax in fig.axes:
        name = names[_column(ax)]
        if name not in table:
            continue
        bottom = bool(ax.get_xlabel())
        labels = ["clean", *(f"{v:g}" for v in table[name])] if bottom else []
        ax.set_xticks(range(len(table[name]) + 1), labels, fontsize=7)
        if bottom:
            ax.set_xlabel(PARAMETER_AXIS[name])
    _unclash_ticks(fig)


def _unclash_ticks(fig: plt.Figure) -> None:
    """Tilt the x tick labels of every panel where two of them would touch: a study of one
    corruption (a table: gaussian_noise only) draws one narrow column of panels."""
    fig.canvas.draw()  # tick labels get their positions (and the renderer they measure with)
    for ax in fig.axes:
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        boxes = [t.get_window_extent() for t in labels]
        if any(a.x1 + 2 > b.x0 for a, b in pairwise(boxes)):
            ax.tick_params(axis="x", labelrotation=45)
            for t in labels:
                t.set_horizontalalignment("right")
                t.set_rotation_mode("anchor")


@draws
def learning_curves(t: StudyTables) -> plt.Figure:
    """Train vs held-out accuracy over epochs per regime: widest MLP, largest size, most noise."""
    history = t.history
    nets = history[trained(history["kind"])] if not history.empty else history
    if nets.empty:
        return _empty("No trained networks in this study.")
    nets = real_data(nets, t)
    # The most noise, then the largest size among those runs (sub-studies may not share sizes).
    noise = nets["label_noise"].max()
    noisiest = nets[nets["label_noise"] == noise]
    size = noisiest["size"].max()
    sel = noisiest[noisiest["size"] == size]
    pick = sel[sel["kind"] == MLP.kind] if (sel["kind"] == MLP.kind).any() else sel
    model = pick.sort_values("width")["model"].iloc[-1]
    order = _regime_order(sel)
    d = sel[sel["model"] == model].melt(
        id_vars=["regime", "replica", "epoch"],
        value_vars=["train_accuracy", "heldout_accuracy"],
        var_name="split",
        value_name="accuracy",
    )
    d["split"] = d["split"].map(
        {"train_accuracy": SPLIT_LABELS["train"], "heldout_accuracy": SPLIT_LABELS["heldout"]}
    )
    return _lines(
        d,
        x="epoch",
        y="accuracy",
        hue="split",
        col="regime",
        col_order=[r for r in order if r in set(d["regime"])],
        col_wrap=min(5, d["regime"].nunique()),
        xlabel="epoch",
        ylabel="accuracy",
        title=f"{model}, training-set size {size}, label noise {noise:g}",
    )


def _pick(frame: pd.DataFrame, kind: str = MLP.kind) -> pd.DataFrame:
    """Rows of the widest model of ``kind`` (any kind if absent), unregularized if it has such
    runs (chosen by settings, not by a regime's name)."""
    sel = frame[frame["kind"] == kind] if (frame["kind"] == kind).any() else frame
    sel = sel[sel["width"] == sel["width"].max()]
    plain = unregularized(sel)
    return sel[plain] if plain.any() else sel


# Per-example figures show at most this many runs (the best-replicated powered ones).
PANELS = 6
_UNDERPOWERED_SCORES = (
    "No run's memorization scores pass the power gate (analysis.power.min_in_out): see the "
    "status column of memorization_summary.csv."
)


@draws
def memorization_scores(t: StudyTables) -> plt.Figure:
    """Distribution of Feldman-Zhang scores, flipped vs clean labels, one panel per run."""
    m = t.memorization
    if m.empty:
        return _empty(
            "No run could give memorization scores: use a size below the pool and "
            "enough trained replicas (see config/memorization.yaml and the status column of "
            "memorization_summary.csv)."
        )
    m = powered(m, t.memorization_summary, limit=PANELS)
    if m.empty:
        return _empty(_UNDERPOWERED_SCORES)
    d = m.assign(run=run_label(m), labels=m["flipped"].map({True: "flipped", False: "clean"}))
    g = sns.displot(
        data=d,
        x="score",
        hue="labels",
        hue_order=["clean", "flipped"],
        col="run",
        col_wrap=min(3, d["run"].nunique()),
        kind="hist",
        stat="density",
        common_norm=False,
        bins=np.linspace(-1, 1, 41),
        element="step",
        height=2.6,
        aspect=1.4,
        facet_kws={"sharey": False},
    )
    # Short: with 4+ panels the top row's x labels sit side by side and a long one overlaps.
    g.set_axis_labels("score P[correct|in] − P[correct|out]", "density")
    g.set_titles("{col_name}", size=9)
    g.tight_layout()
    return g.figure


@draws
def memorized_gallery(t: StudyTables) -> plt.Figure:
    """The most-memorized images of the widest MLP: given label, what models that did not
    train on it predict, and the score."""
    m = t.memorization
    m = m[m["dataset"].map(lambda d: d in t.splits and t.splits[d].image_shape is not None)]
    if m.empty:
        return _empty("No memorization scores on image data in this study.")
    sel = _pick(powered(m, t.memorization_summary))
    if sel.empty:
        return _empty(_UNDERPOWERED_SCORES)
    labels = run_label(sel)
    sel = sel[labels == labels.iloc[0]]  # one run: the first of the widest MLP's
    first = sel.iloc[0]
    top = sel.nlargest(16, "score")
    split = t.splits[first["dataset"]]
    images = stacked_images(split, top["example"].to_numpy())
    fig, axes = plt.subplots(2, 8, figsize=(12, 4.2), layout="constrained")
    for ax, img, (_, row) in zip(axes.flat, images, top.iterrows(), strict=False):
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        colour = "crimson" if row["flipped"] else "black"
        ax.set_title(
            f"given {row['label']}, out→{row['predicted_when_out']}\n"
            f"mem {row['score']:.2f} [{row['low']:.2f}, {row['high']:.2f}]",
            fontsize=8,
            color=colour,
        )
    for ax in list(axes.flat)[len(top) :]:
        ax.axis("off")
    title = run_label(sel.iloc[[0]]).iloc[0].replace("\n", ", ")
    reps = f"at least {int(sel['n_in'].min())} in and {int(sel['n_out'].min())} out replicas each"
    fig.suptitle(
        f"Most memorized examples: {title} ({reps}; 95% Newcombe interval; red: label was flipped)",
        fontsize=10,
    )
    return fig


@draws
def memorization_scatter(t: StudyTables) -> plt.Figure:
    """Per-example memorization of the widest MLP against 1-NN's (same data and subsets size)."""
    m = t.memorization
    one_nn = (m["k"] == 1) & ~trained(m["kind"]) if len(m) else pd.Series(dtype=bool)
    if m.empty or not one_nn.any() or not (m["kind"] == MLP.kind).any():
        return _empty("Needs memorization scores of both an MLP and 1-NN on the same data.")
    on = ["dataset", "label_noise", "size", "example"]
    knn = m[one_nn][[*on, "score"]]
    mlp = _pick(powered(m, t.memorization_summary, limit=PANELS))
    mlp = mlp.merge(knn, on=on, suffixes=("", "_knn"))
    if mlp.empty:
        return _empty("No MLP and 1-NN scores on the same data, noise and size.")
    mlp = mlp.assign(
        labels=mlp["flipped"].map({True: "flipped", False: "clean"}), panel=run_label(mlp)
    )
    g = sns.relplot(
        data=mlp,
        x="score_knn",
        y="score",
        hue="labels",
        hue_order=["clean", "flipped"],
        col="panel",
        kind="scatter",
        s=12,
        alpha=0.6,
        height=3.2,
        col_wrap=min(3, mlp["panel"].nunique()),
    )
    for ax in g.axes.flat:
        ax.plot([-1, 1], [-1, 1], color="0.6", lw=0.8)
    g.set_axis_labels("1-NN memorization score", "MLP memorization score")
    g.set_titles("{col_name}", size=9)
    g.tight_layout()
    return g.figure


@draws
def membership_roc(t: StudyTables) -> plt.Figure:
    """Membership-inference ROC curves on log-log axes, one panel per run."""
    roc = t.membership_roc
    if roc.empty:
        return _empty("No run with a membership design (a size below the pool, 3+ replicas).")
    shadowed = t.membership[t.membership["attack"].str.startswith("lira")]
    roc = powered(roc[roc["fpr"] > 0], shadowed, limit=PANELS)
    # Within a powered run, only the attacks whose own shadows power them (membership.csv).
    keys = [*RUN_KEYS, "attack"]
    ok = t.membership[t.membership["powered"].eq(True)]
    roc = roc[pd.MultiIndex.from_frame(roc[keys]).isin(pd.MultiIndex.from_frame(ok[keys]))]
    if roc.empty:
        return _empty(
            "No run has enough shadow models for LiRA and RMIA (analysis.power.min_shadows): "
            "see the powered column of membership.csv."
        )
    d = roc.assign(run=run_label(roc))
    g = sns.relplot(
        data=d,
        x="fpr",
        y="tpr",
        hue="attack",
        col="run",
        kind="line",
        col_wrap=min(3, d["run"].nunique()),
        height=3.0,
        errorbar=None,
    )
    g.set(xscale="log", yscale="log", xlim=(1e-4, 1), ylim=(1e-4, 1.05))
    for ax in g.axes.flat:
        ax.plot([1e-4, 1], [1e-4, 1], color="0.6", lw=0.8, ls="--")
    g.set_axis_labels("false positive rate", "true positive rate")
    g.set_titles("{col_name}", size=9)
    g.tight_layout()
    return g.figure


@draws
def randomization_tests(t: StudyTables) -> plt.Figure:
    """Epochs to fit and held-out accuracy per randomization, with the chance-level null."""
    if not t.randomizations:
        return _empty("No randomization datasets in this study.")
    kinds = t.randomizations
    m = t.metrics[t.metrics["dataset"].isin(kinds)].assign(
        randomization=lambda f: f["dataset"].map(kinds)
    )
    fit = m[m["metric"] == "epochs_to_fit"]
    held = m[(m["split"] == "heldout") & (m["metric"] == "accuracy")]
    null = t.chance_null[t.chance_null["dataset"].isin(kinds)].assign(
        randomization=lambda f: f["dataset"].map(kinds)
    )
    order = [k for k in RANDOMIZATIONS if k in set(kinds.values())]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    sns.barplot(
        data=fit, y="randomization", x="value", hue="model", order=order, errorbar="se", ax=a1
    )
    a1.set(xlabel="epochs to 100% train accuracy (fitted replicas)", ylabel="")
    sns.barplot(
        data=held,
        y="randomization",
        x="value",
        hue="model",
        order=order,
        errorbar="se",
        ax=a2,
        legend=False,
    )
    q95 = null.groupby("randomization")["null_q95"].mean().reindex(order)
    for i, q in enumerate(q95):
        a2.plot([q, q], [i - 0.4, i + 0.4], color="black", lw=2)
    a2.set(xlabel="held-out accuracy (black bar: 95% permutation null)", ylabel="", xlim=(0, 1))
    unfit = fit.groupby("randomization")["value"].apply(lambda v: v.isna().sum()).reindex(order)
    for i, n in enumerate(unfit):
        if n:
            a1.text(0, i, f" {n} replica(s) never fit", va="center", fontsize=8)
    fig.suptitle("Randomization tests (Zhang et al. 2017)")
    fig.tight_layout()
    return fig


def _final_vs_best(d: pd.DataFrame, ns: pd.DataFrame, a1: plt.Axes) -> None:
    sns.lineplot(
        data=d,
        x="label_noise",
        y="accuracy",
        hue="regime",
        style="when",
        markers=True,
        errorbar="se",
        ax=a1,
        hue_order=_regime_order(ns),
    )
    a1.set(
        xlabel="label noise rate",
        ylabel="held-out accuracy",
        title=f"{ns['model'].iloc[0]}, n={ns['size'].iloc[0]}",
    )
    a1.legend(fontsize=7)


def _clean_vs_flipped(h: pd.DataFrame, ns: pd.DataFrame, a2: plt.Axes) -> None:
    h = h[
        (h["model"] == ns["model"].iloc[0])
        & (h["size"] == ns["size"].iloc[0])
        & (h["label_noise"] == h["label_noise"].max())
    ]
    c = h.melt(
        id_vars=["regime", "replica", "epoch"],
        value_vars=["train_clean_accuracy", "train_flipped_accuracy"],
        var_name="labels",
        value_name="accuracy",
    ).dropna()
    c["labels"] = c["labels"].map(
        {"train_clean_accuracy": "clean", "train_flipped_accuracy": "flipped"}
    )
    sns.lineplot(
        data=c,
        x="epoch",
        y="accuracy",
        hue="regime",
        style="labels",
        errorbar=None,
        ax=a2,
        hue_order=[r for r in _regime_order(h) if r in set(c["regime"])],
    )
    a2.set(
        xlabel="epoch",
        ylabel="train accuracy on its labels",
        title=f"clean vs flipped labels, noise {h['label_noise'].max():g}",
    )
    a2.legend(fontsize=7)


@draws
def noise_sweep(t: StudyTables) -> plt.Figure:
    """Final vs best-during-training held-out accuracy against the noise rate, and how fast
    clean vs flipped training labels are fitted."""
    ns = t.noise_sweep  # runs that train by epochs only: "best during training" needs a history
    if ns.empty or ns["label_noise"].nunique() < 2:
        return _empty("Needs a network (trained by epochs) at two or more label-noise rates.")
    ns = ns[trained(ns["kind"])]
    ns = ns[ns["size"] == ns["size"].max()]
    ns = ns[ns["model"].isin(_pick(ns)["model"].unique())]
    d = ns.melt(
        id_vars=["label_noise", "regime", "replica"],
        value_vars=["final_heldout_accuracy", "best_heldout_accuracy"],
        var_name="when",
        value_name="accuracy",
    )
    d["when"] = d["when"].map(
        {"final_heldout_accuracy": "final", "best_heldout_accuracy": "best during training"}
    )
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4))
    _final_vs_best(d, ns, a1)
    _clean_vs_flipped(t.history, ns, a2)
    fig.tight_layout()
    return fig


@draws
def capacity(t: StudyTables) -> plt.Figure:
    """Train error, held-out error and memorized noise against MLP width, a panel per dataset
    and noise rate, a line per regime: where the network starts to fit every label (train error
    0), what that costs held-out, and any double-descent peak near it."""
    m = t.metrics[(t.metrics["kind"] == MLP.kind) & (t.metrics["metric"] == "accuracy")]
    m = m[m["perturbation"] == "none"]
    # The datasets that sweep width (several MLP widths), at their smallest size.
    widths = m.groupby("dataset")["width"].nunique()
    m = m[m["dataset"].isin(widths[widths >= 2].index)]
    if m.empty:
        return _empty("Needs MLPs of at least two widths.")
    m = m[m["size"] == m.groupby("dataset")["size"].transform("min")].sort_values("label_noise")
    errors = {"train": "train error", "heldout": "held-out error"}
    parts = [
        m[m["split"] == split].assign(value=lambda f: 1 - f["value"], quantity=quantity)
        for split, quantity in errors.items()
    ]
    parts.append(m[m["split"] == "train_flipped"].assign(quantity="flipped labels fitted"))
    d = _with_noise_label(pd.concat(parts, ignore_index=True))
    return _lines(
        d,
        x="width",
        y="value",
        hue="regime",
        hue_order=_regime_order(d),
        style="quantity",
        style_order=[*errors.values(), "flipped labels fitted"],
        col="label noise",
        row="dataset",
        logx=True,
        height=3.0,
        aspect=1.2,
        xlabel="hidden width (units per layer)",
        ylabel="rate",
        col_title="label noise {col_name}",
        title=f"Capacity sweep at training-set size {m['size'].min()}",
    )


# Panel title and x axis (the setting's own unit) per regularizer the figure sweeps.
STRENGTH_LABELS = {
    "weight_decay": ("weight decay", "AdamW decoupled coefficient"),
    "dropout": ("dropout", "probability of dropping a unit"),
}


@draws
def regularization(t: StudyTables) -> plt.Figure:
    """Held-out accuracy and flipped labels fitted against the value of each regularizer the
    study sweeps alone (the other regularizers off; 0 is the unregularized baseline)."""
    m = t.metrics[trained(t.metrics["kind"]) & (t.metrics["metric"] == "accuracy")]
    m = m[m["dataset"] == m["dataset"].iloc[0]] if len(m) else m
    m = m[(m["size"] == m["size"].max()) & m["split"].isin(["heldout", "train_flipped"])]
    parts = []
    for setting, alone in strength_sweeps(m).items():
        part = m[alone].assign(strength=m.loc[alone, setting].astype(float))
        parts.append(part.assign(regularizer=STRENGTH_LABELS[setting][0]))
    if not parts:
        return _empty("Needs regimes that vary weight decay or dropout alone.")
    d = pd.concat(parts, ignore_index=True)
    d["quantity"] = d["split"].map(
        {"heldout": "held-out accuracy", "train_flipped": "flipped fitted"}
    )
    d = _with_noise_label(d.sort_values(["label_noise", "strength"]))
    fig = _lines(
        d,
        x="strength",
        y="value",
        hue="model",
        style="quantity",
        style_order=["held-out accuracy", "flipped fitted"],
        col="regularizer",
        row="label noise",
        facet_kws={"sharex": False, "margin_titles": True},
        height=2.8,
        aspect=1.3,
        xlabel="value",
        ylabel="accuracy / share",
        col_title="{col_name}",
        row_title="label noise {row_name}",
        title=(
            f"{d['dataset'].iloc[0]}: accuracy against regularization strength at training-set "
            f"size {d['size'].iloc[0]} (other regularizers off)"
        ),
    )
    swept = list(strength_sweeps(m))  # the columns, in order
    for ax in fig.axes:
        if ax.get_xlabel():  # the bottom row
            ax.set_xlabel(STRENGTH_LABELS[swept[_column(ax)]][1])
    return fig


@draws
def double_descent(t: StudyTables) -> plt.Figure:
    """Random features: held-out and train error against the number of features, a dotted line
    at the number of training examples (the interpolation threshold), per noise rate."""
    m = t.metrics[(t.metrics["kind"] == RandomFeatures.kind) & (t.metrics["metric"] == "accuracy")]
    m = m[m["split"].isin(["heldout", "train"])]
    if m["width"].nunique() < 2:
        return _empty("Needs random features of at least two feature counts.")
    m = m[m["size"] == m.groupby("dataset")["size"].transform("min")].sort_values("label_noise")
    d = _with_noise_label(m.assign(value=1 - m["value"]))
    d["error"] = d["split"].map({"heldout": "held-out", "train": "train"})
    fig = _lines(
        d,
        x="width",
        y="value",
        hue="regime",
        hue_order=_regime_order(d),
        style="error",
        style_order=["held-out", "train"],
        col="label noise",
        row="dataset",
        row_order=sorted(d["dataset"].unique()),
        logx=True,
        height=3.0,
        aspect=1.3,
        xlabel="random ReLU features",
        ylabel="error",
        col_title="label noise {col_name}",
        title=(
            "Double descent: random features, least-squares readout "
            f"(mean ± s.e. over {m.groupby(list(RUN_KEYS))['replica'].nunique().min()} replicas)"
        ),
    )
    # Axes run row by row: one row per dataset (sorted), one column per noise rate.
    n_train = m.groupby("dataset")["size"].min()  # sorted by dataset, as the rows
    per_axis = np.repeat(n_train.to_numpy(), d["label noise"].nunique())
    for ax, n in zip(fig.axes, per_axis, strict=True):
        ax.axvline(n, color="grey", linestyle=":", linewidth=1)
        ax.text(n, 0.98, f" n = {n}", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
    return fig


@draws
def grokking(t: StudyTables) -> plt.Figure:
    """Train and held-out accuracy on the algorithmic task against optimizer steps (log)."""
    h = t.history
    ds = [d for d, s in t.splits.items() if s.token_shape is not None]  # modular addition
    h = h[h["dataset"].isin(ds)] if ds else h.iloc[0:0]
    if h.empty:
        return _empty("No modular-addition dataset in this study.")
    d = h.melt(
        id_vars=["dataset", "model", "regime", "replica", "step"],
        value_vars=["train_accuracy", "heldout_accuracy"],
        var_name="split",
        value_name="accuracy",
    )
    d["split"] = d["split"].map({"train_accuracy": "train", "heldout_accuracy": "held-out"})
    g = sns.relplot(
        data=d,
        x="step",
        y="accuracy",
        hue="split",
        col="regime",
        row="model",
        kind="line",
        errorbar="se",
        height=2.8,
        aspect=1.2,
        facet_kws={"margin_titles": True},
    )
    g.set(xscale="log")
    g.set_axis_labels("optimizer step", "accuracy")
    g.set_titles(col_template="{col_name}", row_template="{row_name}")
    g.figure.suptitle("Modular addition: delayed generalization", y=1.02)
    g.tight_layout()
    return g.figure


# How many runs the detector figure shows: the best-replicated, so that it stays readable.
DETECTOR_PANELS = 3


def _scored_at_largest_size(frame: pd.DataFrame) -> pd.DataFrame:
    """A per-method table's rows with numbers (``status`` ok), at each dataset's largest size."""
    ok = frame[frame["status"] == "ok"] if len(frame) else frame
    return ok[ok["size"] == ok.groupby("dataset")["size"].transform("max")] if len(ok) else ok


@draws
def detectors(t: StudyTables) -> plt.Figure:
    """Each per-example method as a detector of the flipped labels: average precision (chance:
    the flip rate) and ROC AUC (chance: 0.5) per method, one row of panels per run, one marker
    per label-noise rate."""
    full = t.detectors
    d = _scored_at_largest_size(full)
    if d.empty:
        return _empty(
            "No run has flipped labels and a design that scores them (label_noise > 0, a size "
            "below the pool): see detectors.csv's status column."
        )
    # The best-replicated runs (model / regime, every noise rate).
    runs = d.groupby(["dataset", "model", "regime"], sort=False)["replicas"].min()
    keep = list(runs.sort_values(ascending=False, kind="stable").index[:DETECTOR_PANELS])
    d = _with_noise_label(d)
    order = list(d.groupby("method")["average_precision"].mean().sort_values(ascending=False).index)
    fig, axes = plt.subplots(
        len(keep), 2, figsize=(10, 0.3 * len(order) * len(keep) + 1.4), squeeze=False,
        sharey=True, layout="constrained",
    )  # fmt: skip
    for row, (dataset, model, regime) in enumerate(keep):
        g = d[(d["dataset"] == dataset) & (d["model"] == model) & (d["regime"] == regime)]
        for ax, col in ((axes[row, 0], "average_precision"), (axes[row, 1], "roc_auc")):
            sns.stripplot(
                data=g, x=col, y="method", hue="label noise", order=order, ax=ax,
                jitter=False, size=7, legend=row == 0 and col == "roc_auc",
            )  # fmt: skip
            # Chance: ROC AUC 0.5; average precision the flip rate (one line per noise rate).
            chances = [0.5] if col == "roc_auc" else sorted(g["label_noise"].unique())
            for x in chances:
                ax.axvline(x, color="tab:red", alpha=0.5, lw=0.9, ls="--")
            ax.set_xlim(*((0.4, 1.01) if col == "roc_auc" else (0, 1.02)))
            ax.set_xlabel(col.replace("_", " ") if row == len(keep) - 1 else "")
            ax.set_ylabel("")
            ax.set_title(
                f"{dataset}: {model} / {regime}, {int(g['replicas'].min())} replicas", size=9
            )
        # A method this run cannot compute says why, in its row: the reason of one of the runs
        # shown (same size, a noise rate drawn), not of a clean-label twin, which has no flips.
        why = full[
            (full["dataset"] == dataset) & (full["model"] == model) & (full["regime"] == regime)
            & full["size"].isin(set(g["size"])) & full["label_noise"].isin(set(g["label_noise"]))
        ]  # fmt: skip
        why = why[why["status"] != "ok"].drop_duplicates("method").set_index("method")["status"]
        for method, reason in why.items():
            if method in order and method not in set(g["method"]):
                axes[row, 0].text(
                    0.02, order.index(method), f"n/a: {reason}", va="center", size=7, color="0.4"
                )
    fig.suptitle("Which method finds the flipped labels (dashed: chance)", size=11)
    return fig


ESTIMATOR_STATISTIC = "spearman"  # Spearman: FZ scores are mostly zero (estimators.py doc)


def _width_axis(e: pd.DataFrame) -> pd.DataFrame:
    """The runs' width (features, for random features), or 0 for a model without one."""
    width = pd.to_numeric(e["width"], errors="coerce")
    return e.assign(width=width.fillna(0).astype(int))


@draws
def estimators(t: StudyTables) -> plt.Figure:
    """Agreement of each cheap estimator with the Feldman–Zhang scores (Spearman, bootstrap 95%
    interval over examples) against the model's width, one panel per regime and scope (one model
    per run, or the mean over the replicas that trained on each example)."""
    e = _scored_at_largest_size(t.estimators)
    if e.empty:
        return _empty(
            "No run has Feldman-Zhang scores that pass the power gate and a model that trains: "
            "see memorization_summary.csv."
        )
    e = _width_axis(e)
    stat = ESTIMATOR_STATISTIC
    order = list(e.groupby("method")[stat].mean().sort_values(ascending=False).index)
    regimes = _regime_order(e)
    scopes = [s for s in ("single", "averaged") if s in set(e["scope"])]
    fig, axes = plt.subplots(
        len(scopes), len(regimes), figsize=(4.2 * len(regimes) + 2.4, 3.4 * len(scopes)),
        squeeze=False, sharex=True, sharey=True, layout="constrained",
    )  # fmt: skip
    # Ten colours, then the same colours with square markers and dashed lines: every method
    # has a style of its own.
    colours = sns.color_palette("tab10", 10)
    style = {m: (colours[i % 10], "os^D"[i // 10 % 4], "-" if i < 10 else "--")
             for i, m in enumerate(order)}  # fmt: skip
    widths = sorted(set(e["width"]))
    log_axis = len(widths) > 1 and widths[0] > 0
    # Methods side by side at each width (a fraction of a doubling apart), so none hides another.
    dodge = dict(zip(order, 2.0 ** _dodge(len(order), 0.5), strict=True))
    columns = [stat, f"{stat}_low", f"{stat}_high"]
    for i, scope in enumerate(scopes):
        for j, regime in enumerate(regimes):
            ax = axes[i, j]
            g = e[(e["scope"] == scope) & (e["regime"] == regime)]
            for method in order:
                m = g[g["method"] == method].groupby("width")[columns].mean()
                if m.empty:
                    continue
                x = m.index.to_numpy(float) * (dodge[method] if log_axis else 1.0)
                yerr = [m[stat] - m[f"{stat}_low"], m[f"{stat}_high"] - m[stat]]
                colour, marker, ls = style[method]
                ax.errorbar(
                    x, m[stat], yerr=yerr, marker=marker, ms=4, capsize=2, lw=1.2, ls=ls,
                    color=colour, label=method,
                )  # fmt: skip
            ax.axhline(0, color="0.5", lw=0.8)
            ax.set_xlabel("width" if i == len(scopes) - 1 else "")
            ax.set_ylabel(f"{stat} with FZ ({scope})" if j == 0 else "")
            reps = int(g["replicas"].max()) if len(g) else 0
            ax.set_title(f"{regime}, {scope} ({reps} replicas)", size=9)
    if log_axis:
        axes[0, 0].set_xscale("log", base=2)
        axes[0, 0].set_xticks(widths, [str(w) for w in widths])
        axes[0, 0].set_xlim(widths[0] / 1.6, widths[-1] * 1.6)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes.flat[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Which cheap estimator agrees with the Feldman–Zhang scores", size=11)
    return fig


# --- When memorization pays (DESIGN 4b): the long tail, influence pairs, removal. ---

# Two-sided 95% intervals: a t quantile with n_replicas - 1 degrees of freedom (a few replicas:
# 1.96 standard errors would be too narrow).


def _t95(n_replicas: pd.Series) -> np.ndarray:
    return stats.t.ppf(0.975, n_replicas.astype(int).to_numpy() - 1)


# At most this many runs in the removal figure (one row each), the best-replicated.
REMOVAL_ROWS = 4
REMOVED_LABELS = {"top_memorized": "top memorized", "random": "random"}
REMOVED_COLOURS = {"top memorized": "tab:red", "random": "0.45"}
REMOVAL_SPLITS = {
    "heldout": "held-out (all test examples)",
    "influenced": "influenced test examples",
}


def _model_regime(frame: pd.DataFrame) -> pd.Series:
    """A line's name: model / regime, and "(memory on)" or "(memory off)" for a memory net."""
    memory = frame["memory"].map(memory_note)
    return frame["model"].astype(str) + " / " + frame["regime"].astype(str) + memory


def _replicated(frame: pd.DataFrame, se: str) -> pd.DataFrame:
    """Rows with an interval: two or more replicas and a finite standard error."""
    n = pd.to_numeric(frame["n_replicas"], errors="coerce")
    return frame[(n >= 2) & np.isfinite(pd.to_numeric(frame[se], errors="coerce"))]


def _panel_grid(n: int, panel: tuple[float, float], legend: float) -> tuple[plt.Figure, Any]:
    """Up to three panels a row, sharing y; ``panel`` (width, height) inches each, ``legend``
    inches more for the legend on the right."""
    cols = min(3, n)
    rows = -(-n // cols)
    return plt.subplots(
        rows, cols, figsize=(panel[0] * cols + legend, panel[1] * rows), squeeze=False,
        sharey=True, layout="constrained",
    )  # fmt: skip


def _dodge(n: int, width: float) -> np.ndarray:
    """Offsets that spread ``n`` series over ``width`` around 0 (so error bars do not overlap)."""
    return (np.arange(n) - (n - 1) / 2) * (width / max(n, 1))


# Bucket 0 (a subpopulation absent from a replica's training subset) sits two steps left of the
# singletons on the log2 axis (one step leaves no room for both labels).
FREQUENCY_TICKS = {0: "0\n(unseen)", 1: "1\n(singletons)"}


def _frequency_position(frequency: pd.Series) -> np.ndarray:
    f = frequency.to_numpy(float)
    return np.where(f == 0, 0.25, f)


def _interval_lines(
    ax: plt.Axes,
    p: pd.DataFrame,
    lines: list[str],
    palette: dict[str, Any],
    x: Callable[[pd.DataFrame, str], np.ndarray],
    y: str,
) -> None:
    """One errorbar line per ``line`` of ``p`` (columns ``line``, ``y``, ``low``, ``high``), at
    ``x(rows, line)`` (which dodges the lines apart), in x order."""
    for line in lines:
        s = p[p["line"] == line]
        if s.empty:
            continue
        xs = x(s, line)
        order = np.argsort(xs, kind="stable")
        ys = s[y].to_numpy(float)[order]
        err = np.vstack(
            [ys - s["low"].to_numpy(float)[order], s["high"].to_numpy(float)[order] - ys]
        )
        ax.errorbar(
            xs[order], ys, yerr=err, marker="o", ms=4, lw=1.4, capsize=2.5, color=palette[line],
            label=line,
        )  # fmt: skip


def _legend_by_line(fig: plt.Figure, axes: np.ndarray, lines: list[str]) -> None:
    """One legend for every panel's lines, in ``lines`` order, right of the panels."""
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(
        [handles[k] for k in lines if k in handles], [k for k in lines if k in handles],
        title="model / regime", loc="outside right center", fontsize=8, title_fontsize=9,
    )  # fmt: skip


def _widest_and_1nn(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of each dataset's widest model of every kind that trains (all its regimes) and of
    its smallest-k k-NN: a line per model of every width would be unreadable."""
    nets = trained(frame["kind"])
    widest = frame["width"] == frame.groupby(["dataset", "kind"])["width"].transform("max")
    fewest = frame["k"] == frame.groupby(["dataset", "kind"])["k"].transform("min")
    return frame[(nets & widest) | (~nets & fewest)]


@draws
def long_tail(t: StudyTables) -> plt.Figure:
    """Held-out accuracy against how many training examples a test example's subpopulation has
    (log2 buckets, 1 = singletons), one line per regime of the widest network of each kind and
    for the smallest-k k-NN, one panel per dataset and noise rate at each dataset's largest
    training-set size; 95% t intervals over replicas."""
    lt = t.long_tail
    if lt.empty:
        return _empty(
            "No long-tail table: needs a dataset with subpopulations (a long-tailed pool, "
            "DESIGN 4b) in this study."
        )
    lt = lt[lt["size"] == lt.groupby("dataset")["size"].transform("max")]
    lt = _widest_and_1nn(lt)
    d = _replicated(lt, "accuracy_se").copy()
    if d.empty:
        return _empty(
            "No run has 2 or more replicas, so no long-tail accuracy has an interval: add "
            "replicas (see n_replicas in long_tail.csv)."
        )
    half = _t95(d["n_replicas"]) * d["accuracy_se"]
    d["low"] = (d["accuracy"] - half).clip(lower=0)
    d["high"] = (d["accuracy"] + half).clip(upper=1)
    d["line"] = _model_regime(d)
    d["panel"] = (
        d["dataset"] + ", label noise " + d["label_noise"].map(lambda x: f"{x:g}")
        + ", n=" + d["size"].astype(str)
    )  # fmt: skip
    panels = list(dict.fromkeys(d.sort_values(["dataset", "label_noise"])["panel"]))
    lines = list(dict.fromkeys(d.sort_values(["kind", "model"], kind="stable")["line"]))
    palette = dict(zip(lines, sns.color_palette(n_colors=len(lines)), strict=True))
    fig, axes = _panel_grid(len(panels), (4.2, 3.3), 2.2)
    offsets = dict(zip(lines, _dodge(len(lines), 0.3), strict=True))  # in log2 units
    for ax, panel in zip(axes.flat, panels, strict=False):
        p = d[d["panel"] == panel]
        _interval_lines(
            ax, p, lines, palette,
            lambda s, line: _frequency_position(s["train_frequency"]) * 2 ** offsets[line],
            "accuracy",
        )  # fmt: skip
        ticks = sorted(p["train_frequency"].unique())
        where = _frequency_position(pd.Series(ticks))
        ax.set_xscale("log", base=2)
        ax.set_xticks(where, [FREQUENCY_TICKS.get(f, f"{f:g}") for f in ticks])
        ax.minorticks_off()
        ax.set_xlim(min(where) / 1.4, max(where) * 1.4)
        ax.set_ylim(0, 1.02)
        ax.set_title(panel, size=9)
        ax.set_ylabel("held-out accuracy" if ax.get_subplotspec().is_first_col() else "")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.supxlabel(
        "training examples of its subpopulation in the replica's subset (buckets 2-3, 4-7, ...)",
        size=10,
    )
    _legend_by_line(fig, axes, lines)
    dropped = len(lt) - len(d)
    note = f"; {dropped} bucket(s) with under 2 replicas left out" if dropped else ""
    fig.suptitle(
        "Held-out accuracy by how often a subpopulation is seen in training\n"
        f"(mean ± 95% t interval over replicas; largest size per dataset{note})",
        size=10,
    )
    return fig


def _influence_best_run(
    t: StudyTables, datasets: set[str]
) -> tuple[pd.Series | None, pd.DataFrame, str]:
    """The run to show (a summary row), its pairs, or why there is none."""
    keys = list(RUN_KEYS)
    pairs, summary = t.influence_pairs, t.influence_summary
    pairs = pairs[pairs["dataset"].isin(datasets)] if len(pairs) else pairs
    summary = summary[summary["dataset"].isin(datasets)] if len(summary) else summary
    if summary.empty:
        return (
            None,
            pairs,
            (
                "No influence summary for an image dataset: the influence stage has not run on one "
                "(influence_summary.csv)."
            ),
        )
    ok = summary[summary["powered"].eq(True)]
    if ok.empty:
        best = summary.sort_values("n_replicas", ascending=False, kind="stable").iloc[0]
        return (
            None,
            pairs,
            (
                "No run has enough replicas for influence estimates: the best has "
                f"{int(best['n_replicas'])} ({best['status']}). Influence pairs need on the order "
                "of a thousand models (DESIGN 4b); see influence_summary.csv's status column."
            ),
        )
    have = pairs.groupby(keys, sort=False).size() if len(pairs) else pd.Series(dtype=int)
    index = pd.MultiIndex.from_frame(ok[keys])
    ok = ok[index.isin(have.index) & (ok["n_pairs"] > 0)]
    if ok.empty:
        return (
            None,
            pairs,
            (
                "No high-influence pairs in the powered runs at the thresholds "
                "analysis.influence.min_memorization and analysis.influence.min_influence: "
                "lower them, or add replicas (influence_summary.csv)."
            ),
        )
    if (ok["kind"] == MLP.kind).any():
        ok = ok[ok["kind"] == MLP.kind]
    run = ok.sort_values("n_pairs", ascending=False, kind="stable").iloc[0]
    mine = (pairs[keys] == run[keys].to_numpy()).all(axis=1)
    return run, pairs[mine], ""


def _image_axis(ax: plt.Axes, img: np.ndarray, label: str, frame: str | None) -> None:
    ax.imshow(img, cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(label, fontsize=7.5, labelpad=2)
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_color(frame)
            spine.set_linewidth(2)


def _summary_line(run: pd.Series) -> str:
    text = (
        f"{int(run['n_pairs'])} pairs; expected false pairs {run['expected_false_pairs']:.2g} "
        f"(null, {int(run['n_replicas'])} replicas)"
    )
    share = run.get("same_subpopulation_share")
    if share is not None and pd.notna(share):
        text += (
            f"; {100 * share:.0f}% [{100 * run['same_subpopulation_low']:.0f}, "
            f"{100 * run['same_subpopulation_high']:.0f}] within one subpopulation"
        )
    return text


# At most this many training images (rows) and test images each (columns) in the pairs figure.
INFLUENCE_TRAIN = 8
INFLUENCE_TEST = 4


@draws
def few_shot(t: StudyTables) -> plt.Figure:
    """Held-out accuracy against training examples per class (few-shot subsets), one line per
    model / regime, one panel per dataset and noise rate; 95% t intervals over replicas."""
    d = _replicated(t.few_shot, "accuracy_se").copy() if len(t.few_shot) else t.few_shot
    if d.empty:
        return _empty(
            "No few-shot run with 2 or more replicas: give sizes per class (sizes: "
            "[{per_class: 1}, {per_class: 5}]) and replicas >= 2."
        )
    half = _t95(d["n_replicas"]) * d["accuracy_se"]
    d["low"], d["high"] = (d["accuracy"] - half).clip(lower=0), (d["accuracy"] + half).clip(upper=1)
    d["line"] = _model_regime(d)
    d["panel"] = d["dataset"] + ", label noise " + d["label_noise"].map(lambda x: f"{x:g}")
    panels = list(dict.fromkeys(d.sort_values(["dataset", "label_noise"])["panel"]))
    lines = list(dict.fromkeys(d.sort_values(["kind", "model"], kind="stable")["line"]))
    palette = dict(zip(lines, sns.color_palette(n_colors=len(lines)), strict=True))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.6 * len(panels) + 2.4, 3.6), squeeze=False, sharey=True,
        layout="constrained",
    )  # fmt: skip
    offsets = dict(zip(lines, _dodge(len(lines), 0.25), strict=True))  # in log2 units
    for ax, panel in zip(axes.flat, panels, strict=True):
        p = d[d["panel"] == panel]
        _interval_lines(
            ax, p, lines, palette,
            lambda s, line: s["shots"].to_numpy(float) * 2 ** offsets[line], "accuracy",
        )  # fmt: skip
        ticks = sorted(p["shots"].unique())
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [f"{k:g}" for k in ticks])
        ax.minorticks_off()
        ax.set_ylim(0, 1.02)
        ax.set_title(panel, size=9)
        ax.set_xlabel("training examples per class (shots)")
    axes.flat[0].set_ylabel("held-out accuracy")
    _legend_by_line(fig, axes, lines)
    fig.suptitle(
        "Few-shot: held-out accuracy by training examples per class\n"
        "(mean ± 95% t interval over replicas)",
        size=10,
    )
    return fig


@draws
def recall(t: StudyTables) -> plt.Figure:
    """Exact recall: accuracy on perturbed copies of each replica's own training examples against
    severity (0: unperturbed, the training accuracy), one panel per corruption, one line per
    regime of the widest network of each kind and for the smallest-k k-NN; 95% t intervals."""
    d = _replicated(t.recall, "recall_accuracy_se") if len(t.recall) else t.recall
    if d.empty:
        return _empty(
            "No recall result with 2 or more replicas: set `recall: true` on a dataset (with "
            "`randomization: {kind: random_labels}`, only memory can solve it) and replicas >= 2."
        )
    d = _widest_and_1nn(d).copy()
    half = _t95(d["n_replicas"]) * d["recall_accuracy_se"]
    d["low"] = (d["recall_accuracy"] - half).clip(lower=0)
    d["high"] = (d["recall_accuracy"] + half).clip(upper=1)
    d["line"] = _model_regime(d)
    # Severity 0 (unperturbed) belongs in every corruption's panel.
    names = sorted(set(d["perturbation"]) - {"none"})
    clean = d[d["perturbation"] == "none"]
    lines = list(dict.fromkeys(d.sort_values(["kind", "model"], kind="stable")["line"]))
    palette = dict(zip(lines, sns.color_palette(n_colors=len(lines)), strict=True))
    cols = min(3, max(len(names), 1))
    rows = -(-max(len(names), 1) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols + 2.4, 3.2 * rows), squeeze=False, sharey=True,
        layout="constrained",
    )  # fmt: skip
    offsets = dict(zip(lines, _dodge(len(lines), 0.3), strict=True))
    for ax, name in zip(axes.flat, names, strict=False):
        p = pd.concat([clean, d[d["perturbation"] == name]])
        _interval_lines(
            ax, p, lines, palette,
            lambda s, line: s["severity"].to_numpy(float) + offsets[line], "recall_accuracy",
        )  # fmt: skip
        unit = PARAMETER_AXIS.get(name, "severity")
        ax.set_title(f"{name} ({unit} by severity)", size=9)
        ax.set_xticks(sorted(p["severity"].unique()))
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("severity (0 = the stored example itself)")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("recall accuracy")
    _legend_by_line(fig, axes, lines)
    fig.suptitle(
        "Exact recall: perturbed copies of each replica's own training examples\n"
        "(mean ± 95% t interval over replicas)",
        size=10,
    )
    return fig


@draws
def memory(t: StudyTables) -> plt.Figure:
    """What a memory network's memory adds: accuracy with the memory on minus off, paired per
    replica (95% t intervals), on held-out data (by size or shots) and in exact recall (by
    severity; 0: the stored examples themselves), a panel per dataset, a line per run."""
    d = _replicated(t.memory_effect, "difference_se") if len(t.memory_effect) else t.memory_effect
    d = d[d["split"] != "train"] if len(d) else d
    if d.empty:
        return _empty(
            "No memory network with 2 or more replicas: add a model of kind memory_net "
            "(memory on and off are evaluated side by side) and replicas >= 2."
        )
    d = d.copy()
    half = _t95(d["n_replicas"]) * d["difference_se"]
    d["low"], d["high"] = d["difference"] - half, d["difference"] + half
    d["line"] = d["model"] + " / " + d["regime"]
    d["where"] = np.where(
        d["split"] == "heldout",
        np.where(d["shots"] > 0, d["shots"].astype(str) + " shot(s)", "n=" + d["size"].astype(str)),
        "recall, sev. " + d["severity"].astype(str),
    )
    panels = sorted(set(d["dataset"]))
    lines = list(dict.fromkeys(d.sort_values(["model", "regime"])["line"]))
    palette = dict(zip(lines, sns.color_palette(n_colors=len(lines)), strict=True))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.8 * len(panels) + 3.2, 3.4), squeeze=False, sharey=True,
        layout="constrained",
    )  # fmt: skip
    offsets = dict(zip(lines, _dodge(len(lines), 0.3), strict=True))
    for ax, dataset in zip(axes.flat, panels, strict=True):
        p = d[d["dataset"] == dataset].sort_values(["split", "shots", "size", "severity"])
        where = list(dict.fromkeys(p["where"]))
        position = {w: i for i, w in enumerate(where)}
        for line in lines:
            s = p[p["line"] == line]
            xs = s["where"].map(position).to_numpy(float) + offsets[line]
            ys = s["difference"].to_numpy(float)
            err = np.vstack([ys - s["low"].to_numpy(float), s["high"].to_numpy(float) - ys])
            # Markers only: the x positions are different quantities, not a sweep.
            ax.errorbar(
                xs, ys, yerr=err, marker="o", ms=4, ls="none", capsize=2.5,
                color=palette[line], label=line,
            )  # fmt: skip
            for x, y, mix in zip(xs, ys, s["mix"], strict=True):
                ax.annotate(
                    f"{mix:.2f}", (x, y), xytext=(4, -9), textcoords="offset points",
                    fontsize=6.5, color=palette[line],
                )  # fmt: skip
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xticks(range(len(where)), where, rotation=30, ha="right", fontsize=8)
        ax.set_title(dataset, size=9)
    axes.flat[0].set_ylabel("accuracy, memory on − off")
    _legend_by_line(fig, axes, lines)
    fig.suptitle(
        "What the memory adds: accuracy with the memory read minus the head alone\n"
        "(paired per replica, mean ± 95% t interval; beside each point its mean memory weight "
        "mix)",
        size=10,
    )
    return fig


@draws
def influence_pairs(t: StudyTables) -> plt.Figure:
    """The strongest high-influence pairs of the best powered run: each training image (rows,
    highest influence first) beside the test images it influences most."""
    images = {d for d, s in t.splits.items() if s.image_shape is not None}
    tables = (t.influence_pairs, t.influence_summary)
    present = set().union(*(set(f["dataset"]) for f in tables if "dataset" in f))
    if not images & present:
        return _empty("No influence analysis on image data in this study.")
    run, pairs, why = _influence_best_run(t, images)
    if run is None:
        return _empty(why)
    split = t.splits[run["dataset"]]
    if split.image_shape is None:  # `images` holds the datasets with images only
        raise ValueError(f"dataset {run['dataset']!r} has no images")
    h, w = split.image_shape
    pairs = pairs.sort_values(["influence", "test_index"], ascending=[False, True], kind="stable")
    trains = list(dict.fromkeys(pairs["train_index"]))[:INFLUENCE_TRAIN]
    cols = min(INFLUENCE_TEST, int(pairs.groupby("train_index").size().max()))
    fig, axes = plt.subplots(
        len(trains), cols + 2, figsize=(1.45 * (cols + 1) + 0.4, 1.75 * len(trains) + 0.9),
        squeeze=False, gridspec_kw={"width_ratios": [1, 0.25, *[1] * cols]},
        layout="constrained",
    )  # fmt: skip
    colour = {True: "tab:green", False: "tab:orange"}
    for row, i in zip(axes, trains, strict=True):
        mine = pairs[pairs["train_index"] == i].head(cols)
        first = mine.iloc[0]
        _image_axis(
            row[0],
            split.x_pool[int(i)].reshape(h, w),
            f"train #{int(i)}: label {split.y_pool[int(i)]}\nmem {first['memorization']:.2f}",
            None,
        )
        row[1].axis("off")
        row[1].annotate("→", (0.5, 0.5), ha="center", va="center", size=14, color="0.4")
        for ax, (_, p) in zip(row[2:], mine.iterrows(), strict=False):
            j = int(p["test_index"])
            same = p.get("same_subpopulation")
            se = p.get("influence_se")
            pm = f" ± {se:.2f}" if se is not None and pd.notna(se) else ""
            _image_axis(
                ax,
                split.x_test[j].reshape(h, w),
                f"test #{j}: label {split.y_test[j]}\ninfl {p['influence']:.2f}{pm}",
                colour[bool(same)] if same is not None and pd.notna(same) else None,
            )
        for ax in row[2 + len(mine) :]:
            ax.axis("off")
    axes[0, 0].set_title("training image", fontsize=8)
    axes[0, 2].set_title("test images it influences", fontsize=8, loc="left")
    title = run_label(run.to_frame().T).iloc[0].replace("\n", ", ")
    frames = (
        "; frame: same subpopulation (green) or not (orange)"
        if "same_subpopulation" in pairs and pairs["same_subpopulation"].notna().any()
        else ""
    )
    fig.suptitle(
        f"High-influence pairs: {title}\n{_summary_line(run)}\n"
        f"influence = P[test correct | train in] − P[… | out], ± s.e.{frames}",
        fontsize=9,
    )
    return fig


@draws
def removal(t: StudyTables) -> plt.Figure:
    """Accuracy change after removing the k most memorized training examples vs k random ones,
    on all held-out examples and on the influenced ones; one row per run (at most 4)."""
    r = t.removal
    if r.empty:
        return _empty(
            "No removal experiment in this study: the removal stage is off (set removal.k in "
            "the config)."
        )
    d = _replicated(r, "accuracy_change_se")
    if d.empty:
        return _empty(
            "No removal result has 2 or more replicas, so none has an interval: add replicas "
            "(see n_replicas in removal.csv)."
        )
    d = d.assign(run=run_label(d), arm=d["removed"].map(lambda a: REMOVED_LABELS.get(a, a)))
    runs = d.groupby("run", sort=False)["n_replicas"].min().sort_values(ascending=False)
    keep = list(runs.index[:REMOVAL_ROWS])
    arms = [a for a in REMOVED_COLOURS if a in set(d["arm"])]
    arms += sorted(set(d["arm"]) - set(arms))
    extra = dict(zip(arms, sns.color_palette(n_colors=len(arms)), strict=True))
    palette = {a: REMOVED_COLOURS.get(a, extra[a]) for a in arms}
    splits = list(REMOVAL_SPLITS)
    ks = sorted(d["n_removed"].unique())
    step = float(np.min(np.diff(ks))) if len(ks) > 1 else 1.0
    offsets = dict(zip(arms, _dodge(len(arms), 0.25 * step), strict=True))
    fig, axes = plt.subplots(
        len(keep), 2, figsize=(10, 2.7 * len(keep) + 1.0), squeeze=False, sharex=True,
        sharey="col", layout="constrained",
    )  # fmt: skip
    for row, run in zip(axes, keep, strict=True):
        for ax, split in zip(row, splits, strict=True):
            p = d[(d["run"] == run) & (d["split"] == split)]
            ax.axhline(0, color="0.3", lw=0.9)
            for arm in arms:
                s = p[p["arm"] == arm].sort_values("n_removed")
                if s.empty:
                    continue
                ax.errorbar(
                    s["n_removed"].to_numpy(float) + offsets[arm],
                    100 * s["accuracy_change"].to_numpy(float),
                    yerr=100 * _t95(s["n_replicas"]) * s["accuracy_change_se"].to_numpy(float),
                    marker="o", ms=4, lw=1.4, capsize=3, color=palette[arm], label=arm,
                )  # fmt: skip
            if p.empty:
                ax.text(
                    0.5, 0.5, "no result (no influenced test examples?)", ha="center",
                    va="center", transform=ax.transAxes, size=8, color="0.4",
                )  # fmt: skip
            ax.set_xticks(ks, [f"{k:g}" for k in ks])
            ax.set_title(f"{run.replace(chr(10), ', ')}\n{REMOVAL_SPLITS[split]}", size=8.5)
            ax.set_ylabel("accuracy change (points)" if split == splits[0] else "")
        for ax in row:
            ax.set_xlabel("")
    for ax in axes[-1]:
        ax.set_xlabel("training examples removed (k)")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(
        list(handles.values()), list(handles), title="removed", loc="outside lower center",
        ncols=len(handles), fontsize=9, title_fontsize=9,
    )  # fmt: skip
    fig.suptitle(
        "Change in test accuracy after removing the most memorized vs random training examples\n"
        "(mean ± 95% t interval over paired replicas; 0 = nothing removed)",
        size=10,
    )
    return fig


# Capacities reported in the literature (bits per parameter) drawn for reference: bits = c x
# parameters, each with its source.
LITERATURE_CAPACITY = (
    (5.0, "5 bits/param: RNNs (Collins et al. 2017)", (0, (1, 1.5))),
    (3.6, "3.6 bits/param: GPT-style (Morris et al. 2025)", (0, (5, 2))),
    (2.0, "2 bits/param: facts (Allen-Zhu & Li 2025)", (0, (5, 2, 1, 2))),
)
CEILING = "every label of a training set of n (n log2 K)"


def _double_descent_peaks(t: StudyTables, kinds: set[str]) -> pd.DataFrame:
    """Per width sweep (dataset, noise, model, regime at its smallest size) of a model kind in
    ``kinds`` on data whose labels are not all random: the width of highest held-out error, where
    that is neither the narrowest nor the widest (a peak, not a trend), with its parameters."""
    m = t.metrics
    m = m[
        m["kind"].isin(kinds)
        & (m["split"] == "heldout")
        & (m["metric"] == "accuracy")
        & (m["perturbation"] == "none")
        & (m["dataset"].map(lambda d: t.randomizations.get(d)) != "random_labels")
        & m["dataset"].isin(list(t.splits))
    ]
    sweep = ["dataset", "label_noise", "model_name", "regime"]
    m = m[m["size"] == m.groupby(sweep)["size"].transform("min")]
    rows = []
    for _, s in m.groupby(sweep):
        error = 1 - s.groupby("width")["value"].mean()
        if len(error) < 3 or error.idxmax() in (error.index.min(), error.index.max()):
            continue
        run = s[s["width"] == error.idxmax()].iloc[0]
        parameters = bits_analysis.parameter_count(run, t.splits[run["dataset"]])
        rows.append(run[[*sweep, "size", "model", "width"]].to_dict() | {"parameters": parameters})
    return pd.DataFrame(rows)


@draws
def capacity_bits(t: StudyTables) -> plt.Figure:
    """Bits stored on random labels against parameters (log-log), at each model's best
    training-set size, with the literature's capacities and any double-descent peak."""
    c = t.capacity_bits
    if c.empty:
        return _empty(
            "No bits stored: needs a dataset with `randomization: {kind: random_labels}` and a "
            "model with parameters (an mlp, cnn or random_features)."
        )
    # A line per model (its widths along it) and regime.
    noise = c["label_noise"].map(lambda x: f", noise {x:g}")
    c = c.assign(line=c["model_name"].astype(str) + " / " + c["regime"].astype(str) + noise)
    lines = list(dict.fromkeys(c.sort_values(["model_name", "regime"])["line"]))
    palette = dict(zip(lines, sns.color_palette(n_colors=len(lines)), strict=True))
    datasets = sorted(c["dataset"].unique())
    peaks = _double_descent_peaks(t, set(c["kind"]))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(6.2 * len(datasets) + 2.5, 4.6), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for ax, dataset in zip(axes[0], datasets, strict=True):
        d = c[(c["dataset"] == dataset) & (c["bits_stored"] > 0)]
        best = d[d["is_max"].astype(bool)]
        half = stats.t.ppf(0.975, best["replicas"].to_numpy(int) - 1) * best["bits_stored_se"]
        best = best.assign(low=best["bits_stored"] - half, high=best["bits_stored"] + half)
        # A lower end at or below 0 runs off the log axis: down to its bottom edge.
        best = best.assign(low=best["low"].where(best["low"] > 0, best["bits_stored"] / 100))
        best = best.fillna({"low": best["bits_stored"], "high": best["bits_stored"]})
        others = d[~d["is_max"].astype(bool)]
        for line in lines:  # the sizes that store less, faint
            o = others[others["line"] == line]
            ax.scatter(o["parameters"], o["bits_stored"], s=12, color=palette[line], alpha=0.3)
        _interval_lines(ax, best, lines, palette, lambda s, _: s["parameters"].to_numpy(float),
                        "bits_stored")  # fmt: skip
        xs = np.geomspace(c["parameters"].min() / 2, c["parameters"].max() * 2, 50)
        for per, label, dash in LITERATURE_CAPACITY:
            ax.plot(xs, per * xs, color="0.35", lw=1, linestyle=dash, label=label)
        for n, ceiling in d.groupby("train_size")["label_bits"].max().items():
            ax.axhline(ceiling, color="0.6", lw=2, alpha=0.5, label=CEILING)
            ax.text(1, ceiling, f"n = {n} ", transform=ax.get_yaxis_transform(), ha="right",
                    va="bottom", fontsize=7, color="0.4")  # fmt: skip
        for _, p in peaks.iterrows():
            ax.axvline(p["parameters"], color="tab:red", lw=1, alpha=0.7, linestyle="--")
            ax.text(p["parameters"], 0.02, f" double-descent peak: {p['model']}\n {p['dataset']}, "
                    f"n={p['size']}", transform=ax.get_xaxis_transform(), fontsize=7,
                    color="tab:red", va="bottom")  # fmt: skip
        ax.set(xscale="log", yscale="log", xlabel="trained parameters per replica")
        for axis in (ax.xaxis, ax.yaxis):  # 1-2-5 ticks written plainly (not 2x10^3)
            axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
            axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel("bits stored (training labels)")
        ax.set_title(f"{dataset}: K = {d['n_classes'].max() if len(d) else '?'} random labels",
                     size=10)  # fmt: skip
        ax.set_ylim(bottom=max(d["bits_stored"].min() / 3, 1e-1) if len(d) else None)
    _legend_by_line(fig, axes, [*lines, *(label for _, label, _ in LITERATURE_CAPACITY),
                                CEILING])  # fmt: skip
    fig.legends[0].set_title("model / regime; reference")
    n = int(c["replicas"].min())
    fig.suptitle(
        "Capacity: bits stored on uniformly random labels, at each model's best training-set size\n"
        f"(sum over training examples of max(0, log2 K - CE/ln 2); mean ± 95% t interval over {n}+"
        " replicas; faint: the other sizes)",
        size=10,
    )
    return fig


EXPOSURE_STYLES = {"rank": "-", "extrapolated": "--"}


@draws
def exposure(t: StudyTables) -> plt.Figure:
    """Canary exposure (bits) against repetitions in training, one panel per dataset, noise rate
    and size, one colour per model / regime, the rank method solid and the skew-normal
    extrapolation dashed; error bars are ± 1 standard error over canaries. Reference lines:
    log2 e (a random rank's expected exposure) and log2 |R| (the rank method's maximum)."""
    e = t.exposure
    if e.empty:
        return _empty("No exposure table: set `canaries` on a dataset (config/README.md).")
    d = e.assign(line=_model_regime(e))
    d["panel"] = (
        d["dataset"] + ", label noise " + d["label_noise"].map(lambda x: f"{x:g}")
        + ", n=" + d["size"].astype(str)
    )  # fmt: skip
    panels = list(dict.fromkeys(d.sort_values(["dataset", "label_noise", "size"])["panel"]))
    lines = list(dict.fromkeys(d.sort_values(["kind", "model"], kind="stable")["line"]))
    palette = dict(zip(lines, sns.color_palette(n_colors=len(lines)), strict=True))
    levels = sorted(d["repetitions"].unique())
    where = {r: i for i, r in enumerate(levels)}  # evenly spaced: 0 has no log position
    offsets = dict(zip(lines, _dodge(len(lines), 0.3), strict=True))
    fig, axes = _panel_grid(len(panels), (4.4, 3.4), 2.6)
    for ax, panel in zip(axes.flat, panels, strict=False):
        p = d[d["panel"] == panel]
        for (line, method), s in p.groupby(["line", "method"], sort=False):
            s = s.sort_values("repetitions")
            x = s["repetitions"].map(where).to_numpy(float) + offsets[line]
            y = s["exposure"].to_numpy(float)
            ax.errorbar(
                x, y, yerr=s["exposure_se"].to_numpy(float), color=palette[line],
                ls=EXPOSURE_STYLES.get(method, ":"), marker="o", ms=4, lw=1.4, capsize=2.5,
                label=line if method == "rank" else None,
            )  # fmt: skip
            # Infinite pairs (a loss below the fitted support): the mean of the finite ones is
            # a lower bound, marked at the top with the share left out.
            for xi, share in zip(x, s["infinite"].fillna(0).to_numpy(float), strict=True):
                if share > 0:
                    ax.plot(xi, 0.97, marker="^", ms=6, mfc="none", color=palette[line],
                            transform=ax.get_xaxis_transform())  # fmt: skip
                    # Each line's share on its own row, so neighbours' labels do not overlap.
                    row = 0.93 - 0.045 * lines.index(line)
                    ax.text(xi, row, f"{share:.0%}", transform=ax.get_xaxis_transform(),
                            ha="center", va="top", size=6.5, color=palette[line])  # fmt: skip
        ax.axhline(np.log2(np.e), color="0.35", lw=0.9, ls=":")
        ax.text(0.99, np.log2(np.e), "log2 e (random rank) ", transform=ax.get_yaxis_transform(),
                size=7, ha="right", va="bottom", color="0.35")  # fmt: skip
        top = max(np.log2(p["n_references"].unique()))
        for bits in sorted(np.log2(p["n_references"].unique())):
            ax.axhline(bits, color="0.35", lw=0.9, ls="-.")
            # At the left, where exposure is lowest (the controls), so no line crosses it.
            ax.text(0.01, bits, f" log2 |R| = {bits:g} (rank's maximum)", size=7, ha="left",
                    va="bottom", color="0.35", transform=ax.get_yaxis_transform())  # fmt: skip
        # Room above log2 |R| and the highest extrapolation for the infinite marks.
        highest = np.nanmax((p["exposure"] + p["exposure_se"].fillna(0)).to_numpy(float))
        ax.set_ylim(0, max(top, highest) * 1.25 + 0.045 * len(lines) * top)
        ax.set_xticks(
            range(len(levels)), [f"{r}" + ("\n(control)" if r == 0 else "") for r in levels]
        )
        ax.set_title(panel, size=9)
        ax.set_xlabel("repetitions of the canary in training")
        ax.set_ylabel("exposure (bits)" if ax.get_subplotspec().is_first_col() else "")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    _exposure_legend(fig, lines, palette)
    fig.suptitle(
        "Canary exposure (Carlini et al. 2019): rank among never-trained references (solid),\n"
        "skew-normal extrapolation (dashed); mean ± 1 SE over canaries\n"
        "^: the share of pairs whose extrapolated exposure is infinite, left out of the mean",
        size=10,
    )
    return fig


def _exposure_legend(fig: plt.Figure, lines: list[str], palette: dict[str, Any]) -> None:
    """The model / regime colours, then the methods' line styles."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=palette[k], marker="o", ms=4, lw=1.4) for k in lines]
    handles += [Line2D([], [], color="0.3", ls=ls, lw=1.4) for ls in EXPOSURE_STYLES.values()]
    labels = [*lines, *(f"method: {m}" for m in EXPOSURE_STYLES)]
    fig.legend(
        handles, labels, title="model / regime", loc="outside right center", fontsize=8,
        title_fontsize=9,
    )  # fmt: skip


# --- Sequences (memlab.analysis.sequences): a word-level language model on synthetic text. ---

SEEN_STYLES = {"trained": "-", "not_trained": ":"}
SEEN_LABELS = {
    "trained": "replicas that trained on the fact",
    "not_trained": "replicas that never saw it",
}
FORM_TITLES = {
    "trained": "trained wording (the capital of X is ...)",
    "paraphrase": "held-out paraphrase (X has its capital at ...)",
}
PERPLEXITY_SPLITS = {
    "train": "trained\ndocuments",
    "unseen": "pool documents\nnot trained on",
    "heldout": "held-out\ndocuments",
}
WORD_SPLIT_COLOURS = {"trained": "tab:red", "untrained": "tab:blue", "heldout": "0.4"}
WORD_SPLIT_LABELS = {
    "trained": "documents the replica trained on",
    "untrained": "pool documents it did not",
    "heldout": "held-out documents",
}
TOP_DOCUMENTS = 5


def _learned(frame: pd.DataFrame) -> pd.DataFrame:
    """A sequence table's rows from usable replicas only: nothing is drawn from runs whose
    replicas all stopped at max_epochs while still learning (``replicas`` 0)."""
    return frame[frame["replicas"] > 0] if len(frame) else frame


def _sequence_panel(frame: pd.DataFrame) -> pd.Series:
    """A run's panel title without its regime: dataset, model and training-set size."""
    return frame["dataset"] + ": " + frame["model"] + ", n=" + frame["size"].astype(str)


def _sequence_lines(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """``frame`` with ``line`` (model / regime and its usable replicas, the count every point
    of the line rests on), the lines in regime order and a colour each."""
    order = {r: i for i, r in enumerate(_regime_order(frame))}
    replicas = frame.groupby(["model", "regime"])["replicas"].transform(
        lambda r: f"{int(r.min())}" if r.min() == r.max() else f"{int(r.min())}-{int(r.max())}"
    )
    d = frame.assign(line=_model_regime(frame) + " (" + replicas + " replicas)")
    d = d.assign(_order=d["regime"].map(order)).sort_values(["_order", "model"], kind="stable")
    lines = list(dict.fromkeys(d["line"]))
    return (
        d.drop(columns="_order"),
        lines,
        dict(zip(lines, sns.color_palette(n_colors=len(lines)), strict=True)),
    )


def _t_bounds(
    d: pd.DataFrame, value: str, se: str, n: str, clip: tuple[float, float] | None = None
) -> pd.DataFrame:
    """``d`` with ``low``/``high``: ``value ± t(0.975, n - 1) se`` (NaN under 2 units)."""
    count = pd.to_numeric(d[n], errors="coerce").fillna(0)
    with np.errstate(invalid="ignore"):
        half = np.where(count >= 2, _t95(count.clip(lower=2)) * d[se].to_numpy(float), np.nan)
    low, high = d[value] - half, d[value] + half
    if clip is not None:
        low, high = low.clip(lower=clip[0]), high.clip(upper=clip[1])
    return d.assign(low=low, high=high)


@draws
def fact_recall(t: StudyTables) -> plt.Figure:
    """Fact recall against the fact's training frequency k (log2 axis), one panel per form
    (trained wording, held-out paraphrase) and run, one colour per model / regime; solid: the
    replicas that trained on the fact, dotted: those that never saw it; chance dashed; 95% t
    intervals over facts."""
    f = _learned(t.fact_recall)
    f = f[f["n_facts"] > 0] if len(f) else f
    if f.empty:
        return _empty(
            "No fact recall: needs a text dataset with facts and trained (not under-trained) "
            "sequence runs."
        )
    d = _t_bounds(f, "recall", "recall_se", "n_facts", (0.0, 1.0))
    d, lines, palette = _sequence_lines(d)
    d["panel"] = _sequence_panel(d)
    panels = list(dict.fromkeys(d["panel"]))
    forms = [x for x in FORM_TITLES if x in set(d["form"])]
    fig, axes = plt.subplots(
        len(panels), len(forms), figsize=(4.4 * len(forms) + 3.2, 3.4 * len(panels)),
        squeeze=False, sharey=True, layout="constrained",
    )  # fmt: skip
    offsets = dict(zip(lines, _dodge(len(lines), 0.25), strict=True))
    for row, panel in enumerate(panels):
        for col, form in enumerate(forms):
            ax = axes[row, col]
            p = d[(d["panel"] == panel) & (d["form"] == form)]
            for (line, seen), s in p.groupby(["line", "seen"], sort=False):
                s = s.sort_values("train_frequency")
                shift = offsets[line] + (0.06 if seen != "trained" else 0.0)
                x = s["train_frequency"].to_numpy(float) * 2**shift
                y = s["recall"].to_numpy(float)
                err = np.vstack([y - s["low"].to_numpy(float), s["high"].to_numpy(float) - y])
                ax.errorbar(
                    x, y, yerr=np.nan_to_num(err), color=palette[line],
                    ls=SEEN_STYLES.get(seen, "-."), marker="o" if seen == "trained" else "s",
                    mfc=palette[line] if seen == "trained" else "white", ms=4, lw=1.4,
                    capsize=2.5,
                )  # fmt: skip
            for chance in p["chance"].unique():
                ax.axhline(chance, color="0.35", lw=0.9, ls="--")
                ax.text(0.99, chance, "chance ", transform=ax.get_yaxis_transform(), size=7,
                        ha="right", va="bottom", color="0.35")  # fmt: skip
            ticks = sorted(p["train_frequency"].unique())
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [_bucket_label(int(k), k == ticks[-1]) for k in ticks])
            ax.minorticks_off()
            if ticks:
                ax.set_xlim(min(ticks) / 1.5, max(ticks) * 1.5)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{panel}\n{FORM_TITLES[form]}", size=9)
            ax.set_xlabel("copies of the fact in the pool (k)")
        axes[row, 0].set_ylabel("fact recall (top-1 value)")
    _fact_recall_legend(fig, lines, palette)
    fig.suptitle(
        "Fact recall by training frequency (mean over facts ± 95% t interval over facts)",
        size=10,
    )
    return fig


def _fact_recall_legend(fig: plt.Figure, lines: list[str], palette: dict[str, Any]) -> None:
    """The model / regime colours (with their replicas), then the seen-groups and chance."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=palette[k], marker="o", ms=4, lw=1.4) for k in lines]
    handles += [Line2D([], [], color="0.3", ls=ls, lw=1.4) for ls in SEEN_STYLES.values()]
    handles.append(Line2D([], [], color="0.35", ls="--", lw=0.9))
    labels = [*lines, *SEEN_LABELS.values(), "chance (1 / values of a relation)"]
    fig.legend(
        handles, labels, title="model / regime", loc="outside right center", fontsize=8,
        title_fontsize=9,
    )  # fmt: skip


def _bucket_label(k: int, last: bool = False) -> str:
    """A power-of-two frequency bucket by its lower bound: 1, 2-3, 4-7, ...; the ``last`` one
    (the data's largest) open: 16+."""
    if k <= 1:
        return str(k)
    return f"{k}+" if last else f"{k}-{2 * k - 1}"


def _memorization_units(s: pd.DataFrame) -> pd.DataFrame:
    """Counterfactual memorization per independent unit and category: a fact's or canary's
    copies share their replicas (all in or all out), so they are one unit (their mean score);
    then per (line, panel, category) the mean over units with a 95% t interval over units (a
    single unit: its score's own 95% Welch interval over replicas)."""
    unit = np.where(
        s["fact"] >= 0,
        "f" + s["fact"].astype(str),
        np.where(s["canary"] >= 0, "c" + s["canary"].astype(str), "d" + s["document"].astype(str)),
    )
    # Facts by power-of-two buckets of k (few facts have a given large k); a grammar document
    # with k > 1 has identical twins that are separate documents (not kept together).
    reps = frequency_bucket(s["repetitions"].to_numpy(int))
    top = pd.Series(reps, index=s.index).groupby(s["doc_kind"]).transform("max")
    label = pd.Series(
        [_bucket_label(int(k), k == t) for k, t in zip(reps, top, strict=True)], index=s.index
    )
    single = (s["doc_kind"] == "grammar") & (reps == 1)
    category = np.where(single, "grammar", s["doc_kind"] + "\nk=" + label)
    s = s.assign(repetitions=reps)
    s = s.assign(unit=unit, category=category)
    keys = ["line", "panel", "doc_kind", "repetitions", "category"]
    per_unit = s.groupby([*keys, "unit"], sort=False)[["score", "low", "high"]].mean()
    g = per_unit.reset_index().groupby(keys, sort=False)
    out = g.agg(
        score=("score", "mean"), units=("score", "size"), sd=("score", "std"),
        one_low=("low", "first"), one_high=("high", "first"),
    ).reset_index()  # fmt: skip
    out["score_se"] = out["sd"] / np.sqrt(out["units"])
    out = _t_bounds(out, "score", "score_se", "units")
    # A single document (a canary): its own score's 95% Welch interval over replicas.
    one = out["units"] == 1
    out.loc[one, "low"], out.loc[one, "high"] = out["one_low"][one], out["one_high"][one]
    return out


KIND_ORDER = {"grammar": 0, "document": 1, "fact": 2, "canary": 3}


@draws
def sequence_memorization(t: StudyTables) -> plt.Figure:
    """Counterfactual memorization (Zhang et al. 2023) by document kind and repetitions, one
    colour per model / regime (mean over documents, a fact's or canary's copies as one, ± 95% t
    interval over them; the tick says how many), one panel per run; under it the most memorized
    documents of the run's first regime with their score's 95% Welch interval and replicas
    in / out."""
    m = _learned(t.sequence_memorization)
    if m.empty:
        return _empty(
            "No counterfactual memorization: needs trained (not under-trained) sequence runs."
        )
    d, lines, palette = _sequence_lines(m)
    d["panel"] = _sequence_panel(d)
    c = _memorization_units(d)
    c = c.assign(_k=c["doc_kind"].map(KIND_ORDER).fillna(9)).sort_values(["_k", "repetitions"])
    panels = list(dict.fromkeys(d["panel"]))
    fig, axes = plt.subplots(
        2 * len(panels), 1, figsize=(10, 5.6 * len(panels)), squeeze=False,
        height_ratios=[3.4, 1.6] * len(panels), layout="constrained",
    )  # fmt: skip
    offsets = dict(zip(lines, _dodge(len(lines), 0.5), strict=True))
    for row, panel in enumerate(panels):
        ax, text = axes[2 * row, 0], axes[2 * row + 1, 0]
        p = c[c["panel"] == panel]
        categories = list(dict.fromkeys(p["category"]))
        where = {k: i for i, k in enumerate(categories)}
        for line in lines:
            s = p[p["line"] == line]
            y = s["score"].to_numpy(float)
            err = np.vstack([y - s["low"].to_numpy(float), s["high"].to_numpy(float) - y])
            ax.errorbar(
                s["category"].map(where).to_numpy(float) + offsets[line], y,
                yerr=np.nan_to_num(err), color=palette[line], marker="o", ms=5, lw=0,
                elinewidth=1.4, capsize=3, label=line,
            )  # fmt: skip
        units = p.groupby("category", sort=False)["units"].max()
        ax.axhline(0, color="0.35", lw=0.9, ls=":")
        ax.set_xticks(
            range(len(categories)), [f"{k}\n({int(units[k])})" for k in categories], size=8
        )
        ax.set_ylabel("counterfactual memorization\n(accuracy in - accuracy out)", size=9)
        ax.set_title(
            f"{panel} (in brackets: documents, a fact's or canary's copies as one)", size=9
        )
        _top_documents(text, d[d["panel"] == panel], lines)
    _legend_by_line(fig, axes[::2], lines)
    fig.suptitle(
        "Counterfactual memorization by document kind and repetitions k (Zhang et al. 2023)\n"
        "(mean over documents ± 95% t interval over them; one document: its own 95% Welch "
        "interval over replicas)",
        size=10,
    )
    return fig


def _top_documents(ax: plt.Axes, s: pd.DataFrame, lines: list[str]) -> None:
    """The ``TOP_DOCUMENTS`` most memorized distinct texts of the panel's first line, each with
    its score, 95% interval and replicas in / out."""
    import textwrap

    ax.axis("off")
    first = next(line for line in lines if line in set(s["line"]))
    top = s[s["line"] == first].sort_values("score", ascending=False)
    top = top.drop_duplicates("text").head(TOP_DOCUMENTS)
    entries = [f"Most memorized documents, {first}:"]
    for _, r in top.iterrows():
        text = textwrap.shorten(str(r["text"]), 70, placeholder=" ...")
        entries.append(
            f"{r['score']:.2f} [{r['low']:.2f}, {r['high']:.2f}]  {r['doc_kind']}, "
            f'k={int(r["repetitions"])}, in/out {int(r["n_in"])}/{int(r["n_out"])}\n   "{text}"'
        )
    ax.text(0, 1, "\n".join(entries), va="top", ha="left", size=7.5, family="monospace",
            transform=ax.transAxes)  # fmt: skip


@draws
def sequence_perplexity(t: StudyTables) -> plt.Figure:
    """Per-token perplexity of each run's language models on the documents they trained on,
    pool documents they did not, and held-out documents (left), and on held-out documents with
    typos by severity (right; 0 = unchanged), one colour per model / regime; perplexity is
    exp(mean loss) and its 95% interval exp(loss ± t se) over replicas."""
    p = _learned(t.sequence_perplexity)
    if p.empty:
        return _empty("No perplexity by split: needs trained (not under-trained) sequence runs.")
    d = _t_bounds(p, "loss", "loss_se", "replicas")
    d = d.assign(low=np.exp(d["low"]), high=np.exp(d["high"]))
    d, lines, palette = _sequence_lines(d)
    d["panel"] = _sequence_panel(d)
    panels = list(dict.fromkeys(d["panel"]))
    fig, axes = plt.subplots(
        len(panels), 2, figsize=(11.5, 3.6 * len(panels)), squeeze=False, layout="constrained"
    )
    offsets = dict(zip(lines, _dodge(len(lines), 0.4), strict=True))
    where = {s: i for i, s in enumerate(PERPLEXITY_SPLITS)}
    for row, panel in enumerate(panels):
        left, right = axes[row]
        s = d[(d["panel"] == panel) & d["split"].isin(list(where))]
        for line in lines:
            q = s[s["line"] == line].sort_values("split", key=lambda x: x.map(where))
            if q.empty:
                continue
            x = q["split"].map(where).to_numpy(float) + offsets[line]
            y = q["perplexity"].to_numpy(float)
            err = np.vstack([y - q["low"].to_numpy(float), q["high"].to_numpy(float) - y])
            left.errorbar(x, y, yerr=np.nan_to_num(err), color=palette[line], marker="o", ms=5,
                          lw=0, elinewidth=1.4, capsize=3, label=line)  # fmt: skip
        left.set_xticks(range(len(where)), list(PERPLEXITY_SPLITS.values()), size=8)
        left.set_xlim(-0.6, len(where) - 0.4)
        left.set_yscale("log")
        left.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        left.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        left.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        left.set_ylabel("perplexity per token")
        left.set_title(f"{panel}: by split", size=9)
        typo = d[(d["panel"] == panel) & (d["split"] == "typo")]
        _interval_lines(
            right, typo, lines, palette,
            lambda q, line: q["severity"].to_numpy(float) + offsets[line] / 2, "perplexity",
        )  # fmt: skip
        right.set_xticks(sorted(typo["severity"].unique()))
        right.set_xlabel("typo severity (0 = unchanged)")
        right.set_yscale("log")
        right.set_ylabel("held-out perplexity per token")
        right.set_title(f"{panel}: held-out documents with typos", size=9)
    _legend_by_line(fig, axes, lines)
    fig.suptitle(
        "Perplexity of the language models by split and under typos\n"
        "(exp of the mean loss per token over replicas, ± 95% t interval)",
        size=10,
    )
    return fig


@draws
def rare_words(t: StudyTables) -> plt.Figure:
    """Next-word accuracy by how often the target word occurs in the pool (buckets), in
    documents the replica trained on, pool documents it did not, and held-out documents; one
    panel per run and regime; mean over replicas ± 95% t interval, replicas in the title."""
    r = _learned(t.rare_words)
    if r.empty:
        return _empty("No rare-word accuracy: needs trained (not under-trained) sequence runs.")
    d = _t_bounds(r, "accuracy", "accuracy_se", "replicas", (0.0, 1.0))
    d = _sequence_lines(d)[0]
    d["panel"] = _sequence_panel(d) + "\n" + d["line"]
    panels = list(dict.fromkeys(d["panel"]))
    fig, axes = _panel_grid(len(panels), (4.2, 3.3), 2.4)
    splits = list(WORD_SPLIT_COLOURS)
    offsets = dict(zip(splits, _dodge(len(splits), 0.3), strict=True))
    for ax, panel in zip(axes.flat, panels, strict=False):
        p = d[d["panel"] == panel].sort_values("low")
        buckets = list(dict.fromkeys(p["bucket"]))
        where = {b: i for i, b in enumerate(buckets)}
        p = p.assign(line=p["split"], x=p["bucket"].map(where) + p["split"].map(offsets))
        _interval_lines(
            ax, p, splits, WORD_SPLIT_COLOURS, lambda s, split: s["x"].to_numpy(float),
            "accuracy",
        )  # fmt: skip
        ax.set_xticks(range(len(buckets)), buckets)
        ax.set_ylim(0, 1.02)
        ax.set_title(panel, size=8.5)
        ax.set_xlabel("the target word's count in the pool")
        ax.set_ylabel("next-word accuracy" if ax.get_subplotspec().is_first_col() else "")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        handles |= dict(zip(*ax.get_legend_handles_labels()[::-1], strict=True))
    fig.legend(
        [handles[s] for s in splits if s in handles],
        [WORD_SPLIT_LABELS[s] for s in splits if s in handles],
        title="target tokens in", loc="outside right center", fontsize=8, title_fontsize=9,
    )  # fmt: skip
    fig.suptitle(
        "Rare words: next-word accuracy by the word's frequency in the pool\n"
        "(mean over replicas ± 95% t interval)",
        size=10,
    )
    return fig


# Every figure of memlab.plan.registry.FIGURES with its drawing, in the registry's order (drawing
# functions register themselves: @draws).
DRAW = _drawings()


def save_figure(
    fig: plt.Figure, png: str | os.PathLike[str], svg: str | os.PathLike[str], dpi: int = 150
) -> None:
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    with atomic_path(svg) as tmp:
        fig.savefig(tmp, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
