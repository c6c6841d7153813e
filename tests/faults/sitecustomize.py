"""Fault injection for tests/test_reliability.py, loaded only when this folder is on PYTHONPATH.

When ``memlab.resume`` is imported, its state saver is wrapped: the first time a training job has
saved its resumable state, the job SIGKILLs itself, as an OOM killer or a `kill -9` would, in
the middle of training. Once per directory named by MEMLAB_FAULT_DIR (a marker file remembers).
"""

import importlib.abc
import importlib.util
import os
import signal
import sys
from pathlib import Path


class _KillAfterFirstSave(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "memlab.resume":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            save = module.save_state

            def save_then_die(where, fingerprint, state):
                save(where, fingerprint, state)
                marker = Path(os.environ["MEMLAB_FAULT_DIR"]) / "killed-mid-training"
                if not marker.exists():
                    marker.write_text(f"{where} after epoch {state['epoch']}\n")
                    os.kill(os.getpid(), signal.SIGKILL)

            module.save_state = save_then_die

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("MEMLAB_FAULT_DIR"):
    sys.meta_path.insert(0, _KillAfterFirstSave())
