"""Training engine: a block of replicas trained at once as one stacked model.

Why it looks like this (what each choice saved, and on which machine: ``benchmarks/README.md``):
- data stays in in-memory tensors and minibatches are gathered through an index matrix: a
  DataLoader only adds per-batch overhead for data that fits in memory;
- replica r draws its batches from its own subset with its own generator, and the loss is the sum
  of per-replica mean losses, so each replica's gradient is exactly what it would be alone;
- one fused AdamW steps every stacked tensor; Adam is elementwise, so this is R independent
  optimizers in one kernel;
- replicas that finish (fit their subset, or early-stop) are cut out of the stack, with their
  optimizer state, so stragglers do not pay for finished replicas and finished ones stay frozen;
- every ``Resume.every`` epochs the whole loop state (weights, optimizer moments, random streams,
  history) is saved atomically, so a killed job continues where it was and ends with the same
  bytes as an uninterrupted one;
- with full batch (one step per epoch), no dropout and the hand-written MLP step (CPU), the forward
  pass of epoch t+1's step sees the very weights and examples that epoch t's evaluation on each
  row's own examples sees, so it is done once (:meth:`Trainer.evaluate_ahead`): the evaluation
  runs it in the next epoch's batch order and keeps it for the step's backward. Only the output
  layer is evaluated again, in the rows' own order: for narrow outputs (10 classes) the BLAS
  gives a row bits that depend on where the row sits in the batch, and the history keeps the
  bits it had without the reuse (hidden layers narrower than ``MIN_SHARED_WIDTH``: no reuse).
  The forward is kept in memory only, so a resumed run recomputes it, to the same bytes.

The parts: :class:`LoopState` holds everything that evolves during training (and is what a resume
saves and restores, see :mod:`memlab.engine.resume`), :class:`Trainer` runs the epochs over it
(steps, evaluation, stopping, logging, saving), and :func:`train_stacked` wires them up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from memlab.columnar import Columns, from_rows, to_frame
from memlab.engine import dynamics, input_gradients
from memlab.engine.fastpath import MLPForward, MLPStep, cross_entropy, fast_step
from memlab.engine.models import StackedMLP, StackedModel
from memlab.engine.optim import StackedAdamW
from memlab.engine.resume import FORMAT, Resume, fingerprint, load_state, save_state
from memlab.io import MemlabInputError
from memlab.plan.study import STOP_REASONS as STOP_REASONS  # re-exported: the name the docs use
from memlab.seeds import derive_seed

if TYPE_CHECKING:  # pandas only for TrainResult.history: the train job imports none
    import pandas as pd

    from memlab.plan.study import Regime


# A progress line in the train log at least this often (besides every `log_every` epochs).
PROGRESS_SECONDS = 30.0


@dataclass
class EpochMetrics:
    """Per-row metrics of one epoch ``[rows]`` (NaN where not measured), in history order."""

    train_loss: torch.Tensor
    train_accuracy: torch.Tensor
    val_loss: torch.Tensor
    val_accuracy: torch.Tensor
    heldout_loss: torch.Tensor
    heldout_accuracy: torch.Tensor
    train_clean_accuracy: torch.Tensor
    train_flipped_accuracy: torch.Tensor

    def rows(self) -> list[list[float]]:
        """One list of values per stack row, in field order."""
        return torch.stack([getattr(self, f.name) for f in fields(self)], 1).tolist()


HISTORY_COLUMNS = ("epoch", "step", "replica", *(f.name for f in fields(EpochMetrics)))
# How far back the convergence check looks (memlab.plan.study.undertrained): a replica's mean
# train loss over its last LOSS_WINDOW epochs against that over the LOSS_WINDOW epochs before.
LOSS_WINDOW = 20


def loss_drop(
    history: Mapping[str, Any], replicas: Sequence[int], window: int = LOSS_WINDOW
) -> np.ndarray:
    """Per replica of ``replicas``: how fast its train loss still fell when it stopped, as the
    relative fall per epoch ``1 - (last / before) ** (1 / w)``, where ``last`` and ``before`` are
    its mean train loss over its last ``w`` epochs and over the ``w`` before, ``w = min(window,
    epochs // 2)`` (exact for an exponential decay; positive: still falling; about 0: a
    plateau). NaN for a replica with fewer than 2 epochs in ``history`` (nothing to compare).
    ``history``: its columns (:mod:`memlab.columnar`) or a DataFrame of them.
    """
    out = np.full(len(replicas), np.nan, np.float32)
    replica, epoch = np.asarray(history["replica"]), np.asarray(history["epoch"])
    train_loss = np.asarray(history["train_loss"], np.float64)
    for i, r in enumerate(replicas):
        rows = np.flatnonzero(replica == r)
        loss = train_loss[rows[np.argsort(epoch[rows], kind="stable")]]
        w = min(window, len(loss) // 2)
        if w < 1:
            continue
        before, last = loss[-2 * w : -w].mean(), loss[-w:].mean()
        out[i] = 1.0 - (last / before) ** (1.0 / w) if before > 0 else 0.0
    return out


def replica_seed(seed: int, replica: int, stream: int) -> int:
    """Seed of one random stream (0: init, 1: batch order, 2: validation carve) of one replica.

    Seeds depend on the study seed and the replica only, so replica r starts from the same weights
    in every regime: regime comparisons are paired.
    """
    return derive_seed(seed, replica, stream)


def init_seeds(seed: int, replicas: Sequence[int]) -> list[int]:
    return [replica_seed(seed, r, 0) for r in replicas]


def carve_validation(
    members: np.ndarray, fraction: float, seed: int, replicas: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split each replica's subset into trained-on and validation examples (same count per row).

    ``replicas`` are the replica numbers of the rows (default ``0..R-1``): each draw depends on
    its replica only, so a block of replicas carves what the same replicas carve in any block.
    """
    r = members.shape[0]
    replicas = range(r) if replicas is None else replicas
    size = int(members[0].sum())
    n_val = round(fraction * size)
    if n_val >= size or (fraction > 0 and n_val < 1):
        raise MemlabInputError(
            f"training.val_fraction={fraction} leaves {size - n_val} training and {n_val} "
            f"validation examples from subsets of {size}; early stopping needs both. Use a larger "
            "size or a val_fraction in (0, 1) that gives at least one of each."
        )
    train = members.copy()
    val = np.zeros_like(members)
    for i, replica in enumerate(replicas):
        idx = np.flatnonzero(members[i])
        rng = np.random.default_rng(replica_seed(seed, replica, 2))
        pick = rng.choice(idx, n_val, replace=False)
        val[i, pick] = True
        train[i, pick] = False
    return train, val


