"""Checkpoints: one file per train job, the stacked state dict plus the settings that made it.

Loaded with ``torch.load(weights_only=True)``: a checkpoint is data, never code, so a shared or
tampered file cannot execute anything. Settings travel as a JSON string for the same reason.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np

from memlab import __version__
from memlab.io import MemlabInputError, atomic_path, remake_hint

if TYPE_CHECKING:  # imported where a checkpoint is written or read: summarize needs no torch
    import torch

FORMAT = "memlab-checkpoint/1"


def software_versions() -> dict[str, str]:
    """Versions that shape the numbers (read from metadata: importing sklearn costs 1 s, torch
    1.5 s; the installed wheel's metadata version is the string ``torch.__version__`` gives)."""
    return {
        "memlab": __version__,
        "torch": metadata.version("torch"),
        "numpy": np.__version__,
        "scikit-learn": metadata.version("scikit-learn"),
        "python": platform.python_version(),
    }


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    state: Mapping[str, torch.Tensor],
    settings: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
) -> None:
    """Write a checkpoint atomically: ``state`` tensors, JSON ``settings``, extra ``arrays``."""
    import torch

    payload = {
        "format": FORMAT,
        "state": {k: v.detach().contiguous() for k, v in state.items()},
        "arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
        "settings": json.dumps({**settings, "software": software_versions()}, sort_keys=True),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # A file object, not a path: torch names the archive's root folder after a path's stem,
        # which for our temp file is random, and the bytes would differ from run to run.
        torch.save(payload, fh)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint safely; a truncated or foreign file gives a clear MemlabInputError."""
    try:
        payload = _payload(path)
    except FileNotFoundError:
        raise MemlabInputError(f"checkpoint {path} not found. {remake_hint(path)}") from None
    except DamagedFile as e:
        raise MemlabInputError(f"checkpoint {path} {e}. {remake_hint(path)}") from None
    return {
        "state": payload["state"],
        "arrays": {k: v.numpy() for k, v in payload["arrays"].items()},
        "settings": json.loads(payload["settings"]),
    }


class DamagedFile(Exception):
    """A file that is there but is not what it should be; the message says how, in a phrase."""


def _payload(path: str | os.PathLike[str]) -> dict[str, Any]:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated zip, pickled code refused by weights_only, not torch at all
        first = str(e).splitlines()[0].split(". ")[0][:200] if str(e) else ""
        raise DamagedFile(
            f"is unreadable or not a plain-data memlab checkpoint ({type(e).__name__}: {first})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DamagedFile(f"is not a {FORMAT} file")
    return payload


def check_checkpoint(path: str | os.PathLike[str]) -> None:
    """Raise :class:`DamagedFile` unless ``path`` loads as a memlab checkpoint."""
    _payload(path)
