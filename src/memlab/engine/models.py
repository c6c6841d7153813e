"""Stacked models: R independent replicas of one architecture evaluated in one call.

Every parameter carries a leading replica dimension and every op is batched over it (``baddbmm``
for dense layers, a grouped convolution for the CNN), so R small models cost about as much as one
wide one while nothing couples them: no shared weights, no shared batch statistics.

Replica ``r`` is initialised from its own generator (seeded by ``replica_seeds[r]``) in the same
order as a single model would be, so a stack of R replicas equals R models built one by one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _uniform(shape: Sequence[int], bound: float, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """Stack one U(-bound, bound) draw per replica, each from that replica's generator."""
    return torch.stack([(torch.rand(shape, generator=g) * 2 - 1) * bound for g in gens])


class StackedModel(nn.Module):
    """Base: forward takes ``x [R, B, d]`` and returns logits ``[R, B, C]``.

    Every parameter's leading dimension is the replica, so the stack's replicas can be selected
    (:meth:`select`), replaced (:meth:`assign`) and joined (:meth:`concat`). These put new
    parameter objects in place of the old ones: an optimizer must be handed the returned ones.
    """

    n_replicas: int

    def assign(self, params: Mapping[str, torch.Tensor]) -> list[nn.Parameter]:
        """Replace every parameter by a new one holding ``params[name]`` (e.g. ``weights.0``).

        Returns the new parameters in ``parameters()`` order; ``n_replicas`` follows their
        leading dimension.
        """
        names = [name for name, _ in self.named_parameters()]
        if sorted(names) != sorted(params):
            raise ValueError(f"expected parameters {names}, got {sorted(params)}")
        new = [_replace_parameter(self, name, params[name]) for name in names]
        self.n_replicas = int(new[0].shape[0])
        return new

    def select(self, keep: torch.Tensor) -> list[nn.Parameter]:
        """Keep only the replicas (rows) where the boolean ``keep`` is True; the new parameters."""
        return self.assign({name: p.detach()[keep] for name, p in self.named_parameters()})

    @staticmethod
    def concat(models: Sequence[StackedModel]) -> StackedModel:
        """The replicas of ``models`` (one architecture) as one stack, in order.

        The first model is reused: it ends up holding the concatenated parameters.
        """
        params = [dict(m.named_parameters()) for m in models]
        joined = {name: torch.cat([p[name].detach() for p in params]) for name in params[0]}
        models[0].assign(joined)
        return models[0]


def _replace_parameter(module: nn.Module, name: str, value: torch.Tensor) -> nn.Parameter:
    """Put a new parameter holding ``value`` where the parameter called ``name`` is."""
    owner: Any = module
    *path, leaf = name.split(".")
    for part in path:
        owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
    q = nn.Parameter(value)
    if leaf.isdigit():
        owner[int(leaf)] = q
    else:
        setattr(owner, leaf, q)
    return q


