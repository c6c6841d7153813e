"""Exposure of inserted canaries (Carlini et al., *The Secret Sharer*, USENIX Security 2019),
following the reference code, ``tensorflow/privacy`` ``privacy_tests/secret_sharer/exposures.py``.

A canary's exposure against ``|R|`` reference points from its distribution that no model saw:

- ``rank`` (the reference's ``compute_exposure_interpolation``): ``log2 |R| - log2 rank``, where
  rank = 1 + the number of references whose loss is lower than the canary's (lower loss = more
  exposed). Ranked first among 4,096 references is 12 bits, the method's maximum; a canary from
  the reference distribution has a uniform rank and an expected exposure of about
  log2 e = 1.44 bits. Ties: the reference code sorts canaries and references together with an
  unstable sort, which leaves a canary anywhere among the references it ties with. Here a
  canary tied with ``t`` references gets the exposure averaged over the ``t + 1`` ranks it could
  take (the expectation under a random order of the ties; without ties, the plain rank). This
  matters for models whose losses take few values (a 1-NN's are two): counting ties for the
  canary would put a never-trained canary whose prediction is right first among every
  reference that is right too (a 1-NN control at about 4 bits instead of 1.44).
- ``extrapolated`` (``compute_exposure_extrapolation``): a skew-normal fitted to the references'
  losses (``scipy.stats.skewnorm.fit``, maximum likelihood) and ``-log2 cdf(canary's loss)``,
  which can exceed log2 |R|. It is infinite where a canary's loss lies below the fitted
  distribution's support: on memorized canaries the references' losses often pile up near 0 and
  the fit degenerates to a half-normal starting at their smallest loss (shape parameter of order
  1e8), as the reference code's fit does too (DESIGN 4d: "extrapolation failed for image
  canaries"). The table averages the finite pairs and gives the share of infinite ones
  (``infinite``; where it is above 0 the mean is a lower bound): one infinite pair would
  otherwise make a level's mean infinite and hide the rest. Read the rank method first.

Every replica is a model: a canary's loss is ranked among the same replica's reference losses
(the references' losses differ from model to model), and one skew-normal is fitted per replica.

``exposure.csv`` has one row per run, repetition level and method: the mean exposure over the
(canary, replica) pairs where the replica trained on the canary (controls, never trained on:
every replica), ``exposure_se`` the standard error over canaries of each canary's mean over its
replicas (the replicas of one canary are not independent draws: the canaries are), the canaries
(``n_canaries``) and references (``n_references``), the replicas of the run (``replicas``), the
counted pairs (``pairs``) and the share of them whose exposure is infinite (``infinite``: only
the extrapolation's can be; the mean and its standard error are over the finite ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from memlab.plan.study import RUN_COLUMNS, with_run

METHODS = ("rank", "extrapolated")
EXPOSURE_COLUMNS = [
    *RUN_COLUMNS,
    "repetitions",
    "method",
    "exposure",
    "exposure_se",
    "n_canaries",
    "n_references",
    "replicas",
    "pairs",
    "infinite",
]
LOG2_E = math.log2(math.e)  # the expected exposure of a random rank (|R| large)


def rank_exposure(canary_loss: np.ndarray, reference_loss: np.ndarray) -> np.ndarray:
    """``log2 |R| - log2 rank`` of each canary's loss among the references' (module doc; a tie
    with ``t`` references: the mean over ranks ``lower + 1 .. lower + t + 1``).

    ``canary_loss`` [..., m] and ``reference_loss`` [..., |R|] share their leading axes (one
    row per model); each canary is ranked among its own row's references.
    """
    canary = np.asarray(canary_loss, np.float64)
    refs = np.asarray(reference_loss, np.float64)
    n_ref = refs.shape[-1]
    flat_c = canary.reshape(-1, canary.shape[-1])
    flat_r = np.sort(refs.reshape(-1, n_ref), axis=1)
    pairs = list(zip(flat_r, flat_c, strict=True))
    lower = np.stack([np.searchsorted(r, c, side="left") for r, c in pairs])  # strictly lower
    upper = np.stack([np.searchsorted(r, c, side="right") for r, c in pairs])  # lower or tied
    return (math.log2(n_ref) - _mean_log2(lower + 1, upper + 1)).reshape(canary.shape)


def _mean_log2(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The mean of log2 k over k = first .. last (log-gamma: no loop over a tie's ranks)."""
    from scipy.special import gammaln

    first, last = first.astype(np.float64), last.astype(np.float64)
    many = (gammaln(last + 1) - gammaln(first)) / (last - first + 1) / math.log(2)
    return np.where(first == last, np.log2(first), many)  # exact where there is no tie