@dataclass
class TrainResult:
    model: StackedModel
    history_columns: Columns  # HISTORY_COLUMNS, one row per replica and epoch (memlab.columnar)
    fit_epoch: np.ndarray  # [R] first epoch with 100% train accuracy, -1 if never
    stop_epoch: np.ndarray  # [R]
    stop_reason: list[str]
    seconds: float = 0.0
    # Per (replica, pool example) forgetting and cartography statistics
    # (memlab.engine.dynamics.finish).
    dynamics: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def history(self) -> pd.DataFrame:
        """The history as a DataFrame (imports pandas: the train job writes the columns)."""
        return to_frame(self.history_columns)


def _rows(mask: np.ndarray) -> torch.Tensor:
    """Index matrix [R, m] of the True columns of each row (rows must have equal counts)."""
    counts = mask.sum(axis=1)
    if len(set(counts.tolist())) != 1:
        raise ValueError(f"subsets must have equal sizes, got {sorted(set(counts.tolist()))}")
    return torch.from_numpy(np.stack([np.flatnonzero(m) for m in mask]).astype(np.int64))


def _forward(
    model: StackedModel,
    x: torch.Tensor,
    dropout_gen: torch.Generator | None = None,
    own: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's logits; a memory network (memlab.engine.memory_net) given ``own``, the pool
    indices of the queries, reads its memory without their own slots (leave-one-out)."""
    if own is None:
        return model(x, dropout_gen)
    return model(x, dropout_gen, own=own)


@torch.no_grad()
def _per_example(
    model: StackedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk: int = 4096,
    own: torch.Tensor | None = None,
    head: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and correctness per (replica, example); x is [R, n, d] (own examples) or [n, d];
    ``own`` as in :func:`_forward`; ``head``: x holds a :class:`memlab.engine.models.StackedMLP`'s
    last hidden activations, so only its output layer runs."""
    losses, correct = [], []
    for s in range(0, x.shape[-2], chunk):
        xs, ys = x[..., s : s + chunk, :], y[..., s : s + chunk]
        if head:
            logits = model.head(xs)  # type: ignore[operator]
        else:
            logits = _forward(model, xs, own=None if own is None else own[:, s : s + chunk])
        ys = ys.expand(logits.shape[:2]) if ys.dim() == 1 else ys
        losses.append(cross_entropy(logits, ys))
        correct.append(logits.argmax(-1) == ys)
    return torch.cat(losses, 1), torch.cat(correct, 1)


def _loss_acc(
    model: StackedModel, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-replica mean loss and accuracy."""
    loss, correct = _per_example(model, x, y)
    return loss.mean(1), correct.float().mean(1)


def _masked_accuracy(correct: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (correct & mask).sum(1) / mask.sum(1).clamp(min=1)


@dataclass(frozen=True)
class TrainData:
    """The fixed inputs of one training call as tensors: pool, held-out set, noisy labels."""

    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    flipped: torch.Tensor | None  # pool mask of flipped labels; None when there are none

    @classmethod
    def from_arrays(
        cls,
        x_pool: np.ndarray,
        y_pool: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
        flipped: np.ndarray | None,
    ) -> TrainData:
        return cls(
            torch.from_numpy(np.ascontiguousarray(x_pool, dtype=np.float32)),
            torch.from_numpy(np.asarray(y_pool, dtype=np.int64)),
            torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)),
            torch.from_numpy(np.asarray(y_test, dtype=np.int64)),
            None if flipped is None or not flipped.any() else torch.from_numpy(flipped),
        )

    def to(self, device: torch.device) -> TrainData:
        """The same tensors on ``device`` (themselves where they are there already)."""
        flipped = None if self.flipped is None else self.flipped.to(device)
        return TrainData(
            self.x.to(device), self.y.to(device), self.x_test.to(device), self.y_test.to(device),
            flipped,
        )  # fmt: skip


def adamw(params: Sequence[torch.Tensor], settings: Regime) -> StackedAdamW:
    """The optimizer of a regime: its lr, weight decay, betas and eps (Loshchilov & Hutter)."""
    return StackedAdamW(
        params,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        betas=(settings.beta1, settings.beta2),
        eps=settings.eps,
    )


# Layers at least this wide give each row the same bits wherever it sits in the batch, so the
# evaluation may read them off the next step's forward pass. Narrower ones may not: BLAS kernels
# for narrow outputs work across rows (which widths moved: benchmarks/README.md).
MIN_SHARED_WIDTH = 16


def _shared_widths(model: StackedMLP) -> list[int]:
    """The output widths of the layers whose activations the evaluation takes from the step."""
    table = [] if model.embedding is None else [model.embedding.shape[-1]]
    return table + [w.shape[-1] for w in model.weights[:-1]]


# Metadata of the LoopState fields indexed by stack row: cut when replicas leave the stack.
_ROW = {"row": True}


@dataclass
class LoopState:
    """Everything that evolves while a stack trains, and nothing else: what a resume restores.

    Row fields are indexed by the stack's current rows and shrink when replicas finish; the
    others are indexed by replica position ``0..R-1`` (the R rows this call started with).
    """

    model: StackedModel  # the rows still training (before ``opt``: it follows the model's tensors)
    opt: StackedAdamW
    replica: torch.Tensor = field(metadata=_ROW)  # [rows] replica position of each stack row
    train_idx: torch.Tensor = field(metadata=_ROW)  # [rows, n_train] pool indices trained on
    val_idx: torch.Tensor | None = field(metadata=_ROW)  # [rows, n_val]; None: no early stopping
    best_val: torch.Tensor = field(metadata=_ROW)  # [rows] best validation loss so far
    since_best: torch.Tensor = field(metadata=_ROW)  # [rows] epochs since it improved
    best: list[torch.Tensor] = field(metadata=_ROW)  # best-validation weights, parameters() order
    final: dict[str, list[torch.Tensor]]  # parameter name -> final weights of each replica
    fit_epoch: np.ndarray  # [R] first epoch with 100% train accuracy, -1 if never
    stop_epoch: np.ndarray  # [R]
    stop_reason: list[str]  # [R]
    history: list[tuple[Any, ...]]  # rows of HISTORY_COLUMNS
    dynamics: dict[str, torch.Tensor]  # [R, n_pool] accumulators of memlab.engine.dynamics
    order_gens: list[torch.Generator]  # [R] batch-order stream of each replica
    dropout_gen: torch.Generator  # one stream for the stack (masks are elementwise)
    epoch: int = 0  # last finished epoch
    finished: bool = False  # every replica is done

    @classmethod
    def start(
        cls,
        model: StackedModel,
        train_mask: np.ndarray,
        val_mask: np.ndarray | None,
        settings: Regime,
        *,
        seed: int,
        replicas: Sequence[int],
        gradients: bool = False,
    ) -> LoopState:
        """The state before the first epoch (``val_mask`` None: no early stopping;
        ``gradients``: keep the gradient sums of :mod:`memlab.engine.dynamics` too)."""
        r = train_mask.shape[0]
        params = list(model.parameters())
        device = params[0].device
        # One dropout stream per stack, named by its first replica: masks are elementwise, so the
        # stack's replicas share nothing, and stacks (chunks, blocks) get streams of their own.
        dropout_seed = derive_seed(seed, 0xD0, replicas[0])
        return cls(
            model=model,
            opt=adamw(params, settings),
            replica=torch.arange(r, device=device),
            train_idx=_rows(train_mask).to(device),
            val_idx=None if val_mask is None else _rows(val_mask).to(device),
            best_val=torch.full((r,), math.inf, device=device),
            since_best=torch.zeros(r, dtype=torch.long, device=device),
            best=[] if val_mask is None else [p.detach().clone() for p in params],
            final={name: [torch.empty(0)] * r for name, _ in model.named_parameters()},
            fit_epoch=np.full(r, -1),
            stop_epoch=np.full(r, settings.max_epochs),
            stop_reason=["max_epochs"] * r,
            history=[],
            dynamics=dynamics.start(r, train_mask.shape[1], device, gradients=gradients),
            order_gens=[torch.Generator().manual_seed(replica_seed(seed, i, 1)) for i in replicas],
            # Dropout masks are drawn where they are used: a CUDA stream on a GPU.
            dropout_gen=torch.Generator(device).manual_seed(dropout_seed),
        )

    @property
    def use_val(self) -> bool:
        return self.val_idx is not None

    def state_dict(self) -> dict[str, Any]:
        """Every field as plain data (tensors, lists, dicts, numbers, strings), for ``torch.save``
        and ``torch.load(weights_only=True)``; the tensors are the live ones, not copies."""
        return {f.name: _pack(getattr(self, f.name)) for f in fields(self)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output (model and optimizer are updated in place)."""
        names = [f.name for f in fields(self)]
        if sorted(names) != sorted(state):
            raise ValueError(f"a loop state has the fields {names}, got {sorted(state)}")
        for name in names:
            setattr(self, name, _unpack(getattr(self, name), state[name]))
        self.opt.params = list(self.model.parameters())  # the loaded tensors

    def record_fit(self, fitted: torch.Tensor, epoch: int) -> None:
        """Note ``epoch`` as the fit epoch of rows that fit now for the first time."""
        for row in torch.nonzero(fitted).flatten().tolist():
            r = int(self.replica[row])
            if self.fit_epoch[r] < 0:
                self.fit_epoch[r] = epoch

    def track_best(self, val_loss: torch.Tensor) -> None:
        """Keep the weights of rows whose validation loss improved; count epochs since."""
        improved = val_loss < self.best_val
        self.best_val = torch.where(improved, val_loss, self.best_val)
        self.since_best = torch.where(improved, 0, self.since_best + 1)
        for b, p in zip(self.best, self.model.parameters(), strict=True):
            b[improved] = p.detach()[improved]

    def finish(self, done: torch.Tensor, reason: str, epoch: int) -> None:
        """Store the final weights of ``done`` rows (the best ones under early stopping)."""
        names = [name for name, _ in self.model.named_parameters()]
        source = self.best if self.use_val else [p.detach() for p in self.model.parameters()]
        for row in torch.nonzero(done).flatten().tolist():
            r = int(self.replica[row])
            for name, t in zip(names, source, strict=True):
                self.final[name][r] = t[row].clone()
            self.stop_epoch[r], self.stop_reason[r] = epoch, reason

    def drop_rows(self, keep: torch.Tensor) -> None:
        """Cut the rows not in ``keep`` out of the model, its optimizer and every row field."""
        self.opt.keep(self.model.select(keep), keep)
        for f in fields(self):
            if f.metadata.get("row"):
                setattr(self, f.name, _take_rows(getattr(self, f.name), keep))

    def final_weights(self) -> dict[str, torch.Tensor]:
        """The full stack of every replica's final weights (once all are finished)."""
        return {name: torch.stack(per_replica) for name, per_replica in self.final.items()}


def _take_rows(value: Any, keep: torch.Tensor) -> Any:
    if value is None:
        return None
    if isinstance(value, list):
        return [v[keep] for v in value]
    return value[keep]


def _pack(value: Any) -> Any:
    """A LoopState field as plain data."""
    if isinstance(value, StackedModel):
        return {name: p.detach() for name, p in value.named_parameters()}
    if isinstance(value, StackedAdamW):
        return value.state_dict()
    if isinstance(value, torch.Generator):
        return value.get_state()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, list) and value and isinstance(value[0], torch.Generator):
        return [g.get_state() for g in value]
    return value


def _unpack(current: Any, saved: Any) -> Any:
    """The field value ``current`` continued from its packed ``saved`` value."""
    if isinstance(current, StackedModel):
        current.assign(saved)
        return current
    if isinstance(current, StackedAdamW):
        current.load_state_dict(saved)
        return current
    if isinstance(current, torch.Generator):
        current.set_state(saved)
        return current
    if isinstance(current, np.ndarray):
        return saved.numpy()
    if isinstance(current, list) and current and isinstance(current[0], torch.Generator):
        return [_unpack(g, s) for g, s in zip(current, saved, strict=True)]
    return saved


@dataclass(frozen=True)
class RowData:
    """Each stack row's own evaluation examples, gathered whenever the rows change."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    flip_train: torch.Tensor | None
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None

    @classmethod
    def gather(cls, data: TrainData, state: LoopState) -> RowData:
        idx, val = state.train_idx, state.val_idx
        return cls(
            data.x[idx],
            data.y[idx],
            None if data.flipped is None else data.flipped[idx],
            None if val is None else data.x[val],
            None if val is None else data.y[val],
        )


def _autograd_step(
    model: StackedModel,
    opt: StackedAdamW,
    xb: torch.Tensor,
    yb: torch.Tensor,
    dropout_gen: torch.Generator,
    own: torch.Tensor | None = None,
) -> None:
    """The plain training step (the reference the fast path is tested against); ``own`` as in
    :func:`_forward`."""
    logits = _forward(model, xb, dropout_gen, own)
    c = logits.shape[-1]
    loss = F.cross_entropy(logits.reshape(-1, c), yb.reshape(-1), reduction="none")
    # Sum of per-replica means: each replica's gradient is its own mean-loss gradient.
    loss = loss.view(model.n_replicas, -1).mean(1).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


class Trainer:
    """Runs the epochs of one :class:`LoopState`: steps, evaluation, stopping, logging, saving.

    ``settings`` is read for ``batch_size, max_epochs, patience, stop_at_fit, log_every,
    eval_every`` (``lr``, ``weight_decay``, ``beta1``, ``beta2``, ``eps`` and ``early_stopping``
    shaped the state before). ``reuse_forward=False`` computes every full-batch step's forward
    itself (the reference :meth:`evaluate_ahead` is tested against).
    """

    def __init__(
        self,
        state: LoopState,
        data: TrainData,
        settings: Regime,
        *,
        replicas: Sequence[int],
        log: Callable[[str], None] = print,
        use_fast_path: bool = True,
        reuse_forward: bool = True,
        gradient_every: int = 0,
    ) -> None:
        self.t0 = self.logged_at = time.perf_counter()
        # The gradient sums (memlab.engine.input_gradients) every this many epochs; 0: none.
        self.gradient_every = gradient_every if "grad_evals" in state.dynamics else 0
        self.state, self.data, self.settings = state, data, settings
        self.replicas = list(replicas)
        self.log = log
        self.fast = fast_step(state.model) if use_fast_path else None
        # A memory network remembers each row's training examples (memlab.engine.memory_net).
        self.remembers = bool(getattr(state.model, "remembers", False))
        self.steps_per_epoch = math.ceil(state.train_idx.shape[1] / settings.batch_size)
        # One step per epoch on the evaluation's weights and forward (no dropout mask in it).
        self.reuse = (
            reuse_forward
            and isinstance(self.fast, MLPStep)
            and self.steps_per_epoch == 1
            and state.model.dropout == 0
            and all(w >= MIN_SHARED_WIDTH for w in _shared_widths(self.fast.model))
            # Where the rows' bits were checked (MIN_SHARED_WIDTH); a GPU's BLAS was not.
            and state.train_idx.device.type == "cpu"
        )
        # The next epoch's batch order and its forward pass, from evaluate_ahead; None: none.
        self.ahead: tuple[torch.Tensor, MLPForward] | None = None
        self.resume: Resume | None = None
        self.fingerprint = ""

    def resume_from(self, resume: Resume, fingerprint: str) -> None:
        """Save to ``resume`` from now on, and continue from its state if it is this run's."""
        self.resume, self.fingerprint = resume, fingerprint
        saved = load_state(resume.path, fingerprint, self.log)
        if saved is not None:
            self.state.load_state_dict(saved)
            self.log(f"resuming from {resume.path} after epoch {self.state.epoch}")

    def save(self) -> None:
        assert self.resume is not None
        save_state(self.resume.path, self.fingerprint, self.state.state_dict())

    def run(self) -> TrainResult:
        """Train until every replica is done; the full stack of final weights and the history."""
        st, max_epochs = self.state, self.settings.max_epochs
        # A state saved once every replica finished has nothing left to train.
        first = max_epochs + 1 if st.finished else st.epoch + 1
        own = RowData.gather(self.data, st)
        self.remember()
        for epoch in range(first, max_epochs + 1):
            self.train_epoch()
            due = self.heldout_due(epoch)
            metrics = self.evaluate(own, heldout=due)
            if self.gradient_every and epoch % self.gradient_every == 0:
                self.gradient_sums(own)
            done = self.stop(epoch, metrics)
            if done.any() and not due:
                # A replica's last epoch always has its held-out point (eval_every skips others).
                loss, acc = self.heldout()
                metrics.heldout_loss = torch.where(done, loss, math.nan)
                metrics.heldout_accuracy = torch.where(done, acc, math.nan)
            self.record(epoch, metrics)
            self.log_epoch(epoch, metrics, done)
            st.epoch = epoch
            if done.all():
                st.finished = True
                if self.resume is not None and self.resume.every:
                    self.save()  # a killed run's finished chunks stay done
                break
            if done.any():
                self.ahead = None  # computed for rows that leave the stack
                st.drop_rows(~done)
                own = RowData.gather(self.data, st)
                self.remember()
            if self.resume is not None and self.resume.due(epoch):
                self.save()
        return self.result()

    def remember(self) -> None:
        """A memory network's memory: each stack row's training examples, keys rebuilt from the
        current weights (at the start, after a resume, and when rows leave the stack)."""
        if self.remembers:
            st = self.state
            st.model.remember(self.data.x, self.data.y, st.train_idx)  # type: ignore[operator]

    def train_epoch(self) -> None:
        """One pass over each row's subset, in that replica's own batch order."""
        st, data, size = self.state, self.data, self.settings.batch_size
        st.model.train()
        n_train = st.train_idx.shape[1]
        order = self.batch_order([st.order_gens[r] for r in st.replica.tolist()])
        ahead, self.ahead = self.ahead, None
        if ahead is not None:  # the last evaluation ran this step's forward
            assert torch.equal(ahead[0], order), "the evaluation's peek drew another order"
            assert isinstance(self.fast, MLPStep)
            st.opt.step(self.fast.backward(ahead[1]))
            return
        batches = st.train_idx.gather(1, order.to(st.train_idx.device))
        for s in range(0, n_train, size):
            bi = batches[:, s : s + size]
            if self.fast is not None:  # hand-written forward/backward (memlab.engine.fastpath)
                st.opt.step(self.fast(data.x, data.y, bi, st.dropout_gen))
            else:
                own = bi if self.remembers else None
                _autograd_step(st.model, st.opt, data.x[bi], data.y[bi], st.dropout_gen, own)

    def batch_order(self, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """``[rows, n_train]``: each row's permutation of its examples, drawn from its stream."""
        n_train = self.state.train_idx.shape[1]
        return torch.stack([torch.randperm(n_train, generator=g) for g in gens])

    def evaluate_ahead(self, own: RowData) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and correctness per (row, own example), from the forward pass of the next epoch's
        full-batch step, which is kept in ``self.ahead`` for that step's backward.

        The next order is peeked from copies of the rows' streams: the streams, and so the saved
        loop state, stay as they are, and :meth:`train_epoch` draws the same order.
        """
        st, data = self.state, self.data
        assert isinstance(self.fast, MLPStep)
        peek = [
            torch.Generator().set_state(st.order_gens[r].get_state()) for r in st.replica.tolist()
        ]
        order = self.batch_order(peek)
        device = st.train_idx.device
        fw = self.fast.forward(data.x, data.y, st.train_idx.gather(1, order.to(device)))
        self.ahead = (order, fw)
        # Back to the rows' own order (the evaluation's), then the output layer in that order:
        # its rows' bits depend on their position (module docstring).
        feats = fw.features
        rows, n = order.shape
        # Row r's own example k sits at batch position argsort(order)[r, k]; index_select on the
        # flat rows (as MLPStep gathers its batch) copies faster than gather.
        where = order.argsort(1) + torch.arange(rows).unsqueeze(1) * n
        flat = feats.reshape(rows * n, -1).index_select(0, where.reshape(-1).to(device))
        return _per_example(st.model, flat.view(feats.shape), own.y_train, head=True)

    def gradient_sums(self, own: RowData) -> None:
        """Add each row's squared input- and weight-gradient norms on its own examples to the
        running sums (cumulative loss sensitivity, TracIn: memlab.engine.input_gradients)."""
        st = self.state
        assert isinstance(st.model, StackedMLP)
        st.model.eval()
        input_sq, weight_sq = input_gradients.mlp_gradient_norms(st.model, own.x_train, own.y_train)
        dynamics.update_gradients(
            st.dynamics, st.replica, st.train_idx, input_sq, weight_sq, self.settings.lr
        )

    def heldout_due(self, epoch: int) -> bool:
        """Whether ``epoch`` measures the held-out curve (every ``eval_every``-th epoch and the
        last; a replica that stops in between gets its point in :meth:`run`)."""
        s = self.settings
        return epoch % s.eval_every == 0 or epoch == s.max_epochs

    def heldout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row's loss and accuracy on the held-out set: one call for all rows."""
        return _loss_acc(self.state.model, self.data.x_test, self.data.y_test)

    def evaluate(self, own: RowData, heldout: bool = True) -> EpochMetrics:
        """Loss and accuracy of every row on its own subset, its validation part and (where
        ``heldout``) the test set; NaN where not measured."""
        model, st = self.state.model, self.state
        model.eval()
        own_idx = None
        if self.remembers:
            # The memory is rebuilt once per epoch, here, after the epoch's steps; training
            # examples are measured leave-one-out, as the loss trains them.
            model.refresh()  # type: ignore[operator]
            own_idx = st.train_idx
        if self.reuse:
            tr_losses, tr_correct = self.evaluate_ahead(own)
        else:
            tr_losses, tr_correct = _per_example(model, own.x_train, own.y_train, own=own_idx)
        # The loss is -log p(given label) (memlab.engine.fastpath.cross_entropy).
        dynamics.update(st.dynamics, st.replica, st.train_idx, tr_correct, tr_losses)
        nan = torch.full((model.n_replicas,), math.nan, device=st.replica.device)
        clean = flipped = nan
        if own.flip_train is not None:
            # How fast clean and flipped labels are fitted (Arpit et al. 2017: real patterns first).
            flipped = _masked_accuracy(tr_correct, own.flip_train)
            clean = _masked_accuracy(tr_correct, ~own.flip_train)
        te_loss, te_acc = self.heldout() if heldout else (nan, nan)
        va_loss = va_acc = nan
        if own.x_val is not None and own.y_val is not None:
            va_loss, va_acc = _loss_acc(model, own.x_val, own.y_val)
        return EpochMetrics(
            tr_losses.mean(1),
            tr_correct.float().mean(1),
            va_loss,
            va_acc,
            te_loss,
            te_acc,
            clean,
            flipped,
        )

    def record(self, epoch: int, metrics: EpochMetrics) -> None:
        """Append one history row per stack row (its true replica number, not its position)."""
        st = self.state
        values = metrics.rows()
        for row, r in enumerate(st.replica.tolist()):
            st.history.append((epoch, epoch * self.steps_per_epoch, self.replicas[r], *values[row]))

    def stop(self, epoch: int, metrics: EpochMetrics) -> torch.Tensor:
        """Finish the rows that are done after ``epoch``; the mask of those rows."""
        st, s = self.state, self.settings
        fitted = metrics.train_accuracy >= 1.0
        st.record_fit(fitted, epoch)
        done = torch.zeros(st.model.n_replicas, dtype=torch.bool, device=st.replica.device)
        if st.use_val:
            st.track_best(metrics.val_loss)
            assert s.patience is not None  # set wherever a regime stops early
            stopped = st.since_best >= s.patience
            st.finish(stopped, "early_stopping", epoch)
            done |= stopped
        if s.stop_at_fit:
            st.finish(fitted & ~done, "fit", epoch)
            done |= fitted
        if epoch == s.max_epochs:
            st.finish(~done, "max_epochs", epoch)
            done[:] = True
        return done

    def log_epoch(self, epoch: int, metrics: EpochMetrics, done: torch.Tensor) -> None:
        s, st = self.settings, self.state
        assert s.log_every is not None, "a regime that trains carries the config's log_every"
        now = time.perf_counter()
        # A slow job also logs every PROGRESS_SECONDS: someone following the log sees it move.
        quiet_too_long = now - self.logged_at >= PROGRESS_SECONDS
        if not (epoch == 1 or epoch % s.log_every == 0 or done.any() or quiet_too_long):
            return
        self.logged_at = now
        r_total = len(st.stop_reason)
        self.log(
            f"epoch {epoch:4d}/{s.max_epochs}  train loss {metrics.train_loss.mean():.4f}  "
            f"train acc {metrics.train_accuracy.mean():.4f}  "
            f"held-out acc {metrics.heldout_accuracy.mean():.4f}  "
            f"active {st.model.n_replicas - int(done.sum())}/{r_total}  "
            f"fit {int((st.fit_epoch >= 0).sum())}/{r_total}  "
            f"{time.perf_counter() - self.t0:.1f}s"
        )

    def result(self) -> TrainResult:
        """The model reassembled from every replica's final weights, and the history."""
        st = self.state
        st.model.assign(st.final_weights())
        st.model.eval()
        history = from_rows(st.history, HISTORY_COLUMNS)
        seconds = time.perf_counter() - self.t0
        return TrainResult(
            st.model,
            history,
            st.fit_epoch,
            st.stop_epoch,
            st.stop_reason,
            seconds=seconds,
            dynamics=dynamics.finish(st.dynamics),
        )


def train_stacked(
    model: StackedModel,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    train_mask: np.ndarray,
    val_mask: np.ndarray | None,
    x_test: np.ndarray,
    y_test: np.ndarray,
    settings: Regime,
    *,
    seed: int,
    replicas: Sequence[int] | None = None,
    flipped: np.ndarray | None = None,
    resume: Resume | None = None,
    log: Callable[[str], None] = print,
    use_fast_path: bool = True,
    reuse_forward: bool = True,
    device: torch.device | str = "cpu",
    gradient_every: int = 0,
) -> TrainResult:
    """Train every replica of ``model`` on its own rows of ``train_mask`` (see module doc).

    ``settings`` is the run's :class:`memlab.plan.study.Regime`.
    ``replicas`` are the replica numbers of the stack's rows (default ``0..R-1``): they select
    each row's batch-order stream, so a stack and the same replicas trained alone agree; the
    history's ``replica`` column holds these numbers.
    ``flipped`` (pool mask of noisy labels) adds per-epoch accuracy on clean and flipped labels.
    ``resume`` saves the loop state every few epochs (and once all replicas are done) and continues
    from a saved state of this very run; the caller removes the file once its outputs are written.
    ``use_fast_path=False`` forces the plain autograd step (the reference the fast path is tested
    against); otherwise :func:`memlab.engine.fastpath.fast_step` picks the step from the model.
    ``reuse_forward=False``: see :class:`Trainer` (the same results, computed without the reuse).
    ``device`` (:mod:`memlab.engine.device`) holds the data, the model and the whole loop state; the
    batch order is drawn on the CPU either way (the same order on every device).
    ``gradient_every`` > 0 (an MLP on plain inputs only; others ignore it) adds the cumulative
    loss sensitivity and TracIn self-influence every that many epochs (memlab.engine.dynamics).
    """
    data = TrainData.from_arrays(x_pool, y_pool, x_test, y_test, flipped)
    replicas = list(range(train_mask.shape[0])) if replicas is None else list(replicas)
    device = torch.device(device)
    # Before anything moves to the device: the fingerprint hashes CPU tensors. A state saved on
    # a GPU is continued only on one (the CPU fingerprint is main's, so its states stay valid).
    on = [str(device)] if device.type != "cpu" else []
    run_id = fingerprint(
        FORMAT, torch.__version__, type(model).__name__, model.extra_repr(), settings, seed,
        replicas,
        data.x, data.y, data.x_test, data.y_test, train_mask, val_mask, flipped,
        *model.parameters(), *on, *([gradient_every] if gradient_every else []),
    ) if resume is not None else ""  # fmt: skip
    model, data = model.to(device), data.to(device)
    use_val = settings.early_stopping and val_mask is not None and bool(val_mask.any())
    gradients = gradient_every > 0 and input_gradients.supports_gradient_sums(model)
    state = LoopState.start(
        model, train_mask, val_mask if use_val else None, settings, seed=seed, replicas=replicas,
        gradients=gradients,
    )  # fmt: skip
    trainer = Trainer(
        state, data, settings, replicas=replicas, log=log, use_fast_path=use_fast_path,
        reuse_forward=reuse_forward, gradient_every=gradient_every,
    )  # fmt: skip
    if resume is not None:
        trainer.resume_from(resume, run_id)
    return trainer.run()
