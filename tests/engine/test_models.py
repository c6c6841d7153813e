"""Stacked models and the k-NN memorizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memlab.data.datasets import Split
from memlab.engine.builders import build
from memlab.engine.models import StackedCNN, StackedMLP, knn_log_proba
from memlab.engine.train import init_seeds
from memlab.io import MemlabInputError
from memlab.plan.kinds import CNN, MLP


def test_mlp_replica_equals_nn_linear_stack():
    m = StackedMLP(6, 3, width=5, depth=2, dropout=0.0, replica_seeds=[1, 2])
    x = torch.randn(2, 4, 6)
    out = m(x)
    for r in range(2):
        h = x[r]
        for i, (w, b) in enumerate(zip(m.weights, m.biases, strict=True)):
            h = h @ w[r] + b[r]
            if i < 2:
                h = torch.relu(h)
        torch.testing.assert_close(out[r], h)


def _embedded(rows, width=4, depth=1, embedding=3, p=5):
    return StackedMLP(
        2 * p, p, width=width, depth=depth, dropout=0.0, replica_seeds=rows,
        embedding=embedding, tokens=(2, p),
    )  # fmt: skip


def _pairs(p=5):
    a, b = (t.flatten() for t in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    return a, b, torch.cat([F.one_hot(a, p), F.one_hot(b, p)], 1).float()


def test_embedded_mlp_looks_up_both_tokens_in_one_table():
    """Power et al.'s token embedding: one table E for both operands, then the MLP."""
    m = _embedded([1, 2])
    a, b, x = _pairs()
    assert m.embedding.shape == (2, 5, 3) and m.weights[0].shape == (2, 6, 4)
    out, shared = m(x.expand(2, -1, -1)), m(x)
    for r in range(2):
        e = m.embedding[r]
        h = torch.cat([e[a], e[b]], 1)  # the lookup of the token ids, by hand
        h = torch.relu(h @ m.weights[0][r] + m.biases[0][r])
        expected = h @ m.weights[1][r] + m.biases[1][r]
        torch.testing.assert_close(out[r], expected)
        torch.testing.assert_close(shared[r], expected)


def test_embedded_stack_equals_replicas_built_one_by_one():
    seeds = init_seeds(0, range(3))
    stack = _embedded(seeds, depth=2)
    _, _, x = _pairs()
    for r in range(3):
        alone = _embedded(seeds[r : r + 1], depth=2)
        for (name, a), (_, b) in zip(
            stack.named_parameters(), alone.named_parameters(), strict=True
        ):
            assert torch.equal(a[r], b[0]), name
        torch.testing.assert_close(stack(x)[r], alone(x)[0], rtol=0, atol=0)


def test_no_embedding_is_the_plain_mlp_bit_for_bit():
    """embedding=0 registers no table and draws what the MLP always drew."""
    plain = StackedMLP(6, 3, width=5, depth=2, dropout=0.0, replica_seeds=[1, 2])
    zero = StackedMLP(6, 3, width=5, depth=2, dropout=0.0, replica_seeds=[1, 2], embedding=0)
    assert zero.embedding is None and "embedding" not in dict(zero.named_parameters())
    assert list(zero.state_dict()) == list(plain.state_dict())
    for a, b in zip(zero.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)
    # With a table, the hidden and output layers are drawn first, as in a plain MLP of that input.
    emb = _embedded([7], width=4, depth=1, embedding=3)
    first = StackedMLP(6, 5, width=4, depth=1, dropout=0.0, replica_seeds=[7])
    assert torch.equal(emb.weights[1], first.weights[1])


def test_cnn_grouped_conv_equals_separate_convs():
    m = StackedCNN((8, 8), 10, width=2, dropout=0.0, replica_seeds=[3, 4, 5])
    x = torch.rand(3, 7, 64)
    out = m(x)
    for r in range(3):
        z = x[r].reshape(7, 1, 8, 8)
        z = torch.relu(F.conv2d(z, m.conv1_w[r], m.conv1_b[r], padding=1))
        z = torch.relu(F.conv2d(z, m.conv2_w[r], m.conv2_b[r], padding=1))
        z = F.max_pool2d(z, 2).reshape(7, -1)
        torch.testing.assert_close(out[r], z @ m.head_w[r] + m.head_b[r], rtol=1e-5, atol=1e-5)


