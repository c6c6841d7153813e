"""memlab used as a Snakemake module by another workflow: deployed by `snakedeploy
deploy-workflow` from its git host (github(..., path="workflow/Snakefile")), and from a local
checkout."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, copy_workflow, snakemake

pytestmark = pytest.mark.e2e

# Any owner/name: git answers its URL from a local repository (the `git_host` fixture).
OWNER_REPO = "memlab-org/memlab"
TAG = "v1"
SNAKEDEPLOY = Path(sys.executable).with_name("snakedeploy")

# The deploying workflow's own lines, appended to its Snakefile: what memlab's common.smk left
# in the environment for the conda env's pip (environment.yml).
SHOW_SOURCE = """
import os

print("MEMLAB_SOURCE=" + os.environ.get("MEMLAB_SOURCE", ""))
"""

# README's "Use memlab as a module" for a local checkout (prefixed rule names).
CHECKOUT_SNAKEFILE = """\
configfile: "config/config.yaml"


# declare memlab as a module
module memlab:
    snakefile:
        "{snakefile}"
    config:
        config


# use all rules from memlab
use rule * from memlab as memlab_*
"""


def job_counts(out: str) -> dict[str, int]:
    """The dry run's job stats table: rule -> job count."""
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=memlab", "-c", "user.email=memlab@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture(scope="module")
def git_host(tmp_path_factory):
    """This checkout's workflow as a git repository tagged v1, which git serves for
    https://github.com/<OWNER_REPO> (url.<repo>.insteadOf, from git's environment config): the
    real snakedeploy clones it and Snakemake's github(...) fetches it, offline. Snakemake's
    source cache is a fresh folder, so no earlier run's copy of the tag is read."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = copy_workflow(tmp_path_factory.mktemp("hosted"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "memlab")
    git(repo, "tag", TAG)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_COUNT", "1")
        mp.setenv("GIT_CONFIG_KEY_0", f"url.{repo.as_uri()}.insteadOf")
        mp.setenv("GIT_CONFIG_VALUE_0", f"https://github.com/{OWNER_REPO}")
        mp.setenv("GIT_TERMINAL_PROMPT", "0")
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield repo


@pytest.fixture(scope="module")
def deployment(git_host, tmp_path_factory) -> Path:
    """A workflow deployed by `snakedeploy deploy-workflow` (its Snakefile, memlab's config/ and
    profiles/), configured for the smoke study the way its user would: config/config.yaml."""
    if not SNAKEDEPLOY.is_file():
        pytest.skip("snakedeploy is not installed (the dev extra: pip install -e '.[dev]')")
    dep = tmp_path_factory.mktemp("deploy") / "dep"
    url = f"https://github.com/{OWNER_REPO}"
    proc = subprocess.run(
        [str(SNAKEDEPLOY), "deploy-workflow", url, str(dep), "--tag", TAG],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.copy2(dep / "config" / "smoke.yaml", dep / "config" / "config.yaml")
    with (dep / "workflow" / "Snakefile").open("a") as f:
        f.write(SHOW_SOURCE)
    return dep


@pytest.fixture(scope="module")
def smoke_jobs(tmp_path_factory) -> dict[str, int]:
    """The smoke study's jobs per rule, planned in a plain copy of memlab."""
    plain = copy_workflow(tmp_path_factory.mktemp("plain"))
    return job_counts(snakemake(plain, "-n", "--configfile", "config/smoke.yaml").stdout)


def test_snakedeploy_writes_the_module_from_workflow_snakefile(deployment):
    snakefile = (deployment / "workflow" / "Snakefile").read_text()
    declared = f'github("{OWNER_REPO}", path="workflow/Snakefile", tag="{TAG}")'
    assert declared in snakefile, snakefile
    # memlab's config/ and profiles/ are copied; nothing else of memlab's.
    assert (deployment / "config" / "smoke.yaml").is_file()
    assert (deployment / "profiles" / "default" / "config.yaml").is_file()
    made = {p.name for p in deployment.iterdir()} - {".snakemake", "results"}
    assert sorted(made) == ["config", "profiles", "workflow"]


def test_the_deployed_module_plans_the_smoke_study(deployment, smoke_jobs):
    proc = snakemake(deployment, "-n")
    assert job_counts(proc.stdout) == smoke_jobs
    assert smoke_jobs["train"] > 0
    # Its conda env would install memlab from the same repository and tag.
    assert f"MEMLAB_SOURCE=git+https://github.com/{OWNER_REPO}@{TAG}\n" in proc.stdout
    # Nothing of memlab's is looked for in the deploying workflow's directory.
    assert sorted(p.name for p in deployment.iterdir() if p.name != ".snakemake") == [
        "config",
        "profiles",
        "workflow",
    ]


def test_the_deployed_module_runs_its_scripts(deployment):
    # The first jobs, for real: the rule scripts come from the git host and import memlab.
    snakemake(deployment, "--cores", "2", "--until", "label_noise")
    assert (deployment / "results" / "data" / "digits" / "split.npz").is_file()
    assert list((deployment / "results" / "data" / "digits").glob("labels-noise*.npz"))


def test_a_module_from_a_local_checkout(tmp_path, smoke_jobs):
    """README's form: the module's snakefile is a checkout's workflow/Snakefile, rules prefixed."""
    memlab = copy_workflow(tmp_path / "memlab")
    dep = tmp_path / "dep"
    (dep / "workflow").mkdir(parents=True)
    (dep / "workflow" / "Snakefile").write_text(
        CHECKOUT_SNAKEFILE.format(snakefile=memlab / "workflow" / "Snakefile") + SHOW_SOURCE
    )
    (dep / "config").mkdir()
    shutil.copy2(ROOT / "config" / "smoke.yaml", dep / "config" / "config.yaml")
    proc = snakemake(dep, "-n")
    assert job_counts(proc.stdout) == {f"memlab_{rule}": n for rule, n in smoke_jobs.items()}
    assert f"MEMLAB_SOURCE=-e {memlab}\n" in proc.stdout


def test_catalog_metadata():
    meta = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = meta["usage"]
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    stack = usage["software-stack-deployment"]
    assert set(stack) <= {"conda", "singularity", "singularity+conda"}
    assert any(stack.values())  # at least one deployment method works
    assert usage["report"] is True


def test_the_top_level_layout_is_what_users_asked_for():
    # workflow/Snakefile is the workflow; the root Snakefile only loads it (in a checkout).
    assert (ROOT / "workflow" / "Snakefile").is_file()
    for name in ("Snakefile", "workflow", "scripts", "config", "results", "tests"):
        assert (ROOT / name).exists(), name
    assert (ROOT / "environment.yml").is_file()
