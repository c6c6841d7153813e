"""Fast training steps for stacked MLPs and CNNs: forward and backward by hand, no autograd.

The hand-written kernels :meth:`MLPStep.__call__` and :meth:`CNNStep.__call__` are long functions
on purpose (forward, loss gradient and backward in one place, the algebra below); they are the
engine's exceptions to the ~60-line limit on functions.

The plain step (``model(x)``, ``F.cross_entropy``, ``loss.backward()``) spends most of its time
outside the matmuls for the small models of this study: autograd records a graph, allocates every
intermediate and gradient, and runs the graph back. An MLP's backward is five lines of algebra,
so :class:`MLPStep` computes the same gradients directly into buffers it keeps between steps:

- forward: ``z_i = b_i + a_{i-1} W_i`` (``baddbmm``), ``a_i = relu(z_i)`` (dropout as in
  :func:`memlab.engine.models._dropout`, drawing the same masks from the same generator);
- loss: the sum over replicas of each replica's mean cross-entropy, as in the plain step, so
  ``dL/dlogits = (softmax - onehot) / B`` per replica: nothing couples replicas;
- backward: ``dW_i = a_{i-1}^T dz_i``, ``db_i = sum_B dz_i``, ``dz_{i-1} = relu'(dz_i W_i^T)``;
- a token embedding (``embedding=e``): ``a_0 = x_tok E`` per token block (``x_tok [B * T, V]``,
  the T blocks of every example as rows), so ``dE = x_tok^T (dz_1 W_1^T)`` with ``dz_1 W_1^T``
  as ``[B * T, e]``: one sum over the blocks, both positions sharing ``E``.

The step is split into :meth:`MLPStep.forward` (its activations kept as :class:`MLPForward`) and
:meth:`MLPStep.backward` because with full batch the trainer's evaluation of each row's own
examples at the end of an epoch is the next step's forward pass, on the same weights: it runs once
(:meth:`memlab.engine.train.Trainer.evaluate_ahead`), where autograd would have to keep a graph
alive between epochs.

With one replica in the stack it runs on 2-D matrices (``addmm``/``mm``), PyTorch's single-model
path. The gradients equal autograd's up to float rounding (summation order of the bias gradient
and the softmax); ``tests/engine/test_fastpath.py`` checks trained weights agree after many steps.

:class:`CNNStep` (:class:`memlab.engine.models.StackedCNN`: conv3x3 - ReLU - conv3x3 - ReLU -
maxpool2
- dropout - linear, replicas the groups of grouped convolutions on a channels-last
``[B, R c, h, w]``) keeps the convolutions in oneDNN, forward and backward, and does the rest by
hand:

- forward: ``a1 = relu(conv1(x))``, ``z2 = conv2(a1)``, then the pooling *before* the ReLU,
  ``f = relu(maxpool(z2))`` (``max_pool2d`` with its indices: the first maximum of each window
  in scan order): relu is monotonic, so ``relu(max z) = max relu(z)``, on a quarter of the
  values. The winner is autograd's too: where the window's maximum is positive it is the first
  maximum of ``z2`` and of ``relu(z2)`` alike; where it is not, autograd routes the gradient to a
  zero of ``relu(z2)`` and the ReLU's gradient there is 0, as ours is at ``relu(max) = 0``;
- dropout and the head as the MLP's last layers (same masks, drawn at the same point:
  ``[R, B, features]`` after the pooling), ``dL/dlogits = (softmax - onehot) / B``;
- backward: ``df = relu'(dh)``, routed to each window's winner
  (``max_pool2d_with_indices_backward``), then ``aten.convolution_backward`` for conv2 (input,
  weight and bias gradients) and, after ``relu'``, for conv1 (weight and bias only).

What it saves is autograd's graph and the ReLU/threshold work on the unpooled maps; the
channels-last layout (``StackedCNN.images``, which the plain forward uses too) is what makes the
convolutions and the pooling fast (measured: ``benchmarks/README.md``).

Which step runs is a function of the model only (:func:`fast_step`), never of measured timings,
so a configuration trains to the same bits on any machine and under any load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from memlab.engine.models import StackedCNN, StackedMLP

# (x, y, idx [R, B], dropout generator) -> gradients in ``model.parameters()`` order.
Step = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator | None], list[torch.Tensor]
]


@dataclass
class MLPForward:
    """One forward pass of :class:`MLPStep`, kept for its backward (:meth:`MLPStep.backward`).

    Tensors are ``[R, B, ..]`` (``[B, ..]`` on the one-replica path, ``flat``), rows in batch
    order. They live in the step's buffers: the step's next forward overwrites them.
    """

    inputs: list[torch.Tensor]  # inputs[i] feeds layer i (after dropout)
    relu_out: list[torch.Tensor]  # layer i's ReLU output (before dropout)
    keeps: list[torch.Tensor]  # dropout masks, empty without dropout
    logits: torch.Tensor
    yb: torch.Tensor
    tokens: torch.Tensor | None  # the one-hot blocks an embedding looked up
    ws: list[torch.Tensor]
    bs: list[torch.Tensor]
    flat: bool
    p: float

    @property
    def features(self) -> torch.Tensor:
        """The last hidden activations ``[R, B, width]`` (what ``StackedMLP.head`` reads)."""
        h = self.inputs[-1]
        return h.unsqueeze(0) if self.flat else h


class MLPStep:
    """Gradients of one training step of a :class:`StackedMLP`, in ``model.parameters()`` order.

    Reads the model's parameters at every call, so it keeps working after finished replicas are
    cut out of the stack (buffers are reallocated when the stack or batch shape changes).
    ``step(x, y, idx)`` is ``step.backward(step.forward(x, y, idx))``: split so that a full-batch
    trainer can evaluate on the forward it trains from (:class:`memlab.engine.train.Trainer`).
    """

    def __init__(self, model: StackedMLP) -> None:
        self.model = model
        self._bufs: dict[str, torch.Tensor] = {}

    def _buf(self, name: str, *shape: int) -> torch.Tensor:
        t = self._bufs.get(name)
        if t is None or t.shape != shape:
            t = torch.empty(shape, device=self.model.weights[0].device)
            self._bufs[name] = t
        return t

    @torch.no_grad()
    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        dropout_gen: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Gradients for the batch ``x[idx], y[idx]`` (``idx`` is ``[R, B]``: a row per replica)."""
        return self.backward(self.forward(x, y, idx, dropout_gen))

    @torch.no_grad()
    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        dropout_gen: torch.Generator | None = None,
    ) -> MLPForward:
        """The forward pass of the batch ``x[idx], y[idx]``, with what the backward needs."""
        m = self.model
        # index_select on the flat index: the same values as x[idx] without advanced indexing's
        # general machinery (how much that saves: benchmarks/README.md).
        xb = torch.index_select(x, 0, idx.reshape(-1)).view(*idx.shape, x.shape[-1])
        yb = torch.index_select(y, 0, idx.reshape(-1)).view(idx.shape)
        ws = [w.detach() for w in m.weights]
        bs = [b.detach() for b in m.biases]
        table = None if m.embedding is None else m.embedding.detach()
        n_layers = len(ws)
        p = m.dropout if m.training else 0.0
        flat = yb.shape[0] == 1  # one replica: plain 2-D matrices, the single-model path
        if flat:
            xb, yb = xb[0], yb[0]
            ws, bs = [w[0] for w in ws], [b[0] for b in bs]
            table = None if table is None else table[0]
        tokens = None  # [.., B * T, V]: the one-hot blocks the embedding looks up
        if table is not None:
            tokens = xb.reshape(*xb.shape[:-2], -1, table.shape[-2])
            xb = torch.matmul(tokens, table).view(*xb.shape[:-1], -1)  # as StackedMLP.embed

        inputs, relu_out, keeps = [xb], [], []
        h = xb
        for i in range(n_layers):
            shape = (*h.shape[:-1], ws[i].shape[-1])
            z = self._buf(f"z{i}", *shape)
            if flat:
                torch.addmm(bs[i], h, ws[i], out=z)
            else:
                torch.baddbmm(bs[i], h, ws[i], out=z)
            if i == n_layers - 1:
                break
            h = torch.relu_(z)
            relu_out.append(h)
            if p > 0:
                keep = torch.rand(h.shape, generator=dropout_gen, device=h.device) >= p
                keeps.append(keep)
                h = h * keep / (1 - p)
            inputs.append(h)
        return MLPForward(inputs, relu_out, keeps, z, yb, tokens, ws, bs, flat, p)

    @torch.no_grad()
    def backward(self, fw: MLPForward) -> list[torch.Tensor]:
        """The gradients of the forward pass ``fw`` (the model's weights unchanged since)."""
        ws, p, n_layers = fw.ws, fw.p, len(fw.ws)
        # d(sum over replicas of mean CE)/dlogits = (softmax - onehot) / B, replica by replica.
        yb = fw.yb
        dz = softmax(fw.logits)
        dz.scatter_add_(
            -1, yb.unsqueeze(-1), torch.full(yb.shape, -1.0, device=yb.device).unsqueeze(-1)
        )
        dz.mul_(1.0 / yb.shape[-1])

        gw = [self._buf(f"gw{i}", *w.shape) for i, w in enumerate(ws)]
        gb = [self._buf(f"gb{i}", *b.shape) for i, b in enumerate(fw.bs)]
        for i in reversed(range(n_layers)):
            a = fw.inputs[i]
            torch.matmul(a.transpose(-1, -2), dz, out=gw[i])
            torch.sum(dz, -2, keepdim=True, out=gb[i])
            if i == 0:
                break
            da = self._buf(f"da{i}", *a.shape)
            torch.matmul(dz, ws[i].transpose(-1, -2), out=da)
            if p > 0:
                da = da / (1 - p) * fw.keeps[i - 1]
            dz = torch.ops.aten.threshold_backward(da, fw.relu_out[i - 1], 0)
        grads = gw + gb
        tokens = fw.tokens
        if tokens is not None:  # no ReLU or dropout on the embedding
            da = torch.matmul(dz, ws[0].transpose(-1, -2)).view(*tokens.shape[:-1], -1)
            # The embedding is registered first: model.parameters() order starts with it.
            grads = [torch.matmul(tokens.transpose(-1, -2), da), *grads]
        if fw.flat:
            return [g.unsqueeze(0) for g in grads]
        return grads


