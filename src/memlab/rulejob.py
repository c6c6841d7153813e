"""Glue for the thin rule scripts: one thread, a log file, and clear failures."""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from memlab.io import MemlabInputError


def configure_threads(n: int = 1) -> None:
    """One thread per job (jobs run side by side; OMP_NUM_THREADS=1 is set for every job in
    workflow/rules/common.smk). Only touches torch when the script already imported it: jobs
    that do not train must not pay for importing it."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        # Denormals appear once losses approach zero and slow CPUs down by orders of magnitude.
        torch.set_flush_denormal(True)


@contextlib.contextmanager
def rule_job(snakemake: Any) -> Iterator[Callable[[str], None]]:
    """Run a rule script's body: set threads, yield a ``log(msg)`` that writes to ``log[0]``.

    A MemlabInputError becomes one clear paragraph in the log and on stderr (no deep traceback);
    any other error is logged with its traceback. Either way the job fails and Snakemake removes
    its incomplete outputs, while every earlier result stays.
    """
    configure_threads(max(1, int(snakemake.threads)))
    start = time.perf_counter()
    with open(snakemake.log[0], "w", buffering=1) as fh:

        def log(msg: str) -> None:
            fh.write(f"[{time.perf_counter() - start:8.1f}s] {msg}\n")

        outputs = " ".join(str(o) for o in snakemake.output)
        log(f"rule {snakemake.rule}: {outputs}")
        try:
            yield log
        except MemlabInputError as err:
            log(f"ERROR: {err}")
            print(f"memlab: {err}", file=sys.stderr)
            log(f"Rerun this step with: ./run.sh study {outputs} (add your usual --configfile)")
            raise SystemExit(1) from None
        except BaseException:
            log("ERROR:\n" + traceback.format_exc())
            log(f"Rerun this step with: ./run.sh study {outputs} (add your usual --configfile)")
            raise
        log("done")
