"""Shared fixtures: a small digits split and helpers to run the real snakemake CLI."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import yaml

# One OpenMP thread, here and in every subprocess the tests start (Snakemake sets it for its
# jobs itself, in workflow/rules/common.smk): two cores, and results must not depend on threads.
os.environ["OMP_NUM_THREADS"] = "1"

from memlab.data import datasets as data

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_FILES = (
    "Snakefile",
    "workflow",
    "scripts",
    "config",
    "src",
    "profiles",
    "environment.yml",
)


@pytest.fixture(scope="session")
def digits_split() -> data.Split:
    ds = data.load_dataset({"kind": "digits"})
    return data.make_split(ds, *data.split_pool_test(ds.y, 0.25, 0))


@pytest.fixture(scope="session")
def modular_split() -> data.Split:
    """Modular addition mod 11: 121 pairs, half of them in the pool; token shape (2, 11)."""
    ds = data.load_dataset({"kind": "modular_addition", "p": 11})
    return data.make_split(ds, *data.split_pool_test(ds.y, 0.5, 0))


def train(model, split: data.Split, mask, settings, *, val=None, **kw):
    """``train_stacked`` on a split's pool (test set held out), quiet unless ``log`` is given."""
    from memlab.engine.train import train_stacked

    kw.setdefault("log", lambda s: None)
    return train_stacked(
        model,
        split.x_pool,
        split.y_pool,
        mask,
        val,
        split.x_test,
        split.y_test,
        settings,
        seed=kw.pop("seed", 0),
        **kw,
    )


def train_regime(**settings):
    """A Regime for engine tests, made as the study makes its regimes (``Regime.from_config``):
    ``settings`` that are ``training`` keys override the schema's training defaults, the others
    the schema's regime defaults (a regime's own training keys merge the same either way)."""
    from memlab.plan.config import load_schema
    from memlab.plan.study import Regime

    schema = load_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml")

    def defaults(node):
        return {k: v["default"] for k, v in node["properties"].items() if "default" in v}

    training = defaults(schema["properties"]["training"])
    regime = defaults(schema["$defs"]["regime"])
    for key, value in settings.items():
        (training if key in training else regime)[key] = value
    return Regime.from_config("test", regime, training)


def checkpoint_of(state, arrays, variant, regime, seed: int = 0) -> dict:
    """The checkpoint the train rule writes for ``runs.train_run``'s outputs (scripts/train.py)."""
    return {
        "state": state,
        "arrays": arrays,
        "settings": {
            "model": variant.spec(),
            "settings": regime.settings(),
            "seed": seed,
            "wildcards": {"regime": regime.name},
        },
    }


def run_columns(**overrides) -> dict:
    """The table columns of a real planned run (an MLP in an unregularized regime), edited."""
    import dataclasses

    from memlab.plan.kinds import MLP
    from memlab.plan.study import Run

    regime = dataclasses.replace(train_regime(), name="memorize")
    return {**Run("d", "0", 10, MLP("m", 8, 1), regime).columns(), **overrides}


def copy_workflow(dest: Path) -> Path:
    """A fresh copy of the workflow (no results) to run snakemake in."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    proc = subprocess.run(
        [SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, env=env, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


# Modules that cost a job a noticeable share of a second to import (torch about 1.5 s, pandas
# 0.35 s): tests/ops/test_import_cost.py and benchmarks/run.py (section fixed_cost) watch them.
HEAVY_MODULES = ("torch", "pandas", "scipy", "sklearn", "matplotlib", "seaborn")


def rule_scripts() -> dict[str, Path]:
    """The rule scripts (scripts/) by name; each runs in the rule of the same name (and in the
    removal experiment's copies of train and evaluate)."""
    return {p.stem: p for p in sorted((ROOT / "scripts").glob("*.py"))}


def script_imports(script: Path) -> str:
    """A rule script's module-level import statements, as source: what its job imports before
    doing any work (the rest of the script needs Snakemake's ``snakemake`` object)."""
    tree = ast.parse(script.read_text())
    imports = (n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom))
    return "\n".join(ast.unparse(n) for n in imports)


