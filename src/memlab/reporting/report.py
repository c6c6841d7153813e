"""The generated summary: headline numbers of a study in sentences and one short table."""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from memlab.analysis.metrics import summarize
from memlab.plan.kinds import trained
from memlab.plan.registry import FINDING_FIGURES
from memlab.plan.study import RUN_COLUMNS, RUN_KEYS, unregularized
from memlab.reporting.findings import Finding, study_findings
from memlab.reporting.tables import StudyTables, powered


def _pct(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{100 * x:.1f}%"


def headline_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run at the largest size: the numbers the summary quotes, with the run's columns and
    whether it trained and was unregularized (chosen by settings, whatever the regime's name)."""
    s = summarize(metrics)
    s = s[s["size"] == s.groupby("dataset")["size"].transform("max")]
    acc = s[s["metric"] == "accuracy"]
    key = list(RUN_COLUMNS)

    def col(split: str, name: str, pert: str = "none") -> pd.Series:
        sel = acc[(acc["split"] == split) & (acc["perturbation"] == pert)]
        return sel.set_index(key)["mean"].rename(name)

    pert = acc[acc["split"] == "perturbed"]
    worst = pert[pert["severity"] == pert["severity"].max()].groupby(key)["mean"].mean()
    fit = s[(s["metric"] == "fit") & (s["split"] == "train")].set_index(key)
    parts = [
        col("train", "train"),
        col("train_flipped", "flipped fitted"),
        col("heldout", "held-out"),
        worst.rename("perturbed (max severity)"),
        (fit["mean"] * fit["replicas"]).round().astype("Int64").rename("replicas fit"),
        fit["replicas"].rename("replicas"),
    ]
    out = pd.concat(parts, axis=1).reset_index()
    out["gap"] = out["train"] - out["held-out"]
    return out.assign(trained=trained(out["kind"]), unregularized=unregularized(out))


def _span(values: pd.Series) -> str:
    lo, hi = values.min(), values.max()
    return _pct(lo) if _pct(lo) == _pct(hi) else f"{_pct(lo)}–{_pct(hi)}"


def _sentences(t: pd.DataFrame) -> list[str]:
    out = []
    for (dataset, noise, size), g in t.groupby(["dataset", "label_noise", "size"], sort=True):
        nets = g[g["trained"]]
        lead = f"<b>{html.escape(dataset)}, label noise {noise:g}, {size} training examples.</b> "
        if not nets.empty:
            best = nets.loc[nets["held-out"].idxmax()]
            worst = nets.loc[nets["held-out"].idxmin()]
            lead += (
                f"Best held-out accuracy: {best['model']} / {best['regime']} "
                f"({_pct(best['held-out'])}, gap {_pct(best['gap'])}); worst: "
                f"{worst['model']} / {worst['regime']} ({_pct(worst['held-out'])}, gap "
                f"{_pct(worst['gap'])}). "
            )
            lead += _noise_fit(nets) if noise > 0 else ""
        knn = g[~g["trained"]]
        for _, row in knn.iterrows():
            lead += (
                f"{row['model']}: train {_pct(row['train'])}, held-out {_pct(row['held-out'])}. "
            )
        out.append(lead)
    return out


def _noise_fit(nets: pd.DataFrame) -> str:
    """How much label noise the unregularized networks fit, against the regularized ones."""
    plain = nets[nets["unregularized"]]
    if plain.empty or not plain["flipped fitted"].notna().any():
        return ""
    names = ", ".join(html.escape(r) for r in dict.fromkeys(plain["regime"]))
    others = nets[~nets["unregularized"]]["flipped fitted"]
    out = f"Without regularization ({names}) the networks fit {_span(plain['flipped fitted'])}"
    out += " of the flipped labels"
    return out + (f"; with regularization {_span(others)}. " if len(others) else ". ")


# Per-example sentences for at most this many runs (the best-replicated powered ones).
SENTENCE_RUNS = 4


def _missing(gate: pd.DataFrame, what: str) -> list[str]:
    """One line for the runs a power gate keeps out of the sentences and figures, if any."""
    if gate.empty or "powered" not in gate:
        return []
    runs = gate.drop_duplicates(list(RUN_KEYS))
    under = runs[~runs["powered"].eq(True)]  # NaN: the design gives no scores at all
    if under.empty:
        return []
    why = under["status"].iloc[0].removeprefix("underpowered: ")
    return [
        f"<b>Not shown: {what}</b> of {len(under)} of {len(runs)} runs: "
        f"{html.escape(why)} (first such run: {under['model'].iloc[0]} / "
        f"{under['regime'].iloc[0]}, n={under['size'].iloc[0]}). The tables keep their numbers."
    ]


def _memorization_sentences(t: StudyTables) -> list[str]:
    out = []
    summary = t.memorization_summary
    # Sentences for the best-replicated powered runs only; every run is in the tables.
    ok = powered(summary, summary, limit=SENTENCE_RUNS)
    out += _missing(summary, "memorization scores")
    for _, r in ok.iterrows():
        s = (
            f"<b>Memorization, {r['dataset']}: {r['model']} / {r['regime']}</b> (noise "
            f"{r['label_noise']:g}, "
            f"n={r['size']}, {r['replicas_trained']} of {r['replicas']} replicas count, train "
            f"accuracy {_pct(r['train_accuracy_mean'])} on average and "
            f"{_pct(r['train_accuracy_min'])} at the lowest, {r['replicas_fit']} at 100%"
        )
        if r["replicas_undertrained"]:
            s += f", {r['replicas_undertrained']} under-trained left out"
        s += f"): {int(r['above_half'])} examples score above 0.5"
        if r["label_noise"] > 0 and r["above_half"]:
            s += f", {r['above_half_flipped'] / r['above_half']:.0%} of them flipped"
        if pd.notna(r["mean_score_flipped"]):
            s += (
                f"; mean score {r['mean_score_flipped']:.2f} for flipped vs "
                f"{r['mean_score_clean']:.2f} for clean labels (separation AUC "
                f"{r['auc_flipped']:.3f})"
            )
        out.append(s + ".")
    mia = t.membership
    if len(mia) and "powered" in mia:
        shadowed = mia[mia["attack"].str.startswith(("lira", "rmia"))]
        out += _missing(shadowed, "membership inference")
        mia = powered(mia, shadowed, limit=SENTENCE_RUNS)
        best = mia.loc[mia.groupby(list(RUN_KEYS))["auc"].idxmax()] if len(mia) else mia
        for _, r in best.iterrows():
            out.append(
                f"<b>Membership inference, {r['dataset']}: {r['model']} / {r['regime']}</b> "
                "(noise "
                f"{r['label_noise']:g}, n={r['size']}): strongest attack {r['attack']}, "
                f"AUC {r['auc']:.3f}, TPR {r['tpr_at_0.01_fpr']:.1%} at 1% FPR and "
                f"{r['tpr_at_0.001_fpr']:.1%} at 0.1% FPR."
            )
    return out


def _randomization_sentences(t: StudyTables) -> list[str]:
    m = t.metrics
    if not len(t.chance_null) or "dataset" not in m:
        return []
    out = []
    for ds in sorted(set(m["dataset"])):
        fit = m[(m["dataset"] == ds) & (m["metric"] == "epochs_to_fit")]["value"]
        null = t.chance_null[t.chance_null["dataset"] == ds]
        if fit.empty or not t.randomizations or ds not in t.randomizations:
            continue
        out.append(
            f"<b>Randomization {t.randomizations[ds]}</b> ({ds}): "
            f"{fit.notna().sum()}/{len(fit)} replicas reached 100% train accuracy"
            + (f" after {fit.mean():.0f} epochs on average" if fit.notna().any() else "")
            + f"; held-out accuracy {null['heldout_accuracy'].mean():.1%} vs a 95% "
            f"chance null of {null['null_q95'].mean():.1%}."
        )
    return out


def _provenance(config: Mapping[str, Any] | None, versions: Mapping[str, str] | None) -> str:
    """Software versions and the study config, so a reader can tell what made the numbers."""
    parts = []
    if versions:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
            for k, v in versions.items()
        )
        parts.append(f'<h3>Software</h3><table class="memlab">{rows}</table>')
    if config:
        text = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None)
        parts.append(
            "<h3>Study config</h3><p>Every checkpoint also stores its own slice of it (model, "
            f"training settings, seed) and the software versions.</p><pre>{html.escape(text)}</pre>"
        )
    return "\n".join(parts)


