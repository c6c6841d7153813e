"""Random ReLU features with a closed-form least-squares readout: the textbook double descent.

Model-wise double descent (Belkin et al. 2019, PNAS 116(32); the ridge remedy: Nakkiran et al.
2021, ICLR) is cleanest in this model: a first layer of ``F`` random ReLU features that is
never trained, and a linear readout fitted to one-hot targets by least squares. With ``F`` below
the number of training examples ``n`` the readout cannot interpolate; at ``F = n`` it just can,
with a huge norm, and held-out error peaks; beyond ``n`` the *minimum-norm* interpolant gets
smoother as ``F`` grows and the error falls again. A ridge penalty removes the peak.

Choices (the papers leave them open): features ``relu(x W + b) / sqrt(F)`` with ``W`` and ``b``
drawn N(0, 1/(d + 1)) per replica from its seed (Gaussian random ReLU features of the input with
a constant 1 appended); no readout bias; the readout minimizes
``mean_i ||phi(x_i) A - e_{y_i}||^2 + ridge * ||A||^2`` and for ``ridge = 0`` is the
minimum-norm least-squares solution (the pseudo-inverse). The solve is one batched SVD of every
replica's feature matrix, in float64: near ``F = n`` the feature matrix is ill-conditioned, and
the peak should be the model's, not float32 round-off. The outputs ``phi(x) A`` are the logits,
so a class's log-probability is their log-softmax (fitted outputs near one-hot give soft
probabilities; accuracy is the argmax and does not depend on that).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from memlab.engine.models import StackedModel


class StackedRandomFeatures(StackedModel):
    """R replicas of ``x -> relu(x W + b) / sqrt(F) @ A``; only ``A`` is fitted (:func:`solve`)."""

    def __init__(
        self, in_dim: int, n_classes: int, *, features: int, replica_seeds: Sequence[int]
    ) -> None:
        super().__init__()
        self.n_replicas = len(replica_seeds)
        std = 1.0 / math.sqrt(in_dim + 1)
        gens = [torch.Generator().manual_seed(int(s)) for s in replica_seeds]
        # Per replica: W then b from its own generator (a stack equals its replicas built alone).
        draws = [torch.randn(in_dim + 1, features, generator=g, dtype=torch.float64) for g in gens]
        w = torch.stack(draws) * std
        self.features_w = nn.Parameter(w[:, :-1].contiguous(), requires_grad=False)
        self.features_b = nn.Parameter(w[:, -1:].contiguous(), requires_grad=False)
        self.readout = nn.Parameter(
            torch.zeros(self.n_replicas, features, n_classes, dtype=torch.float64),
            requires_grad=False,
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``phi(x)`` in float64: ``[R, n, F]`` from ``x`` ``[n, d]`` or ``[R, n, d]``."""
        x = x.to(torch.float64)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.n_replicas, -1, -1)
        z = torch.baddbmm(self.features_b, x, self.features_w)
        return torch.relu(z) / math.sqrt(self.features_w.shape[-1])

    def forward(self, x: torch.Tensor, dropout_gen: torch.Generator | None = None) -> torch.Tensor:
        return torch.bmm(self.features(x), self.readout).to(torch.float32)


def readout(phi: torch.Tensor, targets: torch.Tensor, ridge: float) -> torch.Tensor:
    """The readouts ``A [R, F, C]`` minimizing ``mean ||phi A - targets||^2 + ridge ||A||^2``.

    ``phi`` is ``[R, n, F]``, ``targets`` ``[R, n, C]``. With ``phi = U S V^T`` the solution is
    ``V diag(s / (s^2 + n ridge)) U^T targets``; at ``ridge = 0`` singular values below the
    pseudo-inverse's cutoff (``max(n, F) * eps * s_max``, as ``torch.linalg.pinv``) count as 0,
    which makes it the minimum-norm least-squares solution.
    """
    u, s, vh = torch.linalg.svd(phi, full_matrices=False)
    n = phi.shape[1]
    if ridge > 0:
        scale = s / (s.square() + n * ridge)
    else:
        cutoff = max(phi.shape[1:]) * torch.finfo(phi.dtype).eps * s[:, :1]
        scale = torch.where(s > cutoff, 1.0 / s.clamp(min=torch.finfo(phi.dtype).tiny), 0.0)
    return vh.transpose(1, 2) @ (scale.unsqueeze(2) * (u.transpose(1, 2) @ targets))


@torch.no_grad()
def solve(
    model: StackedRandomFeatures,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    train_mask: np.ndarray,
    n_classes: int,
    ridge: float,
) -> np.ndarray:
    """Fit every replica's readout on its training subset (one batched call); per-replica train
    accuracy after the fit, ``[R]``. Rows of ``train_mask`` must have equal counts."""
    idx = torch.from_numpy(np.stack([np.flatnonzero(m) for m in train_mask]).astype(np.int64))
    device = model.readout.device  # the training's (memlab.engine.device)
    x = torch.from_numpy(np.ascontiguousarray(x_pool, dtype=np.float32))[idx].to(device)
    y = torch.from_numpy(np.asarray(y_pool, dtype=np.int64))[idx].to(device)  # [R, n]
    phi = model.features(x)
    targets = torch.nn.functional.one_hot(y, n_classes).to(torch.float64)
    model.readout.copy_(readout(phi, targets, ridge))
    correct = torch.bmm(phi, model.readout).argmax(2) == y
    return correct.double().mean(1).cpu().numpy()
