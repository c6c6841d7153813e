"""The study's findings: its questions, one answer each in a sentence with its number and
interval, chosen from what the study can support, and one line for each question it cannot
answer (and why). The summary page opens with them; ``results/findings.json`` holds their
numbers in DVC's metrics format (``dvc metrics show`` / ``dvc metrics diff``).

Intervals: means over replicas get a 95% Student-t interval across replicas (each replica is one
training run on its own subset: the unit of replication); a paired difference (the same replicas
on clean and perturbed data) gets the t interval of the per-replica differences; a difference
between independent runs (clean vs noisy labels, one regime vs another) gets Welch's interval.
Proportions of examples (TPR at a low FPR) get a Wilson interval. Accuracy intervals are clipped
to [0, 1]. Per-example results (memorization scores, membership inference) enter only from runs
that pass the power gates (``memlab.plan.power``).

Held back (config/README.md, "Findings"): an answer that rests on an under-trained run (a replica
stopped by ``max_epochs`` while its training loss still fell: it measures the epoch budget, not the
model), on fewer than MIN_REPLICAS replicas, or on a 95% interval wider than MAX_WIDTH says
nothing; it is listed with its reason and the setting that would answer it instead.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from memlab.plan.kinds import SEQUENCE_KINDS, trained
from memlab.plan.power import wilson_interval
from memlab.plan.study import MEMORY_REGIME, REGULARIZERS, RUN_KEYS, unregularized
from memlab.reporting.tables import StudyTables, memory_note, powered

KEYS = list(RUN_KEYS)
OTHERS = 3  # unregularized networks named besides the strongest memorizer
# An answer needs this many replicas per run: with 2, the t interval's half width is 12.7
# standard errors (t(0.975, 1)), and an interval that wide says nothing.
MIN_REPLICAS = 3
# An interval wider than this (50 percentage points, half an accuracy's range) cannot tell a
# small effect from a large one: the answer is held back.
MAX_WIDTH = 0.5
# Plain names of the model kinds in sentences (the config's run ids are for file paths).
KIND_NAMES = {
    "mlp": "MLP",
    "cnn": "CNN",
    "random_features": "random-features model",
    "memory_net": "memory network",
    "gru": "GRU language model",
}


@dataclass(frozen=True)
class Estimate:
    """A number with its 95% interval and the count it rests on (replicas or examples)."""

    value: float
    low: float
    high: float
    n: int
    unit: str = "replicas"
    # Not a share: too wide when the interval is wider than the value itself (``_uninformative``).
    relative: bool = False

    def pct(self, points: bool = False) -> str:
        """``97.5% [95.1, 99.9]`` (``points``: a difference, in signed percentage points)."""
        v = f"{100 * self.value:+.1f} points" if points else f"{100 * self.value:.1f}%"
        if not np.isfinite(self.low):
            return f"{v} ({self.n} {self.unit}: no interval)"
        if self.low == self.high == self.value and self.unit == "replicas":
            # Every replica gave the same number: a t interval would read zero-width.
            return f"{v} (the same in all {self.n} replicas)"
        return f"{v} [{100 * self.low:.1f}, {100 * self.high:.1f}]"

    def json(self) -> dict[str, float | int | None]:
        return {
            "value": _num(self.value),
            "low": _num(self.low),
            "high": _num(self.high),
            "n": self.n,
        }


def _num(x: float) -> float | None:
    return round(float(x), 6) if np.isfinite(x) else None


def mean_estimate(values: np.ndarray, clip: bool = True) -> Estimate:
    """The mean over replicas with its 95% t interval (none from one replica)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n)
    half = stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n)
    # An accuracy lies in [0, 1], a difference of two in [-1, 1].
    bound = (0.0, 1.0) if clip else (-1.0, 1.0)
    return Estimate(mean, max(mean - half, bound[0]), min(mean + half, bound[1]), n)


def welch_difference(a: np.ndarray, b: np.ndarray) -> Estimate:
    """mean(a) - mean(b) of two independent sets of replicas, with Welch's 95% interval."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = min(len(a), len(b))
    d = float(a.mean() - b.mean())
    if n < 2 or (a.std() == 0 and b.std() == 0):
        lo = hi = d if n >= 2 else math.nan
        return Estimate(d, lo, hi, n)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return Estimate(d, max(float(ci.low), -1.0), min(float(ci.high), 1.0), n)


@dataclass(frozen=True)
class Finding:
    """One question of the study and its answer (``answer`` is None: cannot be answered, and
    ``why`` says so)."""

    key: str  # the findings.json key
    question: str
    answer: str | None = None  # HTML
    numbers: dict[str, Estimate] = field(default_factory=dict)
    why: str | None = None
    # The runs the answer rests on (their RUN_KEYS values) and intervals it quotes beyond
    # ``numbers``: both are checked before the answer is shown (``_hold_back``).
    runs: tuple[tuple, ...] = ()
    quoted: tuple[Estimate, ...] = ()
    held_back: bool = False  # answered, but under-trained or too uncertain to say (``why``)


# ------------------------------------------------------------------------------ selecting runs


def _accuracy(metrics: pd.DataFrame, split: str, pert: str = "none", sev: int = 0) -> pd.Series:
    """Per (run, replica) accuracy on one split."""
    sel = metrics[
        (metrics["metric"] == "accuracy")
        & (metrics["split"] == split)
        & (metrics["perturbation"] == pert)
        & (metrics["severity"] == sev)
    ]
    return sel.set_index([*KEYS, "replica"])["value"]


def _runs(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run (its columns), at each dataset's largest training-set size."""
    runs = metrics.drop_duplicates(KEYS).copy()
    runs = runs[runs["size"] == runs.groupby("dataset")["size"].transform("max")]
    runs["trained"] = trained(runs["kind"])
    runs["unregularized"] = unregularized(runs)
    return runs.drop(columns=["replica", "split", "perturbation", "severity", "metric", "value"])


def _values(series: pd.Series, run: pd.Series) -> np.ndarray:
    key = tuple(run[k] for k in KEYS)
    try:
        return series.xs(key, level=KEYS).to_numpy()
    except KeyError:
        return np.array([])