def fresh_imports(
    codes: Mapping[str, str], modules: Sequence[str] = HEAVY_MODULES
) -> dict[str, list[str]]:
    """Which of ``modules`` a fresh interpreter has imported once it has run each of ``codes``
    (one process per code, all at once), with this checkout's src/ first on the path."""
    report = f"\nimport sys\nprint(*(m for m in {tuple(modules)!r} if m in sys.modules))"
    path = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", code + report],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, code in codes.items()
    }
    found = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise AssertionError(f"{name}: the imports failed:\n{err[-3000:]}")
        found[name] = out.splitlines()[-1].split() if out.strip() else []
    return found


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> tuple[Path, float]:
    """The smoke study run once locally (--cores 2) for every test that reads its results:
    (working directory, wall seconds). Tests may add files there but must not change results."""
    work = copy_workflow(tmp_path_factory.mktemp("smoke"))
    t0 = time.monotonic()
    snakemake(work, "--configfile", "config/smoke.yaml", "--cores", "2")
    return work, time.monotonic() - t0


@pytest.fixture(scope="session")
def smoke_report(smoke_study) -> Path:
    """The smoke study's report (``snakemake --report``), built once into its results/ for the
    tests that read it (tests/e2e/test_workflow.py, tests/e2e/test_report_browser.py)."""
    work = smoke_study[0]
    snakemake(work, "--configfile", "config/smoke.yaml", "--report", "results/report.html")
    return work / "results" / "report.html"


SMALL_CONFIG = "config/small.yaml"


@pytest.fixture(scope="session")
def small_study(tmp_path_factory) -> Path:
    """The small study (:func:`small_config`, written to ``SMALL_CONFIG``) run once locally
    (--cores 2) for every test that reads its results: its working directory. Tests may add
    files there but must not change results."""
    work = copy_workflow(tmp_path_factory.mktemp("small"))
    (work / SMALL_CONFIG).write_text(yaml.safe_dump(small_config()))
    snakemake(work, "--configfile", SMALL_CONFIG, "--cores", "2")
    return work


# --------------------------------------------------------------------------- configs and plans


def smoke() -> dict:
    """config/smoke.yaml as loaded (no defaults filled in)."""
    return yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())


def small_config() -> dict:
    """The smoke study made smaller (about 20 jobs): one size, one MLP width and k-NN, both
    regimes, one corruption; as loaded (no defaults filled in)."""
    config = smoke()
    config["sizes"] = [80]
    config["models"] = {
        "mlp": {"kind": "mlp", "depth": 1, "widths": [8]},
        "knn": config["models"]["knn"],
    }
    config["perturbations"] = {"names": ["gaussian_noise"], "severities": [1]}
    return config


def full(config: dict) -> dict:
    """Validate and fill defaults the way the Snakefile does."""
    from snakemake.utils import validate

    from memlab.plan.config import check_config, load_schema

    schema = ROOT / "workflow" / "schemas" / "config.schema.yaml"
    check_config(config, load_schema(schema))
    validate(config, str(schema))
    return config


def smoke_with_sizes(*sizes) -> dict:
    """The smoke study on digits alone at ``sizes``, defaults filled in."""
    config = smoke()
    config["datasets"] = {"digits": {"kind": "digits"}}
    config["sizes"] = list(sizes)
    return full(config)


def planned_jobs(workdir: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run plans."""
    out = snakemake(workdir, "-n", *args).stdout
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block)
        if not m:
            continue
        wc = re.search(r"wildcards: (.*)", block)
        pairs = dict(p.split("=", 1) for p in wc.group(1).split(", ")) if wc else {}
        jobs.append((m.group(1), pairs))
    return jobs


def plan_stdout(work: Path, config: dict | None, name: str = "config/edited.yaml") -> str:
    """``./run.sh plan``'s stdout (``python -m memlab.ops.plan``) for ``config`` written to
    ``work / name`` (None: the config file already there)."""
    if config is not None:
        (work / name).write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, "-m", "memlab.ops.plan", "--configfile", name],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
