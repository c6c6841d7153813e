"""Membership inference: did this model train on this example?

Attacks, each giving a score per (target replica, pool example) where higher means "member":
- ``gap`` (Yeom et al. 2018): 1 if the model classifies the example correctly, else 0. Its
  advantage (TPR - FPR) equals train accuracy minus accuracy on non-members: an identity.
- ``loss`` (Yeom et al. 2018): minus the example's loss.
- ``lira_online`` / ``lira_offline`` / ``lira_offline_density`` (Carlini et al. 2022, LiRA): the
  other replicas are the shadow models. For target replica t and example i, fit Gaussians to the
  logit-scaled confidence ``log p_y - log sum_{y' != y} p_y'`` of the shadows that trained on i
  (IN) and that did not (OUT); online scores the likelihood ratio IN vs OUT, offline only how the
  target's confidence lies against the OUT distribution: ``lira_offline`` the paper's one-sided
  tail (above it), ``lira_offline_density`` the reference code's density (away from it, either
  side). ``_fixed_variance`` uses one variance per target and distribution across all examples
  (more stable with few shadows); online it is the reference code's estimator, and
  ``lira_online_pooled_variance`` memlab's (below).
- ``rmia_online`` / ``rmia_offline`` (Zarifzadeh, Liu & Shokri 2024, "Low-Cost High-Power
  Membership Inference Attacks", ICML; RMIA): the other replicas are the reference models and the
  held-out test examples, which no replica trained on, the population samples z. With
  ``p(x | theta) = exp(-loss)``, the probability of the example's given label (computed in log
  space, float64), the ratio of x for target t is ``r(x) = p(x | theta_t) / p_ref(x)``:
  online, ``p_ref(x)`` is the mean of ``p(x | theta)`` over all other replicas (IN and OUT of x;
  with balanced halves about half are IN, the paper's online setting); offline, it is the
  paper's approximation from the OUT replicas alone, ``((1 + a) p_out(x) + (1 - a)) / 2`` with
  ``p_out(x)`` the mean over the other replicas that did not train on x. ``r(z)`` is the same
  with the same reference set (every replica is OUT of a test example; offline, the same
  formula). The score is ``Pr_z[r(x) / r(z) >= gamma]``, counted exactly as ``r(z) <= r(x) /
  gamma`` (``log r(z) <= log r(x) - log gamma``): ties count as ">=" (the paper's Algorithm 1;
  the reference implementation, ml_privacy_meter, uses ">"), so an example whose ratio equals a
  population sample's counts that sample at gamma = 1. Defaults ``gamma = 1`` (ml_privacy_meter's
  ``run_rmia``; its 2023 research configs for CIFAR-10 used 2 on a tempered soft-margin signal
  that memlab does not compute) and ``a = 0.3`` (ml_privacy_meter's ``offline_a`` default, which
  it otherwise tunes on a paired model; the research configs used 0.33 with b = 0.66 = 1 - a).
  A target without references (fewer than 2 replicas) or, offline, an example without an OUT
  reference scores 0 (uninformative), as LiRA.
LiRA: choices against the reference implementation (tensorflow/privacy,
``research/mi_lira_2021``: ``plot.py`` ``generate_ours`` / ``generate_ours_offline``, ``score.py``,
``inference.py``), each pinned by a known-answer test in ``tests/analysis/test_membership.py``:
- Location: the median of the shadows' confidences, as the reference (``center="median"``;
  ``"mean"`` available). Scale: their standard deviation about the mean, ddof 0 (``np.std``).
- Shadow counts: every (target, example) gets as many IN shadows, and as many OUT, the fewest
  any has, the first in replica order, as the reference truncates every example to the same
  count (``equalize=True``). In a balanced design a member target otherwise leaves one IN shadow
  fewer than a non-member does, which alone moved online LiRA's AUC on pure noise to 0.42 with 8
  replicas and 0.48 with 16.
- Per-example vs fixed variance: both, as the reference. ``lira_online_fixed_variance`` is the
  reference's online estimator under the reference's name ("Ours (online, fixed variance)",
  ``fixed_estimate="reference"``): one ``np.std(dat_in)`` per target, over all examples' IN
  shadows about one grand mean, for *both* Gaussians (``std_out = np.std(dat_in)``).
  ``lira_online_pooled_variance`` is memlab's: each side its own spread, the mean of the
  per-example variances (``pooled``, the spread about each example's own centre, which the
  Gaussian models); it reads higher than the reference's (measured in config/README.md). The
  offline ``_fixed_variance`` attacks use ``pooled`` too
  (the reference's offline code: ``np.std(dat_out)``, ``global``); within one target a variance
  shared by all examples ranks the offline scores alike whatever its value, so the two differ
  offline only across targets.
- Degenerate estimates (:func:`degenerate_reason`): with equal counts every (target, example)
  fits as many shadows as the fewest; a side without any, or a variance from one value
  (per-example and ``pooled`` from 1 shadow per example), gives no estimate: the attack's
  scores are NaN and its row says ``degenerate: ...`` instead of reading AUC 0.5 and TPR 0.
  The power gate counts the IN and OUT shadows each attack fits (:func:`attack_status`).
- Offline test: the paper's one-sided ``log Phi((c - mu_out) / sd_out)`` (``log(1 - Pr[Z >
  c])``) is ``lira_offline`` (kept name); the reference code's ``-log N(c; mu_out, sd_out)``
  (``sweep`` ranks by minus ``generate_ours_offline``'s log-density) is ``lira_offline_density``.
- Online: ``log N(c; mu_in, sd_in) - log N(c; mu_out, sd_out)``, as the reference.
- Variance floor: ``min_var = 1e-4`` (sd 0.01 in logit units), not the reference's ``sd + 1e-30``:
  identical shadows (k-NN banks, saturated confidences) would give a density of e^68 or 0 and
  infinite ratios.
- Target and shadows: every replica is a target in turn, the others its shadows, and the ROC is
  pooled over all (target, example) pairs; the reference holds out the last model as the one
  target. One query per example: memlab has no augmentations (the reference averages the score
  over its queries, mirrored images).
- Confidence (``memlab.engine.evaluate.example_outputs``): ``log p_y - logsumexp_{y' != y} log
p_y'`` in
  log space, the reference's ``log(p_y + 1e-45) - log(sum p_others + 1e-45)`` without its 1e-45
  floor (the reference saturates at 103.6; memlab keeps the margin).
- Evaluation mode: logits come from ``model.eval()`` under ``torch.no_grad()`` (dropout off;
  memlab's models have no batch normalization). The reference's ``inference.py`` calls
  ``model(x, training=True)`` (batch statistics of each batch): commit ab4cb09 ("Fix LiRA
  inference", 2023-06) set ``training=False``, and 27069d3 (2023-08, "Fixes comments and
  membership scores for thresholds attack") set it back, with the README's earlier numbers.
  memlab follows the fix.

Members are the examples a replica trained on; non-members the rest of the pool (unseen and, under
early stopping, validation). Balanced halves (size 0.5 of the pool) make each example IN for
half of the shadows, as in the paper. :func:`slice_attacks` gives every attack's ROC within
slices of the pool (clean vs flipped labels, memorization quartile, class) from the same scores.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import norm

from memlab.analysis.memorization import roc_curve, tpr_at_fpr
from memlab.plan.power import PowerGates

LOW_FPRS = (0.01, 0.001)
# LiRA's attacks in the tables, in table order, and their :func:`lira_scores` arguments: online,
# and offline with each test (``lira_offline`` is the paper's one-sided tail,
# ``lira_offline_density`` the reference code's density), each with per-example and fixed
# variance. ``lira_online_fixed_variance`` is the reference code's estimator under its name
# ("Ours (online, fixed variance)": the IN shadows' global spread for both Gaussians);
# ``lira_online_pooled_variance`` is memlab's (each side's own pooled spread).
LIRA_ATTACKS: dict[str, dict[str, object]] = {
    "lira_online": {"online": True, "fixed_variance": False},
    "lira_online_fixed_variance": {
        "online": True,
        "fixed_variance": True,
        "fixed_estimate": "reference",
    },
    "lira_online_pooled_variance": {"online": True, "fixed_variance": True},
    "lira_offline": {"online": False, "fixed_variance": False},
    "lira_offline_fixed_variance": {"online": False, "fixed_variance": True},
    "lira_offline_density": {"online": False, "fixed_variance": False, "offline_test": "density"},
    "lira_offline_density_fixed_variance": {
        "online": False,
        "fixed_variance": True,
        "offline_test": "density",
    },
}
FIXED_ESTIMATES = ("pooled", "global", "reference")


def _loo_median(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median over the *other* rows in ``mask`` ([R, n] both), for every (t, i); NaN without any.

    One sort per column: removing row t from the sorted values shifts the positions above its
    own rank down by one, so each leave-one-out median is read off that sort."""
    r = values.shape[0]
    key = np.where(mask, values, np.inf)  # outside the mask sorts last
    order = np.argsort(key, axis=0, kind="stable")
    srt = np.take_along_axis(key, order, axis=0)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(r)[:, None], order.shape), axis=0)
    k = mask.sum(0)[None, :] - mask  # [R, n]: the other rows' count
    # Positions of the middle pair among the remaining k values; those at or above row t's own
    # rank (when it is in the mask) sit one further up in the sort.
    lo, hi = (k - 1) // 2, k // 2
    lo = np.clip(lo + (mask & (lo >= rank)), 0, r - 1)
    hi = np.clip(hi + (mask & (hi >= rank)), 0, r - 1)
    cols = np.arange(values.shape[1])[None, :]
    with np.errstate(invalid="ignore"):
        med = (srt[lo, cols] + srt[hi, cols]) / 2
    return np.where(k >= 1, med, np.nan)


