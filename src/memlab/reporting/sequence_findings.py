"""The study's questions asked of its language models (runs on text datasets): does the model
memorize its documents, what does that cost it, when does it pay, which secrets leak. Each
answer quotes its numbers with 95% intervals and the replicas or documents they rest on, from the
tables of rule analyze_sequences (memlab.analysis.sequences) and exposure.csv.

Intervals: a mean over replicas gets the Student-t interval across replicas (each replica one
training run on its own half of the documents); a mean over documents or facts the t interval
across them; counterfactual memorization per document comes with its own interval (Welch).
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
from scipy import stats

from memlab.plan.kinds import SEQUENCE_KINDS
from memlab.plan.power import wilson_interval
from memlab.plan.study import unregularized
from memlab.reporting.findings import KEYS, Estimate, Finding, _cap, _key, _name, _t_interval
from memlab.reporting.tables import StudyTables

# Facts seen this often or more are "frequent" in the answers (DESIGN.md 4e: rare facts need
# memorization, frequent ones are learned).
FREQUENT = 8
SHOWN_TEXT = 60  # characters of a document quoted in an answer


def _mean_t(values: pd.Series) -> Estimate:
    """The mean of independent values with its 95% t interval (their count as n)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return Estimate(float(v.mean()) if len(v) else math.nan, math.nan, math.nan, len(v))
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return Estimate(float(v.mean()), float(v.mean()) - half, float(v.mean()) + half, len(v))


def _row_estimate(
    row: pd.Series, value: str, n: str = "replicas", relative: bool = False
) -> Estimate:
    """A table row's mean with its standard error ``<value>_se`` as a 95% t interval."""
    est = _t_interval(float(row[value]), float(row[f"{value}_se"]), int(row[n]))
    if relative:  # a loss: any real number
        return Estimate(est.value, est.low, est.high, est.n, relative=True)
    # A share (recall, accuracy): the interval stays in [0, 1].
    unit = "facts" if n == "n_facts" else "replicas"
    return Estimate(est.value, max(est.low, 0.0), min(est.high, 1.0), est.n, unit)


UNDERTRAINED = (
    "Every replica of the language models stopped at max_epochs while its training loss still "
    "fell (under-trained: its numbers would measure the epoch budget). Raise training.max_epochs "
    "(or the regime's max_epochs) in the config and rerun ./run.sh study"
)


