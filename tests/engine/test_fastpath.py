"""The fast training paths train to the same weights as the plain autograd path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import train, train_regime

from memlab.columnar import to_frame
from memlab.data.datasets import balanced_subsets
from memlab.engine.fastpath import CNNStep, MLPStep, cross_entropy, fast_step
from memlab.engine.models import StackedCNN, StackedMLP
from memlab.engine.train import carve_validation, init_seeds
from memlab.plan.kinds import MLP


def _mlp(r, width=16, depth=2, dropout=0.0):
    return StackedMLP(
        64, 10, width=width, depth=depth, dropout=dropout, replica_seeds=init_seeds(0, range(r))
    )


def _train(model, split, mask, settings, val=None, fast=True):
    return train(model, split, mask, settings, val=val, use_fast_path=fast)


def _fast_equals_plain(make, split, mask, settings, val=None):
    """Train two copies of ``make()``, with the hand-written step and with autograd: the same
    stop and fit epochs and (to float tolerance) weights and loss curves."""
    fast = _train(make(), split, mask, settings, val, fast=True)
    plain = _train(make(), split, mask, settings, val, fast=False)
    assert fast.stop_epoch.tolist() == plain.stop_epoch.tolist()
    assert fast.fit_epoch.tolist() == plain.fit_epoch.tolist()
    for a, b in zip(fast.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    cols = ["train_loss", "heldout_loss"]
    torch.testing.assert_close(
        torch.tensor(fast.history[cols].to_numpy()),
        torch.tensor(plain.history[cols].to_numpy()),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("r", [1, 3])
@pytest.mark.parametrize("depth", [1, 2])
def test_mlp_step_gradients_equal_autograd(r, depth):
    torch.manual_seed(0)
    m = _mlp(r, width=8, depth=depth)
    x, y = torch.randn(20, 64), torch.randint(0, 10, (20,))
    idx = torch.randint(0, 20, (r, 5))
    logits = m(x[idx])
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 10), y[idx].reshape(-1), reduction="none"
    )
    loss.view(r, -1).mean(1).sum().backward()
    grads = MLPStep(m)(x, y, idx)
    for p, g in zip(m.parameters(), grads, strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


def _embedded(r, width=16, depth=1, dropout=0.0, embedding=8):
    return StackedMLP(
        22, 11, width=width, depth=depth, dropout=dropout, replica_seeds=init_seeds(0, range(r)),
        embedding=embedding, tokens=(2, 11),
    )  # fmt: skip


@pytest.mark.parametrize("r", [1, 3])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_embedded_mlp_step_gradients_equal_autograd(modular_split, r, dropout):
    """The table's gradient (both token positions share it) comes first, as in parameters()."""
    m = _embedded(r, width=8, depth=2, dropout=dropout)
    x, y = torch.from_numpy(modular_split.x_pool), torch.from_numpy(modular_split.y_pool)
    idx = torch.randint(0, len(y), (r, 7), generator=torch.Generator().manual_seed(0))
    logits = m(x[idx], torch.Generator().manual_seed(1))
    loss = F.cross_entropy(logits.reshape(-1, 11), y[idx].reshape(-1), reduction="none")
    loss.view(r, -1).mean(1).sum().backward()
    grads = MLPStep(m)(x, y, idx, torch.Generator().manual_seed(1))
    assert grads[0].shape == m.embedding.shape
    for p, g in zip(m.parameters(), grads, strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("r", "regime"),
    [
        (3, {}),  # replicas fit (and leave the stack) at epochs 23, 28 and never
        (1, {"stop_at_fit": False}),  # the 2-D single-model path
        (2, {"dropout": 0.3, "weight_decay": 1.0}),
    ],
)
def test_fast_path_trains_embedded_mlps_as_the_plain_path(modular_split, r, regime):
    mask = balanced_subsets(len(modular_split.y_pool), 40, r, 0)
    settings = train_regime(max_epochs=30, lr=1e-2, batch_size=16, **regime)
    _fast_equals_plain(
        lambda: _embedded(r, dropout=settings.dropout), modular_split, mask, settings
    )


@pytest.mark.parametrize(
    ("r", "width", "regime"),
    [
        (3, 16, {}),  # memorize: replicas leave the stack when they fit
        (1, 32, {}),  # one replica: the 2-D single-model path
        (3, 16, {"dropout": 0.3, "weight_decay": 0.5}),
        (2, 16, {"early_stopping": True, "patience": 2, "weight_decay": 0.05}),
    ],
)
def test_fast_path_trains_same_weights_as_plain_path(digits_split, r, width, regime):
    mask = balanced_subsets(len(digits_split.y_pool), 60, r, 0)
    settings = train_regime(max_epochs=25, lr=1e-2, batch_size=16, **regime)
    val = None
    if settings.early_stopping:
        mask, val = carve_validation(mask, 0.25, seed=0)
    make = lambda: _mlp(r, width, dropout=settings.dropout)  # noqa: E731
    _fast_equals_plain(make, digits_split, mask, settings, val)


