"""Membership inference: did this model train on this example?

Attacks, each giving a score per (target replica, pool example) where higher means "member":
- ``gap`` (Yeom et al. 2018): 1 if the model classifies the example correctly, else 0. Its
  advantage (TPR - FPR) equals train accuracy minus accuracy on non-members: an identity.
- ``loss`` (Yeom et al. 2018): minus the example's loss.
- ``lira_online`` / ``lira_offline`` (Carlini et al. 2022, LiRA): the other replicas are the
  shadow models. For target replica t and example i, fit Gaussians to the logit-scaled confidence
  ``log p_y - log sum_{y' != y} p_y'`` of the shadows that trained on i (IN) and that did not
  (OUT); online scores the likelihood ratio IN vs OUT, offline only how far above the OUT
  distribution the target's confidence lies. ``fixed_variance`` uses one variance per
  distribution across all examples (more stable with few shadows).
Members are the examples a replica trained on; non-members the rest of the pool (unseen and, under
early stopping, validation). Balanced halves (size 0.5 of the pool) make each example IN for
half of the shadows, as in the paper.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from memlab.memorization import roc_auc, roc_curve, tpr_at_fpr

LOW_FPRS = (0.01, 0.001)


def _leave_one_out_stats(
    conf: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, variance and count over the *other* replicas in ``mask``, for every (t, i)."""
    m = mask.astype(float)
    s1 = (conf * m).sum(0)
    s2 = (conf**2 * m).sum(0)
    n = m.sum(0)
    n_loo = n - m  # [R, n]: shadows of target t exclude t itself
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (s1 - conf * m) / n_loo
        var = (s2 - conf**2 * m) / n_loo - mean**2
    return mean, np.maximum(var, 0.0), n_loo


def lira_scores(
    conf: np.ndarray,
    members: np.ndarray,
    *,
    online: bool,
    fixed_variance: bool,
    min_var: float = 1e-4,
) -> np.ndarray:
    """LiRA scores [R, n] from logit-scaled confidences and memberships ([R, n])."""
    members = np.asarray(members, bool)
    conf = np.asarray(conf, float)
    mu_in, var_in, n_in = _leave_one_out_stats(conf, members)
    mu_out, var_out, n_out = _leave_one_out_stats(conf, ~members)
    if fixed_variance:
        var_in = np.full_like(var_in, np.nanmean(np.where(n_in >= 2, var_in, np.nan)))
        var_out = np.full_like(var_out, np.nanmean(np.where(n_out >= 2, var_out, np.nan)))
    sd_in = np.sqrt(np.maximum(var_in, min_var))
    sd_out = np.sqrt(np.maximum(var_out, min_var))
    if online:
        score = norm.logpdf(conf, mu_in, sd_in) - norm.logpdf(conf, mu_out, sd_out)
    else:
        score = norm.logcdf(conf, mu_out, sd_out)
    # Without shadows on one side the test is undefined: score it as uninformative.
    undefined = (n_out < 1) | ((n_in < 1) if online else False)
    return np.where(undefined | ~np.isfinite(score), 0.0, score)


def attack_scores(
    correct: np.ndarray, loss: np.ndarray, conf: np.ndarray, members: np.ndarray
) -> dict[str, np.ndarray]:
    """Every attack's score per (replica, pool example)."""
    scores = {"gap": np.asarray(correct, float), "loss": -np.asarray(loss, float)}
    if members.shape[0] >= 3:  # LiRA needs shadows besides the target
        for online in (True, False):
            for fixed in (False, True):
                name = f"lira_{'online' if online else 'offline'}"
                name += "_fixed_variance" if fixed else ""
                scores[name] = lira_scores(conf, members, online=online, fixed_variance=fixed)
    return scores


def evaluate_attacks(
    correct: np.ndarray,
    loss: np.ndarray,
    conf: np.ndarray,
    members: np.ndarray,
    curve_points: int = 200,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """ROC AUC, TPR at low FPR and advantage per attack; and log-spaced ROC curve points."""
    members = np.asarray(members, bool)
    rows, curves = [], []
    grid = np.r_[0.0, np.logspace(-4, 0, curve_points)]
    for attack, score in attack_scores(correct, loss, conf, members).items():
        fpr, tpr = roc_curve(score, members)
        # The gap attack has one decision rule (member iff correct): its advantage is that rule's
        # TPR - FPR, which may be negative; other attacks take the best threshold (Yeom et al.).
        advantage = (
            score[members].mean() - score[~members].mean() if attack == "gap" else np.max(tpr - fpr)
        )
        row = {
            "attack": attack,
            "auc": roc_auc(score, members),
            "advantage": float(advantage),
            "members": int(members.sum()),
            "non_members": int((~members).sum()),
        }
        for target in LOW_FPRS:
            row[f"tpr_at_{target:g}_fpr"] = tpr_at_fpr(fpr, tpr, target)
        rows.append(row)
        # Step-function interpolation: the best TPR reachable at each FPR of the grid.
        idx = np.searchsorted(fpr, grid, side="right") - 1
        curves.append(pd.DataFrame({"attack": attack, "fpr": grid, "tpr": tpr[idx]}))
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