def test_replica_init_depends_only_on_its_seed():
    a = StackedMLP(6, 3, width=5, depth=1, dropout=0, replica_seeds=init_seeds(0, [0, 1, 2]))
    b = StackedMLP(6, 3, width=5, depth=1, dropout=0, replica_seeds=init_seeds(0, [2]))
    torch.testing.assert_close(a.weights[0][2], b.weights[0][0], rtol=0, atol=0)
    assert not torch.equal(a.weights[0][0], a.weights[0][1])


@pytest.mark.parametrize(
    "make",
    [
        lambda rows: StackedMLP(6, 3, width=5, depth=2, dropout=0.0, replica_seeds=rows),
        lambda rows: StackedCNN((4, 4), 3, width=2, dropout=0.0, replica_seeds=rows),
        _embedded,
    ],
    ids=["mlp", "cnn", "mlp_embedding"],
)
def test_select_and_concat_replicas(make):
    seeds = init_seeds(0, range(4))
    whole = make(seeds)
    part = make(seeds)
    new = part.select(torch.tensor([True, False, True, True]))
    assert part.n_replicas == 3 and new == list(part.parameters())
    for a, b in zip(part.parameters(), whole.parameters(), strict=True):
        assert torch.equal(a, b[[0, 2, 3]])
    joined = type(whole).concat([make(seeds[:1]), make(seeds[1:3]), make(seeds[3:])])
    assert joined.n_replicas == 4
    for a, b in zip(joined.parameters(), whole.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="expected parameters"):
        whole.assign({"nope": torch.zeros(1)})


def test_cnn_refuses_tabular_data():
    tabular = Split(np.zeros((4, 5), np.float32), np.zeros(4, int), None, None, 2, None)
    with pytest.raises(MemlabInputError, match="image"):
        build(CNN("cnn", 2), tabular, dropout=0, replica_seeds=[0])


@pytest.mark.parametrize("variant", [MLP("m", 7, 1), MLP("m", 16, 3), CNN("c", 3)])
def test_parameter_count_is_the_built_models(digits_split, variant):
    """The count the chunking rule uses, without building anything, is the real one."""
    model = build(variant, digits_split, dropout=0, replica_seeds=[0, 1])
    built = sum(p[0].numel() for p in model.parameters())
    assert variant.parameter_count(64, 10, (8, 8)) == built


@pytest.mark.parametrize("variant", [MLP("m", 7, 1), MLP("m", 7, 1, 4), MLP("m", 16, 3, 8)])
def test_parameter_count_counts_the_embedding_table(modular_split, variant):
    model = build(variant, modular_split, dropout=0, replica_seeds=[0, 1])
    built = sum(p[0].numel() for p in model.parameters())
    assert variant.parameter_count(22, 11, None, (2, 11)) == built


def test_embedding_refuses_data_without_tokens(digits_split):
    with pytest.raises(MemlabInputError, match=r"m-w8-e4 .*needs token data"):
        build(MLP("m", 8, 1, 4), digits_split, dropout=0, replica_seeds=[0])


def test_one_nn_fits_every_training_label_even_random_ones():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(50, 4)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 5, 50))
    members = torch.from_numpy(rng.random((3, 50)) < 0.6)
    lp = knn_log_proba(x, x, y, members, k=1, n_classes=5)
    pred = lp.argmax(2)
    for r in range(3):
        assert torch.equal(pred[r][members[r]], y[members[r]])
    # A non-member is predicted from the members only.
    r, i = 0, int(torch.nonzero(~members[0])[0])
    d = torch.cdist(x[i : i + 1], x[members[0]])[0]
    assert pred[r, i] == y[members[0]][d.argmin()]
    assert torch.allclose(lp.exp().sum(2), torch.ones(3, 50), atol=1e-4)


def test_knn_votes_and_tie_break():
    x_pool = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    y_pool = torch.tensor([0, 1, 1, 0])
    members = torch.ones(1, 4, dtype=torch.bool)
    q = torch.tensor([[0.1], [1.6]])
    pred = knn_log_proba(q, x_pool, y_pool, members, k=3, n_classes=2).argmax(2)[0]
    assert pred.tolist() == [1, 1]  # majority of the 3 nearest
    pred2 = knn_log_proba(q, x_pool, y_pool, members, k=2, n_classes=2).argmax(2)[0]
    assert pred2.tolist() == [0, 1]  # 1-1 tie goes to the nearest neighbour's class
