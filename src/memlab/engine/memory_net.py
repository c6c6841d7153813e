"""A memory-augmented network: an MLP whose prediction also reads an explicit memory of its own
training subset, memorizing by design and in a controlled way.

Each replica's memory holds its training examples: the keys are their embeddings (the MLP's last
hidden layer, L2-normalised), the values their labels (the labels it trains on). A query's
embedding attends over the keys by cosine similarity at a temperature ``tau``, and the read-out
class distribution is mixed with the network's own head, as the kNN-LM mixes a language model
with its datastore (Khandelwal et al., ICLR 2020, eq. 2):

    p_memory(c | x) = sum_{j: y_j = c} softmax_j(cos(h(x), h(x_j)) / tau)
    p(c | x)        = lam * p_memory(c | x) + (1 - lam) * p_head(c | x)

``lam`` is configured (``mix`` in [0, 1]) or learned (``mix: learned``: one parameter per
replica, ``lam = sigmoid(mix_logit)``, starting at 0.5; AdamW's weight decay pulls the logit
towards 0, i.e. ``lam`` towards 0.5, like every other weight).

Choices (ours, documented in config/README.md):
- **Own slot masked in training.** A training example's query never reads its own slot: it must
  be predicted from its neighbours (leave-one-out), or the network would learn to look itself
  up. The training loop's train metrics (fit, forgetting, cartography) are leave-one-out too,
  the quantity the loss trains; the evaluate rule reads the whole memory, as a deployed model
  does, so a member queried on itself can find itself (exact recall, as 1-NN).
- **Memory rebuilt once per epoch.** The keys are a snapshot of the current embeddings
  (no gradient), rebuilt after every epoch's steps (before its evaluation) and whenever the stack
  changes; gradients reach the embedding through the queries and the head, as the kNN-LM's
  datastore is built from a fixed model. A resumed run rebuilds the same keys from the same
  weights, so it ends with the same bytes.
- **Memory off** (``memory_on = False``) returns the head's logits alone: what the network
  learned without the memory, evaluated beside it.

Replicas share nothing: each reads only its own memory row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from memlab.engine.models import StackedMLP

# Probabilities below this are floored before the log (a class absent from memory, lam = 1).
_FLOOR = 1e-30
# Queries read the memory this many at a time (bounds the [R, B, m] similarity block).
_QUERY_CHUNK = 512


class StackedMemoryNet(StackedMLP):
    """Stacked memory-augmented MLPs: the MLP's hidden layers embed, its head classifies, and a
    read over the replica's own training examples is mixed in (module docstring).

    Its parameters are the MLP's (drawn as :class:`StackedMLP` draws them) plus ``mix_logit``
    ``[R, 1, 1]`` when ``mix`` is learned. The memory is not a parameter: :meth:`remember` sets
    it from the training data, :meth:`refresh` rebuilds its keys.
    """

    mix_logit: nn.Parameter | None  # registered with register_parameter (None: mix configured)

    remembers = True

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        *,
        width: int,
        depth: int,
        dropout: float,
        replica_seeds: Sequence[int],
        mix: float | None,
        temperature: float,
    ) -> None:
        super().__init__(
            in_dim,
            n_classes,
            width=width,
            depth=depth,
            dropout=dropout,
            replica_seeds=replica_seeds,
        )
        self.n_classes = n_classes
        self.temperature = float(temperature)
        self.fixed_mix = None if mix is None else float(mix)
        logit = None if mix is not None else nn.Parameter(torch.zeros(self.n_replicas, 1, 1))
        self.register_parameter("mix_logit", logit)
        self.memory_on = True
        self.x_memory: torch.Tensor | None = None  # the inputs the slots index
        self.slots: torch.Tensor | None = None  # [R, m] indices into x_memory
        self.slot_of: torch.Tensor | None = None  # [R, len(x_memory)] slot of an index, or -1
        self.values: torch.Tensor | None = None  # [R, m, C] the labels stored, one-hot
        self.keys: torch.Tensor | None = None  # [R, m, width] normalised embeddings

    def extra_repr(self) -> str:
        # Part of the resume fingerprint (memlab.engine.train): a state saved under another
        # temperature or mix is never continued.
        return f"mix={self.fixed_mix}, temperature={self.temperature}"

    def remember(self, x: torch.Tensor, y: torch.Tensor, slots: torch.Tensor) -> None:
        """Replica r's memory: the examples ``x[slots[r]]`` with labels ``y[slots[r]]``."""
        if slots.shape[0] != self.n_replicas or slots.shape[1] < 2:
            shape = tuple(slots.shape)
            raise ValueError(f"a memory needs {self.n_replicas} rows of 2+ slots, got {shape}")
        self.x_memory, self.slots = x, slots
        self.slot_of = torch.full((slots.shape[0], len(x)), -1, dtype=torch.long, device=x.device)
        numbers = torch.arange(slots.shape[1], device=x.device).expand_as(slots).contiguous()
        self.slot_of.scatter_(1, slots, numbers)
        # One-hot, so that a read is one batched matrix product (a scatter of the attention
        # into classes costs 5-10 times more, forward and backward).
        self.values = F.one_hot(y[slots], self.n_classes).to(x.dtype)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Rebuild the keys from the current embeddings (no dropout, no gradient)."""
        if self.slots is None or self.x_memory is None:
            raise RuntimeError("the memory is empty: call remember() first")
        was_training = self.training
        self.eval()
        self.keys = F.normalize(self.features(self.x_memory[self.slots]), dim=-1)
        self.train(was_training)

    def mix(self) -> torch.Tensor:
        """``lam`` per replica, ``[R, 1, 1]`` (or a scalar when configured)."""
        if self.mix_logit is None:
            return torch.tensor(self.fixed_mix, device=self.weights[0].device)
        return torch.sigmoid(self.mix_logit)

    def forward(
        self,
        x: torch.Tensor,
        dropout_gen: torch.Generator | None = None,
        own: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Log-probabilities ``[R, B, C]`` (the head's logits when the memory is off).

        ``own [R, B]``: the index into ``x_memory`` of each query, a member of its replica's
        memory whose slot is masked out of its read (training: leave-one-out); None reads every
        slot.
        """
        h = self.features(x, dropout_gen)
        logits = self.head(h)
        if not self.memory_on or self.fixed_mix == 0.0:
            return logits
        p_memory = self.read(h, own)
        lam = self.mix()
        p = lam * p_memory + (1 - lam) * torch.softmax(logits, -1)
        return torch.log(p.clamp_min(_FLOOR))

    def read(self, h: torch.Tensor, own: torch.Tensor | None = None) -> torch.Tensor:
        """The memory's class distribution ``[R, B, C]`` for embeddings ``h [R, B, width]``."""
        if self.keys is None or self.slot_of is None or self.values is None:
            raise RuntimeError("the memory is empty: call remember() first")
        q = F.normalize(h, dim=-1) / self.temperature  # scaled here: [R, B, width], not [R, B, m]
        parts = []
        for s in range(0, q.shape[1], _QUERY_CHUNK):
            logits = torch.bmm(q[:, s : s + _QUERY_CHUNK], self.keys.transpose(1, 2))
            if own is not None:
                self._mask_own(logits, own[:, s : s + _QUERY_CHUNK])
            parts.append(torch.bmm(torch.softmax(logits, -1), self.values))
        return torch.cat(parts, 1)

    def _mask_own(self, logits: torch.Tensor, own: torch.Tensor) -> None:
        """Set each query's own slot to -inf in ``logits [R, B, m]``, in place: one entry per
        query, not a comparison of every query with every slot."""
        assert self.slot_of is not None
        slot = self.slot_of.gather(1, own)  # [R, B]
        if bool((slot < 0).any()):
            raise ValueError("`own` names an example that is not in the memory")
        logits.scatter_(2, slot.unsqueeze(2), -math.inf)
