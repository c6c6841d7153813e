"""Word-level language models: R independent GRU replicas trained at once as one stack.

The caller's data contract: ``tokens`` int64 ``[n, T]``, row i one document as ``BOS`` (id 2),
its word ids (:class:`memlab.data.text.Tokenizer`), then ``PAD`` (0) up to length T. The model
reads ``tokens[:, :-1]`` and predicts ``tokens[:, 1:]``; targets equal to ``PAD`` count nowhere
(loss, accuracy).

Why it looks like this (the same reasoning as :mod:`memlab.engine.train`, whose loop state,
optimizer and resume files it reuses):
- every parameter has a leading replica dimension and every op is a batched matmul over it, so R
  small recurrent models pay one model's Python overhead per time step;
- the readout and softmax over the vocabulary, most of a step's work, run on the real (non-PAD)
  targets only, packed per replica: on short documents most positions are padding;
- no ``torch.compile``: it cut a training step by a quarter but took a minute to compile
  (``benchmarks/README.md``, "Sequence models");
- a replica's bits do not depend on the stack (:data:`ALIGN`), so it trains alone as in a stack;
- replica r draws its batches from its own generator (``replica_seed(seed, r, 1)``), and the
  loss is the sum over replicas of each replica's own mean token loss, so its gradient is what it
  would be alone; Adam is elementwise, so one fused step is R independent optimizers;
- a replica that stops (early stopping, converged, epoch cap) leaves the stack with its optimizer
  state (:meth:`memlab.engine.train.LoopState.drop_rows`): later epochs neither cost for it nor
  touch its weights;
- the whole loop state is saved every ``Resume.every`` epochs, so a killed job continues and ends
  with the bytes of an uninterrupted one.

For sequences "fit" means *converged*: per-token accuracy cannot reach 1 on stochastic text, so a
replica counts as fitted once its train loss falls by at most ``STILL_IMPROVING`` per epoch over
its last ``converge_window`` epochs (:func:`memlab.engine.train.loss_drop`'s formula).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from memlab.columnar import Columns, from_rows
from memlab.data.text import PAD
from memlab.engine.models import StackedModel, _dropout, _uniform
from memlab.engine.optim import StackedAdamW
from memlab.engine.resume import Resume, fingerprint, load_state, save_state
from memlab.engine.train import LoopState, loss_drop
from memlab.plan.study import STILL_IMPROVING, STOP_REASONS

if TYPE_CHECKING:
    from memlab.plan.study import Regime

# Hashed into every resume fingerprint: a train_stacked state is never taken for one of these.
SEQUENCE_FORMAT = "memlab-sequence-state/1"
HISTORY_COLUMNS = (
    "epoch",
    "replica",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "heldout_loss",
    "heldout_accuracy",
)
PROGRESS_SECONDS = 30.0  # a progress line at least this often
# A replica's bits must not depend on where its data sits in the stack, yet two things do:
# elementwise sigmoid and tanh round an element differently in a SIMD lane than in a tensor's
# scalar tail (1 ulp, measured), and MKL's GEMMs round differently on operands of other byte
# alignments (measured on the readout's backward). So every per-replica block of a batched
# operand holds a multiple of ALIGN floats (64 bytes: AVX-512's line), and each replica's gates
# a multiple of SIMD_ELEMENTS floats (2 x 16: AVX-512's unrolled vector step), by padding
# documents and readout rows whose outputs are dropped (none at batch 32, hidden 64). The
# weights' blocks are aligned when hidden % 16 == 0; otherwise a replica alone may differ from
# itself in a stack by float rounding.
ALIGN, SIMD_ELEMENTS = 16, 64
# Documents per evaluation call: the logits of many more outgrow the caches (64 vs 512: 1.2
# times as fast on the benchmark corpus).
EVAL_CHUNK = 64


class StackedGRU(StackedModel):
    """Embedding - one GRU layer - linear readout, R replicas; ``forward(tokens [R, B, T])``.

    The GRU follows ``torch.nn.GRU``'s equations and gate order (r, z, n), with weights stored
    transposed (``[R, in, 3H]``) for ``bmm``. Initialisation follows PyTorch's defaults
    (U(+-1/sqrt(H)) for the GRU and the readout, as ``nn.GRU`` and ``nn.Linear``) except the
    embedding: ``nn.Embedding``'s N(0, 1) saturates the gates of a small GRU, so it is
    U(+-1/sqrt(E)). Replica r draws from its own generator, in one fixed order, so a stack
    equals its replicas built one by one.
    """

    def __init__(
        self,
        n_replicas: int,
        vocab: int,
        embedding: int,
        hidden: int,
        dropout: float = 0.0,
        replica_seeds: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        seeds = list(range(n_replicas)) if replica_seeds is None else list(replica_seeds)
        if len(seeds) != n_replicas:
            raise ValueError(f"{n_replicas} replicas need as many seeds, got {len(seeds)}")
        self.n_replicas, self.vocab, self.dropout = n_replicas, vocab, dropout
        self.embed_dim, self.hidden = embedding, hidden
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        g, h = 1 / math.sqrt(hidden), 3 * hidden
        self.embedding = nn.Parameter(_uniform((vocab, embedding), 1 / math.sqrt(embedding), gens))
        self.w_ih = nn.Parameter(_uniform((embedding, h), g, gens))
        self.w_hh = nn.Parameter(_uniform((hidden, h), g, gens))
        self.b_ih = nn.Parameter(_uniform((1, h), g, gens))
        self.b_hh = nn.Parameter(_uniform((1, h), g, gens))
        self.w_out = nn.Parameter(_uniform((hidden, vocab), g, gens))
        self.b_out = nn.Parameter(_uniform((1, vocab), g, gens))

    def extra_repr(self) -> str:
        return (
            f"replicas={self.n_replicas}, vocab={self.vocab}, embedding={self.embed_dim}, "
            f"hidden={self.hidden}, dropout={self.dropout}"
        )

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens [R, ...]`` -> ``[R, ..., E]``, each replica reading its own table."""
        r, v = self.n_replicas, self.vocab
        offset = (torch.arange(r, device=tokens.device) * v).view(r, *([1] * (tokens.dim() - 1)))
        return F.embedding(tokens + offset, self.embedding.reshape(r * v, -1))

    def forward(
        self, tokens: torch.Tensor, dropout_gen: torch.Generator | None = None
    ) -> torch.Tensor:
        """Logits ``[R, B, T, V]`` of the next token after each position of ``tokens``."""
        r, b, t = tokens.shape
        logits = self.readout(self.states(tokens, dropout_gen).flatten(1, 2))
        return logits.view(r, t, -1, self.vocab)[:, :, :b].transpose(1, 2)

    def states(
        self, tokens: torch.Tensor, dropout_gen: torch.Generator | None = None
    ) -> torch.Tensor:
        """The GRU's outputs (after dropout) time-major, ``[R, T, B', H]``: each step then reads
        and writes contiguous slices. ``B' >= B``: all-PAD documents appended so that each
        replica's gates fill whole SIMD vectors (:data:`SIMD_ELEMENTS`)."""
        pad = self.padded(tokens.shape[1]) - tokens.shape[1]
        x = self.embed(F.pad(tokens, (0, 0, 0, pad)).transpose(1, 2))  # [R, T, B', E]
        x = _dropout(x, self.dropout, self.training, dropout_gen)
        return _dropout(self.recur(x), self.dropout, self.training, dropout_gen)

    def padded(self, documents: int) -> int:
        """``B'``: the fewest documents, at least ``documents``, whose gates fill whole vectors."""
        step = math.lcm(ALIGN, SIMD_ELEMENTS // math.gcd(SIMD_ELEMENTS, self.hidden))
        return documents + -documents % step

    def readout(self, states: torch.Tensor) -> torch.Tensor:
        """Logits ``[R, M, V]`` of GRU outputs ``[R, M, H]``."""
        return _affine(states, self.w_out, self.b_out)

    def recur(self, x: torch.Tensor) -> torch.Tensor:
        """The GRU over embedded inputs ``x [R, T, B, E]``; outputs ``[R, T, B, H]``.

        The input projection runs step by step: one matmul over all steps before the loop was
        measured 3-10% slower per training step (its backward stacks and copies every step's
        gradient; ``benchmarks/README.md``, "Sequence models"). ``unbind``, not ``x[:, t]``: one
        backward node stacks the steps' gradients, where T indexing nodes would each zero-fill
        one the size of ``x``; ``split`` and ``chunk`` likewise (their backward concatenates).
        """
        hs = self.hidden
        h = x.new_zeros(x.shape[0], x.shape[2], hs)
        outs = []
        for xt in x.unbind(1):
            gi_rz, gi_n = _affine(xt, self.w_ih, self.b_ih).split((2 * hs, hs), -1)
            gh_rz, gh_n = _affine(h, self.w_hh, self.b_hh).split((2 * hs, hs), -1)
            reset, update = torch.sigmoid(gi_rz + gh_rz).chunk(2, -1)
            n = torch.tanh(gi_n + reset * gh_n)
            h = n + update * (h - n)  # (1 - z) n + z h
            outs.append(h)
        return torch.stack(outs, 1)


def _affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x W + b`` per replica. ``bmm`` then an in-place add: ``baddbmm`` with a broadcast bias
    took 2.5 times as long on the readout (``benchmarks/README.md``, "Sequence models")."""
    return torch.bmm(x, w).add_(b)


@dataclass
class _Packed:
    """Per replica, its real (non-PAD) targets first, time-major, padded to the stack's most:
    ``loss``, ``correct`` and ``real`` ``[R, M]`` (``loss`` 0, ``correct`` and ``real`` False
    beyond a replica's count), and ``where`` ``[R, M]``, each entry's flat index into the
    time-major targets ``[T, B']``."""

    loss: torch.Tensor
    correct: torch.Tensor | None
    real: torch.Tensor
    where: torch.Tensor


def _packed(
    model: StackedGRU,
    tokens: torch.Tensor,
    dropout_gen: torch.Generator | None = None,
    correct: bool = False,
) -> _Packed:
    """Cross-entropy (and, with ``correct``, argmax hits) at the real targets of ``tokens
    [R, B, T]`` only: on short documents most positions are PAD, and the readout and softmax
    over the vocabulary are most of a step's work (``benchmarks/README.md``)."""
    r = tokens.shape[0]
    states = model.states(tokens[..., :-1], dropout_gen)  # [R, T-1, B', H]
    target = F.pad(tokens[..., 1:], (0, 0, 0, states.shape[2] - tokens.shape[1]))
    target = target.transpose(1, 2).reshape(r, -1)
    real = target != PAD
    m = int(real.sum(1).max())
    m = max(m + -m % ALIGN, ALIGN)  # whole aligned blocks (T * B' is a multiple of ALIGN)
    # A stable sort keeps each replica's real targets in time-major order, PAD ones after.
    where = torch.argsort((~real).to(torch.uint8), dim=1, stable=True)[:, :m]
    picked = states.flatten(1, 2).gather(1, where.unsqueeze(-1).expand(-1, -1, model.hidden))
    logits = model.readout(picked)
    tgt = target.gather(1, where)
    loss = F.cross_entropy(
        logits.flatten(0, 1), tgt.flatten(), reduction="none", ignore_index=PAD
    ).view(r, m)
    hit = (logits.argmax(-1) == tgt) & (tgt != PAD) if correct else None
    return _Packed(loss, hit, tgt != PAD, where)


def _mean_loss(packed: _Packed) -> torch.Tensor:
    """Per replica, its mean loss over its real targets. Summed in float64: the padding rows'
    zeros and the sum's order, which change with the stack's M, then leave the float32 mean as
    it is alone; the gradient of each term is 1 / count either way."""
    total = packed.loss.double().sum(1)
    return (total / packed.real.sum(1).clamp(min=1)).float()


@torch.no_grad()
def _loss_acc(
    model: StackedGRU, tokens: torch.Tensor, chunk: int = EVAL_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per replica: mean token loss and token accuracy over ``tokens [R, n, T]`` (eval mode)."""
    model.eval()
    loss = hits = count = torch.zeros(tokens.shape[0], dtype=torch.float64)
    for s in range(0, tokens.shape[1], chunk):
        p = _packed(model, tokens[:, s : s + chunk], correct=True)
        assert p.correct is not None
        loss = loss + p.loss.double().sum(1)
        hits = hits + p.correct.sum(1)
        count = count + p.real.sum(1)
    count = count.clamp(min=1)
    return (loss / count).float(), (hits / count).float()


@torch.no_grad()
def _outputs(
    model: StackedGRU, tokens: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and correctness per (replica, document, target) of ``tokens [R, n, T]``, eval mode,
    ``chunk`` documents a call; 0 and False at PAD targets."""
    model.eval()
    losses: list[torch.Tensor] = []
    hits: list[torch.Tensor] = []
    for s in range(0, tokens.shape[1], chunk):
        part = tokens[:, s : s + chunk]
        p = _packed(model, part, correct=True)
        assert p.correct is not None
        r, b, t = part.shape
        for packed, out in ((p.loss, losses), (p.correct, hits)):
            flat = packed.new_zeros(r, model.padded(b) * (t - 1)).scatter_(1, p.where, packed)
            out.append(flat.view(r, t - 1, -1)[:, :, :b].transpose(1, 2))
    return torch.cat(losses, 1), torch.cat(hits, 1)


@torch.no_grad()
def token_outputs(
    model: StackedGRU, tokens: np.ndarray | torch.Tensor, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Per (replica, document, target position): the cross-entropy in nats (float32
    ``[R, n, T-1]``, 0 at PAD targets) and whether the argmax is the target (bool, False at PAD).
    Every replica reads every document of ``tokens [n, T]``."""
    shared = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    loss, correct = _outputs(model, shared.expand(model.n_replicas, -1, -1), chunk)
    return loss.contiguous().numpy(), correct.contiguous().numpy()


class ReplicaAdamW(StackedAdamW):
    """:class:`StackedAdamW` whose fused kernel sees each replica's slice as its own tensor.

    The kernel's SIMD body and scalar tail round differently (1 ulp, measured on the readout
    bias), so over one stacked tensor a replica's update depends on where its elements sit;
    handing the kernel the replicas' slices (views: one call still) gives each replica the
    update it gets alone. Moments and step counts stay stacked (``keep``, ``state_dict``).
    """

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor] | None = None) -> None:
        torch._foreach_add_(self.steps, 1)
        if grads is None:
            grads = [p.grad for p in self.params if p.grad is not None]
            if len(grads) != len(self.params):
                raise RuntimeError("step() before backward(): a parameter has no gradient")
        rows = self.params[0].shape[0]

        def split(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
            return [t[r] for t in tensors for r in range(rows)]

        torch._fused_adamw_(
            split(self.params),
            split(grads),
            split(self.exp_avg),
            split(self.exp_avg_sq),
            [],
            [s for s in self.steps for _ in range(rows)],
            amsgrad=False,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            maximize=False,
        )


@dataclass
class SequenceTrainResult:
    model: StackedGRU  # every replica's final weights, replicas in order
    history: Columns  # HISTORY_COLUMNS, one row per (epoch, replica still training)
    stop_epoch: np.ndarray  # int64 [R]
    stop_reason: np.ndarray  # int64 [R], indices into STOP_REASONS
    fit_epoch: np.ndarray  # int64 [R]: first epoch its train loss counted as converged, or -1
    loss_drop: np.ndarray  # float32 [R], memlab.engine.train.loss_drop of the history
    seconds: float = 0.0


class _SequenceTrainer:
    """The epochs over a :class:`LoopState` (train.py's; its ``dynamics`` stay unused)."""

    def __init__(
        self,
        state: LoopState,
        tokens: torch.Tensor,
        heldout: torch.Tensor,
        settings: Regime,
        replicas: list[int],
        log: Callable[[str], None],
        converge_window: int,
    ) -> None:
        self.state, self.tokens, self.heldout = state, tokens, heldout
        self.settings, self.replicas, self.log = settings, replicas, log
        self.window = converge_window
        self.resume: Resume | None = None
        self.run_id = ""
        self.t0 = self.logged_at = time.perf_counter()

    @property
    def model(self) -> StackedGRU:
        """The rows still training (the loop state holds it as any stacked model)."""
        model = self.state.model
        assert isinstance(model, StackedGRU)
        return model

    def resume_from(self, resume: Resume, run_id: str) -> None:
        self.resume, self.run_id = resume, run_id
        saved = load_state(resume.path, run_id, self.log)
        if saved is not None:
            self.state.load_state_dict(saved)
            self.log(f"resuming from {resume.path} after epoch {self.state.epoch}")

    def save(self) -> None:
        if self.resume is not None and self.resume.every:
            save_state(self.resume.path, self.run_id, self.state.state_dict())

    def run(self) -> SequenceTrainResult:
        st, max_epochs = self.state, self.settings.max_epochs
        first = max_epochs + 1 if st.finished else st.epoch + 1
        for epoch in range(first, max_epochs + 1):
            self.train_epoch()
            due = self.heldout_due(epoch)
            metrics = self.evaluate(due)
            done = self.stop(epoch, metrics)
            if done.any() and not due:
                # A replica's last epoch always has its held-out point (eval_every skips others).
                loss, acc = self.heldout_metrics()
                metrics["heldout_loss"] = torch.where(done, loss, metrics["heldout_loss"])
                metrics["heldout_accuracy"] = torch.where(done, acc, metrics["heldout_accuracy"])
            self.record(epoch, metrics)
            self.log_epoch(epoch, metrics, done)
            st.epoch = epoch
            if done.all():
                st.finished = True
                self.save()
                break
            if done.any():
                st.drop_rows(~done)
            if self.resume is not None and self.resume.due(epoch):
                self.save()
        return self.result()

    def train_epoch(self) -> None:
        """One pass over each row's documents, in that replica's own batch order."""
        st, size = self.state, self.settings.batch_size
        st.model.train()
        n_train = st.train_idx.shape[1]
        gens = [st.order_gens[r] for r in st.replica.tolist()]
        order = torch.stack([torch.randperm(n_train, generator=g) for g in gens])
        batches = st.train_idx.gather(1, order)
        for s in range(0, n_train, size):
            docs = self.tokens[batches[:, s : s + size]]  # [R, B, T]
            st.opt.zero_grad()
            _mean_loss(_packed(self.model, docs, st.dropout_gen)).sum().backward()
            st.opt.step()

    def heldout_due(self, epoch: int) -> bool:
        """Whether ``epoch`` measures the held-out curve (every ``eval_every``-th and the last)."""
        return epoch % self.settings.eval_every == 0 or epoch == self.settings.max_epochs

    def heldout_metrics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row's mean loss and accuracy on the held-out documents."""
        return _loss_acc(self.model, self.heldout.expand(self.model.n_replicas, -1, -1))

    def evaluate(self, heldout: bool) -> dict[str, torch.Tensor]:
        """Per row, the history's metric columns (NaN: not measured this epoch)."""
        st = self.state
        nan = torch.full((st.model.n_replicas,), math.nan)
        tr_loss, tr_acc = _loss_acc(self.model, self.tokens[st.train_idx])
        va_loss = nan if st.val_idx is None else _loss_acc(self.model, self.tokens[st.val_idx])[0]
        ho_loss, ho_acc = self.heldout_metrics() if heldout else (nan, nan)
        values = (tr_loss, tr_acc, va_loss, ho_loss, ho_acc)
        return dict(zip(HISTORY_COLUMNS[2:], values, strict=True))

    def converged(self, train_loss: torch.Tensor) -> torch.Tensor:
        """Rows whose train loss (this epoch's included) fell by at most STILL_IMPROVING per
        epoch over their last ``window`` epochs, once they have ``2 * window`` epochs."""
        st, w = self.state, self.window
        out = torch.zeros(len(train_loss), dtype=torch.bool)
        for row, r in enumerate(st.replica.tolist()):
            rep = self.replicas[r]
            past = [h[2] for h in st.history if h[1] == rep] + [float(train_loss[row])]
            if len(past) < 2 * w:
                continue
            before, last = np.mean(past[-2 * w : -w]), np.mean(past[-w:])
            drop = 1.0 - (last / before) ** (1.0 / w) if before > 0 else 0.0
            out[row] = bool(drop <= STILL_IMPROVING)
        return out

    def stop(self, epoch: int, metrics: dict[str, torch.Tensor]) -> torch.Tensor:
        """Finish the rows that are done after ``epoch``; the mask of those rows."""
        st, s = self.state, self.settings
        converged = self.converged(metrics["train_loss"])
        st.record_fit(converged, epoch)
        done = torch.zeros(st.model.n_replicas, dtype=torch.bool)
        if st.use_val:
            st.track_best(metrics["val_loss"])
            assert s.patience is not None, "a regime that stops early has a patience"
            stopped = st.since_best >= s.patience
            st.finish(stopped, "early_stopping", epoch)
            done |= stopped
        if s.stop_at_fit:
            st.finish(converged & ~done, "fit", epoch)
            done |= converged
        if epoch == s.max_epochs:
            st.finish(~done, "max_epochs", epoch)
            done[:] = True
        return done

    def record(self, epoch: int, metrics: dict[str, torch.Tensor]) -> None:
        values = torch.stack([metrics[c] for c in HISTORY_COLUMNS[2:]], 1).tolist()
        for row, r in enumerate(self.state.replica.tolist()):
            self.state.history.append((epoch, self.replicas[r], *values[row]))

    def log_epoch(self, epoch: int, metrics: dict[str, torch.Tensor], done: torch.Tensor) -> None:
        s, st = self.settings, self.state
        now = time.perf_counter()
        every = s.log_every or 1
        if not (epoch == 1 or epoch % every == 0 or done.any()) and (
            now - self.logged_at < PROGRESS_SECONDS
        ):
            return
        self.logged_at = now
        total = len(st.stop_reason)
        self.log(
            f"epoch {epoch:4d}/{s.max_epochs}  train loss {metrics['train_loss'].mean():.4f}  "
            f"train acc {metrics['train_accuracy'].mean():.4f}  "
            f"held-out loss {metrics['heldout_loss'].mean():.4f}  "
            f"active {st.model.n_replicas - int(done.sum())}/{total}  "
            f"converged {int((st.fit_epoch >= 0).sum())}/{total}  {now - self.t0:.1f}s"
        )

    def result(self) -> SequenceTrainResult:
        st = self.state
        st.model.assign(st.final_weights())
        st.model.eval()
        history = from_rows(st.history, HISTORY_COLUMNS)
        reasons = np.array([STOP_REASONS.index(x) for x in st.stop_reason], np.int64)
        return SequenceTrainResult(
            model=self.model,
            history=history,
            stop_epoch=np.asarray(st.stop_epoch, np.int64),
            stop_reason=reasons,
            fit_epoch=np.asarray(st.fit_epoch, np.int64),
            loss_drop=loss_drop(history, self.replicas),
            seconds=time.perf_counter() - self.t0,
        )


def train_sequences(
    model: StackedGRU,
    tokens: np.ndarray,
    train_mask: np.ndarray,
    val_mask: np.ndarray | None,
    heldout: np.ndarray,
    settings: Regime,
    *,
    seed: int,
    replicas: Sequence[int] | None = None,
    resume: Resume | None = None,
    log: Callable[[str], None] = print,
    converge_window: int = 10,
) -> SequenceTrainResult:
    """Train replica r of ``model`` on the documents ``train_mask[r]`` of ``tokens`` (module doc).

    ``replicas`` are the replica numbers of the stack's rows (default ``0..R-1``): they pick each
    row's batch-order stream, so a replica trains identically alone and in any stack (without
    dropout: one dropout stream serves the stack), and fill the history's ``replica`` column.
    ``val_mask`` (with ``settings.early_stopping``) stops a replica after ``patience`` epochs
    without a better validation loss, with its best weights. ``resume``: as ``train_stacked``.
    """
    replicas = list(range(train_mask.shape[0])) if replicas is None else list(replicas)
    if len(replicas) != model.n_replicas or train_mask.shape[0] != model.n_replicas:
        raise ValueError(f"a stack of {model.n_replicas} needs as many mask rows and replicas")
    toks = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
    held = torch.from_numpy(np.ascontiguousarray(heldout, dtype=np.int64))
    run_id = fingerprint(
        SEQUENCE_FORMAT, torch.__version__, type(model).__name__, model.extra_repr(), settings,
        seed, replicas, converge_window, toks, train_mask, val_mask, held, *model.parameters(),
    ) if resume is not None else ""  # fmt: skip
    use_val = settings.early_stopping and val_mask is not None and bool(val_mask.any())
    state = LoopState.start(
        model, train_mask, val_mask if use_val else None, settings, seed=seed, replicas=replicas
    )
    state.opt = ReplicaAdamW(
        state.opt.params, lr=settings.lr, weight_decay=settings.weight_decay,
        betas=(settings.beta1, settings.beta2), eps=settings.eps,
    )  # fmt: skip
    trainer = _SequenceTrainer(state, toks, held, settings, replicas, log, converge_window)
    if resume is not None:
        trainer.resume_from(resume, run_id)
    return trainer.run()