def _model(run: pd.Series) -> str:
    """A model in plain words: "the MLP of width 16", "1-NN (no training)"."""
    if run["regime"] == MEMORY_REGIME or run["kind"] == "knn":
        k = run.get("k")
        return f"{int(k) if pd.notna(k) and k > 0 else 'k'}-NN (no training)"
    kind = KIND_NAMES.get(run["kind"], str(run["kind"]))
    width = int(run["width"])
    size = f"with {width} features" if run["kind"] == "random_features" else f"of width {width}"
    return html.escape(f"the {kind} {size}")


def _name(run: pd.Series) -> str:
    """A run in plain words: "the MLP of width 16 (no regularization)", "1-NN (no training)"."""
    memory = memory_note(run.get("memory"))
    if run["regime"] == MEMORY_REGIME or run["kind"] == "knn":
        return f"{_model(run)}{memory}"
    settings = _settings(run)
    regime = "no regularization" if settings == "none" else settings
    return f"{_model(run)} ({html.escape(regime)}{memory.replace(' (', '; ').rstrip(')')})"


def _cap(text: str) -> str:
    """A sentence that opens with a run's name starts with a capital."""
    return text[:1].upper() + text[1:]


def _key(run: pd.Series) -> tuple:
    return tuple(run[k] for k in KEYS)


def _where(run: pd.Series) -> str:
    return f"{html.escape(str(run['dataset']))}, noise {run['label_noise']:g}, n={run['size']}"


def _settings(run: pd.Series) -> str:
    """The regularization a run's regime sets, in the config's words."""
    parts = []
    for k in REGULARIZERS:
        v = run.get(k, 0)
        if pd.isna(v):
            continue
        if k == "early_stopping" and bool(v):
            parts.append("early stopping")
        elif k != "early_stopping" and v:
            parts.append(f"{k.replace('_', ' ')} {v:g}")
    return ", ".join(parts) or "none"


def _twin(runs: pd.DataFrame, run: pd.Series, **changes: object) -> pd.Series | None:
    """The run like ``run`` but for ``changes`` (e.g. another noise rate), if the study has it."""
    want = {k: run[k] for k in KEYS} | changes
    sel = runs
    for k, v in want.items():
        sel = sel[sel[k] == v]
    return None if sel.empty else sel.iloc[0]


# ------------------------------------------------------------------------------ the questions


@dataclass
class _Context:
    tables: StudyTables
    runs: pd.DataFrame
    flipped: pd.Series
    heldout: pd.Series
    stopped: pd.DataFrame  # per trained replica: 1 where under-trained (metric "undertrained")

    @classmethod
    def of(cls, tables: StudyTables) -> _Context:
        m = tables.metrics
        stopped = m[m["metric"] == "undertrained"]
        flipped, heldout = _accuracy(m, "train_flipped"), _accuracy(m, "heldout")
        return cls(tables, _runs(m), flipped, heldout, stopped)

    def undertrained(self, run: tuple) -> str | None:
        """Why a run (its RUN_KEYS values) cannot answer, if some of its replicas stopped at
        max_epochs while still improving (memlab.plan.study.undertrained); else None."""
        sel = self.stopped[(self.stopped[KEYS] == pd.Series(run, KEYS)).all(axis=1)]
        n_under = int(sel["value"].sum())
        if not n_under:
            return None
        row = sel.iloc[0]
        cap = int(row["max_epochs"])
        return _cap(
            f"{_name(row)} ({_where(row)}) is under-trained: {n_under} of {len(sel)} replicas "
            f"stopped at max_epochs={cap} while the training loss still fell. Raise "
            f"training.max_epochs (or the regime's max_epochs) in the config (e.g. to {2 * cap}) "
            "and rerun ./run.sh study"
        )

    def noisy_nets(self) -> pd.DataFrame:
        """Trained runs at each dataset's highest noise rate, if above 0."""
        r = self.runs[self.runs["trained"]]
        top = r["label_noise"] == r.groupby("dataset")["label_noise"].transform("max")
        return r[top & (r["label_noise"] > 0)]

    def memorizer(self) -> pd.Series | None:
        """The unregularized network that fits the most flipped labels."""
        plain = self.noisy_nets()
        plain = plain[plain["unregularized"]]
        if plain.empty:
            return None
        fit = plain.apply(lambda r: np.nanmean(_values(self.flipped, r)), axis=1)
        return plain.loc[fit.idxmax()] if fit.notna().any() else None


def _memorizes(c: _Context) -> Finding:
    q = "Does the model memorize?"
    plain = c.noisy_nets()
    plain = plain[plain["unregularized"]]
    best = c.memorizer()
    if best is None:
        why = "it needs label noise and an unregularized network (label_noise > 0)"
        return Finding("memorizes", q, why=why)
    fits = {i: mean_estimate(_values(c.flipped, r)) for i, r in plain.iterrows()}
    top = fits[best.name]
    low_i = min(fits, key=lambda i: fits[i].value)
    verb = "memorize" if top.low > 0.5 else "partly" if top.value > 0.2 else "memorize little"
    text = (
        f"Unregularized networks {verb}: {_name(best)} reproduces {top.pct()} of the flipped "
        f"training labels ({_where(best)}; {top.n} replicas)"
    )
    # The others, most memorizing first (the widths of one kind side by side), at most OTHERS;
    # an under-trained one is named as left out (its fit measures the epoch budget).
    under = [i for i in fits if i != best.name and c.undertrained(_key(plain.loc[i]))]
    others = sorted((i for i in fits if i != best.name), key=lambda i: -fits[i].value)
    others = [i for i in others if i not in under]
    shown = others[:OTHERS]
    if low_i not in shown and low_i in others:
        shown[-1:] = [low_i]
    text += "".join(f", {_name(plain.loc[i])} {fits[i].pct()}" for i in shown)
    if under:
        names = ", ".join(_name(plain.loc[i]) for i in under)
        text += f"; left out as under-trained (stopped at max_epochs while improving): {names}"
    runs = tuple(_key(plain.loc[i]) for i in [best.name, *shown])
    quoted = tuple(fits[i] for i in shown)
    return Finding("memorizes", q, text + ".", {"flipped_fitted": top}, runs=runs, quoted=quoted)