class StackedMLP(StackedModel):
    """ReLU MLP with ``depth`` hidden layers of ``width`` units, dropout after each hidden layer.

    Initialisation follows ``nn.Linear`` (U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
    biases), so results are comparable with textbook PyTorch code.

    With ``embedding`` e > 0 the input is ``tokens = (n_tokens, vocab)`` one-hot blocks (see
    :attr:`memlab.data.datasets.Dataset.token_shape`) and each block is first mapped through one
    learned table ``embedding [R, vocab, e]`` shared by every position, as a transformer's token
    embedding (Power et al. 2022; an MLP on shared token embeddings as in Liu et al. 2022): the
    hidden layers see the ``n_tokens * e`` concatenated embeddings. The table is drawn after the
    layers, N(0, 1) as ``nn.Embedding``, so ``embedding=0`` draws what it always drew.
    """

    # Registered with register_parameter (None: no parameter), so nn.Module would type it
    # `Tensor | Module`.
    embedding: nn.Parameter | None

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        *,
        width: int,
        depth: int,
        dropout: float,
        replica_seeds: Sequence[int],
        embedding: int = 0,
        tokens: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.n_replicas = len(replica_seeds)
        self.dropout = dropout
        self.tokens = blocks = _token_blocks(in_dim, embedding, tokens)
        first = in_dim if blocks is None else blocks[0] * embedding
        dims = [first] + [width] * depth + [n_classes]
        gens = [torch.Generator().manual_seed(int(s)) for s in replica_seeds]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(dims):
            bound = 1.0 / math.sqrt(fan_in)
            # Per layer: all weights, then all biases, replica by replica (same draws as R=1).
            w = _uniform((fan_in, fan_out), bound, gens)
            b = _uniform((1, fan_out), bound, gens)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        table = None
        if blocks is not None:
            vocab = blocks[1]
            table = torch.stack([torch.randn((vocab, embedding), generator=g) for g in gens])
        # None registers no parameter: a plain MLP's parameters and checkpoints are as before.
        self.register_parameter("embedding", None if table is None else nn.Parameter(table))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``x [R, B, n_tokens * vocab]`` (or shared ``[B, ...]``) -> ``[R, B, n_tokens * e]``.

        A matmul of each one-hot block with the table is its row lookup, exactly (the other
        terms are zeros); on non-one-hot inputs (randomized ones) it is the same linear map.
        """
        if self.tokens is None or self.embedding is None:
            raise TypeError("this MLP has no token embedding")
        t, v = self.tokens
        lead = x.shape[:-1]
        z = torch.matmul(x.reshape(*lead[:-1], lead[-1] * t, v), self.embedding)
        return z.reshape(self.n_replicas, lead[-1], -1)

    def forward(self, x: torch.Tensor, dropout_gen: torch.Generator | None = None) -> torch.Tensor:
        return self.head(self.features(x, dropout_gen))

    def features(self, x: torch.Tensor, dropout_gen: torch.Generator | None = None) -> torch.Tensor:
        """The last hidden layer's activations ``[R, B, width]`` (after ReLU and dropout)."""
        if self.embedding is not None:
            x = self.embed(x)
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            x = torch.relu(_dense(x, w, b))
            x = _dropout(x, self.dropout, self.training, dropout_gen)
        return x

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The output layer: logits ``[R, B, C]`` of the last hidden activations."""
        return _dense(h, self.weights[-1], self.biases[-1])


def _dense(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x W + b`` per replica; ``x`` is ``[R, B, d]`` or one shared ``[B, d]``."""
    return torch.baddbmm(b, x, w) if x.dim() == 3 else torch.matmul(x, w) + b


def _token_blocks(
    in_dim: int, embedding: int, tokens: Sequence[int] | None
) -> tuple[int, int] | None:
    """The (n_tokens, vocab) an embedding looks up, checked against the input width."""
    if not embedding:
        return None
    if tokens is None or int(tokens[0]) * int(tokens[1]) != in_dim:
        raise ValueError(f"an embedding needs token blocks of {in_dim} inputs, got {tokens}")
    return int(tokens[0]), int(tokens[1])


