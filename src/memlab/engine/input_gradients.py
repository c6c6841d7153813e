"""Memorization estimators from the gradient of the loss with respect to the input, per
(replica, example), at the end of training (the evaluate job):

- **loss sensitivity** ``||grad_x loss(x, y)||`` (Arpit et al. 2017, "A closer look at
  memorization in deep networks", ICML; as ``get_loss_and_grad_for_batch`` of the reference code
  of Ravikumar et al. 2025, github.com/DeepakTatachar/CSL-Mem): memorized examples sit where the
  loss changes fast with the input;
- **input-loss curvature** (Garg, Ravikumar & Roy 2024, "Memorization through the lens of
  curvature of loss function around samples", ICML), as their reference code
  (github.com/DeepakTatachar/Privacy-Memorization-Curvature, ``utils/loss_curve_score.py``,
  ``get_regularized_curvature_for_batch``): ``mean_v ||grad_x loss(x + h v) - grad_x loss(x)||``
  over Rademacher probes ``v`` (entries +-1), ``h = 1e-3``, 10 probes, in eval mode. Like the
  reference the value is not divided by ``h``; unlike it, ``v`` is exactly +-h (the reference
  adds 1e-7 to every entry) and the loss is summed, not averaged, over the batch, so that each
  example's gradient is its own (the reference's batch mean scales every example alike).

Both are taken once, on the final weights; Garg et al. also average curvature over the last
training epochs, which memlab does not (it keeps no intermediate weights).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

# (x [R, B, d], labels [B]) -> each (replica, example)'s loss [R, B]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

CHUNK = 512  # examples per pass: R x CHUNK x width activations stay small


def cross_entropy_of(logits: Callable[[torch.Tensor], torch.Tensor]) -> Loss:
    """The per-example cross-entropy of a stacked model's logits ``x [R, B, d] -> [R, B, C]``."""

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = logits(x)
        flat = F.cross_entropy(
            out.reshape(-1, out.shape[-1]), y.expand(out.shape[:2]).reshape(-1), reduction="none"
        )
        return flat.view(out.shape[:2])

    return loss


def input_gradient(loss: Loss, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[R, B, d]``: each (replica, example)'s gradient of its own loss with respect to its
    input ``x [R, B, d]`` (the losses are summed: nothing couples the examples in eval mode, so
    each gradient is the example's alone)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(x, y).sum(), x)
    return grad


def loss_sensitivity(loss: Loss, x: torch.Tensor, y: torch.Tensor, replicas: int) -> torch.Tensor:
    """``[R, n]``: ``||grad_x loss||`` of every replica on every example of ``x [n, d]``."""
    parts = []
    for s in range(0, len(x), CHUNK):
        xs = x[s : s + CHUNK].expand(replicas, -1, -1)
        parts.append(input_gradient(loss, xs, y[s : s + CHUNK]).norm(dim=2))
    return torch.cat(parts, dim=1)


def curvature(
    loss: Loss,
    x: torch.Tensor,
    y: torch.Tensor,
    replicas: int,
    *,
    probes: int = 10,
    h: float = 1e-3,
    seed: int = 0,
) -> torch.Tensor:
    """``[R, n]``: Garg et al.'s input-loss curvature, ``mean_v ||grad(x + h v) - grad(x)||``
    over ``probes`` Rademacher probes per (replica, example), drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for s in range(0, len(x), CHUNK):
        xs = x[s : s + CHUNK].expand(replicas, -1, -1)
        ys = y[s : s + CHUNK]
        base = input_gradient(loss, xs, ys)
        total = torch.zeros(base.shape[:2], dtype=torch.float64)
        for _ in range(probes):
            v = torch.randint(0, 2, xs.shape, generator=gen).to(xs.dtype) * 2 - 1
            moved = input_gradient(loss, xs + h * v, ys)
            total += (moved - base).norm(dim=2).double()
        parts.append((total / probes).float())
    return torch.cat(parts, dim=1)


def scores(
    logits: Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray,
    y: np.ndarray,
    replicas: int,
    *,
    curvature_probes: int,
    curvature_h: float,
    seed: int,
) -> dict[str, np.ndarray]:
    """The evaluation arrays of this module for the pool ``x``, ``y``: ``pool_sensitivity`` and,
    where ``curvature_probes`` > 0, ``pool_curvature`` (both float32 [R, n]) and
    ``curvature_probes`` (what its cost is counted from)."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    loss = cross_entropy_of(logits)
    out = {"pool_sensitivity": loss_sensitivity(loss, xt, yt, replicas).numpy()}
    if curvature_probes > 0:
        c = curvature(loss, xt, yt, replicas, probes=curvature_probes, h=curvature_h, seed=seed)
        out["pool_curvature"] = c.numpy()
        out["curvature_probes"] = np.asarray(curvature_probes)
    return out