def _shadow_stats(conf: np.ndarray, mask: np.ndarray, *, equalize: bool) -> dict[str, np.ndarray]:
    """Each (target t, example i)'s shadows: the other replicas in ``mask`` (IN or OUT of i).

    With ``equalize`` only the first ``k`` of them in replica order, ``k`` the fewest any (t, i)
    has, as the reference code truncates every example to the same count: then how many shadows
    fit a Gaussian no longer depends on the target's own membership (in a balanced design a
    member target leaves one IN shadow fewer than a non-member, which biases the ratio towards
    non-members when nothing separates them). Their sum ``s1``, sum of squares ``s2``, count
    ``n``, mean, variance (ddof 0, as ``np.std``) and median, each [R, n]."""
    r = conf.shape[0]
    mask = np.asarray(mask, bool)
    if not equalize:
        m = mask.astype(float)
        s1 = (conf * m).sum(0) - conf * m
        s2 = (conf**2 * m).sum(0) - conf**2 * m
        n = m.sum(0) - m
        med = _loo_median(conf, mask)
    else:
        n_loo = mask.sum(0)[None, :] - mask
        k = int(n_loo.min()) if n_loo.size else 0
        # The column's replicas in mask, in replica order (the rest after them), and where each
        # replica sits in that order.
        order = np.argsort(~mask, axis=0, kind="stable")
        vals = np.take_along_axis(conf, order, axis=0)
        pos = np.empty_like(order)
        np.put_along_axis(pos, order, np.broadcast_to(np.arange(r)[:, None], order.shape), 0)
        # A target outside the first k keeps them; one among them (position p < k) takes the
        # first k + 1 but itself.
        inside = mask & (pos < k)
        first, first1 = vals[:k], vals[: k + 1]
        s1 = np.where(inside, first1.sum(0) - conf, first.sum(0))
        s2 = np.where(inside, (first1**2).sum(0) - conf**2, (first**2).sum(0))
        n = np.full(conf.shape, float(k))
        if k == 0:
            med = np.full(conf.shape, np.nan)
        else:
            med_first = np.median(first, axis=0)
            med_drop = _loo_median(first1, np.ones(first1.shape, bool))  # [k + 1, n]
            med = np.where(
                inside, np.take_along_axis(med_drop, np.minimum(pos, k), axis=0), med_first
            )
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 / n - mean**2, 0.0)
    return {"s1": s1, "s2": s2, "n": n, "mean": mean, "var": var, "median": med}