def _heldout_cost(c: _Context) -> Finding:
    q = "What does memorizing cost on held-out data?"
    run = c.memorizer()
    if run is None:
        return Finding("heldout_cost", q, why="it needs a memorizing run (see above)")
    clean = _twin(c.runs, run, label_noise=0.0)
    noisy = _values(c.heldout, run)
    if clean is None:
        gap = _values(_accuracy(c.tables.metrics, "train"), run) - noisy
        est = mean_estimate(gap, clip=False)
        text = f"For {_name(run)}, train minus held-out accuracy is {est.pct(points=True)}"
        answer = f"{text} ({_where(run)}; {est.n} replicas)."
        return Finding("heldout_cost", q, answer, {"gap": est}, runs=(_key(run),))
    est = welch_difference(noisy, _values(c.heldout, clean))
    acc = mean_estimate(noisy)
    text = (
        f"Fitting the flipped labels changes the held-out accuracy of {_name(run)} by "
        f"{est.pct(points=True)} (to {acc.pct()}, against clean labels; {_where(run)}; "
        f"{est.n} replicas each)."
    )
    numbers = {"accuracy_change": est, "heldout_accuracy": acc}
    return Finding("heldout_cost", q, text, numbers, runs=(_key(run), _key(clean)))


def _perturbed_cost(c: _Context) -> Finding:
    q = "What does it cost on perturbed data?"
    m = c.tables.metrics
    pert = m[(m["split"] == "perturbed") & (m["metric"] == "accuracy")]
    nets = c.runs[c.runs["trained"]]
    nets = nets[nets["label_noise"] == nets.groupby("dataset")["label_noise"].transform("min")]
    if pert.empty or nets.empty:
        return Finding("perturbed_cost", q, why="it needs perturbations (perturbations.names)")
    run = c.memorizer()
    run = run if run is not None else nets.iloc[0]
    sev = int(pert["severity"].max())
    drops = {}
    for name in sorted(set(pert["perturbation"])):
        after = _values(_accuracy(m, "perturbed", name, sev), run)
        if len(after):
            drops[name] = mean_estimate(after - _values(c.heldout, run), clip=False)
    if not drops:
        return Finding("perturbed_cost", q, why="no perturbation applies to these runs")
    order = sorted(drops, key=lambda k: drops[k].value)
    parts = ", ".join(f"{html.escape(k)} {drops[k].pct(points=True)}" for k in order)
    text = (
        f"At severity {sev}, the held-out accuracy of {_name(run)} changes by {parts} "
        f"({_where(run)}; {drops[order[0]].n} replicas, paired)."
    )
    numbers = {f"{k}_change": v for k, v in drops.items()}
    return Finding("perturbed_cost", q, text, numbers, runs=(_key(run),))


def _regularizer(c: _Context) -> Finding:
    q = "Which regularizer prevents it, and what does that cost on clean labels?"
    base = c.memorizer()
    if base is None:
        return Finding("regularizer", q, why="it needs a memorizing run (see above)")
    nets = c.noisy_nets()
    same = nets[(nets["model"] == base["model"]) & ~nets["unregularized"]]
    if same.empty:
        return Finding("regularizer", q, why=f"no regularized regime of {_name(base)} ran")
    fits = {i: mean_estimate(_values(c.flipped, r)) for i, r in same.iterrows()}
    best_i = min(fits, key=lambda i: fits[i].value)
    reg = same.loc[best_i]
    plain = mean_estimate(_values(c.flipped, base))
    if fits[best_i].value >= plain.value:
        why = f"no regularized regime of {_name(base)} fits fewer flipped labels than it does"
        return Finding("regularizer", q, why=why)
    text = (
        f"The regime {html.escape(str(reg['regime']))} ({html.escape(_settings(reg))}) does "
        f"most: with it {_model(base)} reproduces {fits[best_i].pct()} of the flipped labels "
        f"instead of {plain.pct()} without regularization"
    )
    numbers = {"flipped_fitted": fits[best_i]}
    runs = [_key(reg), _key(base)]
    reg_clean = _twin(c.runs, reg, label_noise=0.0)
    base_clean = _twin(c.runs, base, label_noise=0.0)
    if reg_clean is not None and base_clean is not None:
        cost = welch_difference(_values(c.heldout, reg_clean), _values(c.heldout, base_clean))
        text += f"; with clean labels it changes held-out accuracy by {cost.pct(points=True)}"
        numbers["clean_heldout_change"] = cost
        runs += [_key(reg_clean), _key(base_clean)]
    answer = f"{text} ({_where(reg)}; {plain.n} replicas each)."
    return Finding("regularizer", q, answer, numbers, runs=tuple(runs), quoted=(plain,))


def _which_examples(c: _Context) -> Finding:
    q = "Which examples are memorized, and are they the flipped ones?"
    summary = c.tables.memorization_summary
    ok = powered(summary, summary)
    if ok.empty:
        return Finding("which_examples", q, why=_gate_reason(summary, "memorization scores"))
    noisy = ok[ok["label_noise"] > 0]
    pick = noisy if len(noisy) else ok
    # The memorizing network of the first question where its scores are powered, else the
    # best-replicated powered unregularized network (a clean-label study has no memorizer), else
    # the best-replicated powered run.
    best = c.memorizer()
    mine = pick[(pick[KEYS] == best[KEYS]).all(axis=1)] if best is not None else pick.iloc[0:0]
    plain = pick.assign(plain=unregularized(pick))
    fallback = plain.sort_values(["plain", "replicas"], kind="stable").iloc[-1]
    run = mine.iloc[0] if len(mine) else fallback
    high = int(run["above_half"])
    text = (
        f"{_cap(_name(run))} memorizes {high} training examples (Feldman–Zhang score above 0.5; "
        f"{_where(run)}, {int(run['replicas_trained'])} replicas)"
    )
    numbers = {}
    if run["label_noise"] > 0 and high:
        low, hi = wilson_interval(run["above_half_flipped"], high)
        est = Estimate(run["above_half_flipped"] / high, float(low), float(hi), high, "examples")
        text += (
            f"; {est.pct()} of them are flipped labels (separation AUC {run['auc_flipped']:.3f})"
        )
        numbers["memorized_flipped_share"] = est
    return Finding("which_examples", q, text + ".", numbers)