def _learned(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of runs with usable (not under-trained) replicas; ``replicas`` counts them."""
    return frame[frame["replicas"] > 0] if "replicas" in frame else frame


def _regimes(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """The frame per run, the unregularized runs first."""
    frame = frame.assign(_plain=unregularized(frame))
    keys = ["dataset", "model", "regime"]
    order = frame.drop_duplicates(keys).sort_values("_plain", ascending=False, kind="stable")
    return [frame[(frame[keys] == r[keys]).all(axis=1)] for _, r in order.iterrows()]


def _quote(text: str) -> str:
    short = text if len(text) <= SHOWN_TEXT else text[: SHOWN_TEXT - 1] + "…"
    return f"“{html.escape(short)}”"


def memorizes(t: StudyTables) -> Finding | None:
    q = "Does the language model memorize its documents?"
    m = t.sequence_memorization
    if m.empty:  # no text runs, or none whose usable replicas hold every document in and out
        return (
            None
            if t.sequence_perplexity.empty
            else Finding("sequence_memorizes", q, why=UNDERTRAINED)
        )
    run = _regimes(m)[0]
    first = run.iloc[0]
    numbers, parts = {}, []
    for kind, g in run.groupby("doc_kind", sort=True):
        est = _mean_t(g["score"])
        numbers[f"{kind}_mean"] = est
        parts.append(f"{html.escape(str(kind))} {est.value:+.3f} [{est.low:+.3f}, {est.high:+.3f}]")
    facts = run[run["doc_kind"] == "fact"]
    rare_vs_frequent = ""
    if len(facts):
        once, often = facts[facts["repetitions"] == 1], facts[facts["repetitions"] >= FREQUENT]
        if len(once) >= 2 and len(often) >= 2:
            a, b = _mean_t(once["score"]), _mean_t(often["score"])
            numbers["fact_once_mean"], numbers["fact_frequent_mean"] = a, b
            # A fact's copies are in or out of a subset together (the design), so k
            # copies are one document seen k times; Zhang et al.'s duplicated text scores low
            # because models that did not train on one copy still saw the others.
            how = (
                "seen more often, a fact is memorized more (its copies are in or out of a "
                "subset together, so no model sees it without training on it)"
                if b.value > a.value
                else "the repeated facts are not memorized more than the rare ones"
            )
            rare_vs_frequent = (
                f" Facts seen once score {a.value:+.3f} [{a.low:+.3f}, {a.high:+.3f}], facts seen "
                f"{FREQUENT} times or more {b.value:+.3f} [{b.low:+.3f}, {b.high:+.3f}]: {how}."
            )
    rare_vs_frequent += _twins(run, numbers)
    ranked = run.sort_values("score", ascending=False)
    top, bottom = ranked.iloc[0], ranked.iloc[-1]
    text = (
        f"Counterfactual memorization (Zhang et al. 2023: per-token accuracy of the replicas "
        f"trained on a document minus the others') of {_name(first)}, mean by kind of document: "
        f"{'; '.join(parts)} ({html.escape(str(first['dataset']))}, {len(run)} documents, "
        f"{int(first['replicas'])} replicas).{rare_vs_frequent} Most memorized: "
        f"{_quote(str(top['text']))} ({top['doc_kind']}, {_copies(int(top['repetitions']))}, "
        f"{top['score']:+.2f} [{top['low']:+.2f}, {top['high']:+.2f}]); least: "
        f"{_quote(str(bottom['text']))} ({bottom['score']:+.2f})."
    )
    return Finding("sequence_memorizes", q, text, numbers, runs=(_key(first),))


def _twins(run: pd.DataFrame, numbers: dict[str, Estimate]) -> str:
    """Grammar documents with identical twins elsewhere in the pool (separate documents, each in
    or out of a subset on its own) against unique ones: Zhang et al. 2023's duplicated text."""
    grammar = run[run["doc_kind"] == "grammar"]
    unique, twins = grammar[grammar["repetitions"] == 1], grammar[grammar["repetitions"] > 1]
    if len(unique) < 2 or len(twins) < 2:
        return ""
    a, b = _mean_t(unique["score"]), _mean_t(twins["score"])
    numbers["grammar_unique_mean"], numbers["grammar_duplicated_mean"] = a, b
    how = "less" if b.high < a.low else "not clearly less"
    return (
        f" Grammar documents whose text also occurs as another, separate document ({b.n}: the "
        f"models without one copy still train on its twin) score {b.value:+.3f} "
        f"[{b.low:+.3f}, {b.high:+.3f}] against {a.value:+.3f} [{a.low:+.3f}, {a.high:+.3f}] for "
        f"unique ones: duplicated text is memorized {how}, as Zhang et al. report."
    )


def costs(t: StudyTables) -> Finding | None:
    q = "What does memorizing cost the language model?"
    p = t.sequence_perplexity
    if p.empty:
        return None
    p = _learned(p)
    if p.empty:
        return Finding("sequence_costs", q, why=UNDERTRAINED)
    numbers, parts, runs = {}, [], []
    for run in _regimes(p):
        first = run.iloc[0]
        by = run.set_index(["split", "severity"])
        if ("train", 0) not in by.index or ("heldout", 0) not in by.index:
            continue
        train, held = by.loc[("train", 0)], by.loc[("heldout", 0)]
        name = f"{first['model']}_{first['regime']}"
        pt, ph = _ppl(train), _ppl(held)
        numbers[f"{name}_train_perplexity"], numbers[f"{name}_heldout_perplexity"] = pt, ph
        worst = int(run["severity"].max())
        typo = ""
        if ("typo", worst) in by.index and worst > 0:
            pw = _ppl(by.loc[("typo", worst)])
            numbers[f"{name}_typo{worst}_perplexity"] = pw
            typo = f", {pw.value:.1f} [{pw.low:.1f}, {pw.high:.1f}] with typos at severity {worst}"
        runs.append(_key(first))
        parts.append(
            f"{_name(first)}: perplexity {pt.value:.1f} [{pt.low:.1f}, {pt.high:.1f}] on its "
            f"training documents against {ph.value:.1f} [{ph.low:.1f}, {ph.high:.1f}] held out"
            f"{typo} ({int(first['replicas'])} replicas)"
        )
    if not parts:
        return Finding("sequence_costs", q, why="no run has training and held-out perplexity")
    text = _cap("; ".join(parts)) + (
        ". A misspelled word is an unknown token the model never saw in training, so typos cost "
        "a word-level model most."
    )
    return Finding("sequence_costs", q, text, numbers, runs=tuple(runs))


def _ppl(row: pd.Series) -> Estimate:
    """Perplexity exp(loss) with the t interval of the mean loss mapped through exp."""
    loss = _row_estimate(row, "loss", relative=True)
    return Estimate(
        math.exp(loss.value), math.exp(loss.low), math.exp(loss.high), loss.n, relative=True
    )


def pays(t: StudyTables) -> Finding | None:
    q = "When does memorizing pay for the language model?"
    everything = _learned(t.fact_recall)
    if t.fact_recall.empty:
        return None
    form = everything["form"] == "trained"
    unseen = everything[form & (everything["seen"] == "not_trained") & (everything["n_facts"] > 0)]
    r = everything[form & (everything["seen"] == "trained") & (everything["n_facts"] > 0)]
    if r.empty:
        return Finding("sequence_pays", q, why=UNDERTRAINED)
    numbers, parts, runs = {}, [], []
    for run in _regimes(r):
        first = run.iloc[0]
        once = run[run["train_frequency"] == run["train_frequency"].min()]
        often = run[run["train_frequency"] >= FREQUENT]
        if once.empty:
            continue
        a = _row_estimate(once.iloc[0], "recall", "n_facts")
        name = f"{first['model']}_{first['regime']}"
        numbers[f"{name}_recall_rarest"] = a
        said = (
            f"{_name(first)} recalls {a.pct()} of the facts it saw "
            f"{_times(int(once.iloc[0]['train_frequency']))} ({a.n} facts)"
        )
        if len(often):
            pooled = _pooled(often)
            numbers[f"{name}_recall_frequent"] = pooled
            said += f" and {pooled.pct()} of those seen {FREQUENT}+ times ({pooled.n} facts)"
        base = unseen.merge(once[[*KEYS, "train_frequency"]], on=[*KEYS, "train_frequency"])
        if len(base):
            b = _row_estimate(base.iloc[0], "recall", "n_facts")
            numbers[f"{name}_recall_rarest_unseen"] = b
            said += f"; the replicas that never saw those rarest facts recall {b.pct()}"
        parts.append(said)
        runs.append(_key(first))
    if not parts:
        return Finding("sequence_pays", q, why="no run recalls facts it trained on")
    chance = float(r["chance"].iloc[0])
    text = (
        "Fact recall (the value is the model's first guess after “the &lt;relation&gt; of "
        f"&lt;entity&gt; is”; chance {100 * chance:.1f}%): {'; '.join(parts)}."
    )
    rare = _rare_words(t)
    if rare:
        text += " " + rare[0]
        numbers |= rare[1]
    return Finding("sequence_pays", q, text, numbers, runs=tuple(runs))


def _copies(k: int) -> str:
    return "1 copy" if k == 1 else f"{k} copies"


def _times(k: int) -> str:
    return "once" if k == 1 else f"{k} times"


def _pooled(rows: pd.DataFrame) -> Estimate:
    """Recall over several frequency rows, weighted by their facts, with a normal interval
    from their standard errors (independent facts)."""
    n = rows["n_facts"].to_numpy(float)
    value = float((rows["recall"] * n).sum() / n.sum())
    se = float(np.sqrt(((rows["recall_se"].fillna(0) * n) ** 2).sum()) / n.sum())
    half = 1.96 * se
    return Estimate(value, max(value - half, 0.0), min(value + half, 1.0), int(n.sum()), "facts")


def _rare_words(t: StudyTables) -> tuple[str, dict[str, Estimate]] | None:
    """Next-token accuracy on the rarest words, trained vs untrained documents, per regime."""
    w = _learned(t.rare_words)
    if w.empty:
        return None
    rarest = w[w["low"] == w["low"].min()]
    parts, numbers = [], {}
    for run in _regimes(rarest):
        by = run.set_index("split")
        if not {"trained", "untrained"} <= set(by.index):
            continue
        first = run.iloc[0]
        a = _row_estimate(by.loc["trained"], "accuracy")
        b = _row_estimate(by.loc["untrained"], "accuracy")
        numbers[f"{first['model']}_{first['regime']}_rare_word_trained"] = a
        parts.append(f"{_name(first)} {a.pct()} in its training documents, {b.pct()} in others")
    if not parts:
        return None
    bucket = html.escape(str(rarest["bucket"].iloc[0]))
    return f"Words seen {bucket} times in the pool are predicted: {'; '.join(parts)}.", numbers


def leaks(t: StudyTables) -> Finding | None:
    q = "Which secrets does the language model leak?"
    learned = _learned(t.sequence_perplexity)[KEYS].drop_duplicates()
    exposure, membership = _exposure_rows(t), _membership_rows(t)
    if exposure.empty and membership.empty:
        return None
    # Runs with usable replicas only (the analyze rule's tables keep every run; the perplexity
    # table says which learned).
    exposure, membership = exposure.merge(learned, on=KEYS), membership.merge(learned, on=KEYS)
    if exposure.empty and membership.empty:
        return Finding("sequence_leaks", q, why=UNDERTRAINED)
    numbers: dict[str, Estimate] = {}
    runs: list[tuple] = []
    text = " ".join(
        part
        for part in (
            _exposure_sentence(exposure, numbers, runs),
            _membership_sentence(membership, numbers, runs),
        )
        if part
    )
    return Finding("sequence_leaks", q, text, numbers, runs=tuple(dict.fromkeys(runs)))


def _exposure_rows(t: StudyTables) -> pd.DataFrame:
    e = t.exposure
    if e.empty:
        return e
    return e[(e["method"] == "rank") & e["kind"].isin(SEQUENCE_KINDS) & e["exposure"].notna()]


def _membership_rows(t: StudyTables) -> pd.DataFrame:
    """The language models' powered shadow-model attacks (LiRA, RMIA)."""
    m = t.membership
    if m.empty or "powered" not in m:
        return m.iloc[0:0]
    shadowed = m["attack"].str.startswith(("lira", "rmia"))
    return m[m["kind"].isin(SEQUENCE_KINDS) & shadowed & m["powered"].eq(True)]


def _exposure_sentence(e: pd.DataFrame, numbers: dict, runs: list) -> str:
    if e.empty:
        return ""
    parts = []
    for run in _regimes(e):
        first = run.iloc[0]
        levels = []
        for _, row in run.sort_values("repetitions").iterrows():
            est = _t_interval(
                float(row["exposure"]), float(row["exposure_se"]), int(row["n_canaries"])
            )
            numbers[f"exposure_{first['model']}_{first['regime']}_{int(row['repetitions'])}"] = est
            levels.append(f"{est.value:.1f} [{est.low:.1f}, {est.high:.1f}]")
        reps = " / ".join(str(int(r)) for r in run.sort_values("repetitions")["repetitions"])
        parts.append(f"{_name(first)} {' / '.join(levels)} bits at {reps} repetitions")
        runs.append(_key(first))
    first = e.iloc[0]
    bits = math.log2(int(first["n_references"]))
    return (
        "Canaries “the code of &lt;name&gt; is d d d d d” (Carlini et al. 2019: exposure = "
        f"log2 |R| - log2 rank of the secret's loss among {int(first['n_references'])} "
        f"never-inserted references, at most {bits:.0f} bits; a random rank gives log2 e = "
        f"1.44): {'; '.join(parts)} ({int(first['n_canaries'])} canaries per level, "
        f"{int(first['replicas'])} replicas)."
    )


def _membership_sentence(m: pd.DataFrame, numbers: dict, runs: list) -> str:
    """Per run, its strongest attack's true-positive rate at 0.1% false positives (Wilson)."""
    if m.empty:
        return ""
    parts = []
    for run in _regimes(m):
        row = run.loc[run["tpr_at_0.001_fpr"].idxmax()]
        members = int(row["members"])
        tpr = float(row["tpr_at_0.001_fpr"])
        lo, hi = wilson_interval(round(tpr * members), members)
        est = Estimate(tpr, float(lo), float(hi), members, "members")
        numbers[f"membership_{row['model']}_{row['regime']}_tpr_at_0.001_fpr"] = est
        runs.append(_key(row))
        parts.append(
            f"{_name(row)} {est.pct()} ({html.escape(str(row['attack']))}, AUC {row['auc']:.3f})"
        )
    return (
        "Membership inference on the documents' loss finds, at 0.1% false positives: "
        f"{'; '.join(parts)} ({int(m.iloc[0]['members'])} member pairs)."
    )


QUESTIONS = (memorizes, costs, pays, leaks)