def _fixed_variance(stats: Mapping[str, np.ndarray], estimate: str) -> np.ndarray:
    """One variance per target replica (broadcast to [R, n]) from its shadows' statistics.

    ``pooled``: the mean over examples of the per-example variances, i.e. the spread of a
    shadow's confidence about the example's own mean (NaN for a target whose examples have
    fewer than 2 shadows each: one value has no spread); ``global`` (or ``reference``): the
    variance of all the shadows' confidences on all examples about their one grand mean (the
    reference code's ``np.std(dat_in)``), which adds the spread of the examples' means."""
    var, n = stats["var"], stats["n"]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a target without any: NaN
        if estimate == "pooled":
            per_target = np.nanmean(np.where(n >= 2, var, np.nan), axis=1)
        elif estimate in ("global", "reference"):
            total = n.sum(1)
            grand = stats["s1"].sum(1) / total
            per_target = np.maximum(stats["s2"].sum(1) / total - grand**2, 0.0)
        else:
            raise ValueError(f"LiRA's fixed_estimate is one of {FIXED_ESTIMATES}, got {estimate!r}")
    return np.broadcast_to(per_target[:, None], var.shape)


def lira_scores(
    conf: np.ndarray,
    members: np.ndarray,
    *,
    online: bool,
    fixed_variance: bool,
    offline_test: str = "tail",
    center: str = "median",
    fixed_estimate: str = "pooled",
    equalize: bool = True,
    min_var: float = 1e-4,
) -> np.ndarray:
    """LiRA scores [R, n] from logit-scaled confidences and memberships ([R, n]).

    Every replica is a target in turn, the others its shadows (with ``equalize``, as many per
    example: :func:`_shadow_stats`). ``center`` is the Gaussians' location over the IN (OUT)
    shadows: ``median`` (the reference code) or ``mean``; their scale is the standard deviation
    about the mean (ddof 0, as ``np.std``), per example, or with ``fixed_variance`` one per
    target and distribution (``fixed_estimate``: :func:`_fixed_variance`; ``reference``, the
    reference code's: ``global``, and online the IN one for both distributions, as its
    ``std_out = np.std(dat_in)``), floored at ``min_var``. Online: ``log N(c; mu_in, sd_in) -
    log N(c; mu_out, sd_out)``. Offline, ``offline_test``: ``tail``, the paper's one-sided test
    ``log Phi((c - mu_out) / sd_out)`` (``log(1 - Pr[Z > c])``: higher the further the
    confidence lies above the OUT distribution), or ``density``, the reference code's ``-log
    N(c; mu_out, sd_out)`` (higher the further it lies from it, on either side).

    A (target, example) without shadows on a side the test needs scores 0 (uninformative); a
    variance that no shadow defines (``pooled`` from 1 shadow per example) leaves its scores NaN,
    never a number: :func:`degenerate_reason` says why for a whole attack."""
    if center not in ("median", "mean"):
        raise ValueError(f"LiRA's center is 'median' or 'mean', got {center!r}")
    if offline_test not in ("tail", "density"):
        raise ValueError(f"LiRA's offline test is 'tail' or 'density', got {offline_test!r}")
    members = np.asarray(members, bool)
    conf = np.asarray(conf, float)
    st_in = _shadow_stats(conf, members, equalize=equalize)
    st_out = _shadow_stats(conf, ~members, equalize=equalize)
    var_in, var_out = st_in["var"], st_out["var"]
    if fixed_variance:
        var_in = _fixed_variance(st_in, fixed_estimate)
        shared = online and fixed_estimate == "reference"  # plot.py: std_out = np.std(dat_in)
        var_out = var_in if shared else _fixed_variance(st_out, fixed_estimate)
    mu_in, mu_out = st_in[center], st_out[center]
    with np.errstate(invalid="ignore"):
        sd_in = np.sqrt(np.maximum(var_in, min_var))
        sd_out = np.sqrt(np.maximum(var_out, min_var))
        if online:
            score = norm.logpdf(conf, mu_in, sd_in) - norm.logpdf(conf, mu_out, sd_out)
        elif offline_test == "tail":
            score = norm.logcdf(conf, mu_out, sd_out)
        else:
            score = -norm.logpdf(conf, mu_out, sd_out)
    # Without shadows on one side the test is undefined: score it as uninformative. A NaN
    # variance (no spread to estimate) stays NaN rather than reading as a score of 0.
    undefined = (st_out["n"] < 1) | ((st_in["n"] < 1) if online else False)
    return np.where(undefined | np.isinf(score), 0.0, score)


