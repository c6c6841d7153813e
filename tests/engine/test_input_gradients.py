"""Loss sensitivity and input-loss curvature: known answers on losses whose gradients are known,
and the per-example gradients of a stacked network equal to one example's, one replica's alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
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


def test_mlp_gradient_norms_equal_each_examples_own_gradients():
    """The outer-product trick equals the squared norms of per-example gradients made one by one
    (input and every weight and bias)."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(2, 5, 6)).astype(np.float64))
    y = torch.from_numpy(rng.integers(0, 3, (2, 5)))
    model = _mlp(2).double().eval()
    input_sq, weight_sq = ig.mlp_gradient_norms(model, x, y)
    for r in range(2):
        for i in range(5):
            xi = x[r, i].clone().requires_grad_(True)
            logits = model(xi.expand(2, 1, 6))[r, 0]
            loss = torch.nn.functional.cross_entropy(logits[None], y[r, i : i + 1])
            params = list(model.parameters())
            grads = torch.autograd.grad(loss, [xi, *params])
            assert input_sq[r, i].item() == pytest.approx(grads[0].pow(2).sum().item(), rel=1e-9)
            own = sum(g[r].pow(2).sum() for g in grads[1:])  # replica r's parameters only
            assert weight_sq[r, i].item() == pytest.approx(own.item(), rel=1e-9)


def test_engine_sums_gradients_every_k_epochs(digits_split, monkeypatch):
    from conftest import train, train_regime

    from memlab.data.datasets import balanced_subsets
    from memlab.engine import dynamics

    calls = []
    original = dynamics.update_gradients

    def spy(acc, replica, index, input_sq, weight_sq, lr):
        calls.append((replica.clone(), index.clone(), input_sq.clone(), weight_sq.clone(), lr))
        original(acc, replica, index, input_sq, weight_sq, lr)

    monkeypatch.setattr(dynamics, "update_gradients", spy)
    mask = balanced_subsets(len(digits_split.y_pool), 40, 2, seed=0)
    model = StackedMLP(64, 10, width=8, depth=1, dropout=0.0, replica_seeds=[0, 1])
    settings = train_regime(max_epochs=7, lr=1e-2, batch_size=16, stop_at_fit=False)
    res = train(model, digits_split, mask, settings, gradient_every=3)
    assert len(calls) == 2  # epochs 3 and 6
    d = res.dynamics
    trained = mask
    assert (d["dyn_gradient_evaluations"][trained] == 2).all()
    assert (d["dyn_gradient_evaluations"][~trained] == 0).all()
    tracin = np.zeros_like(d["dyn_tracin"])
    for replica, index, _, weight_sq, lr in calls:
        for k, rep in enumerate(replica.tolist()):
            tracin[rep, index[k].numpy()] += lr * weight_sq[k].double().numpy()
    np.testing.assert_array_equal(d["dyn_tracin"], tracin)
    assert np.isnan(dynamics.gradient_sum(d, "dyn_tracin")[~trained]).all()
    # Off by default: no gradient sums at all.
    plain = train(StackedMLP(64, 10, width=8, depth=1, dropout=0.0, replica_seeds=[0, 1]),
                  digits_split, mask, settings)  # fmt: skip
    assert "dyn_tracin" not in plain.dynamics
    np.testing.assert_array_equal(plain.dynamics["dyn_loss_sum"], d["dyn_loss_sum"])
