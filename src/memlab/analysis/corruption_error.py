"""Mean corruption error (mCE) and relative mCE against a baseline model (Hendrycks & Dietterich
2019, *Benchmarking neural network robustness to common corruptions and perturbations*, sec. 3).

With ``E[s, c]`` a model's error rate (1 - accuracy) on the held-out set under corruption ``c``
at severity ``s`` and ``E_clean`` its clean held-out error, per corruption

    CE_c          = sum_s E[s, c] / sum_s E_base[s, c]
    relative CE_c = sum_s (E[s, c] - E_clean) / sum_s (E_base[s, c] - E_base_clean)

and mCE, relative mCE are their means over the corruptions. CE below 1: fewer errors under the
corruption than the baseline. Relative CE below 1: the model *loses* less accuracy to it than the
baseline does, whatever its clean accuracy (a model can have mCE < 1 only because it is better
on clean data).

Errors are means over a run's replicas; the interval is a 95% percentile bootstrap over replicas,
paired (replica ``r`` of every model of a dataset, noise and size trains on the same subset, so
the same resampled replicas are used for the model and the baseline). The baseline is one run per
(dataset, label noise, size): the configured variant (``perturbations.baseline``) in its
unregularized regime (or ``perturbations.baseline_regime``), so every model and regime of that
data is measured against the same reference, as in the paper (AlexNet there).

This module imports no pandas at import time: the workflow resolves the baseline on every start.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from memlab.io import MemlabInputError
from memlab.plan.kinds import MODEL_KINDS
from memlab.plan.study import MEMORY_REGIME, RUN_COLUMNS, RUN_KEYS
from memlab.seeds import derive_seed

if TYPE_CHECKING:
    import pandas as pd

    from memlab.plan.kinds import Variant
    from memlab.plan.study import Study

MEAN = "mean"  # the perturbation of a run's mCE row
DRAWS = 1000  # bootstrap resamples of the replicas
LEVEL = 0.95  # of the bootstrap interval
COLUMNS = [
    *RUN_COLUMNS,
    "baseline",
    "baseline_regime",
    "perturbation",
    "severities",
    "replicas",
    "baseline_replicas",
    "clean_error",
    "baseline_clean_error",
    "error",
    "baseline_error",
    "ce",
    "ce_low",
    "ce_high",
    "relative_ce",
    "relative_ce_low",
    "relative_ce_high",
    "status",
]
_ESTIMATES = ("ce", "relative_ce")


def corruption_errors(
    error: np.ndarray,
    clean_error: np.ndarray | float,
    baseline_error: np.ndarray,
    baseline_clean_error: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """CE and relative CE per corruption, from error rates ``[..., corruption, severity]``.

    ``clean_error`` and ``baseline_clean_error`` are the clean errors (shape ``[...]``, or
    scalars). Returns ``(ce, relative_ce)``, each ``[..., corruption]``: NaN where the baseline's
    sum is not positive (CE: it makes no error under the corruption; relative CE: it loses no
    accuracy to it), where the ratio is undefined or meaningless.
    """
    error = np.asarray(error, dtype=np.float64)
    base = np.asarray(baseline_error, dtype=np.float64)
    clean = np.asarray(clean_error, dtype=np.float64)[..., None]
    base_clean = np.asarray(baseline_clean_error, dtype=np.float64)[..., None]
    return _from_sums(error.sum(-1), clean, base.sum(-1), base_clean, error.shape[-1])


def _from_sums(
    sum_f: np.ndarray,
    clean_f: np.ndarray,
    sum_b: np.ndarray,
    clean_b: np.ndarray,
    severities: np.ndarray | int,
) -> tuple[np.ndarray, np.ndarray]:
    """CE and relative CE from each corruption's error summed over its ``severities`` (the
    formula's one home: :func:`corruption_errors` and the table's bootstrap both use it)."""
    drop_f = sum_f - severities * clean_f
    drop_b = sum_b - severities * clean_b
    return _ratio(sum_f, sum_b), _ratio(drop_f, drop_b)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.broadcast_arrays(num, den)
    out = np.full(num.shape, np.nan)
    ok = den > 0
    np.divide(num, den, out=out, where=ok)
    return out


def mean_corruption_errors(
    error: np.ndarray,
    clean_error: np.ndarray | float,
    baseline_error: np.ndarray,
    baseline_clean_error: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """mCE and relative mCE (``[...]``): the means of :func:`corruption_errors` over the
    corruptions where they are defined (NaN where none is)."""
    ce, relative = corruption_errors(error, clean_error, baseline_error, baseline_clean_error)
    return _defined_mean(ce), _defined_mean(relative)


def _defined_mean(values: np.ndarray) -> np.ndarray:
    ok = np.isfinite(values)
    total = np.where(ok, values, 0.0).sum(-1)
    count = ok.sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# --------------------------------------------------------------------------- the baseline


def default_baseline(variants: Mapping[str, Variant]) -> str:
    """The default baseline's variant id: a model that trains (k-NN only if none does), of the
    first kind of ``memlab.plan.kinds.MODEL_KINDS`` (mlp, then cnn), then by entry name, the
    narrowest and shallowest (smallest k); the narrowest MLP in the default study."""
    kinds = list(MODEL_KINDS)

    def order(v: Variant) -> tuple:
        c = v.columns()
        return (not v.trains, kinds.index(v.kind), v.name, c["width"], c["depth"], c["k"], v.id)

    return min(variants.values(), key=order).id


def resolve_baselines(study: Study, perturbations: Mapping[str, Any]) -> dict[str, dict]:
    """Per dataset: the baseline run's ``model`` and ``regime``, or ``regime`` None and the
    ``reason`` it has none there. Raises :class:`MemlabInputError` for a ``baseline`` that is
    not a variant of the study or a ``baseline_regime`` it cannot run in.

    Default model (:func:`default_baseline`): the smallest model of the first kind that trains.
    Default regime: by name, the first of the dataset's regimes without weight decay, dropout or
    early stopping; ``memory`` for a model that does not train. Neither depends on the order of
    the config's keys (reordering them must not change a result).
    """
    variants = study.variants
    model = perturbations.get("baseline")
    regime = perturbations.get("baseline_regime")
    if model is None:
        model = default_baseline(variants)
    elif model not in variants:
        raise MemlabInputError(
            f"config: perturbations.baseline {model!r} is not a model variant of the study; "
            f"variants: {', '.join(variants)}."
        )
    variant = variants[model]
    if regime is not None:
        if not variant.trains and regime != MEMORY_REGIME:
            raise MemlabInputError(
                f"config: perturbations.baseline_regime {regime!r}: the baseline {model} does not "
                f"train (its runs are in regime {MEMORY_REGIME!r}); remove the key."
            )
        if variant.trains and regime not in study.regimes:
            raise MemlabInputError(
                f"config: perturbations.baseline_regime {regime!r} is not a regime of the study; "
                f"regimes: {', '.join(study.regimes)}."
            )
    out = {}
    for name, ds in study.datasets.items():
        ran = {r.regime_name for r in study.runs if r.dataset == name and r.model == model}
        chosen, reason = None, None
        if not ran:
            reason = f"the baseline {model} does not run on dataset {name!r}"
        elif not variant.trains:
            chosen = MEMORY_REGIME
        elif regime is not None:
            chosen = regime if regime in ran else None
            if chosen is None:
                reason = f"the baseline {model} does not run in regime {regime!r} on {name!r}"
        else:
            plain = sorted(r for r in ds.regimes if r in ran and not study.regimes[r].regularized)
            chosen = plain[0] if plain else None
            if chosen is None:
                reason = (
                    f"the baseline {model} has no regime without weight decay, dropout or early "
                    f"stopping on {name!r}; set perturbations.baseline_regime"
                )
        out[name] = {"model": model, "regime": chosen, "reason": reason}
    return out


# --------------------------------------------------------------------------- the table


class _RunErrors:
    """A run's per-replica errors: ``error[r, k]`` on the perturbed sets ``cols[k] = (name, s)``
    and ``clean[r]`` on the clean held-out set, replicas in order."""

    def __init__(self, frame: pd.DataFrame) -> None:
        acc = frame.pivot(index="replica", columns=["perturbation", "severity"], values="accuracy")
        self.replicas = acc.index.to_numpy()
        self.cols = list(acc.columns)
        self.error = 1.0 - acc.to_numpy(dtype=np.float64)
        clean = frame.groupby("replica")["clean_accuracy"].first().reindex(acc.index)
        self.clean = 1.0 - clean.to_numpy(dtype=np.float64)
        self.run = {c: frame[c].iloc[0] for c in RUN_COLUMNS}

    def select(self, cols: list) -> np.ndarray:
        where = {c: i for i, c in enumerate(self.cols)}
        return self.error[:, [where[c] for c in cols]]


def _weights(rng: np.random.Generator, replicas: int, draws: int) -> np.ndarray:
    """Bootstrap resamples as replica weights ``[draws, replicas]`` (counts / replicas)."""
    return rng.multinomial(replicas, np.full(replicas, 1.0 / replicas), size=draws) / replicas


def _interval(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the draws (axis 0) where the value is defined."""
    tail = (1.0 - LEVEL) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: an undefined value
        low, high = np.nanquantile(samples, [tail, 1.0 - tail], axis=0)
    return low, high