def shadow_counts(members: np.ndarray) -> dict[str, int]:
    """The fewest IN and the fewest OUT shadows (other replicas that did, and did not, train on
    the example) any (target, example) has: the counts LiRA fits every Gaussian on (equal
    counts, :func:`_shadow_stats`), and the fewest references RMIA averages over."""
    m = np.asarray(members, bool)
    n_in, n_out = m.sum(0)[None, :] - m, (~m).sum(0)[None, :] - ~m
    return {"IN": int(n_in.min()), "OUT": int(n_out.min())} if m.size else {"IN": 0, "OUT": 0}


def attack_sides(attack: str) -> tuple[str, ...]:
    """The shadow sides an attack fits: IN and OUT online, OUT offline; none for gap and loss."""
    if not attack.startswith(("lira", "rmia")):
        return ()
    return ("IN", "OUT") if attack.endswith("online") or "_online_" in attack else ("OUT",)


def degenerate_reason(attack: str, members: np.ndarray) -> str:
    """Why an attack's estimate is degenerate on this design (``""``: it is not).

    Degenerate: a side it fits has no shadow for some (target, example) (LiRA's equal counts then
    leave every example without one; RMIA offline scores such an example 0; RMIA online averages
    over all other replicas, IN and OUT, and needs neither side), or a LiRA variance rests on
    fewer than 2 values: per example and ``pooled`` on the shadows of one example,
    ``global``/``reference`` on those of all examples. Such an attack's scores are NaN."""
    counts = shadow_counts(members)
    sides = attack_sides(attack)
    for side in () if attack == "rmia_online" else sides:
        if counts[side] < 1:
            return f"{attack} has no {side} shadow for some (target, example)"
    kw = LIRA_ATTACKS.get(attack)
    if kw is None:
        return ""
    estimate = kw.get("fixed_estimate", "pooled") if kw["fixed_variance"] else "per-example"
    spread = ("IN",) if estimate == "reference" and kw["online"] else sides
    per_value = np.asarray(members).shape[1] if estimate in ("global", "reference") else 1
    for side in spread:
        if counts[side] * per_value < 2:
            return (
                f"{attack}'s {estimate} {side} variance rests on {counts[side]} shadow per "
                "(target, example) after equal counts, and one value has no spread"
            )
    return ""