@pytest.mark.parametrize("r", [1, 3])
def test_wide_layers_give_rows_the_same_bits_wherever_they_sit(r):
    """What the full-batch forward reuse (memlab.engine.train.Trainer.evaluate_ahead) rests on: a
    layer at least MIN_SHARED_WIDTH wide gives each row the same bits wherever it sits in the batch,
    on the step's path (addmm for one replica) as on the model's (baddbmm)."""
    from memlab.engine.train import MIN_SHARED_WIDTH

    g = torch.Generator().manual_seed(0)
    for width in (MIN_SHARED_WIDTH, 64, 256, 512):
        for k in (64, 784):
            x, w = torch.randn(r, 300, k, generator=g), torch.randn(r, k, width, generator=g)
            b = torch.randn(r, 1, width, generator=g)
            order = torch.randperm(300, generator=g)
            own = torch.baddbmm(b, x, w)
            if r == 1:
                moved = torch.addmm(b[0], x[0, order], w[0]).unsqueeze(0)
            else:
                moved = torch.baddbmm(b, x[:, order], w)
            assert torch.equal(moved, own[:, order]), (width, k)


def test_mlp_step_is_its_backward_of_its_forward():
    """The split the full-batch trainer uses: forward, then backward, gives the step's gradients."""
    m = _mlp(3)
    x, y = torch.randn(20, 64), torch.randint(0, 10, (20,))
    idx = torch.randint(0, 20, (3, 20), generator=torch.Generator().manual_seed(0))
    step = MLPStep(m)
    whole = [g.clone() for g in step(x, y, idx)]
    fw = step.forward(x, y, idx)
    assert fw.features.shape == (3, 20, 16)
    for a, b in zip(whole, step.backward(fw), strict=True):
        assert torch.equal(a, b)


def test_fast_step_for_mlps_and_cnns():
    assert isinstance(fast_step(_mlp(2)), MLPStep)
    assert isinstance(fast_step(_embedded(2)), MLPStep)
    assert isinstance(fast_step(_cnn(1, width=2)), CNNStep)

    class Other(StackedCNN):  # a subclass may change the forward: the plain step for it
        pass

    assert fast_step(Other((8, 8), 10, width=2, dropout=0.0, replica_seeds=[1])) is None


def _cnn(r, width=4, dropout=0.0, shape=(8, 8)):
    return StackedCNN(
        shape, 10, width=width, dropout=dropout, replica_seeds=init_seeds(0, range(r))
    )


def _cnn_grads_equal_autograd(m, x, y, idx, seed):
    """The autograd step's gradients (sum of per-replica mean CE) against CNNStep's."""
    r = idx.shape[0]
    logits = m(x[idx], torch.Generator().manual_seed(seed))
    loss = F.cross_entropy(logits.reshape(-1, 10), y[idx].reshape(-1), reduction="none")
    loss.view(r, -1).mean(1).sum().backward()
    grads = CNNStep(m)(x, y, idx, torch.Generator().manual_seed(seed))
    for p, g in zip(m.parameters(), grads, strict=True):
        assert g.shape == p.shape
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("r", [1, 3])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(8, 8), (5, 7)])  # odd sides: the pooling drops the last row
def test_cnn_step_gradients_equal_autograd(digits_split, r, dropout, shape):
    h, w = shape
    x = torch.from_numpy(digits_split.x_pool).view(-1, 8, 8)[:, :h, :w].reshape(-1, h * w)
    y = torch.from_numpy(digits_split.y_pool)
    # Blank images too: their uniform interior gives pooling windows of four equal positive
    # values (ties), where the gradient must go to the first one only, as max_pool2d sends it.
    x = torch.cat([torch.zeros(4, h * w), x]).contiguous()
    y = torch.cat([torch.full((4,), 3), y])
    idx = torch.randint(0, 200, (r, 9), generator=torch.Generator().manual_seed(0))
    idx[:, :2] = torch.tensor([0, 1])
    m = _cnn(r, width=3, dropout=dropout, shape=shape)
    _cnn_grads_equal_autograd(m, x, y, idx, seed=1)


@pytest.mark.parametrize(
    ("r", "regime"),
    [
        (3, {}),  # memorize: replicas leave the stack when they fit
        (1, {"stop_at_fit": False}),
        (2, {"dropout": 0.3, "weight_decay": 0.5}),
    ],
)
def test_fast_path_trains_cnns_as_the_plain_path(digits_split, r, regime):
    mask = balanced_subsets(len(digits_split.y_pool), 60, r, 0)
    settings = train_regime(max_epochs=15, lr=1e-2, batch_size=16, **regime)
    _fast_equals_plain(lambda: _cnn(r, dropout=settings.dropout), digits_split, mask, settings)


