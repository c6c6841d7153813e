"""memlab used as a Snakemake module by another workflow, the way snakedeploy deploys it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, copy_workflow, snakemake

pytestmark = pytest.mark.e2e

# What `snakedeploy deploy-workflow` writes to workflow/Snakefile, with a local path in place of
# github(...) and prefixed rule names.
DEPLOYING_SNAKEFILE = """\
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


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Path:
    """A deploying workflow (its own Snakefile and config only) beside a copy of memlab."""
    memlab = copy_workflow(tmp_path_factory.mktemp("memlab"))
    dep = tmp_path_factory.mktemp("deploy")
    (dep / "workflow").mkdir()
    (dep / "workflow" / "Snakefile").write_text(
        DEPLOYING_SNAKEFILE.format(snakefile=memlab / "Snakefile")
    )
    (dep / "config").mkdir()
    shutil.copy2(ROOT / "config" / "smoke.yaml", dep / "config" / "config.yaml")
    return dep


def test_module_plans_the_smoke_study_under_its_prefix(deployment, tmp_path):
    plain = copy_workflow(tmp_path / "plain")
    expected = job_counts(snakemake(plain, "-n", "--configfile", "config/smoke.yaml").stdout)
    got = job_counts(snakemake(deployment, "-n").stdout)
    assert got == {f"memlab_{rule}": n for rule, n in expected.items()}
    assert got["memlab_train"] > 0
    # Nothing of memlab's is looked for in the deploying workflow's directory.
    assert sorted(p.name for p in deployment.iterdir() if p.name != ".snakemake") == [
        "config",
        "workflow",
    ]


def test_module_runs_its_scripts(deployment):
    # The first jobs, for real: the rule scripts resolve from the module and import memlab.
    snakemake(deployment, "--cores", "2", "--until", "memlab_label_noise")
    assert (deployment / "results" / "data" / "digits" / "split.npz").is_file()
    assert list((deployment / "results" / "data" / "digits").glob("labels-noise*.npz"))


def test_catalog_metadata():
    meta = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = meta["usage"]
    assert set(usage["mandatory-flags"]) == {"desc", "flags"}
    stack = usage["software-stack-deployment"]
    assert set(stack) <= {"conda", "singularity", "singularity+conda"}
    assert any(stack.values())  # at least one deployment method works
    assert usage["report"] is True