def _log_mean_others(logp: np.ndarray, mask: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """log of the mean of ``exp(logp)`` over the *other* replicas in ``mask`` (broadcast to
    ``logp``'s [R, n]), and their count, for every (t, i); NaN where the count is 0.

    O(R n): per example one sum scaled by the largest value, minus the target's own term; the
    largest one's own row is scaled by the second largest instead, so nothing under- or
    overflows and no sum loses more than a rounding to the subtraction (the largest other term
    is 1 after scaling)."""
    mask = np.broadcast_to(np.asarray(mask, bool), logp.shape)
    v = np.where(mask, np.asarray(logp, np.float64), -np.inf)
    count = mask.sum(0)[None, :] - mask
    r, n = v.shape
    if r < 2:
        return np.full(v.shape, np.nan), count
    cols = np.arange(n)
    top = np.argmax(v, 0)
    largest = -np.partition(-v, 1, axis=0)[:2]  # [0]: the largest, [1]: the second largest
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        e = np.where(mask, np.exp(v - largest[0]), 0.0)
        out = largest[0] + np.log(e.sum(0) - e)
        e2 = np.where(mask, np.exp(v - largest[1]), 0.0)
        e2[top, cols] = 0.0
        out[top, cols] = largest[1] + np.log(e2.sum(0))
        out -= np.log(count)
    return np.where(count > 0, out, np.nan), count


def offline_reference(log_p_out: np.ndarray, a: float) -> np.ndarray:
    """log of RMIA's offline ``p_ref = ((1 + a) p_out + (1 - a)) / 2`` from ``log p_out``.

    With ``a = 1`` it returns ``log p_out`` itself (``logaddexp(x, -inf) == x``)."""
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"RMIA's offline a must lie in [0, 1], got {a}")
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN where p_out is undefined
        return np.logaddexp(np.log((1 + a) / 2) + log_p_out, np.log((1 - a) / 2))