METHOD_NAMES = {  # estimators.csv's methods in words
    "cumulative_loss": "the cumulative sample loss",
    "final_loss": "the final loss",
    "learning_time": "the learning time",
    "forgetting_events": "forgetting events",
    "cartography_confidence": "cartography confidence (negated)",
    "loss_sensitivity": "loss sensitivity",
    "curvature": "input-loss curvature",
    "cumulative_sensitivity": "the cumulative loss sensitivity",
    "tracin_self_influence": "TracIn self-influence",
    "knn_disagreement": "k-NN label disagreement",
    "lira_vulnerability": "LiRA vulnerability",
    "rmia_vulnerability": "RMIA vulnerability",
}


def _correlation(row: pd.Series) -> Estimate:
    return Estimate(
        float(row["spearman"]),
        float(row["spearman_low"]),
        float(row["spearman_high"]),
        int(row["n_examples"]),
        "examples",
    )


def _rho(est: Estimate) -> str:
    return f"{est.value:.2f} [{est.low:.2f}, {est.high:.2f}]"


def _estimators(c: _Context) -> Finding | None:
    q = "Which cheap estimator agrees best with the ground truth here?"
    e = c.tables.estimators
    if e.empty:
        return None  # not asked: no run with powered scores and a model that trains
    ok = e[(e["status"] == "ok") & e["spearman"].notna()]
    if ok.empty:
        return Finding("estimators", q, why="no estimator could be scored (estimators.csv)")
    # The memorizer of the first question where it has rows, else the widest unregularized run.
    best = c.memorizer()
    mine = ok[(ok[KEYS] == best[KEYS]).all(axis=1)] if best is not None else ok.iloc[0:0]
    if mine.empty:
        plain = ok.assign(plain=unregularized(ok), w=pd.to_numeric(ok["width"], errors="coerce"))
        pick = plain.sort_values(["plain", "w", "replicas"], kind="stable").iloc[-1]
        mine = ok[(ok[KEYS] == pick[KEYS]).all(axis=1)]
    single = mine[mine["scope"] == "single"].sort_values("spearman", ascending=False)
    averaged = mine[mine["scope"] == "averaged"].sort_values("spearman", ascending=False)
    run = mine.iloc[0]
    numbers, parts = {}, []
    if len(single):
        top, last = single.iloc[0], single.iloc[-1]
        est = _correlation(top)
        numbers[f"single_{top['method']}_spearman"] = est
        parts.append(
            f"from one trained model, {METHOD_NAMES.get(top['method'], top['method'])} agrees "
            f"best with the Feldman–Zhang scores of {_name(run)} (Spearman {_rho(est)}, "
            f"{est.n} examples, {int(top['n_memorized'])} of them memorized; "
            f"{top['relative_cost']:.2f} training runs of cost), "
            f"{METHOD_NAMES.get(last['method'], last['method'])} least "
            f"({_rho(_correlation(last))})"
        )
    if len(averaged):
        top = averaged.iloc[0]
        est = _correlation(top)
        numbers[f"averaged_{top['method']}_spearman"] = est
        parts.append(
            f"averaged over the replicas, {METHOD_NAMES.get(top['method'], top['method'])} "
            f"does best ({_rho(est)}; {int(top['replicas'])} replicas)"
        )
    text = _cap("; ".join(parts)) + f" ({_where(run)})."
    return Finding("estimators", q, text, numbers, runs=(_key(run),))


LITERATURE_BITS = "3.6 bits per parameter for GPT-style models (Morris et al. 2025)"


def _t_interval(value: float, se: float, n: int) -> Estimate:
    half = float(stats.t.ppf(0.975, n - 1) * se) if n >= 2 else math.nan
    return Estimate(value, value - half, value + half, n, relative=True)


def _bits(c: _Context) -> Finding | None:
    q = "How many bits does the model memorize?"
    bits, exposure = c.tables.capacity_bits, c.tables.exposure
    if bits.empty and exposure.empty:
        return None  # not asked: no random-label runs of a model with weights, no canaries
    parts: list[str] = []
    numbers: dict[str, Estimate] = {}
    runs: list[tuple] = []
    best = bits[bits["is_max"].astype(bool) & bits["bits_stored"].notna()] if len(bits) else bits
    if len(best):
        parts.append(_capacity_sentence(best, numbers, runs))
    if len(exposure):
        sentence = _exposure_sentence(exposure, numbers, runs)
        if sentence:
            parts.append(sentence)
    if not parts:
        return Finding("bits", q, why="no random-label run or canary gave a number of bits")
    return Finding("bits", q, " ".join(parts), numbers, runs=tuple(runs))


def _capacity_sentence(best: pd.DataFrame, numbers: dict[str, Estimate], runs: list[tuple]) -> str:
    """Bits stored on random labels: per model kind and regime, the width that stores the most
    per parameter, and the widest."""
    parts = []
    for _, g in best.groupby(["kind", "regime"], sort=False):
        g = g.sort_values("parameters")
        for _, row in g.iloc[[int(g["bits_per_parameter"].to_numpy().argmax()), -1]].iterrows():
            name = f"{row['model']}_{row['regime']}"
            if f"{name}_bits_per_parameter" in numbers:
                continue
            n = int(row["replicas"])
            per = _t_interval(row["bits_per_parameter"], row["bits_per_parameter_se"], n)
            total = _t_interval(row["bits_stored"], row["bits_stored_se"], n)
            numbers[f"{name}_bits_per_parameter"] = per
            runs.append(_key(row))
            parts.append(
                f"{_name(row)} stores {total.value:.0f} bits [{total.low:.0f}, {total.high:.0f}] "
                f"of {row['label_bits']:.0f} in its labels at n={int(row['train_size'])}: "
                f"{per.value:.2f} [{per.low:.2f}, {per.high:.2f}] bits per parameter "
                f"({int(row['parameters'])} parameters, {n} replicas)"
            )
    first = best.iloc[0]
    return _cap(
        f"On uniformly random labels ({html.escape(str(first['dataset']))}, the best "
        f"training-set size per model), {'; '.join(parts)}. For comparison: {LITERATURE_BITS}; "
        "a model below its labels' bits at every size has not reached its capacity."
    )


