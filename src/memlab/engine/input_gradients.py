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

During training (every ``estimators.gradient_every`` epochs, MLPs only; :func:`mlp_gradient_norms`)
two more are summed over the epochs' weights ``w_t`` in the engine's running sums
(:mod:`memlab.engine.dynamics`):

- the **cumulative loss sensitivity** ``sum_t ||grad_x loss(w_t, z)||^2`` (Ravikumar et al. 2025,
  the cumulative form of the sensitivity above);
- **TracIn self-influence** (Pruthi et al. 2020, "Estimating training data influence by tracing
  gradient descent", NeurIPS; TracInCP): ``sum_t lr ||grad_w loss(w_t, z)||^2`` over the
  checkpoints ``t``, here the end of every ``gradient_every``-th epoch, in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

# (x [R, B, d], labels [B]) -> each (replica, example)'s loss [R, B]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

if TYPE_CHECKING:
    from memlab.engine.models import StackedMLP

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


def supports_gradient_sums(model: torch.nn.Module) -> bool:
    """Whether :func:`mlp_gradient_norms` applies: a stacked MLP on plain inputs."""
    from memlab.engine.models import StackedMLP

    return type(model) is StackedMLP and model.embedding is None


def mlp_gradient_norms(
    model: StackedMLP, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(||grad_x loss||^2, ||grad_w loss||^2)`` per (replica, example) of ``x [R, B, d]``,
    ``y [R, B]``, from one backward pass in eval mode. A dense layer's weight gradient for one
    example is the outer product of its input ``a`` and its output gradient ``delta``, of squared
    norm ``||a||^2 ||delta||^2``; the bias adds ``||delta||^2`` (Goodfellow 2015, "Efficient
    per-example gradient computations"): no per-example gradient is ever formed."""
    from memlab.engine.models import _dense

    x = x.detach().requires_grad_(True)
    inputs, outputs = [], []
    a = x
    last = len(model.weights) - 1
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        z = _dense(a, w, b)
        inputs.append(a)
        outputs.append(z)
        a = torch.relu(z) if i < last else z
    loss = F.cross_entropy(a.reshape(-1, a.shape[-1]), y.reshape(-1), reduction="sum")
    grads = torch.autograd.grad(loss, [x, *outputs])
    input_sq = grads[0].pow(2).sum(-1)
    weight_sq = sum(
        (a_in.detach().pow(2).sum(-1) + 1.0) * delta.pow(2).sum(-1)
        for a_in, delta in zip(inputs, grads[1:], strict=True)
    )
    assert isinstance(weight_sq, torch.Tensor)
    return input_sq.detach(), weight_sq.detach()