def rmia_log_ratios(
    loss: np.ndarray,
    members: np.ndarray,
    test_loss: np.ndarray,
    *,
    online: bool,
    a: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``log r(x)`` [R, n] for the pool, ``log r(z)`` [R, m] for the population (test set), and
    where ``r(x)`` is defined [R, n] (a reference exists: 2+ replicas; offline, an OUT one)."""
    logp = -np.asarray(loss, np.float64)
    logp_z = -np.asarray(test_loss, np.float64)
    members = np.asarray(members, bool)
    if logp_z.shape[0] != logp.shape[0]:
        raise ValueError(f"test_loss has {logp_z.shape[0]} replicas, the pool {logp.shape[0]}")
    ref_x, n_x = _log_mean_others(logp, True if online else ~members)
    ref_z, _ = _log_mean_others(logp_z, True)  # every replica is OUT of a test example
    if not online:
        ref_x, ref_z = offline_reference(ref_x, a), offline_reference(ref_z, a)
    log_rx, log_rz = logp - ref_x, logp_z - ref_z
    # 2+ replicas give every target a population reference; n_x >= 1 then an x reference.
    defined = (n_x >= 1) & np.isfinite(log_rx)
    return log_rx, log_rz, defined


def rmia_scores(
    loss: np.ndarray,
    members: np.ndarray,
    test_loss: np.ndarray,
    *,
    online: bool,
    a: float = 0.3,
    gamma: float = 1.0,
) -> np.ndarray:
    """RMIA scores [R, n]: the share of population samples z with ``r(x) / r(z) >= gamma``.

    From pool losses and memberships ([R, n]) and the replicas' losses on the held-out test set
    ([R, m], the population). Per target the sorted ``log r(z)`` is searched for
    ``log r(x) - log gamma`` (ties counted), O((n + m) log m)."""
    if gamma <= 0:
        raise ValueError(f"RMIA's gamma must be positive, got {gamma}")
    log_rx, log_rz, defined = rmia_log_ratios(loss, members, test_loss, online=online, a=a)
    score = np.zeros(log_rx.shape)
    if log_rz.shape[1] == 0:
        return score
    for t in range(log_rx.shape[0]):
        rz = np.sort(log_rz[t])
        rz = rz[~np.isnan(rz)]
        if rz.size:
            score[t] = np.searchsorted(rz, log_rx[t] - np.log(gamma), side="right") / rz.size
    return np.where(defined, score, 0.0)


def attack_status(attack: str, members: np.ndarray, gates: PowerGates) -> tuple[bool, str]:
    """Whether an attack's row is a result (``powered``) and its ``status``: ``ok``,
    ``degenerate: ...`` (no numbers: :func:`degenerate_reason`) or ``underpowered: ...`` (too few
    replicas for the bank, or too few shadows on a side the attack fits), each with the replica
    count that would answer it. Gap and loss need no shadows."""
    sides = {side: k for side, k in shadow_counts(members).items() if side in attack_sides(attack)}
    if not sides:
        return True, "ok"
    replicas, share = members.shape[0], float(np.mean(members))
    degenerate = degenerate_reason(attack, members)
    if degenerate:
        need = gates.replicas_for_shadows(max(gates.min_per_side, 2), share)
        return False, (
            f"degenerate: {degenerate}; at {share:.0%} of the pool per subset {need} replicas give "
            f"every side enough shadows (analysis.power.min_shadows); this run has {replicas}"
        )
    if not gates.attacks_powered(replicas):
        return False, f"underpowered: {gates.attacks_message(replicas)}"
    if not gates.shadows_powered(replicas, sides):
        return False, f"underpowered: {gates.shadows_message(attack, sides, replicas, share)}"
    return True, "ok"


def attack_scores(
    correct: np.ndarray,
    loss: np.ndarray,
    conf: np.ndarray,
    members: np.ndarray,
    test_loss: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every attack's score per (replica, pool example); RMIA only given the test-set losses."""
    scores = {"gap": np.asarray(correct, float), "loss": -np.asarray(loss, float)}
    if members.shape[0] >= 3:  # LiRA and RMIA need shadows / references besides the target
        for name, kw in LIRA_ATTACKS.items():
            scores[name] = lira_scores(conf, members, **kw)  # type: ignore[arg-type]
        if test_loss is not None and np.shape(test_loss)[1] > 0:
            for online in (True, False):
                name = f"rmia_{'online' if online else 'offline'}"
                scores[name] = rmia_scores(loss, members, test_loss, online=online)
    # A degenerate estimate gives no numbers (NaN), never scores that read as chance.
    return {
        name: np.full(np.shape(s), np.nan) if degenerate_reason(name, members) else s
        for name, s in scores.items()
    }


def _attack_row(
    attack: str, score: np.ndarray, members: np.ndarray
) -> tuple[dict[str, object], np.ndarray, np.ndarray]:
    """ROC AUC, TPR at the low FPRs, advantage and counts of one attack's scores; its ROC.

    The AUC is the area under the ROC's steps and diagonals (ties counted half): the
    Mann-Whitney ``roc_auc``, from the one sort the curve needs."""
    if np.isnan(score).all():  # a degenerate estimate (:func:`degenerate_reason`): no numbers
        empty: dict[str, object] = {"attack": attack, "auc": np.nan, "advantage": np.nan}
        empty |= {"members": int(members.sum()), "non_members": int((~members).sum())}
        return empty | {f"tpr_at_{t:g}_fpr": np.nan for t in LOW_FPRS}, np.empty(0), np.empty(0)
    fpr, tpr = roc_curve(score, members)
    both = members.any() and (~members).any()
    # The gap attack has one decision rule (member iff correct): its advantage is that rule's
    # TPR - FPR, which may be negative; other attacks take the best threshold (Yeom et al.).
    advantage = (
        score[members].mean() - score[~members].mean() if attack == "gap" else np.max(tpr - fpr)
    )
    row: dict[str, object] = {
        "attack": attack,
        "auc": float(np.trapezoid(tpr, fpr)) if both else float("nan"),
        "advantage": float(advantage),
        "members": int(members.sum()),
        "non_members": int((~members).sum()),
    }
    for target in LOW_FPRS:
        row[f"tpr_at_{target:g}_fpr"] = tpr_at_fpr(fpr, tpr, target) if both else np.nan
    return row, fpr, tpr


def evaluate_attacks(
    correct: np.ndarray,
    loss: np.ndarray,
    conf: np.ndarray,
    members: np.ndarray,
    curve_points: int = 200,
    *,
    test_loss: np.ndarray | None = None,
    scores: Mapping[str, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROC AUC, TPR at low FPR and advantage per attack; and log-spaced ROC curve points.

    ``test_loss`` ([R, m], the replicas' losses on the held-out test set) adds RMIA; ``scores``
    (:func:`attack_scores`' output), when given, are used instead of computing them."""
    members = np.asarray(members, bool)
    if scores is None:
        scores = attack_scores(correct, loss, conf, members, test_loss)
    rows, curves = [], []
    grid = np.r_[0.0, np.logspace(-4, 0, curve_points)]
    for attack, score in scores.items():
        row, fpr, tpr = _attack_row(attack, score, members)
        rows.append(row)
        if not fpr.size:
            continue  # degenerate: no curve
        # Step-function interpolation: the best TPR reachable at each FPR of the grid.
        idx = np.searchsorted(fpr, grid, side="right") - 1
        curves.append(pd.DataFrame({"attack": attack, "fpr": grid, "tpr": tpr[idx]}))
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


SLICE_COLUMNS = (
    "attack",
    "slice_by",
    "slice",
    "auc",
    "tpr_at_0.01_fpr",
    "tpr_at_0.001_fpr",
    "members",
    "non_members",
)


def quartile_slices(values: np.ndarray) -> np.ndarray:
    """``q1`` (lowest) to ``q4`` per value, cut at its 25%, 50% and 75% quantiles; a value equal
    to a cut goes to the upper quartile (so tied values share one); ``""`` where NaN."""
    values = np.asarray(values, float)
    out = np.full(values.shape, "", dtype=object)
    ok = ~np.isnan(values)
    if ok.any():
        cuts = np.quantile(values[ok], [0.25, 0.5, 0.75])
        q = np.searchsorted(cuts, values[ok], side="right")
        out[ok] = np.array(["q1", "q2", "q3", "q4"], dtype=object)[q]
    return out


def slice_attacks(
    scores: Mapping[str, np.ndarray],
    members: np.ndarray,
    slices: Mapping[str, np.ndarray],
) -> pd.DataFrame:
    """Each attack's ROC AUC and TPR at the low FPRs within each slice of the pool examples.

    ``slices`` maps a ``slice_by`` name to each pool example's slice ([n], ``""``: in none); a
    slice's ROC is over the (replica, example) pairs of its examples, members and non-members
    alike, from the same scores (:func:`attack_scores`) as the whole pool's."""
    members = np.asarray(members, bool)
    rows = []
    for slice_by, labels in slices.items():
        labels = np.asarray(labels, dtype=object)
        for name in sorted({v for v in labels.tolist() if v != ""}, key=_slice_order):
            cols = labels == name
            m = members[:, cols]
            for attack, score in scores.items():
                row, _, _ = _attack_row(attack, np.asarray(score)[:, cols], m)
                rows.append({**row, "slice_by": slice_by, "slice": str(name)})
    return pd.DataFrame(rows, columns=list(SLICE_COLUMNS))


def _slice_order(name: object) -> tuple[int, float, str]:
    """Numbers (classes) in numeric order, before names in alphabetical order."""
    try:
        return (0, float(name), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (1, 0.0, str(name))