@pytest.mark.parametrize("regime", [{}, {"early_stopping": True, "patience": 2}])
def test_chunked_replicas_equal_one_stack(digits_split, monkeypatch, regime):
    """Training replicas in chunks (wide models) gives each replica the same weights and history."""
    import numpy as np

    from memlab.engine import runs

    split = digits_split
    members = balanced_subsets(len(split.y_pool), 60, 5, 0)
    variant = MLP("mlp", 16, 2)
    settings = train_regime(max_epochs=12, lr=1e-2, batch_size=16, **regime)
    flipped = np.zeros(len(split.y_pool), bool)

    def run():
        return runs.train_run(
            split, split.y_pool, flipped, members, variant, settings, seed=0, log=lambda s: None
        )

    state, arrays, hist = run()
    hist = to_frame(hist)
    assert runs.replicas_per_chunk(variant, 1482, 5) == 5
    monkeypatch.setattr(runs, "STACK_PARAMS", 2 * 1482)  # chunks of 2, 2, 1
    assert runs.replicas_per_chunk(variant, 1482, 5) == 2
    state2, arrays2, hist2 = run()
    hist2 = to_frame(hist2)
    for k in state:
        torch.testing.assert_close(state[k], state2[k], rtol=1e-5, atol=1e-6)
    for k in arrays:
        if np.issubdtype(arrays[k].dtype, np.floating):  # from the losses (loss_drop): rounding
            np.testing.assert_allclose(arrays[k], arrays2[k], rtol=1e-5, atol=1e-6)
        else:  # masks, epochs, stop reasons, replica numbers
            np.testing.assert_array_equal(arrays[k], arrays2[k])
    assert hist[["epoch", "replica"]].equals(hist2[["epoch", "replica"]])
    np.testing.assert_allclose(hist.to_numpy(float), hist2.to_numpy(float), rtol=1e-5, atol=1e-6)


def _margin_logits(margin, n_classes=10, label=3, dtype=torch.float32):
    """One example: the label's logit ``margin`` above all the others (which are 0)."""
    z = torch.zeros(1, n_classes, dtype=dtype)
    z[0, label] = margin
    return z, torch.tensor([label])


@pytest.mark.parametrize("margin", [20.0, 30.0, 50.0])
def test_cross_entropy_keeps_tiny_losses_of_confident_predictions(margin):
    """Margins past ~17 used to cancel to exactly 0.0; the loss is log1p(9 e^-margin)."""
    z, y = _margin_logits(margin)
    loss = cross_entropy(z, y)
    exact = math.log1p(9 * math.exp(-margin))  # float64
    assert loss.dtype == torch.float32 and loss.item() > 0
    assert loss.item() == pytest.approx(exact, rel=1e-5)
    # Shifted logits (log-probabilities, as evaluate.example_outputs passes) give the same loss.
    assert cross_entropy(torch.log_softmax(z, -1), y).item() == pytest.approx(exact, rel=1e-5)
    # The float64 result is the exact value too (the formula is not float32-specific).
    z64, _ = _margin_logits(margin, dtype=torch.float64)
    assert cross_entropy(z64, y).item() == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("margin", [-100.0, -1e4])
def test_cross_entropy_of_confident_wrong_prediction_is_finite(margin):
    z, y = _margin_logits(margin)
    loss = cross_entropy(z, y).item()
    # -margin + log(9 + e^margin): the label sits |margin| below the nine others.
    assert math.isfinite(loss)
    assert loss == pytest.approx(-margin + math.log(9), rel=1e-6)


def test_cross_entropy_equals_torch_on_moderate_margins():
    torch.manual_seed(0)
    z = torch.randn(3, 50, 10) * 4  # [R, n, C]
    y = torch.randint(0, 10, (3, 50))
    ref = F.cross_entropy(z.reshape(-1, 10), y.reshape(-1), reduction="none").view(3, 50)
    out = cross_entropy(z, y)
    assert out.shape == (3, 50)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cross_entropy(z[0], y[0]), ref[0], rtol=1e-5, atol=1e-6)  # [n, C]
    # Ties and one class: log(2) for a two-way tie at the top, 0 for a single class.
    assert cross_entropy(torch.tensor([[5.0, 5.0]]), torch.tensor([0])).item() == pytest.approx(
        math.log(2)
    )
    assert cross_entropy(torch.tensor([[7.0]]), torch.tensor([0])).item() == 0.0


def test_cross_entropy_leaves_its_input_alone():
    z, y = torch.randn(4, 10), torch.randint(0, 10, (4,))
    before = z.clone()
    cross_entropy(z, y)
    assert torch.equal(z, before)
