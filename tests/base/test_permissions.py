"""Results get the permissions the user's umask gives any new file, not a temp file's 0600."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from memlab.io import current_umask

# In a child process: umask is per process, and the test runner's own must stay as it is.
WRITER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import torch
    from memlab.checkpoint import save_checkpoint
    from memlab.io import atomic_path, current_umask, save_npz, save_text

    os.umask(int(sys.argv[2], 8))
    out = sys.argv[1]
    with atomic_path(f"{out}/plain.bin") as tmp:
        tmp.write_bytes(b"x")
    save_text(f"{out}/sub/text.txt", "hello")
    save_npz(f"{out}/arrays.npz", a=np.arange(3))
    save_checkpoint(
        f"{out}/checkpoint.pt", state={"w": torch.zeros(2)}, settings={}, arrays={}
    )
    print(json.dumps({"umask": current_umask()}))
    """
)


def _write_all(tmp_path: Path, umask: int) -> tuple[dict[str, int], int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", WRITER, str(tmp_path), f"{umask:o}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    modes = {
        p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in tmp_path.rglob("*")
        if p.is_file()
    }
    return modes, json.loads(proc.stdout)["umask"]


@pytest.mark.parametrize(
    ("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"]
)
def test_outputs_get_the_umask_mode(tmp_path, umask, mode):
    modes, seen = _write_all(tmp_path, umask)
    assert seen == umask
    assert set(modes) == {"plain.bin", "sub/text.txt", "arrays.npz", "checkpoint.pt"}
    assert {p: oct(m) for p, m in modes.items()} == {p: oct(mode) for p in modes}


def test_current_umask_leaves_the_umask_alone():
    before = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert current_umask() == 0o027
    finally:
        os.umask(before)