def _exposure_sentence(
    exposure: pd.DataFrame, numbers: dict[str, Estimate], runs: list[tuple]
) -> str | None:
    """Canary exposure by repetitions (rank method), for the unregularized and the most
    regularized run of the widest network with canaries."""
    e = exposure[(exposure["method"] == "rank") & exposure["exposure"].notna()]
    # Image canaries only: a language model's text canaries are sequence_findings.leaks'.
    e = e[trained(e["kind"]) & ~e["kind"].isin(SEQUENCE_KINDS)]
    if e.empty:
        return None
    e = e.assign(plain=unregularized(e), w=pd.to_numeric(e["width"], errors="coerce"))
    e = e[e["w"] == e["w"].max()]
    said = []
    for plain in (True, False):
        g = e[e["plain"] == plain]
        if g.empty:
            continue
        run = g.iloc[0]
        g = g[(g[KEYS] == run[KEYS]).all(axis=1)].sort_values("repetitions")
        levels = []
        for _, row in g.iterrows():
            se, n = float(row["exposure_se"]), int(row["n_canaries"])
            est = _t_interval(float(row["exposure"]), se, n)
            numbers[f"exposure_{run['model']}_{run['regime']}_{int(row['repetitions'])}"] = est
            levels.append(f"{est.value:.1f} [{est.low:.1f}, {est.high:.1f}]")
        reps = " / ".join(str(int(r)) for r in g["repetitions"])
        runs.append(_key(run))
        said.append(f"{_name(run)} {' / '.join(levels)} bits at {reps} repetitions")
    first = e.iloc[0]
    return (
        f"Inserted canaries (uniform noise, random labels; exposure = log2 |R| - log2 rank among "
        f"{int(first['n_references'])} never-seen references, Carlini et al. 2019; a random "
        f"rank gives log2 e = 1.44): {'; '.join(said)} ({_where(first)}; "
        f"{int(first['n_canaries'])} canaries per level, {int(first['replicas'])} replicas)."
    )


def _leakage(c: _Context) -> Finding:
    q = "How much does membership leak?"
    mia = c.tables.membership
    if mia.empty or "powered" not in mia:
        summary = c.tables.memorization_summary
        return Finding("leakage", q, why=_gate_reason(summary, "membership inference"))
    shadowed = mia[mia["attack"].str.startswith(("lira", "rmia"))]
    ok = powered(mia, shadowed)
    ok = ok[ok["attack"].str.startswith(("lira", "rmia")) & ok["powered"].eq(True)]
    if ok.empty:
        return Finding("leakage", q, why=_gate_reason(shadowed, "membership inference"))
    row = ok.loc[ok["tpr_at_0.001_fpr"].idxmax()]
    members = int(row["members"])
    tpr = float(row["tpr_at_0.001_fpr"])
    lo, hi = wilson_interval(round(tpr * members), members)
    est = Estimate(tpr, float(lo), float(hi), members, "members")
    text = (
        f"The strongest attack ({html.escape(str(row['attack']))}) finds {est.pct()} of the "
        f"training examples of {_name(row)} at 0.1% false positives (AUC {row['auc']:.3f}; "
        f"{_where(row)}; {members} member pairs)."
    )
    return Finding("leakage", q, text, {"tpr_at_0.001_fpr": est})


