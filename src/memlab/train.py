"""Training engine: all replicas of one configuration trained at once as one stacked model.

Why it looks like this (measured on a 2-core CPU, see DESIGN.md section 5):
- data stays in in-memory tensors and minibatches are gathered through an index matrix: a
  DataLoader costs 1.2-1.4x for nothing here;
- replica r draws its batches from its own subset with its own generator, and the loss is the sum
  of per-replica mean losses, so each replica's gradient is exactly what it would be alone;
- one fused AdamW steps every stacked tensor; Adam is elementwise, so this is R independent
  optimizers in one kernel;
- replicas that finish (fit their subset, or early-stop) are cut out of the stack, with their
  optimizer state, so stragglers do not pay for finished replicas and finished ones stay frozen;
- every ``Resume.every`` epochs the whole loop state (weights, optimizer moments, random streams,
  history) is saved atomically, so a killed job continues where it was and ends with the same
  bytes as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from memlab.fastpath import cross_entropy, fast_step
from memlab.io import MemlabInputError, atomic_path
from memlab.models import StackedModel
from memlab.optim import StackedAdamW

HISTORY_COLUMNS = (
    "epoch",
    "step",
    "replica",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "heldout_loss",
    "heldout_accuracy",
    "train_clean_accuracy",
    "train_flipped_accuracy",
)
STOP_REASONS = ("fit", "early_stopping", "max_epochs")


def configure_threads(n: int = 1) -> None:
    """One thread per job: two OpenMP threads on a busy 2-core box were 16-57x slower."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    # Denormals appear once losses approach zero and slow CPUs down by orders of magnitude.
    torch.set_flush_denormal(True)


@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes a training run (a regime bundle merged over the training defaults)."""

    batch_size: int = 64
    lr: float = 1e-3
    max_epochs: int = 200
    weight_decay: float = 0.0
    dropout: float = 0.0
    early_stopping: bool = False
    patience: int = 20
    val_fraction: float = 0.2
    stop_at_fit: bool = True
    log_every: int = 10

    @classmethod
    def from_config(cls, training: Mapping[str, Any], regime: Mapping[str, Any]) -> TrainSettings:
        names = set(cls.__dataclass_fields__)
        merged = {k: v for k, v in {**training, **regime}.items() if k in names}
        return cls(**merged)


def replica_seed(seed: int, replica: int, stream: int) -> int:
    """Seed of one random stream (0: init, 1: batch order, 2: validation carve) of one replica.

    Seeds depend on the study seed and the replica only, so replica r starts from the same weights
    in every regime: regime comparisons are paired.
    """
    return int(np.random.SeedSequence([seed, replica, stream]).generate_state(1)[0])


def init_seeds(seed: int, replicas: Sequence[int]) -> list[int]:
    return [replica_seed(seed, r, 0) for r in replicas]


def carve_validation(
    members: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split each replica's subset into trained-on and validation examples (same count per row)."""
    r = members.shape[0]
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
    for i in range(r):
        idx = np.flatnonzero(members[i])
        pick = np.random.default_rng(replica_seed(seed, i, 2)).choice(idx, n_val, replace=False)
        val[i, pick] = True
        train[i, pick] = False
    return train, val


@dataclass(frozen=True)
class Resume:
    """Where and how often ``train_stacked`` saves its resumable state (``every`` in epochs)."""

    path: str | os.PathLike[str]
    every: int = 10

    def for_chunk(self, start: int) -> Resume:
        """The state file of the chunk of replicas that starts at replica ``start``."""
        path = Path(self.path)
        return Resume(path.with_name(f"{path.stem}-{start}{path.suffix}"), self.every)

    def files(self) -> list[Path]:
        """Every state file of this run (all chunks): removed once the run's outputs exist."""
        path = Path(self.path)
        return sorted(path.parent.glob(f"{path.stem}*{path.suffix}"))


RESUME_FORMAT = "memlab-train-state/1"