FINDINGS_NOTE = (
    "Each answer is a mean over replicas with its 95% interval in brackets (Student t across "
    "replicas; Welch for differences between independent runs, paired t for a run on clean vs "
    "perturbed data, Wilson for shares of examples); differences are in percentage points. "
    "Numbers in results/findings.json (DVC metrics)."
)


def figure_uris(pngs: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    """Figure name (the PNG's stem) -> its PNG as a data: URI, to inline in a page."""
    return {
        Path(p).stem: "data:image/png;base64," + base64.b64encode(Path(p).read_bytes()).decode()
        for p in pngs
    }


def _figure(key: str, figures: Mapping[str, str]) -> str:
    """The first figure that supports a finding (FINDING_FIGURES) as an inline image, or ""."""
    name = next((n for n in FINDING_FIGURES.get(key, ()) if n in figures), None)
    if name is None:
        return ""
    return (
        f'<figure><img src="{figures[name]}" alt="{name}">'
        f"<figcaption>{name} (results/figures/{name}.png)</figcaption></figure>"
    )


def _unanswered(f: Finding) -> str:
    # ``why`` is HTML, like ``answer`` (it names runs with escaped text).
    how = "Held back" if f.held_back else "Not answered"
    return f"<li>{html.escape(f.question)} {how}: {f.why or ''}.</li>"


def findings_html(found: list[Finding], figures: Mapping[str, str] | None = None) -> str:
    """The answered questions as a numbered list, each beside the figure that supports it
    (``figures``: name -> image URI, e.g. from figure_uris), then one line per question the
    study cannot answer or holds back (and why)."""
    figures = figures or {}
    answered = "".join(
        f'<li><div class="finding"><div><b>{html.escape(f.question)}</b> {f.answer}</div>'
        f"{_figure(f.key, figures)}</div></li>"
        for f in found
        if f.answer
    )
    missing = "".join(_unanswered(f) for f in found if not f.answer)
    out = f'<ol class="findings">{answered}</ol>' if answered else ""
    if missing:
        out += f'<p><b>What this study cannot answer</b></p><ul class="unanswered">{missing}</ul>'
    return out


def skipped_corruptions_html(metrics: pd.DataFrame, config: Mapping[str, Any] | None) -> str:
    """The configured corruptions that could not apply to a dataset, each with the reason: the
    image corruptions on a table (a dataset with none of them in the metrics; image data get
    them all); empty when every corruption applied."""
    from memlab.data.perturb import not_applicable

    names = ((config or {}).get("perturbations") or {}).get("names") or []
    if metrics.empty:
        return ""  # no classification runs: the corruptions apply to none
    image_only = not_applicable(names, None)
    perturbed = metrics[metrics["split"] == "perturbed"]
    items = []
    for dataset in sorted(set(metrics["dataset"])):
        present = set(perturbed.loc[perturbed["dataset"] == dataset, "perturbation"])
        if present & set(image_only):  # image data: every corruption applied
            continue
        by_reason: dict[str, list[str]] = {}
        for name, why in image_only.items():
            by_reason.setdefault(why, []).append(name)
        items += [
            f"<li>{html.escape(', '.join(skipped))} on {html.escape(dataset)} (tabular data): "
            f"{html.escape(why)}.</li>"
            for why, skipped in by_reason.items()
        ]
    if not items:
        return ""
    return (
        "<p><b>Corruptions that cannot apply</b> (configured under perturbations.names, "
        f'skipped; no result stands for them)</p><ul class="skipped">{"".join(items)}</ul>'
    )


def findings_front(found: list[Finding]) -> str:
    """The report's front page list (results/report/front.html): the questions answered, then
    how many are not. Short on purpose: Snakemake centres the front page vertically, so a text
    taller than the window loses its top (with the link to the findings page) out of reach."""
    answered = "".join(f"<li>{html.escape(f.question)}</li>" for f in found if f.answer)
    rest = sum(not f.answer for f in found)
    out = f"<p>Answered, with 95% intervals:</p><ol>{answered}</ol>" if answered else ""
    if rest:
        out += f"<p>{rest} more question(s) held back or not answered, each with its reason.</p>"
    return out


def _plain(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def findings_text(found: list[Finding]) -> str:
    """The findings as plain text, one line each: the numbered answers with their intervals,
    then the questions held back or not answered, with the reason (results/findings.txt)."""
    answered = [f for f in found if f.answer]
    lines = [f"{i}. {f.question} {_plain(f.answer or '')}" for i, f in enumerate(answered, 1)]
    lines += [
        f"{'Held back' if f.held_back else 'Not answered'}: {f.question} {_plain(f.why or '')}."
        for f in found
        if not f.answer
    ]
    return "\n".join(lines) + "\n"


def summary_html(
    tables: StudyTables,
    config: Mapping[str, Any] | None = None,
    versions: Mapping[str, str] | None = None,
    found: list[Finding] | None = None,
    figures: Mapping[str, str] | None = None,
) -> str:
    """A small self-contained HTML page: the study's findings (``found``, else computed), each
    beside its figure (``figures``: name -> image URI), then the headline numbers per run and
    provenance, collapsed."""
    metrics = tables.metrics
    found = study_findings(tables) if found is None else found
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>memlab summary</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:1em auto}}
table.memlab{{border-collapse:collapse;font-size:90%}}
table.memlab td,table.memlab th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}
ol.findings li{{margin-bottom:1em}}
div.finding{{display:flex;gap:1em;align-items:flex-start}}
div.finding>div{{flex:1}}
div.finding figure{{flex:0 0 48%;margin:0}}
div.finding img{{width:100%;height:auto;border:1px solid #eee}}
div.finding figcaption{{font-size:80%;color:#777}}
</style></head><body>
<h2>memlab: findings</h2>
<p>{_runs_line(tables)} {FINDINGS_NOTE}</p>
{findings_html(found, figures)}
{skipped_corruptions_html(metrics, config)}
{_headline_html(tables)}
<details><summary><b>Software and study config</b></summary>
{_provenance(config, versions)}
</details>
</body></html>
"""


def _runs_line(tables: StudyTables) -> str:
    """How many runs of how many replicas the findings rest on (language models' included)."""
    per_run = (
        [tables.metrics.groupby(list(RUN_KEYS))["replica"].nunique()] if len(tables.metrics) else []
    )
    p = tables.sequence_perplexity
    if len(p):
        per_run.append(p.groupby(list(RUN_KEYS))["replicas"].max())
    reps = pd.concat(per_run) if per_run else pd.Series(dtype=int)
    if reps.empty:
        return "No runs."
    n_rep = f"{reps.min()}" if reps.min() == reps.max() else f"{reps.min()}–{reps.max()}"
    return f"{len(reps)} runs of {n_rep} replicas each."


def _headline_html(tables: StudyTables) -> str:
    """The headline numbers per classification run (sentences and table), collapsed; nothing in
    a study of language models alone."""
    metrics = tables.metrics
    if metrics.empty:
        return ""
    t = headline_table(metrics)
    shown = t.drop(columns=[c for c in t if c in RUN_COLUMNS and c not in RUN_KEYS])
    if not shown["memory"].astype(bool).any():  # no memory network in the study
        shown = shown.drop(columns="memory")
    shown = shown.drop(columns=["trained", "unregularized"])
    for c in ("train", "flipped fitted", "held-out", "perturbed (max severity)", "gap"):
        shown[c] = shown[c].map(_pct)
    shown["label_noise"] = shown["label_noise"].map(lambda x: f"{x:g}")
    table = shown.to_html(index=False, border=0, classes="memlab", na_rep="–")
    sentences = [
        *_sentences(t),
        *_memorization_sentences(tables),
        *_randomization_sentences(tables),
    ]
    items = "".join(f"<li>{s}</li>" for s in sentences)
    return f"""<details><summary><b>Headline numbers per run</b> (sentences and table)</summary>
<p>Accuracies are means over replicas at the largest training-set size; "train" uses the labels
as given (noisy where label noise is on), "flipped fitted" is the share of flipped training
labels the model reproduces (memorized noise), "perturbed" is the mean held-out accuracy over all
perturbations at the highest severity.</p>
<ul>{items}</ul>
{table}
<p style="color:#777">Generated from results/tables/metrics.parquet ({len(metrics)} rows).</p>
</details>"""