def welch_from_summary(a: pd.Series, b: pd.Series) -> Estimate:
    """mean(a) - mean(b) of two independent runs given as rows with ``accuracy``,
    ``accuracy_se`` and ``n_replicas`` (long_tail.csv): Welch's 95% interval from the summary
    statistics (the Welch-Satterthwaite degrees of freedom), as welch_difference gives it from
    the replicas."""
    d = float(a["accuracy"] - b["accuracy"])
    va, vb = float(a["accuracy_se"]) ** 2, float(b["accuracy_se"]) ** 2
    n = int(min(a["n_replicas"], b["n_replicas"]))
    if not (np.isfinite(va) and np.isfinite(vb)) or va + vb == 0:
        lo = hi = d if n >= 2 and va + vb == 0 else math.nan
        return Estimate(d, lo, hi, n)
    df = (va + vb) ** 2 / (va**2 / (a["n_replicas"] - 1) + vb**2 / (b["n_replicas"] - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    return Estimate(d, max(d - half, -1.0), min(d + half, 1.0), n)


def _table_estimate(row: pd.Series, value: str = "accuracy", clip: bool = True) -> Estimate:
    """A table row's mean over replicas (column ``value``, its standard error ``value_se``,
    ``n_replicas``) with its 95% t interval, as mean_estimate gives it from the replicas."""
    n, mean, se = int(row["n_replicas"]), float(row[value]), float(row[f"{value}_se"])
    if n < 2 or not np.isfinite(se):
        return Estimate(mean, math.nan, math.nan, n)
    half = stats.t.ppf(0.975, n - 1) * se
    low, high = (0.0, 1.0) if clip else (-1.0, 1.0)
    return Estimate(mean, max(mean - half, low), min(mean + half, high), n)


def _bucket_estimate(row: pd.Series) -> Estimate:
    """A bucket's accuracy with its 95% t interval across replicas."""
    return _table_estimate(row)


def _tail_and_head(tail: pd.DataFrame, run: pd.Series) -> tuple[pd.Series, pd.Series] | None:
    """A run's rarest seen (singletons, where it has them) and most frequent buckets of
    long_tail.csv, if both have intervals (bucket 0, unseen in a replica's subset, is neither)."""
    rows = tail[(tail[KEYS] == run[KEYS]).all(axis=1) & (tail["train_frequency"] > 0)]
    rows = rows.sort_values("train_frequency")
    if len(rows) < 2 or rows["n_replicas"].iloc[[0, -1]].min() < 2:
        return None
    return rows.iloc[0], rows.iloc[-1]


def _unseen(tail: pd.DataFrame, run: pd.Series) -> pd.Series | None:
    """A run's bucket 0: held-out examples whose subpopulation a replica never trained on."""
    rows = tail[(tail[KEYS] == run[KEYS]).all(axis=1) & (tail["train_frequency"] == 0)]
    return rows.iloc[0] if len(rows) and rows["n_replicas"].iloc[0] >= 2 else None


def _seen_words(row: pd.Series) -> str:
    f = int(row["train_frequency"])
    return "subpopulations seen " + ("once" if f == 1 else f"{f}-{2 * f - 1} times")


def _bucket_words(row: pd.Series) -> str:
    return f"{_seen_words(row)} in training ({int(row['n_test'])} held-out examples)"


def _shared_buckets(
    tail: pd.DataFrame, a: pd.Series, b: pd.Series
) -> tuple[tuple[pd.Series, pd.Series], tuple[pd.Series, pd.Series]] | None:
    """The rarest and the most frequent seen buckets two runs both have with intervals, as
    (a's row, b's row) pairs: a regime that carves a validation set out of its subset (early
    stopping) sees fewer examples per subpopulation, so its buckets differ from the base's."""

    def rows(run: pd.Series) -> pd.DataFrame:
        r = tail[(tail[KEYS] == run[KEYS]).all(axis=1)]
        r = r[(r["train_frequency"] > 0) & (r["n_replicas"] >= 2)]
        return r.set_index("train_frequency", drop=False)

    ra, rb = rows(a), rows(b)
    shared = sorted(set(ra.index) & set(rb.index))
    if len(shared) < 2:
        return None
    return (ra.loc[shared[0]], rb.loc[shared[0]]), (ra.loc[shared[-1]], rb.loc[shared[-1]])


def _where_it_pays(c: _Context) -> Finding:
    q = "Where does memorizing pay?"
    tail = c.tables.long_tail
    why = "it needs a long-tailed dataset (datasets.&lt;name&gt;.long_tail) and 2+ replicas"
    if tail.empty:
        return Finding("where_it_pays", q, why=why)
    tail = tail[tail["size"] == tail.groupby("dataset")["size"].transform("max")]
    tail = tail[tail["label_noise"] == tail.groupby("dataset")["label_noise"].transform("min")]
    on_tail = pd.MultiIndex.from_frame(c.runs[KEYS]).isin(pd.MultiIndex.from_frame(tail[KEYS]))
    runs = c.runs[on_tail]
    nets = runs[runs["trained"]].sort_values("width", kind="stable")
    plain = nets[nets["unregularized"]]
    if plain.empty or (buckets := _tail_and_head(tail, plain.iloc[-1])) is None:
        return Finding("where_it_pays", q, why=why)
    base = plain.iloc[-1]  # the widest unregularized network
    rests_on = [_key(base)]
    rare, common = buckets
    numbers = {"tail_accuracy": _bucket_estimate(rare), "head_accuracy": _bucket_estimate(common)}
    text = (
        f"On long-tailed data ({_where(base)}), {_name(base)} gets {numbers['tail_accuracy'].pct()}"
        f" of held-out examples right in {_bucket_words(rare)}, against "
        f"{numbers['head_accuracy'].pct()} in {_bucket_words(common)}"
    )
    unseen = _unseen(tail, base)
    if unseen is not None:
        numbers["unseen_accuracy"] = _bucket_estimate(unseen)
        text += (
            f" and {numbers['unseen_accuracy'].pct()} in subpopulations a replica never saw "
            f"(about {int(unseen['n_test'])} held-out examples per replica)"
        )
    memory = runs[(runs["kind"] == "knn") & (runs["k"] == 1)]
    if len(memory) and (buckets_1nn := _tail_and_head(tail, memory.iloc[0])) is not None:
        rare_1nn, common_1nn = buckets_1nn
        numbers["tail_accuracy_1nn"] = _bucket_estimate(rare_1nn)
        text += (
            f"; the pure memorizer 1-NN gets {numbers['tail_accuracy_1nn'].pct()} and "
            f"{_bucket_estimate(common_1nn).pct()}"
        )
    regs = nets[(nets["model"] == base["model"]) & ~nets["unregularized"]]
    if len(regs):
        train = _accuracy(c.tables.metrics, "train")
        fit = regs.apply(lambda r: np.nanmean(_values(train, r)), axis=1)
        reg = regs.loc[fit.idxmin()]  # the strongest: fits the least of its own training set
        pair = _shared_buckets(tail, base, reg)
        if pair is not None:
            rests_on.append(_key(reg))
            (base_rare, reg_rare), (base_common, reg_common) = pair
            numbers["regularizer_tail_change"] = welch_from_summary(reg_rare, base_rare)
            numbers["regularizer_head_change"] = welch_from_summary(reg_common, base_common)
            text += (
                f". The strongest regularizer, {html.escape(str(reg['regime']))} "
                f"({_settings(reg)}: it fits {np.nanmean(_values(train, reg)):.1%} of its "
                f"training set), changes accuracy by "
                f"{numbers['regularizer_tail_change'].pct(points=True)} on "
                f"{_seen_words(reg_rare)} and by "
                f"{numbers['regularizer_head_change'].pct(points=True)} on "
                f"{_seen_words(reg_common)} "
                f"({numbers['regularizer_tail_change'].n} replicas each, Welch)"
            )
    return Finding("where_it_pays", q, text + ".", numbers, runs=tuple(rests_on))


def _change_estimate(row: pd.Series) -> Estimate:
    """A removal arm's paired accuracy change with its 95% t interval across replicas."""
    return _table_estimate(row, "accuracy_change", clip=False)


def _few_shot(c: _Context) -> Finding | None:
    q = "Which model learns best from a few examples per class?"
    table = c.tables.few_shot
    if table.empty:
        return None  # no few-shot sizes
    table = table[(table["n_replicas"] >= 2) & table["accuracy_se"].notna()]
    if table.empty:
        return Finding("few_shot", q, why="the few-shot runs need 2 or more replicas each")
    parts, numbers = [], {}
    for shots in sorted({int(table["shots"].min()), int(table["shots"].max())}):
        at = table[table["shots"] == shots].sort_values("accuracy", ascending=False)
        best = at.iloc[0]
        numbers[f"best_at_{shots}_shots"] = _bucket_estimate(best)
        text = f"at {shots} per class {_name(best)} gets {_bucket_estimate(best).pct()}"
        if len(at) > 1:
            margin = welch_from_summary(best, at.iloc[1])
            numbers[f"margin_at_{shots}_shots"] = margin
            text += f", {margin.pct(points=True)} over {_name(at.iloc[1])} (Welch)"
        parts.append(text)
    first = table.iloc[0]
    where = f"{html.escape(str(first['dataset']))}, noise {first['label_noise']:g}"
    text = "; ".join(parts)
    answer = f"{text[0].upper()}{text[1:]} ({where}; {int(table['n_replicas'].min())}+ replicas)."
    return Finding("few_shot", q, answer, numbers)


def _recall(c: _Context) -> Finding | None:
    q = "Which model recalls its own training examples under perturbation?"
    table = c.tables.recall
    if table.empty:
        return None  # no dataset with recall
    table = table[(table["n_replicas"] >= 2) & table["recall_accuracy_se"].notna()]
    perturbed = table[table["severity"] > 0]
    if perturbed.empty:
        return Finding("recall", q, why="the recall runs need 2 or more replicas each")
    name = sorted(perturbed["perturbation"])[0]
    parts, numbers = [], {}
    for sev in sorted({int(perturbed["severity"].min()), int(perturbed["severity"].max())}):
        at = perturbed[(perturbed["perturbation"] == name) & (perturbed["severity"] == sev)]
        at = at.sort_values("recall_accuracy", ascending=False)
        shown = ", ".join(
            f"{_name(r)} {_recall_estimate(r).pct()}" for _, r in at.head(OTHERS + 1).iterrows()
        )
        numbers[f"best_at_severity_{sev}"] = _recall_estimate(at.iloc[0])
        parts.append(f"at severity {sev}: {shown}")
    first = perturbed.iloc[0]
    costs = _regularization_costs(perturbed[perturbed["perturbation"] == name], numbers)
    text = (
        f"Recall of perturbed training examples ({html.escape(name)}; "
        f"{html.escape(str(first['dataset']))}, n={first['size']}) "
        + "; ".join([*parts, *costs])
        + f" ({int(perturbed['n_replicas'].min())}+ replicas)."
    )
    return Finding("recall", q, text, numbers)


def _regularization_costs(rows: pd.DataFrame, numbers: dict[str, Estimate]) -> list[str]:
    """What each regularized regime costs a network's recall against its unregularized twin
    (same model, memory as used), at the smallest severity: Welch from the table's rows."""
    rows = rows[rows["severity"] == rows["severity"].min()]
    rows = rows[trained(rows["kind"]) & (rows["memory"].fillna("") != "off")]
    rows = rows.rename(columns={"recall_accuracy": "accuracy", "recall_accuracy_se": "accuracy_se"})
    plain = rows[unregularized(rows)]
    out = []
    for _, base in plain.iterrows():
        for _, reg in rows[(rows["model"] == base["model"]) & ~unregularized(rows)].iterrows():
            cost = welch_from_summary(reg, base)
            numbers[f"regularization_cost_{reg['model']}_{reg['regime']}"] = cost
            out.append(
                f"{_name(reg)} recalls {cost.pct(points=True)} against {_name(base)} at "
                f"severity {int(reg['severity'])} (Welch)"
            )
    return out


def _recall_estimate(row: pd.Series) -> Estimate:
    return _table_estimate(row, "recall_accuracy")


def _memory(c: _Context) -> Finding | None:
    q = "What does a memory network's memory add?"
    effect = c.tables.memory_effect
    if effect.empty:
        return None  # no memory network
    effect = effect[(effect["n_replicas"] >= 2) & effect["difference_se"].notna()]
    effect = effect[effect["split"] != "train"]
    if effect.empty:
        return Finding("memory", q, why="the memory networks need 2 or more replicas each")
    parts: list[str] = []
    numbers: dict[str, Estimate] = {}
    # Per dataset, the unregularized run if there is one: the memory as it learns to be used.
    for dataset, d in effect.groupby("dataset", sort=True):
        run = d.assign(plain=unregularized(d)).sort_values("plain", kind="stable").iloc[-1]
        d = d[(d["model"] == run["model"]) & (d["regime"] == run["regime"])]
        parts.append(_memory_sentence(str(dataset), d, run, numbers))
    answer = "With the memory on rather than off, " + "; ".join(parts) + " (paired per replica)."
    return Finding("memory", q, answer, numbers)


def _memory_sentence(
    dataset: str, d: pd.DataFrame, run: pd.Series, numbers: dict[str, Estimate]
) -> str:
    """Held-out at the fewest and most shots (or sizes), recall at the smallest severity."""
    held = d[d["split"] == "heldout"].sort_values(["shots", "size"])
    recall = d[d["split"] == "recall"].sort_values("severity")
    rows = [r for _, r in held.iterrows()]
    chosen = [*rows[:1], *rows[1:][-1:], *(r for _, r in recall.head(1).iterrows())]
    said = []
    for row in chosen:
        where = (
            f"held-out at {int(row['shots'])} shot{'s' * (row['shots'] > 1)}" if row["shots"] > 0
            else f"held-out at n={int(row['size'])}" if row["split"] == "heldout"
            else f"recall at severity {int(row['severity'])}"
        )  # fmt: skip
        est = _table_estimate(row, "difference", clip=False)
        numbers[f"{dataset}_{where.replace(' ', '_').replace('=', '')}"] = est
        said.append(f"{est.pct(points=True)} {where}")
    mix = f"mix {run['mix']:.2f}" if np.isfinite(run["mix"]) else "mix unknown"
    return (
        f"{_name(run.drop('memory'))} ({mix}) gains {', '.join(said)} "
        f"({html.escape(dataset)}; {int(d['n_replicas'].min())}+ replicas)"
    )


def _influence(c: _Context) -> Finding | None:
    q = "Which training examples does memorizing pay for, and on which test examples?"
    summary = c.tables.influence_summary
    if summary.empty:
        return None  # no run with a subset design: nothing to say
    ok = summary[summary["powered"].eq(True)]
    if ok.empty:
        return Finding("influence", q, why=_gate_reason(summary, "train-to-test influence"))
    run = ok.sort_values(["n_replicas", "n_pairs"], kind="stable").iloc[-1]
    n, hit, n_test = int(run["n_pairs"]), int(run["n_influenced"]), int(run["n_test"])
    lo, hi = wilson_interval(hit, n_test)
    touched = Estimate(hit / n_test, float(lo), float(hi), n_test, "held-out examples")
    text = (
        f"{_cap(_name(run))} has {n} high-influence pairs (a training example with memorization >= "
        f"{run['min_memorization']:g} raising a held-out example's "
        f"accuracy by >= {run['min_influence']:g}; {_where(run)}, "
        f"{int(run['n_replicas'])} replicas); they touch {touched.pct()} of the held-out set, "
        f"and the null expects {run['expected_false_pairs']:.2g} of them by chance"
    )
    numbers = {"influenced_share": touched}
    if np.isfinite(run["same_subpopulation_share"]) and n:
        share = Estimate(
            float(run["same_subpopulation_share"]),
            float(run["same_subpopulation_low"]),
            float(run["same_subpopulation_high"]),
            n,
            "pairs",
        )
        text += f"; {share.pct()} of the pairs lie within one subpopulation"
        numbers["same_subpopulation_share"] = share
    return Finding("influence", q, text + ".", numbers)


def _removal(c: _Context) -> Finding | None:
    q = "What does removing the memorized examples cost?"
    r = c.tables.removal
    if r.empty:
        return None  # no removal stage
    r = r[r["n_replicas"] >= 2]
    top = r[(r["removed"] == "top_memorized") & (r["split"] == "heldout")]
    if top.empty:
        return Finding("removal", q, why="the removal arms need 2 or more replicas each")
    # An unregularized network's first stage if there is one (the memorizer the question is
    # about), at its largest k whose top k are all in pairs (else its smallest k).
    plain = unregularized(top)
    first = top.assign(plain=plain).sort_values(["plain", "n_replicas"], kind="stable").iloc[-1]
    mine = r[(r[KEYS] == first[KEYS]).all(axis=1)]
    paired = mine[mine["top_k_in_pairs"] == mine["n_removed"]]
    k = int(paired["n_removed"].max()) if len(paired) else int(mine["n_removed"].min())
    at_k = mine[mine["n_removed"] == k].set_index(["removed", "split"])
    numbers = {
        f"{arm}_{split}_change": _change_estimate(at_k.loc[(arm, split)])
        for arm in ("top_memorized", "random")
        for split in ("heldout", "influenced")
        if (arm, split) in at_k.index
    }
    text = (
        f"Retraining {_name(first)} without its {k} most memorized, high-influence training "
        f"examples changes held-out accuracy by "
        f"{numbers['top_memorized_heldout_change'].pct(points=True)}, against "
        f"{numbers['random_heldout_change'].pct(points=True)} without {k} random ones"
    )
    if "top_memorized_influenced_change" in numbers:
        n_test = int(at_k.loc[("top_memorized", "influenced"), "n_test"])
        text += (
            f"; on the {n_test} held-out examples they influence, "
            f"{numbers['top_memorized_influenced_change'].pct(points=True)} against "
            f"{numbers['random_influenced_change'].pct(points=True)}"
        )
    text += f" ({_where(first)}; {int(first['n_replicas'])} paired replicas per arm)."
    return Finding("removal", q, text, numbers)


def _gate_reason(gate: pd.DataFrame, what: str) -> str:
    if gate.empty or "status" not in gate:
        return f"no run gives {what}"
    status = gate["status"].dropna()
    under = status[status.str.startswith("underpowered")]
    # A table's status is text; a Finding's ``why`` is HTML.
    return html.escape((under if len(under) else status).iloc[0].removeprefix("underpowered: "))


QUESTIONS: tuple[Callable[[_Context], Finding | None], ...] = (
    _memorizes,
    _heldout_cost,
    _perturbed_cost,
    _regularizer,
    _which_examples,
    _estimators,
    _bits,
    _leakage,
    _where_it_pays,
    _few_shot,
    _recall,
    _memory,
    _influence,
    _removal,
)


def study_findings(tables: StudyTables) -> list[Finding]:
    """Every question of the study, answered where it can be, in the summary's order (an answer
    that cannot say anything is held back: ``_hold_back``)."""
    from memlab.reporting import sequence_findings  # it builds on this module's helpers

    language = [f for f in (ask(tables) for ask in sequence_findings.QUESTIONS) if f is not None]
    if tables.metrics.empty:
        return language  # a study of language models alone
    c = _Context.of(tables)
    asked = [f for f in (ask(c) for ask in QUESTIONS) if f is not None]
    return [_hold_back(f, c) for f in asked + language]


def _hold_back(f: Finding, c: _Context) -> Finding:
    """The finding, or in its place the reason it says nothing: a run it rests on is
    under-trained, or an interval it quotes rests on too few replicas or is too wide."""
    if f.answer is None:
        return f
    why = next((w for w in map(c.undertrained, f.runs) if w), None)
    why = why or next(filter(None, map(_uninformative, [*f.numbers.values(), *f.quoted])), None)
    return f if why is None else Finding(f.key, f.question, why=why, held_back=True)


def _uninformative(est: Estimate) -> str | None:
    """Why an interval says nothing (config/README.md, "Findings"), with the fix; else None."""
    if est.unit == "replicas" and est.n < MIN_REPLICAS:
        return (
            f"Its numbers rest on {est.n} replicas per run, fewer than the {MIN_REPLICAS} an "
            f"answer needs. Set replicas: {MIN_REPLICAS} (or more) in the config and rerun "
            "./run.sh study"
        )
    if not np.isfinite(est.low):
        return None
    if est.relative:
        if est.high - est.low <= abs(est.value):
            return None
        return (
            f"Its 95% interval [{est.low:.3g}, {est.high:.3g}] ({est.n} {est.unit}) is wider "
            f"than the value {est.value:.3g} itself. Raise replicas in the config and rerun "
            "./run.sh study"
        )
    if est.high - est.low <= MAX_WIDTH:
        return None
    more = "replicas" if est.unit == "replicas" else "replicas or sizes"
    return (
        f"Its 95% interval [{100 * est.low:.1f}, {100 * est.high:.1f}] ({est.n} {est.unit}) "
        f"spans more than "
        f"{100 * MAX_WIDTH:.0f} percentage points: too wide to tell a small effect from a large "
        f"one. Raise {more} in the config (4x the replicas halves an interval) and rerun "
        "./run.sh study"
    )


def findings_metrics(
    findings: list[Finding],
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """The answered findings' numbers, for results/findings.json (DVC metrics: nested keys)."""
    return {
        f.key: {name: est.json() for name, est in f.numbers.items()}
        for f in findings
        if f.answer is not None and f.numbers
    }
