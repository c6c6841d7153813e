"""Loss sensitivity and input-loss curvature: known answers on losses whose gradients are known,
and the per-example gradients of a stacked network equal to one example's, one replica's alone."""

from __future__ import annotations

import math

import numpy as np
import torch

from memlab.engine import input_gradients as ig
from memlab.engine.models import StackedMLP


def _quadratic(scale: torch.Tensor):
    """loss(x) = 0.5 * a_r * ||x||^2 per replica r: gradient a_r x, Hessian a_r I."""

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * scale[:, None] * (x**2).sum(-1)

    return loss


def test_sensitivity_of_a_quadratic_loss_is_the_norm_of_its_gradient():
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0], [1.0, 1.0]])
    scale = torch.tensor([1.0, 2.0])
    got = ig.loss_sensitivity(_quadratic(scale), x, torch.zeros(3, dtype=torch.long), 2)
    expected = scale[:, None] * x.norm(dim=1)[None]  # ||a x||
    torch.testing.assert_close(got, expected)


def test_curvature_of_a_quadratic_loss_is_h_a_sqrt_d():
    # grad(x + h v) - grad(x) = a h v, and ||v|| = sqrt(d) for every Rademacher v: exact.
    d, h = 16, 1e-3
    x = torch.randn(5, d, generator=torch.Generator().manual_seed(0)).double()
    scale = torch.tensor([0.5, 3.0], dtype=torch.float64)
    got = ig.curvature(_quadratic(scale), x, torch.zeros(5, dtype=torch.long), 2, probes=10, h=h)
    expected = (h * scale * math.sqrt(d)).float()[:, None].expand(2, 5)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)


def test_curvature_is_zero_for_a_linear_loss_and_seeded():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    w = torch.tensor([1.0, -2.0, 0.5])

    def linear(xs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return xs @ w

    got = ig.curvature(linear, x, torch.zeros(4, dtype=torch.long), 1)
    assert torch.all(got.abs() < 1e-6)


def _mlp(replicas: int) -> StackedMLP:
    return StackedMLP(6, 3, width=8, depth=2, dropout=0.0, replica_seeds=list(range(replicas)))


def test_stacked_gradients_are_each_replica_and_example_alone():
    """Summing the losses couples nothing: each (replica, example) gradient equals the one of
    that example through that replica's network alone."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 6)).astype(np.float32)
    y = rng.integers(0, 3, 7)
    stack = _mlp(3).eval()
    got = ig.scores(stack, x, y, 3, curvature_probes=2, curvature_h=1e-3, seed=0)
    for r in range(3):
        alone = StackedMLP(6, 3, width=8, depth=2, dropout=0.0, replica_seeds=[r]).eval()
        for i in range(7):
            xi = torch.from_numpy(x[i : i + 1]).requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(alone(xi)[0], torch.tensor([int(y[i])]))
            (grad,) = torch.autograd.grad(loss, xi)
            np.testing.assert_allclose(got["pool_sensitivity"][r, i], grad.norm(), rtol=1e-5)
    assert got["pool_curvature"].shape == (3, 7) and (got["pool_curvature"] > 0).all()
    again = ig.scores(stack, x, y, 3, curvature_probes=2, curvature_h=1e-3, seed=0)
    np.testing.assert_array_equal(again["pool_curvature"], got["pool_curvature"])
    assert "pool_curvature" not in ig.scores(
        stack, x, y, 3, curvature_probes=0, curvature_h=1e-3, seed=0
    )