def _undefined(names: list[str], ok: np.ndarray, what: str) -> str | None:
    bad = [n for n, good in zip(names, ok, strict=True) if not good]
    if not bad:
        return None
    return f"{what} over {int(ok.sum())} of {len(names)} corruptions (undefined: {', '.join(bad)})"


class _Estimates:
    """CE and relative CE per corruption of one run against its baseline, for any replica
    weights (the means: equal weights; bootstrap draws: resampled)."""

    def __init__(self, f: _RunErrors, b: _RunErrors, cols: list, member: np.ndarray) -> None:
        self.f, self.b = f, b
        self.err_f, self.err_b = f.select(cols), b.select(cols)
        self.member = member  # [k, C]: perturbed set k is of corruption C
        self.severities = member.sum(0)

    def __call__(self, wf: np.ndarray, wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sum_f = (wf @ self.err_f) @ self.member  # [..., C]
        sum_b = (wb @ self.err_b) @ self.member
        clean_f = (wf @ self.f.clean)[..., None]
        clean_b = (wb @ self.b.clean)[..., None]
        return _from_sums(sum_f, clean_f, sum_b, clean_b, self.severities)


def _rows(
    f: _RunErrors, b: _RunErrors | None, baseline: Mapping, reason: str, seed: int
) -> list[dict]:
    """A run's rows: one per corruption, then its ``mean`` row."""
    cols = [c for c in f.cols if b is None or c in set(b.cols)]
    names = list(dict.fromkeys(c[0] for c in cols))
    member = np.array([[c[0] == n for n in names] for c in cols], dtype=np.float64)
    member = member.reshape(len(cols), len(names))
    severities = member.sum(0)
    per_corruption = f.select(cols).mean(0) @ member / np.maximum(severities, 1)
    common = {
        **f.run,
        "baseline": baseline.get("model"),
        "baseline_regime": baseline.get("regime"),
        "replicas": len(f.replicas),
        "clean_error": float(f.clean.mean()),
    }
    rows = [
        {**common, "perturbation": n, "severities": int(k), "error": float(e)}
        for n, k, e in zip(names, severities, per_corruption, strict=True)
    ]
    rows.append(
        {
            **common,
            "perturbation": MEAN,
            "severities": int(severities.max(initial=0)),
            "error": float(per_corruption.mean()) if names else np.nan,
        }
    )
    if b is None or not names:
        for row in rows:
            row["status"] = reason if b is None else "no perturbed set in common with the baseline"
        return rows
    estimates = _Estimates(f, b, cols, member)
    rf, rb = len(f.replicas), len(b.replicas)
    point = estimates(np.full(rf, 1.0 / rf), np.full(rb, 1.0 / rb))
    defined = [np.isfinite(p) for p in point]
    # Each estimate per corruption, then its mean over the corruptions where it is defined.
    values = [np.append(p, _defined_mean(p)) for p in point]
    if min(rf, rb) >= 2:
        rng = np.random.default_rng(seed)
        wf = _weights(rng, rf, DRAWS)
        paired = np.array_equal(f.replicas, b.replicas)
        draws = estimates(wf, wf if paired else _weights(rng, rb, DRAWS))
        bounds = [
            _interval(
                np.column_stack([d, d[:, ok].mean(1) if ok.any() else np.full(len(d), np.nan)])
            )
            for d, ok in zip(draws, defined, strict=True)
        ]
    else:
        bounds = [(np.full(len(names) + 1, np.nan),) * 2 for _ in _ESTIMATES]
    base_error = b.select(cols).mean(0) @ member / severities
    base_error = np.append(base_error, base_error.mean())
    for i, row in enumerate(rows):
        row["baseline_replicas"] = rb
        row["baseline_clean_error"] = float(b.clean.mean())
        row["baseline_error"] = float(base_error[i])
        for name, v, (low, high) in zip(_ESTIMATES, values, bounds, strict=True):
            row[name], row[f"{name}_low"], row[f"{name}_high"] = map(float, (v[i], low[i], high[i]))
        if i < len(names):
            notes = [
                None if defined[0][i] else "the baseline makes no error under it: CE undefined",
                None
                if defined[1][i]
                else "the baseline loses no accuracy to it: relative CE undefined",
            ]
        else:
            notes = [
                _undefined(names, defined[0], "mCE"),
                _undefined(names, defined[1], "relative mCE"),
            ]
        row["status"] = "; ".join(n for n in notes if n) or "ok"
    return rows


def corruption_error_table(
    robustness: pd.DataFrame, baselines: Mapping[str, Mapping[str, Any]], *, seed: int = 0
) -> pd.DataFrame:
    """CE and relative CE per run and corruption, and a row per run (perturbation ``mean``)
    with its mCE and relative mCE, each with a bootstrap interval over replicas.

    ``robustness`` is :func:`memlab.analysis.metrics.robustness` (per replica: ``accuracy`` per
    perturbation and severity, ``clean_accuracy``); ``baselines`` is :func:`resolve_baselines`.
    The baseline of a run is the baseline's run at the same dataset, label noise and size. A run
    without one gets its own errors and a ``status`` saying why; every bootstrap is seeded from
    ``seed`` and the run alone.
    """
    import pandas as pd

    if robustness.empty:
        return pd.DataFrame(columns=COLUMNS)
    runs = {
        key: _RunErrors(frame)
        for key, frame in robustness.groupby(list(RUN_KEYS), sort=False, dropna=False)
    }
    rows = []
    for key, f in runs.items():
        dataset, noise, size = key[:3]
        baseline = baselines.get(dataset, {"model": None, "regime": None})
        reason = baseline.get("reason") or "no baseline"
        b = None
        if baseline.get("regime") is not None:
            at = (dataset, noise, size, baseline["model"], baseline["regime"])
            # The baseline as used: a memory network's with its memory on.
            b = runs.get((*at, "")) or runs.get((*at, "on"))
            if b is None:
                reason = (
                    f"the baseline {baseline['model']} / {baseline['regime']} has no run at "
                    f"label noise {noise:g} and size {size}"
                )
        # The run's path names its seed; a memory network's memory (on, off) is added to it.
        *path, memory = key
        names = [*(str(k) for k in path), *([memory] if memory else [])]
        run_seed = derive_seed(seed, "corruption_error", *names)
        rows += _rows(f, b, baseline, reason, run_seed)
    return pd.DataFrame(rows, columns=COLUMNS)
