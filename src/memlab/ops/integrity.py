"""Whether a file the study made is still what it was written as: each kind read back in full.

Every memlab output is written atomically (:func:`memlab.io.atomic_path`), so a damaged file was
damaged after the fact: a full disk, a copy cut short, a hand edit, bit rot. Snakemake only
compares times and records, so it takes such a file for a result; :mod:`memlab.ops.repair` asks
here before each run. A kind is checked by reading it the way its consumers do (and zip-based
kinds, ``.npz`` and torch's ``.pt``, by their CRCs), so what passes here loads downstream.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from memlab.checkpoint import DamagedFile, check_checkpoint
from memlab.io import NPZ_ERRORS


def _npz(path: Path) -> None:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            for name in arrays.files:
                arrays[name]  # reads the member whole, so zipfile checks its CRC
    except NPZ_ERRORS as e:
        raise DamagedFile(f"not a readable .npz of plain arrays ({e})") from None


def _parquet(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        pq.read_table(path)
    except Exception as e:  # pyarrow's errors share no narrower base
        # Its message names the file again (the caller does) before saying what is wrong.
        what = str(e).rsplit("': ", 1)[-1].split(". ")[0][:200]
        raise DamagedFile(f"not a readable parquet file ({what})") from None


def _json(path: Path) -> None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DamagedFile(f"not valid JSON ({e})") from None


def _zip(path: Path) -> None:
    # torch.save writes a zip archive: its CRCs catch a truncated or altered checkpoint without
    # importing torch (1.5 s); the format check then needs torch only for files that pass.
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        raise DamagedFile(f"not a readable zip archive ({e})") from None
    if bad is not None:
        raise DamagedFile(f"its member {bad} fails its CRC check")


def _checkpoint(path: Path) -> None:
    _zip(path)
    check_checkpoint(path)


# The kinds of file memlab can verify, by suffix; other outputs (figures, logs, the report) are
# not read back by any step and are remade whenever their inputs change.
CHECKS: dict[str, Callable[[Path], None]] = {
    ".npz": _npz,
    ".parquet": _parquet,
    ".json": _json,
    ".pt": _checkpoint,
}


def damage(path: str | Path) -> str | None:
    """Why the file at ``path`` is damaged, in a phrase; None if it reads back whole (or is of a
    kind memlab does not verify). The file must exist."""
    check = CHECKS.get(Path(path).suffix)
    if check is None:
        return None
    try:
        check(Path(path))
    except DamagedFile as e:
        return str(e)
    return None