def extrapolated_exposure(canary_loss: np.ndarray, reference_loss: np.ndarray) -> np.ndarray:
    """``-log2 cdf(loss)`` under a skew-normal fitted to each row's reference losses (module
    doc); shapes as :func:`rank_exposure`."""
    from scipy.stats import skewnorm

    canary = np.asarray(canary_loss, np.float64)
    refs = np.asarray(reference_loss, np.float64)
    flat_c = canary.reshape(-1, canary.shape[-1])
    flat_r = refs.reshape(-1, refs.shape[-1])
    out = np.empty_like(flat_c)
    for i, (r, c) in enumerate(zip(flat_r, flat_c, strict=True)):
        params = skewnorm.fit(r)
        out[i] = -skewnorm.logcdf(c, *params) / math.log(2)
    return out.reshape(canary.shape)


def canary_trained(bank: Mapping[str, np.ndarray]) -> np.ndarray:
    """bool [R, m]: whether each replica trained on each canary (a row of its group in the
    replica's training mask; early stopping may carve some of a group's rows into validation)."""
    pool_canary = np.asarray(bank["pool_canary"])
    reps = np.asarray(bank["canary_repetitions"])
    train = np.asarray(bank["train_mask"], bool)
    rows = pool_canary >= 0
    trained = np.zeros((train.shape[0], len(reps)), bool)
    for r in range(train.shape[0]):
        hit = pool_canary[rows][train[r, rows]]
        trained[r, np.unique(hit)] = True
    return trained


def level_rows(exposure: np.ndarray, counted: np.ndarray, reps: np.ndarray) -> list[dict]:
    """One row per repetition level: the mean over the counted (replica, canary) pairs whose
    exposure is finite, the standard error over canaries of the per-canary means (NaN for one
    canary), and the share of counted pairs whose exposure is infinite (the extrapolation's, a
    loss below the fitted support: the mean is then a lower bound)."""
    rows = []
    for level in np.unique(reps):
        cols = reps == level
        e, c = exposure[:, cols], counted[:, cols]
        use = c & np.isfinite(e)
        seen = use.any(0)
        per_canary = np.where(use, e, 0.0).sum(0)[seen] / use.sum(0)[seen]
        n = int(seen.sum())
        rows.append(
            {
                "repetitions": int(level),
                "exposure": float(e[use].mean()) if use.any() else math.nan,
                "exposure_se": float(per_canary.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
                "n_canaries": n,
                "pairs": int(c.sum()),
                "infinite": float(np.isinf(e[c]).mean()) if c.any() else math.nan,
            }
        )
    return rows


def run_exposure(bank: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The exposure rows of one run's bank (without the run's columns); empty without canaries."""
    if "canary_loss" not in bank:
        return pd.DataFrame(columns=EXPOSURE_COLUMNS[len(RUN_COLUMNS) :])
    loss, refs = np.asarray(bank["canary_loss"]), np.asarray(bank["reference_loss"])
    reps = np.asarray(bank["canary_repetitions"])
    # Controls were never trained on: every replica's loss on them counts.
    counted = canary_trained(bank) | (reps == 0)[None, :]
    frames = []
    for method, fn in zip(METHODS, (rank_exposure, extrapolated_exposure), strict=True):
        rows = pd.DataFrame(level_rows(fn(loss, refs), counted, reps))
        rows["method"] = method
        frames.append(rows)
    out = pd.concat(frames, ignore_index=True)
    out["n_references"], out["replicas"] = refs.shape[1], loss.shape[0]
    return out[EXPOSURE_COLUMNS[len(RUN_COLUMNS) :]]


def exposure_table(
    evaluations: Iterable[tuple[Mapping[str, Any], Mapping[str, np.ndarray]]],
) -> pd.DataFrame:
    """``exposure.csv``: every run with canaries, by repetition level and method (module doc)."""
    frames = [
        with_run(run_exposure(bank), run) for run, bank in evaluations if "canary_loss" in bank
    ]
    if not frames:
        return pd.DataFrame(columns=EXPOSURE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[EXPOSURE_COLUMNS]