def _fingerprint(*parts: Any) -> str:
    """Hash of everything a saved state depends on: a state from other inputs is never resumed."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().numpy()
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def _save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": RESUME_FORMAT, **state}, fh)


def _load_state(
    path: str | os.PathLike[str], fingerprint: str, log: Callable[[str], None]
) -> dict[str, Any] | None:
    """The saved state if it exists, is readable plain data and belongs to this very run."""
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign or pickled code: start over, never execute it
        log(f"ignoring unreadable resume state {path} ({type(e).__name__}); starting over")
        return None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        log(f"ignoring {path}: not a {RESUME_FORMAT} file; starting over")
        return None
    if state.get("fingerprint") != fingerprint:
        log(f"ignoring resume state {path}: it was saved for other inputs or settings")
        return None
    return state


@dataclass
class TrainResult:
    model: StackedModel
    history: pd.DataFrame
    fit_epoch: np.ndarray  # [R] first epoch with 100% train accuracy, -1 if never
    stop_epoch: np.ndarray  # [R]
    stop_reason: list[str]
    seconds: float = 0.0


def _rows(mask: np.ndarray) -> torch.Tensor:
    """Index matrix [R, m] of the True columns of each row (rows must have equal counts)."""
    counts = mask.sum(axis=1)
    if len(set(counts.tolist())) != 1:
        raise ValueError(f"subsets must have equal sizes, got {sorted(set(counts.tolist()))}")
    return torch.from_numpy(np.stack([np.flatnonzero(m) for m in mask]).astype(np.int64))


@torch.no_grad()
def _per_example(
    model: StackedModel, x: torch.Tensor, y: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and correctness per (replica, example); x is [R, n, d] (own examples) or [n, d]."""
    losses, correct = [], []
    for s in range(0, x.shape[-2], chunk):
        xs, ys = x[..., s : s + chunk, :], y[..., s : s + chunk]
        logits = model(xs)
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


def _set_parameter(model: StackedModel, name: str, value: torch.Tensor) -> torch.nn.Parameter:
    """Replace the parameter called ``name`` (e.g. ``weights.0``) by a new one holding ``value``."""
    owner: Any = model
    *path, leaf = name.split(".")
    for part in path:
        owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
    q = torch.nn.Parameter(value)
    if leaf.isdigit():
        owner[int(leaf)] = q
    else:
        setattr(owner, leaf, q)
    return q


def _keep_replicas(model: StackedModel, opt: StackedAdamW, keep: torch.Tensor) -> None:
    """Cut finished replicas out of the model and its optimizer state (they stay frozen)."""
    params = [
        _set_parameter(model, name, p.detach()[keep].clone())
        for name, p in list(model.named_parameters())
    ]
    model.n_replicas = int(keep.sum())
    opt.keep(params, keep)