class StackedCNN(StackedModel):
    """Small CNN for small images: conv3x3(c) - ReLU - conv3x3(2c) - ReLU - maxpool2 - linear.

    Replicas are stacked as groups of a grouped convolution, which keeps them independent.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        n_classes: int,
        *,
        width: int,
        dropout: float,
        replica_seeds: Sequence[int],
    ) -> None:
        super().__init__()
        self.n_replicas = len(replica_seeds)
        self.dropout = dropout
        self.image_shape = tuple(int(s) for s in image_shape)
        h, w = self.image_shape
        c1, c2 = width, 2 * width
        self.channels = (c1, c2)
        gens = [torch.Generator().manual_seed(int(s)) for s in replica_seeds]
        feat = c2 * (h // 2) * (w // 2)
        b1, b2, b3 = 1 / math.sqrt(9), 1 / math.sqrt(c1 * 9), 1 / math.sqrt(feat)
        self.conv1_w = nn.Parameter(_uniform((c1, 1, 3, 3), b1, gens))
        self.conv1_b = nn.Parameter(_uniform((c1,), b1, gens))
        self.conv2_w = nn.Parameter(_uniform((c2, c1, 3, 3), b2, gens))
        self.conv2_b = nn.Parameter(_uniform((c2,), b2, gens))
        self.head_w = nn.Parameter(_uniform((feat, n_classes), b3, gens))
        self.head_b = nn.Parameter(_uniform((1, n_classes), b3, gens))

    def forward(self, x: torch.Tensor, dropout_gen: torch.Generator | None = None) -> torch.Tensor:
        r = self.n_replicas
        c1, c2 = self.channels
        z = self.images(x)
        n = z.shape[0]
        z = F.conv2d(
            z, self.conv1_w.reshape(r * c1, 1, 3, 3), self.conv1_b.reshape(-1), padding=1, groups=r
        )
        z = torch.relu(z)
        z = F.conv2d(
            z, self.conv2_w.reshape(r * c2, c1, 3, 3), self.conv2_b.reshape(-1), padding=1, groups=r
        )
        z = F.max_pool2d(torch.relu(z), 2)
        z = z.reshape(n, r, -1).transpose(0, 1)  # [R, B, features]
        z = _dropout(z, self.dropout, self.training, dropout_gen)
        return torch.baddbmm(self.head_b, z, self.head_w)

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """``x [R, B, h*w]`` (or one shared ``[B, h*w]``) as the convolution's input ``[B, R, h,
        w]``, replicas the channel groups, stored channels-last: oneDNN's grouped convolutions,
        their backward and the pooling are several times faster so (``benchmarks/README.md``)."""
        r = self.n_replicas
        h, w = self.image_shape
        if x.dim() == 2:  # one query set for every replica (evaluation)
            x = x.unsqueeze(0).expand(r, -1, -1)
        z = x.reshape(r, x.shape[1], h, w).transpose(0, 1)
        return z.contiguous(memory_format=torch.channels_last)


def _dropout(
    x: torch.Tensor, p: float, training: bool, gen: torch.Generator | None
) -> torch.Tensor:
    if not training or p <= 0:
        return x
    # Elementwise masks: replicas never share a mask entry, so dropout does not couple them.
    keep = torch.rand(x.shape, generator=gen, device=x.device) >= p
    return x * keep / (1 - p)


def knn_log_proba(
    x_query: torch.Tensor,
    x_pool: torch.Tensor,
    y_pool: torch.Tensor,
    members: torch.Tensor,
    *,
    k: int,
    n_classes: int,
    smoothing: float = 0.1,
    chunk: int = 1024,
) -> torch.Tensor:
    """Log class probabilities of R k-NN classifiers, replica r remembering ``members[r]``.

    Votes of the k nearest members (Euclidean), ties broken towards the nearest neighbour's class;
    probabilities are smoothed vote shares ``(votes + s) / (k + C s)`` so that a loss and a
    confidence exist. A member queried on itself finds itself at distance 0: 1-NN fits every
    training label, which is what makes k-NN the pure memorizer.
    """
    r = members.shape[0]
    out = torch.empty(r, x_query.shape[0], n_classes)
    # Rank weights 1 + eps*(k - rank)/k: a tie in votes goes to the class of the nearer neighbours.
    rank_w = 1 + 1e-3 * (k - torch.arange(k, dtype=torch.float32)) / k
    for start in range(0, x_query.shape[0], chunk):
        d = torch.cdist(x_query[start : start + chunk], x_pool)  # [q, n_pool]
        d = d.unsqueeze(0).masked_fill(~members.unsqueeze(1), float("inf"))  # [R, q, n_pool]
        nn_idx = d.topk(k, dim=2, largest=False).indices  # [R, q, k]
        labels = y_pool[nn_idx]
        votes = torch.zeros(r, nn_idx.shape[1], n_classes)
        votes.scatter_add_(2, labels, rank_w.expand_as(labels).contiguous())
        whole = votes.floor()
        pred = votes.argmax(dim=2)
        proba = (whole + smoothing) / (k + n_classes * smoothing)
        # Give the tie-break winner the smallest possible edge so argmax(proba) == pred.
        proba.scatter_add_(
            2, pred.unsqueeze(2), torch.full_like(pred, 1e-6, dtype=torch.float32).unsqueeze(2)
        )
        out[:, start : start + chunk] = proba.log()
    return out
