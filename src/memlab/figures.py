"""Seaborn figures of the study, each answering one question at a glance.

Every function takes the tidy tables and returns a matplotlib Figure; ``save_figure`` writes it
atomically as PNG (for the report) and SVG (vector, for print). Lines are means over replicas
with a band of one standard error.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")  # no screen on workers or clusters

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from memlab.analysis import KEYS
from memlab.io import atomic_path

SPLIT_LABELS = {"train": "train (labels as given)", "heldout": "held-out"}
REGIME_ORDER_FIRST = ("memorize", "memory")

sns.set_theme(context="notebook", style="whitegrid")
# SVG text stays text and files are reproducible byte for byte (no random ids, no date).
plt.rcParams.update({"svg.hashsalt": "memlab", "svg.fonttype": "none"})


def _regimes(frame: pd.DataFrame) -> list[str]:
    names = list(dict.fromkeys(frame["regime"]))
    return sorted(names, key=lambda r: (r not in REGIME_ORDER_FIRST, names.index(r)))


def _acc(metrics: pd.DataFrame, splits: tuple[str, ...]) -> pd.DataFrame:
    sel = metrics[metrics["split"].isin(splits) & (metrics["metric"] == "accuracy")].copy()
    sel["split"] = sel["split"].map(lambda s: SPLIT_LABELS.get(s, s))
    sel["label noise"] = sel["label_noise"].map(lambda x: f"{x:g}")
    return sel


def _noise_title(g: sns.FacetGrid, template: str) -> None:
    g.set_titles(template)
    g.figure.tight_layout()


def _empty(message: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def accuracy_vs_size(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """Train vs held-out accuracy against training-set size, a panel per regime and noise."""
    d = _acc(metrics, ("train", "heldout"))
    g = sns.relplot(
        data=d,
        x="size",
        y="value",
        hue="model",
        style="split",
        kind="line",
        col="regime",
        col_order=_regimes(d),
        row="label noise",
        markers=True,
        errorbar="se",
        height=2.8,
        aspect=1.0,
        facet_kws={"margin_titles": True},
    )
    g.set(xscale="log")
    g.set_axis_labels("training-set size (examples)", "accuracy")
    _noise_title(g, "{col_name}")
    g.set_titles(col_template="{col_name}", row_template="label noise {row_name}")
    return g.figure


def generalization_gap(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """Train minus held-out accuracy against size, a panel per model and noise."""
    tr = _acc(metrics, ("train",)).set_index(KEYS)["value"]
    te = _acc(metrics, ("heldout",)).set_index(KEYS)["value"]
    d = (tr - te).rename("gap").reset_index()
    d["label noise"] = d["label_noise"].map(lambda x: f"{x:g}")
    g = sns.relplot(
        data=d,
        x="size",
        y="gap",
        hue="regime",
        hue_order=_regimes(d),
        col="model",
        row="label noise",
        kind="line",
        markers=True,
        errorbar="se",
        height=2.8,
        aspect=1.0,
        facet_kws={"margin_titles": True},
    )
    g.set(xscale="log")
    for ax in g.axes.flat:
        ax.axhline(0, color="0.5", lw=0.8)
    g.set_axis_labels("training-set size (examples)", "train − held-out accuracy")
    g.set_titles(col_template="{col_name}", row_template="label noise {row_name}")
    g.figure.tight_layout()
    return g.figure


def robustness(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """Held-out accuracy against severity, a panel per (perturbation, model); largest size."""
    p = metrics[(metrics["split"] == "perturbed") & (metrics["metric"] == "accuracy")]
    if p.empty:
        return _empty("No perturbations in this study.")
    size = p["size"].max()
    noise = p["label_noise"].min()
    base = metrics[(metrics["split"] == "heldout") & (metrics["metric"] == "accuracy")]
    clean = base.assign(severity=0)
    d = pd.concat(
        [
            clean.merge(p[["perturbation"]].drop_duplicates(), how="cross")
            .drop(columns="perturbation_x")
            .rename(columns={"perturbation_y": "perturbation"}),
            p,
        ]
    )
    d = d[(d["size"] == size) & (d["label_noise"] == noise)]
    g = sns.relplot(
        data=d,
        x="severity",
        y="value",
        hue="regime",
        hue_order=_regimes(d),
        col="perturbation",
        row="model",
        kind="line",
        markers=True,
        errorbar="se",
        height=2.2,
        aspect=1.1,
        facet_kws={"margin_titles": True},
    )
    g.set_axis_labels("severity (0 = clean)", "held-out accuracy")
    g.set_titles(col_template="{col_name}", row_template="{row_name}")
    g.figure.suptitle(f"Robustness at training-set size {size}, label noise {noise:g}", y=1.0)
    g.figure.tight_layout()
    return g.figure


def learning_curves(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """Train vs held-out accuracy over epochs per regime, for the widest network at full size."""
    if history.empty:
        return _empty("No trained networks in this study.")
    nets = history[history["kind"] != "knn"]
    size = nets["size"].max()
    noise = nets["label_noise"].max()
    sel = nets[(nets["size"] == size) & (nets["label_noise"] == noise)]
    # The widest MLP (or the widest network if the study has no MLP).
    pick = sel[sel["kind"] == "mlp"] if (sel["kind"] == "mlp").any() else sel
    model = pick.sort_values("width")["model"].iloc[-1]
    sel = sel[sel["model"] == model]
    d = sel.melt(
        id_vars=["regime", "replica", "epoch"],
        value_vars=["train_accuracy", "heldout_accuracy"],
        var_name="split",
        value_name="accuracy",
    )
    d["split"] = d["split"].map(
        {"train_accuracy": "train (labels as given)", "heldout_accuracy": "held-out"}
    )
    g = sns.relplot(
        data=d,
        x="epoch",
        y="accuracy",
        hue="split",
        col="regime",
        col_order=_regimes(d),
        kind="line",
        errorbar="se",
        height=2.8,
        aspect=1.0,
        col_wrap=min(5, d["regime"].nunique()),
    )
    g.set_axis_labels("epoch", "accuracy")
    g.set_titles("{col_name}")
    g.figure.suptitle(f"{model}, training-set size {size}, label noise {noise:g}", y=1.0)
    g.figure.tight_layout()
    return g.figure


def accuracy_vs_width(metrics: pd.DataFrame, history: pd.DataFrame) -> plt.Figure:
    """MLP train and held-out accuracy against width at the largest size, a panel per noise."""
    d = _acc(metrics, ("train", "heldout"))
    d = d[d["kind"] == "mlp"]
    if d.empty:
        return _empty("No MLP in this study.")
    d = d[d["size"] == d["size"].max()]
    g = sns.relplot(
        data=d,
        x="width",
        y="value",
        hue="regime",
        hue_order=_regimes(d),
        style="split",
        col="label noise",
        kind="line",
        markers=True,
        errorbar="se",
        height=3.0,
        aspect=1.1,
    )
    g.set(xscale="log")
    g.set_axis_labels("hidden width (units per layer)", "accuracy")
    g.set_titles("label noise {col_name}")
    g.figure.suptitle(f"MLP capacity at training-set size {d['size'].max()}", y=1.0)
    g.figure.tight_layout()
    return g.figure


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