def train_stacked(
    model: StackedModel,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    train_mask: np.ndarray,
    val_mask: np.ndarray | None,
    x_test: np.ndarray,
    y_test: np.ndarray,
    settings: TrainSettings,
    *,
    seed: int,
    replicas: Sequence[int] | None = None,
    flipped: np.ndarray | None = None,
    resume: Resume | None = None,
    log: Callable[[str], None] = print,
    use_fast_path: bool = True,
) -> TrainResult:
    """Train every replica of ``model`` on its own rows of ``train_mask`` (see module doc).

    ``replicas`` are the replica numbers of the stack's rows (default ``0..R-1``): they select
    each row's batch-order stream, so a stack and the same replicas trained alone agree; the
    history's ``replica`` column holds these numbers.
    ``flipped`` (pool mask of noisy labels) adds per-epoch accuracy on clean and flipped labels.
    ``resume`` saves the loop state every few epochs (and once all replicas are done) and continues
    from a saved state of this very run; the caller removes the file once its outputs are written.
    ``use_fast_path=False`` forces the plain autograd step (the reference the fast path is tested
    against); otherwise :func:`memlab.fastpath.fast_step` picks the step from the model.
    """
    t0 = time.perf_counter()
    r_total = train_mask.shape[0]
    replicas = list(range(r_total)) if replicas is None else list(replicas)
    x = torch.from_numpy(np.ascontiguousarray(x_pool, dtype=np.float32))
    y = torch.from_numpy(np.asarray(y_pool, dtype=np.int64))
    xt = torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y_test, dtype=np.int64))
    use_val = settings.early_stopping and val_mask is not None and bool(val_mask.any())
    # Everything indexed by stack row; sliced together when replicas finish.
    rows: dict[str, torch.Tensor] = {
        "replica": torch.arange(r_total),
        "train_idx": _rows(train_mask),
        "best_val": torch.full((r_total,), math.inf),
        "since_best": torch.zeros(r_total, dtype=torch.long),
    }
    if use_val:
        rows["val_idx"] = _rows(val_mask)
    n_train = rows["train_idx"].shape[1]
    steps_per_epoch = math.ceil(n_train / settings.batch_size)
    flip = None if flipped is None or not flipped.any() else torch.from_numpy(flipped)
    order_gens = [torch.Generator().manual_seed(replica_seed(seed, r, 1)) for r in replicas]
    # One dropout stream for the stack: masks are elementwise, so replicas still share nothing.
    dropout_gen = torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, 0xD0]).generate_state(1)[0])
    )
    opt = StackedAdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    fast = fast_step(model) if use_fast_path else None

    names = [k for k, _ in model.named_parameters()]
    final: dict[str, list[torch.Tensor]] = {k: [torch.empty(0)] * r_total for k in names}
    best = [p.detach().clone() for p in model.parameters()] if use_val else []
    fit_epoch = np.full(r_total, -1)
    stop_epoch = np.full(r_total, settings.max_epochs)
    stop_reason = ["max_epochs"] * r_total
    history: list[tuple[Any, ...]] = []

    def finish(done: torch.Tensor, reason: str, epoch: int) -> None:
        """Store the final weights of finished rows (the best ones under early stopping)."""
        source = best if use_val else [p.detach() for p in model.parameters()]
        for row in torch.nonzero(done).flatten().tolist():
            r = int(rows["replica"][row])
            for k, t in zip(names, source, strict=True):
                final[k][r] = t[row].clone()
            stop_epoch[r], stop_reason[r] = epoch, reason

    first_epoch = 1
    if resume is not None:
        fingerprint = _fingerprint(
            RESUME_FORMAT,
            torch.__version__,
            type(model).__name__,
            settings,
            seed,
            replicas,
            x,
            y,
            xt,
            yt,
            train_mask,
            val_mask,
            flipped,
            *model.parameters(),
        )
        saved = _load_state(resume.path, fingerprint, log)
        if saved is not None:
            for name, value in saved["params"].items():
                _set_parameter(model, name, value)
            model.n_replicas = saved["n_replicas"]
            opt = StackedAdamW(
                model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
            )
            opt.exp_avg, opt.exp_avg_sq, opt.steps = saved["opt"]
            rows, best, final, history = (
                saved["rows"],
                saved["best"],
                saved["final"],
                saved["history"],
            )
            fit_epoch, stop_epoch = saved["fit_epoch"].numpy(), saved["stop_epoch"].numpy()
            stop_reason = saved["stop_reason"]
            for g, st in zip(order_gens, saved["order_gens"], strict=True):
                g.set_state(st)
            dropout_gen.set_state(saved["dropout_gen"])
            # A state saved once every replica finished has nothing left to train.
            first_epoch = settings.max_epochs + 1 if saved["finished"] else saved["epoch"] + 1
            log(f"resuming from {resume.path} after epoch {saved['epoch']}")

    def save_state(epoch: int, finished: bool = False) -> None:
        assert resume is not None
        _save_state(
            resume.path,
            {
                "fingerprint": fingerprint,
                "epoch": epoch,
                "finished": finished,
                "params": {k: p.detach() for k, p in model.named_parameters()},
                "n_replicas": model.n_replicas,
                "opt": (opt.exp_avg, opt.exp_avg_sq, opt.steps),
                "rows": rows,
                "best": best,
                "final": final,
                "history": history,
                "fit_epoch": torch.from_numpy(fit_epoch),
                "stop_epoch": torch.from_numpy(stop_epoch),
                "stop_reason": stop_reason,
                "order_gens": [g.get_state() for g in order_gens],
                "dropout_gen": dropout_gen.get_state(),
            },
        )

    def gathered() -> dict[str, torch.Tensor]:
        """Each row's own evaluation examples, gathered once (and sliced when rows leave)."""
        out = {"x_train": x[rows["train_idx"]], "y_train": y[rows["train_idx"]]}
        if flip is not None:
            out["flip_train"] = flip[rows["train_idx"]]
        if use_val:
            out["x_val"], out["y_val"] = x[rows["val_idx"]], y[rows["val_idx"]]
        return out

    own = gathered()
    for epoch in range(first_epoch, settings.max_epochs + 1):
        model.train()
        gens = [order_gens[r] for r in rows["replica"].tolist()]
        order = torch.stack([torch.randperm(n_train, generator=g) for g in gens])
        batches = rows["train_idx"].gather(1, order)
        for s in range(0, n_train, settings.batch_size):
            bi = batches[:, s : s + settings.batch_size]
            if fast is not None:  # hand-written forward/backward (memlab.fastpath)
                opt.step(fast(x, y, bi, dropout_gen))
                continue
            logits = model(x[bi], dropout_gen)
            c = logits.shape[-1]
            loss = F.cross_entropy(logits.reshape(-1, c), y[bi].reshape(-1), reduction="none")
            # Sum of per-replica means: each replica's gradient is its own mean-loss gradient.
            loss = loss.view(model.n_replicas, -1).mean(1).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()

        model.eval()
        tr_losses, tr_correct = _per_example(model, own["x_train"], own["y_train"])
        tr_loss, tr_acc = tr_losses.mean(1), tr_correct.float().mean(1)
        # How fast clean and flipped labels are fitted (Arpit et al. 2017: real patterns first).
        fl_acc = cl_acc = torch.full((model.n_replicas,), math.nan)
        if flip is not None:
            fl = own["flip_train"]
            fl_acc, cl_acc = _masked_accuracy(tr_correct, fl), _masked_accuracy(tr_correct, ~fl)
        te_loss, te_acc = _loss_acc(model, xt, yt)
        va_loss = va_acc = torch.full((model.n_replicas,), math.nan)
        if use_val:
            va_loss, va_acc = _loss_acc(model, own["x_val"], own["y_val"])
        values = torch.stack(
            [tr_loss, tr_acc, va_loss, va_acc, te_loss, te_acc, cl_acc, fl_acc], 1
        ).tolist()
        for row, r in enumerate(rows["replica"].tolist()):
            history.append((epoch, epoch * steps_per_epoch, replicas[r], *values[row]))

        fitted = tr_acc >= 1.0
        for row in torch.nonzero(fitted).flatten().tolist():
            r = int(rows["replica"][row])
            if fit_epoch[r] < 0:
                fit_epoch[r] = epoch
        done = torch.zeros(model.n_replicas, dtype=torch.bool)
        if use_val:
            improved = va_loss < rows["best_val"]
            rows["best_val"] = torch.where(improved, va_loss, rows["best_val"])
            rows["since_best"] = torch.where(improved, 0, rows["since_best"] + 1)
            for b, p in zip(best, model.parameters(), strict=True):
                b[improved] = p.detach()[improved]
            stopped = rows["since_best"] >= settings.patience
            finish(stopped, "early_stopping", epoch)
            done |= stopped
        if settings.stop_at_fit:
            finish(fitted & ~done, "fit", epoch)
            done |= fitted
        if epoch == settings.max_epochs:
            finish(~done, "max_epochs", epoch)
            done[:] = True

        if epoch == 1 or epoch % settings.log_every == 0 or done.any():
            log(
                f"epoch {epoch:4d}/{settings.max_epochs}  train loss {tr_loss.mean():.4f}  "
                f"train acc {tr_acc.mean():.4f}  held-out acc {te_acc.mean():.4f}  "
                f"active {model.n_replicas - int(done.sum())}/{r_total}  "
                f"fit {int((fit_epoch >= 0).sum())}/{r_total}  "
                f"{time.perf_counter() - t0:.1f}s"
            )
        if done.all():
            if resume is not None and resume.every:
                save_state(epoch, finished=True)  # a killed run's finished chunks stay done
            break
        if done.any():
            keep = ~done
            _keep_replicas(model, opt, keep)
            rows = {k: v[keep] for k, v in rows.items()}
            own = {k: v[keep] for k, v in own.items()}
            best = [b[keep] for b in best]
        if resume is not None and resume.every and epoch % resume.every == 0:
            save_state(epoch)

    # Reassemble the full stack from each replica's final weights.
    for name, _ in list(model.named_parameters()):
        _set_parameter(model, name, torch.stack([final[name][r] for r in range(r_total)]))
    model.n_replicas = r_total
    model.eval()
    hist = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
    return TrainResult(
        model, hist, fit_epoch, stop_epoch, stop_reason, seconds=time.perf_counter() - t0
    )
