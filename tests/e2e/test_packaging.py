"""environment.yml (conda) and pyproject.toml (pip) declare the same dependencies, and those
core dependencies alone run the study, its report and DVC versioning."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

# conda-forge names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", req)
    assert m, req
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_and_pyproject_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = dict(_split(r) for r in project["dependencies"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, spec = _split(dep)
            if name not in ("python", "pip"):
                conda[CONDA_TO_PYPI.get(name, name)] = spec
    assert conda == pip


@pytest.mark.parametrize("source", ["-e {root}", "."])
def test_the_conda_environment_installs_memlab_itself(source, tmp_path):
    """environment.yml's pip section, as conda hands it to pip (a requirements file, pip run in
    the env file's folder), with MEMLAB_SOURCE as common.smk sets it for a checkout, or as the
    README's by-hand command does: pip finds memlab there."""
    pytest.importorskip("setuptools")  # to build memlab's metadata without fetching anything
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    (pip,) = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)]
    assert pip == ["${MEMLAB_SOURCE}"]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("\n".join(pip) + "\n")
    offline = ("--dry-run", "--no-deps", "--no-index", "--no-build-isolation", "--quiet")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", *offline, "--report=-", "-r", str(requirements)],
        cwd=ROOT,
        env={**os.environ, "MEMLAB_SOURCE": source.format(root=ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [i["metadata"]["name"] for i in report["install"]] == ["memlab"]
    assert report["install"][0]["download_info"]["url"] == ROOT.as_uri()


def test_torch_pin_admits_the_local_cpu_build():
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = dict(_split(r) for r in project["dependencies"])["torch"]
    assert "2.13.0" in SpecifierSet(spec)


def test_core_holds_what_the_main_job_needs_and_dev_only_tools():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = dict(_split(r) for r in project["dependencies"])
    assert {"torch", "snakemake", "pygments", "dvc"} <= set(core)  # study, report, versioning
    extras = {k: dict(_split(r) for r in v) for k, v in project["optional-dependencies"].items()}
    assert set(extras) == {"dev", "slurm"}
    assert set(extras["dev"]) == {
        "pytest",
        "ruff",
        "snakefmt",
        "mypy",
        "import-linter",
        "selenium",
        "snakedeploy",
    }
    assert set(extras["slurm"]) == {"snakemake-executor-plugin-slurm"}


def test_results_folder_is_in_git_and_what_lands_there_is_not():
    assert (ROOT / "results" / "README.md").is_file()
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert not ignored("results/README.md")
    assert ignored("results/runs/d/noise0/n50/mlp-w8/erm/checkpoint.pt")
    assert ignored("results/report.html") and ignored("results/data/digits/split.npz")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 1200) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.mark.e2e
def test_core_dependencies_run_the_study_report_and_dvc(smoke_study, tmp_path):
    """A fresh venv with only the core dependencies (no extras, not editable) plans nothing for
    the finished smoke study, builds its report and has DVC."""
    work, _ = smoke_study
    # Nothing of this checkout's environment: no PYTHONPATH to its src/, no activated venv.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pkg = tmp_path / "memlab-src"
    pkg.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, pkg / name)
    shutil.copytree(
        ROOT / "src", pkg / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    venv = tmp_path / "venv"
    t0 = time.monotonic()
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _run([*pip, "torch==2.13.0"], tmp_path, env)  # the CPU build first, as ./run.sh does
    _run([*pip, str(pkg)], tmp_path, env)
    print(f"fresh venv + core install: {time.monotonic() - t0:.0f} s")

    # The finished study, without its src/: common.smk puts <workdir>/src first on the path of
    # Snakemake and of every job, so with it there the copy, not the installed package, is tested.
    study = tmp_path / "study"
    shutil.copytree(work, study, symlinks=True)
    shutil.rmtree(study / "src")
    where = _run(
        [str(venv / "bin" / "python"), "-c", "import memlab; print(memlab.__file__)"], study, env
    )
    assert Path(where.strip()).is_relative_to(venv), where

    snakemake = str(venv / "bin" / "snakemake")
    plan = _run([snakemake, "-n", "--configfile", "config/smoke.yaml"], study, env)
    assert "Nothing to be done" in plan, plan[-3000:]
    report = study / "results" / "report.html"
    report.unlink(missing_ok=True)
    _run([snakemake, "--configfile", "config/smoke.yaml", "--report", str(report)], study, env)
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000 and "<html" in html.lower()
    assert "memorization" in html.lower() or "figures" in html.lower()
    assert re.match(r"3\.\d+", _run([str(venv / "bin" / "dvc"), "--version"], study, env))
