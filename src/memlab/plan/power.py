"""How much evidence a per-example number rests on: intervals that stay honest at 0 and 1, and
the power gates that keep underpowered scores and attacks out of headlines, figures and
sentences.

- Proportions: the Wilson score interval (Wilson 1927, JASA 22:209), which, unlike the normal
  approximation, is not zero-width at 0/n or n/n.
- A Feldman–Zhang score ``p_in - p_out`` (two independent proportions): Newcombe's hybrid score
  interval (Newcombe 1998, Stat Med 17:873, method 10) from the two Wilson intervals. A score
  from 2 in- and 2 out-replicas that reads 1.00 gets the interval [0.07, 1.00], not "± 0.00".
- Gates (config ``analysis.power``, defaults in the schema): a run's memorization scores count
  only if every example is in and out of at least ``min_in_out`` replicas; its membership attacks
  only with at least ``min_shadows`` shadow (reference) models besides the target, and only if
  each (target, example) fits, on every side the attack uses (IN and OUT online, OUT offline),
  as many shadows as a balanced-halves bank of ``min_shadows + 1`` replicas gives it
  (:attr:`PowerGates.min_per_side`: 7 at 16). The shadows an attack fits are counted, not the
  replicas: 64 replicas with every example in 2 to 4 of them leave online LiRA 1 IN shadow.

Light on purpose (numpy only): the workflow's planning (``memlab.plan.registry``) uses the gates
too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Z95 = 1.959963984540054  # the two-sided 95% normal quantile
INTERVAL_NAME = "95% Newcombe score interval"


def wilson_interval(
    successes: npt.ArrayLike, trials: npt.ArrayLike, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (low, high) of ``successes / trials``, elementwise; NaN where
    ``trials`` is 0."""
    k = np.asarray(successes, np.float64)
    n = np.asarray(trials, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def difference_interval(
    k_in: np.ndarray, n_in: np.ndarray, k_out: np.ndarray, n_out: np.ndarray, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval (low, high) of ``k_in / n_in - k_out / n_out``."""
    p1 = np.asarray(k_in, np.float64) / n_in
    p2 = np.asarray(k_out, np.float64) / n_out
    l1, u1 = wilson_interval(k_in, n_in, z)
    l2, u2 = wilson_interval(k_out, n_out, z)
    d = p1 - p2
    low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


@dataclass(frozen=True)
class PowerGates:
    """The least evidence a shown per-example result may rest on (``analysis.power``)."""

    min_in_out: int = 8
    min_shadows: int = 16

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PowerGates:
        """From the validated config (the schema fills in the defaults)."""
        power = config.get("analysis", {}).get("power", {})
        return cls(**{k: int(v) for k, v in power.items()})

    def scores_powered(self, n_in: np.ndarray, n_out: np.ndarray) -> bool:
        """Is every example in and out of at least ``min_in_out`` replicas?"""
        n_in, n_out = np.asarray(n_in), np.asarray(n_out)
        return bool(n_in.size and n_in.min() >= self.min_in_out and n_out.min() >= self.min_in_out)

    def attacks_powered(self, replicas: int) -> bool:
        """Does every target have ``min_shadows`` other replicas as shadows?"""
        return replicas - 1 >= self.min_shadows

    @property
    def min_per_side(self) -> int:
        """IN (and OUT) shadows each (target, example) must have on a side an attack fits: what
        ``min_shadows + 1`` replicas on balanced halves give (each example is in and out of
        ``ceil(min_shadows / 2)`` of them, one of which may be the target), at least 1."""
        return max(1, math.ceil(self.min_shadows / 2) - 1)

    def shadows_powered(self, replicas: int, sides: Mapping[str, int]) -> bool:
        """Enough shadow models in the bank, and at least ``min_per_side`` on every side the
        attack fits (``sides``: side name -> the fewest shadows any (target, example) has)?"""
        return self.attacks_powered(replicas) and min(sides.values()) >= self.min_per_side

    def replicas_for_shadows(self, per_side: int, size_share: float) -> int:
        """Replicas a balanced design needs for ``per_side`` IN and OUT shadows besides the
        target (every example in and out of ``per_side + 1``), and for the bank's gate."""
        share = min(max(size_share, 1e-9), 1 - 1e-9)
        return max(self.min_shadows + 1, math.ceil((per_side + 1) / min(share, 1 - share)))

    def shadows_message(
        self, attack: str, sides: Mapping[str, int], replicas: int, size_share: float
    ) -> str:
        """Why an attack's shadows do not power it, and how many replicas would."""
        fits = " and ".join(f"{k} {side}" for side, k in sides.items())
        need = self.replicas_for_shadows(self.min_per_side, size_share)
        return (
            f"{attack} fits {fits} shadows per (target, example) at the fewest; it needs "
            f"{self.min_per_side} on each side (what {self.min_shadows + 1} replicas on balanced "
            f"halves give, analysis.power.min_shadows = {self.min_shadows}); at "
            f"{size_share:.0%} of the pool per subset that takes {need} replicas; this run has "
            f"{replicas}"
        )

    def replicas_for_scores(self, size_share: float) -> int:
        """Replicas a balanced design needs for ``min_in_out`` in and out at this share of the
        pool in each subset."""
        share = min(max(size_share, 1e-9), 1 - 1e-9)
        return math.ceil(self.min_in_out / min(share, 1 - share))

    def scores_message(self, n_in: int, n_out: int, replicas: int, size_share: float) -> str:
        """Why a run's scores are not shown, and what would show them."""
        need = self.replicas_for_scores(size_share)
        return (
            f"memorization scores need every example in and out of {self.min_in_out} replicas "
            f"each (analysis.power.min_in_out); at {size_share:.0%} of the pool per subset that "
            f"takes {need} replicas; this run has {replicas} ({n_in} in, {n_out} out at the "
            "fewest)"
        )

    def attacks_message(self, replicas: int) -> str:
        """Why a run's membership attacks are not shown, and what would show them."""
        return (
            f"membership inference needs {self.min_shadows + 1} replicas ({self.min_shadows} "
            f"shadows, analysis.power.min_shadows); this run has {replicas}"
        )


def planned_scores_powered(gates: PowerGates, replicas: int, size: int, n_pool: int) -> bool:
    """Before any job runs: will a balanced design of ``replicas`` subsets of ``size`` from a
    pool of ``n_pool`` hold every example in and out of ``min_in_out`` replicas? (Each example
    is in ``floor`` or ``ceil`` of ``replicas * size / n_pool`` of them.)"""
    if size >= n_pool:
        return False
    least_in = (replicas * size) // n_pool
    least_out = replicas - -(-replicas * size // n_pool)
    return min(least_in, least_out) >= gates.min_in_out
