"""Resumable training state: where it is saved, its file format, and whose it is.

A training job saves its loop state (:meth:`memlab.engine.train.LoopState.state_dict`) every
``Resume.every`` epochs. The file holds plain data only and is loaded with
``torch.load(weights_only=True)``, so a shared or tampered file cannot execute anything. It is
resumed only if it carries this very :data:`FORMAT` and the :func:`fingerprint` of this very run
(inputs, settings, initial weights, torch version); anything else is ignored with a message and
training starts over, so a stale or foreign file can slow a job down but never change its result.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memlab.io import atomic_path

# Bumped whenever the saved structure changes: files of another version are ignored, not misread.
FORMAT = "memlab-train-state/4"


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

    def due(self, epoch: int) -> bool:
        """Whether the state is saved after ``epoch`` (``every=0`` never saves)."""
        return bool(self.every) and epoch % self.every == 0


def fingerprint(*parts: Any) -> str:
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


def save_state(path: str | os.PathLike[str], fingerprint: str, state: dict[str, Any]) -> None:
    """Write ``state`` (plain data) atomically, stamped with :data:`FORMAT` and ``fingerprint``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save({"format": FORMAT, "fingerprint": fingerprint, "state": state}, fh)


def load_state(
    path: str | os.PathLike[str], fingerprint: str, log: Callable[[str], None]
) -> dict[str, Any] | None:
    """The saved state if it exists, is readable plain data and belongs to this very run."""
    if not os.path.exists(path):
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign or pickled code: start over, never execute it
        log(f"ignoring unreadable resume state {path} ({type(e).__name__}); starting over")
        return None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        log(f"ignoring {path}: not a {FORMAT} file; starting over")
        return None
    if saved.get("fingerprint") != fingerprint:
        log(f"ignoring resume state {path}: it was saved for other inputs or settings")
        return None
    return saved["state"]
