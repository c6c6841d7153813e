"""Static checks of the code, run with the tests (so `./run.sh test`, and CI, fail on one): the
library's type check (mypy over src/, configured in pyproject.toml's [tool.mypy]), its import
contracts (import-linter, [tool.importlinter]) and ruff's lint and format check. snakefmt and
`snakemake --lint` check the workflow in tests/e2e/test_workflow.py.

The dev extra installs the tools; where one is missing the check is skipped, and under CI
(CI=true) it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run {name}, but: {reason}")
        pytest.skip(reason)
    return found


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_library_type_checks():
    """mypy over src/ ([tool.mypy] in pyproject.toml): no error."""
    proc = _run(_tool("mypy"))
    assert proc.returncode == 0, f"mypy found type errors:\n{proc.stdout}{proc.stderr}"


def test_the_code_is_ruff_clean():
    ruff = _tool("ruff")
    lint = _run(ruff, "check", ".")
    assert lint.returncode == 0, f"ruff check:\n{lint.stdout}{lint.stderr}"
    form = _run(ruff, "format", "--check", ".")
    assert form.returncode == 0, f"ruff format --check:\n{form.stdout}{form.stderr}"


def test_the_floors_stay_floors():
    """import-linter's contracts ([tool.importlinter] in pyproject.toml): no stage imports a
    stage above it, and the base modules import none."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, f"lint-imports:\n{proc.stdout}{proc.stderr}"
    assert "2 kept, 0 broken" in proc.stdout, proc.stdout
