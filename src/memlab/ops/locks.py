"""Stale Snakemake locks: a killed run must not make the next one ask for ``--unlock``."""

from __future__ import annotations

import fcntl
import sys
from pathlib import Path
from typing import IO

from memlab.ops.snakemake import remove_locks


def release_stale_locks(
    state_dir: str | Path = ".snakemake", results: str | Path = "results"
) -> IO[str] | None:
    """Remove the directory locks of a Snakemake that was killed (SIGKILL, power loss, OOM).

    Snakemake refuses to start while ``.snakemake/locks`` holds locks, and a killed run never
    removes its own. The main process of every memlab run holds an OS lock on
    ``.snakemake/memlab-owner`` for its whole life, and the kernel drops that lock when the
    process dies, however it dies. So directory locks found while nobody holds it are stale;
    with them go the temporary files the killed run's jobs left under ``results``.

    Returns the open owner file, which the caller keeps open for as long as it runs, or None
    when another live run owns the directory (its locks are real and are left alone).
    """
    state = Path(state_dir)
    state.mkdir(exist_ok=True)
    owner = open(state / "memlab-owner", "a")  # noqa: SIM115 (held open on purpose)
    try:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner.close()
        return None
    # Snakemake's own unlock (what `snakemake --unlock` does), through memlab's one adapter.
    if remove_locks(state):
        swept = sweep_temp_files(results)
        print(
            "memlab: removed the locks left by an earlier Snakemake run that was killed"
            + (f", and {swept} temporary files its jobs were writing" if swept else ""),
            file=sys.stderr,
        )
    return owner


def sweep_temp_files(results: str | Path) -> int:
    """Remove the temporary files of writers that were killed (see ``memlab.io.atomic_path``).

    Only safe while no run is live, which :func:`release_stale_locks` has just established.
    """
    swept = 0
    for tmp in Path(results).rglob(".*.tmp*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            swept += 1
    return swept
