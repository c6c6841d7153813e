"""Fault injection for tests/e2e/test_reliability.py, loaded only when this folder is on PYTHONPATH.

MEMLAB_FAULT picks one fault per Snakemake run, so each step of a test has its own trigger and
no step can fire (or disarm) another's; MEMLAB_FAULT_DIR is where the faults leave their marks.

* ``kill-after-save``: the first time a training job has saved its resumable state, the job
  SIGKILLs itself, as an OOM killer or a `kill -9` would, in the middle of training (once per
  MEMLAB_FAULT_DIR: the marker ``killed-mid-training`` says where and after which epoch).
* ``pause:<rule>``: a job of that rule, once its log is open, writes ``paused-<rule>`` and waits
  (until ``release-<rule>`` appears, at most 5 minutes): the test signals the run at a known point.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

FAULT = os.environ.get("MEMLAB_FAULT", "")


def _fault_dir() -> Path:
    return Path(os.environ["MEMLAB_FAULT_DIR"])


def _kill_after_first_save(module) -> None:
    save = module.save_state

    def save_then_die(where, fingerprint, state):
        save(where, fingerprint, state)
        marker = _fault_dir() / "killed-mid-training"
        if not marker.exists():
            marker.write_text(f"{where} after epoch {state['epoch']}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    module.save_state = save_then_die


def _pause_in(rule: str):
    def patch(module) -> None:
        rule_job = module.rule_job

        @contextlib.contextmanager
        def paused_rule_job(snakemake):
            with rule_job(snakemake) as log:
                if snakemake.rule == rule:
                    (_fault_dir() / f"paused-{rule}").write_text(f"{os.getpid()}\n")
                    release = _fault_dir() / f"release-{rule}"
                    deadline = time.monotonic() + 300
                    while not release.exists() and time.monotonic() < deadline:
                        time.sleep(0.05)
                yield log

        module.rule_job = paused_rule_job

    return patch


class _Patch(importlib.abc.MetaPathFinder):
    """Runs ``patch(module)`` right after ``name`` is first imported."""

    def __init__(self, name, patch):
        self.name, self.patch = name, patch

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            self.patch(module)

        spec.loader.exec_module = exec_module
        return spec


if FAULT == "kill-after-save":
    sys.meta_path.insert(0, _Patch("memlab.engine.resume", _kill_after_first_save))
elif FAULT.startswith("pause:"):
    sys.meta_path.insert(0, _Patch("memlab.rulejob", _pause_in(FAULT.removeprefix("pause:"))))
elif FAULT:
    raise SystemExit(f"tests/faults: unknown MEMLAB_FAULT={FAULT!r}")