class CNNStep:
    """Gradients of one training step of a :class:`StackedCNN`, in ``model.parameters()`` order.

    The model's grouped convolutions forward and their backward kernel
    (``aten.convolution_backward``) called directly; pooling, ReLUs, dropout, head and loss by
    hand (the algebra in the module docstring). Reads the parameters at every call, as
    :class:`MLPStep`.
    """

    def __init__(self, model: StackedCNN) -> None:
        self.model = model

    @torch.no_grad()
    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        idx: torch.Tensor,
        dropout_gen: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Gradients for the batch ``x[idx], y[idx]`` (``idx`` is ``[R, B]``: a row per replica)."""
        m = self.model
        r, b_size = idx.shape
        c1, c2 = m.channels
        p = m.dropout if m.training else 0.0
        flat = idx.reshape(-1)
        xb = m.images(torch.index_select(x, 0, flat).view(r, b_size, -1))
        yb = torch.index_select(y, 0, flat).view(r, b_size)
        w1 = m.conv1_w.detach().reshape(r * c1, 1, 3, 3)
        w2 = m.conv2_w.detach().reshape(r * c2, c1, 3, 3)
        hw, hb = m.head_w.detach(), m.head_b.detach()

        # Forward as StackedCNN.forward: [B, R c, h, w] channels-last, replicas the groups.
        a1 = F.conv2d(xb, w1, m.conv1_b.detach().reshape(-1), padding=1, groups=r).relu_()
        z2 = F.conv2d(a1, w2, m.conv2_b.detach().reshape(-1), padding=1, groups=r)
        # Pool before the ReLU (they commute, and the winner is the same: see the docstring).
        act, picks = F.max_pool2d(z2, 2, return_indices=True)
        act.relu_()
        # [R, B, features] in the model's order (c2, y, x), contiguous for the head's GEMMs.
        by_replica = act.view(b_size, r, c2, *act.shape[-2:]).transpose(0, 1)
        feat = by_replica.reshape(r, b_size, -1)
        keep = None
        if p > 0:
            keep = torch.rand(feat.shape, generator=dropout_gen, device=feat.device) >= p
            feat = feat * keep / (1 - p)
        logits = torch.baddbmm(hb, feat, hw)

        dz = softmax(logits)
        dz.scatter_add_(
            -1, yb.unsqueeze(-1), torch.full(yb.shape, -1.0, device=yb.device).unsqueeze(-1)
        )
        dz.mul_(1.0 / b_size)
        g_hw = torch.bmm(feat.transpose(1, 2), dz)
        g_hb = dz.sum(1, keepdim=True)
        dfeat = torch.bmm(dz, hw.transpose(1, 2))
        if keep is not None:
            dfeat = dfeat / (1 - p) * keep
        dact = torch.empty_like(act)  # channels-last as act
        dact.view(by_replica.transpose(0, 1).shape).transpose(0, 1).copy_(
            dfeat.view(by_replica.shape)
        )
        dpool = torch.ops.aten.threshold_backward(dact, act, 0)
        dz2 = torch.ops.aten.max_pool2d_with_indices_backward(
            dpool, z2, [2, 2], [2, 2], [0, 0], [1, 1], False, picks
        )
        da1, g_w2, g_b2 = torch.ops.aten.convolution_backward(
            dz2, a1, w2, [r * c2], [1, 1], [1, 1], [1, 1], False, [0, 0], r, [True, True, True]
        )
        dz1 = torch.ops.aten.threshold_backward(da1, a1, 0)
        _, g_w1, g_b1 = torch.ops.aten.convolution_backward(
            dz1, xb, w1, [r * c1], [1, 1], [1, 1], [1, 1], False, [0, 0], r, [False, True, True]
        )
        return [
            g_w1.reshape(m.conv1_w.shape),
            g_b1.view(r, c1),
            g_w2.reshape(m.conv2_w.shape).contiguous(),
            g_b2.view(r, c2),
            g_hw,
            g_hb,
        ]


def softmax(z: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, in place on one fresh tensor.

    Written out because ``torch.softmax``'s kernel is slow over a last dim of only ~10 classes
    (measured: ``benchmarks/README.md``).
    """
    e = (z - z.amax(-1, keepdim=True)).exp_()
    return e.div_(e.sum(-1, keepdim=True))


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy ``[..., C], [...] -> [...]``, accurate down to tiny losses.

    ``logits`` may be any per-example shift of the logits (log-probabilities too): only the
    margins ``d_j = z_j - z_y`` (``j != y``) enter. The loss is ``log1p(sum_j exp(d_j))``, computed
    as ``m + log1p(expm1(-m) + sum_j exp(d_j - m))`` with ``m = max(0, max_j d_j)``: at ``m = 0``
    (a correct prediction) that is ``log1p(sum_j exp(d_j))`` itself, so a loss of ``1e-20`` keeps
    its digits, where ``logsumexp(z) - z_y`` cancels to exactly 0.0 in float32 once the margin
    passes ~17; for ``m > 0`` no exponent is positive, so nothing overflows (a margin of -100
    gives 100). Equal to ``F.cross_entropy`` up to float rounding elsewhere; written out rather
    than calling it for the same reason as :func:`softmax` (``benchmarks/README.md``).
    """
    # m = max(0, max_j d_j) = max(z) - z_y, and exp(d_j - m) = exp(z_j - max(z)).
    yi = y.unsqueeze(-1)
    top = logits.amax(-1, keepdim=True)
    m = top - logits.gather(-1, yi)
    s = (logits - top).exp_().scatter_(-1, yi, 0.0).sum(-1, keepdim=True)  # j != y only
    return s.add_(m.neg().expm1_()).log1p_().add_(m).squeeze(-1)


def fast_step(model: torch.nn.Module) -> Step | None:
    """The hand-written step for ``model``, or None where the plain autograd step is used."""
    if type(model) is StackedMLP:
        return MLPStep(model)
    if type(model) is StackedCNN:
        return CNNStep(model)
    return None
