"""Atomic file output and safe loading.

Every file memlab writes goes through :func:`atomic_path`: the content is written to a temporary
file in the same directory and renamed over the target only once complete, so an interrupted run
never leaves a half-written file that a later step (or Snakemake) would take for a result. The
file gets the permissions the user's umask gives any new file (a temporary file alone is 0600).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def remake_hint(path: str | os.PathLike[str]) -> str:
    """What to do about a damaged or missing output of the study, as a command that works from
    the project directory: the run finds such files itself (:mod:`memlab.ops.repair`)."""
    return (
        f"Run the study again (./run.sh study, with your usual --configfile): it moves a damaged "
        f"{Path(path).name} aside and remakes it and everything computed from it. To remake it "
        f"anyway: ./run.sh study --forcerun {path}"
    )


class MemlabInputError(ValueError):
    """Bad user input (config, data file, checkpoint): the message names the culprit and the fix."""


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc``); else set and restored at once."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # No /proc (macOS) or no Umask line (Linux < 4.7): a short window where another thread
    # creating a file would get umask 077, the safe side.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix last: numpy, pandas and matplotlib pick formats from it.
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file 0600; the result gets what open() would give a new file.
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_npz(path: str | os.PathLike[str], **arrays: Any) -> None:
    """Write arrays to a compressed ``.npz`` atomically."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


# What reading a damaged .npz raises: a truncated or foreign file, a failed CRC, pickled objects.
NPZ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` (no pickles) into a dict."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise MemlabInputError(f"{path}: file not found.") from None
    except NPZ_ERRORS as e:
        # A study's own output is remade; a user's data file is theirs to check.
        fix = remake_hint(path) if "results" in Path(path).parts else "Is it the file you meant?"
        what = f"{path}: not a readable .npz of plain arrays ({e})."
        raise MemlabInputError(f"{what} {fix}") from None


def save_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
