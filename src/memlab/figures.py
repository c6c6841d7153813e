"""Seaborn figures of the study, each answering one question at a glance.

Every function takes the tidy tables and returns a matplotlib Figure; ``save_figure`` writes it
atomically as PNG (for the report) and SVG (vector, for print). Lines are means over replicas
with a band of one standard error.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from memlab import analysis
from memlab.io import atomic_path

SPLIT_LABELS = {"train": "train (labels as given)", "heldout": "held-out"}

sns.set_theme(context="notebook", style="whitegrid")
# SVG text stays text and files are reproducible byte for byte (no random ids, no date).
plt.rcParams.update({"svg.hashsalt": "memlab", "svg.fonttype": "none"})


def _regime_order(frame: pd.DataFrame) -> list[str]:
    """Config order, with the unregularized 'memorize' (and k-NN's 'memory') first."""
    names = list(dict.fromkeys(frame["regime"]))
    first = ("memorize", "memory")
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
    g = sns.relplot(
        data=data,
        x=x,
        y=y,
        kind="line",
        markers=True,
        errorbar="se",
        facet_kws={"margin_titles": "row" in kwargs},
        **kwargs,
    )
    if logx:
        # Ticks at the values studied, written plainly (not 2x10^2).
        ticks = sorted(data[x].unique())
        g.set(xscale="log")
        for ax in g.axes.flat:
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
    g.set_axis_labels(xlabel, ylabel)
    g.set_titles(col_template=col_title, row_template=row_title, template=col_title)
    if title:
        g.figure.suptitle(title, y=1.02)
    g.tight_layout()  # FacetGrid's own: keeps room for the legend outside the panels
    return g.figure


def _empty(message: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def accuracy_vs_size(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """Train vs held-out accuracy against training-set size, a panel per regime and noise."""
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


def generalization_gap(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """Train minus held-out accuracy against size, a panel per model and noise."""
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


def robustness(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """Held-out accuracy against severity, a panel per (model, perturbation); largest size."""
    rob = analysis.robustness(metrics)
    if rob.empty:
        return _empty("No perturbations in this study.")
    size, noise = rob["size"].max(), rob["label_noise"].min()
    rob = rob[(rob["size"] == size) & (rob["label_noise"] == noise)]
    # Severity 0 is the clean held-out set, so every curve starts from the same point.
    clean = rob.drop_duplicates([*analysis.KEYS, "perturbation"]).assign(
        severity=0, accuracy=lambda f: f["clean_accuracy"]
    )
    d = pd.concat([clean, rob], ignore_index=True)
    return _lines(
        d,
        x="severity",
        y="accuracy",
        hue="regime",
        hue_order=_regime_order(d),
        col="perturbation",
        row="model",
        height=2.2,
        aspect=1.1,
        xlabel="severity (0 = clean)",
        ylabel="held-out accuracy",
        title=f"Robustness at training-set size {size}, label noise {noise:g}",
    )


def learning_curves(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """Train vs held-out accuracy over epochs per regime: widest MLP, largest size, most noise."""
    nets = history[history["kind"] != "knn"] if not history.empty else history
    if nets.empty:
        return _empty("No trained networks in this study.")
    size, noise = nets["size"].max(), nets["label_noise"].max()
    sel = nets[(nets["size"] == size) & (nets["label_noise"] == noise)]
    pick = sel[sel["kind"] == "mlp"] if (sel["kind"] == "mlp").any() else sel
    model = pick.sort_values("width")["model"].iloc[-1]
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
        col_order=_regime_order(d),
        col_wrap=min(5, d["regime"].nunique()),
        xlabel="epoch",
        ylabel="accuracy",
        title=f"{model}, training-set size {size}, label noise {noise:g}",
    )


def accuracy_vs_width(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """MLP train and held-out accuracy against width at the largest size, a panel per noise."""
    d = _accuracy(metrics, ("train", "heldout"))
    d = d[d["kind"] == "mlp"]
    if d.empty:
        return _empty("No MLP in this study.")
    size = d["size"].max()
    d = d[d["size"] == size]
    return _lines(
        d,
        x="width",
        y="value",
        hue="regime",
        hue_order=_regime_order(d),
        style="split",
        col="label noise",
        logx=True,
        height=3.0,
        aspect=1.1,
        xlabel="hidden width (units per layer)",
        ylabel="accuracy",
        col_title="label noise {col_name}",
        title=f"MLP capacity at training-set size {size}",
    )


FIGURES: dict[str, Callable[[pd.DataFrame, pd.DataFrame], plt.Figure]] = {
    "accuracy_vs_size": accuracy_vs_size,
    "generalization_gap": generalization_gap,
    "robustness": robustness,
    "learning_curves": learning_curves,
    "accuracy_vs_width": accuracy_vs_width,
}


def save_figure(
    fig: plt.Figure, png: str | os.PathLike[str], svg: str | os.PathLike[str], dpi: int = 150
) -> None:
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    with atomic_path(svg) as tmp:
        fig.savefig(tmp, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
