"""A multi-block study on a real single-node SLURM cluster through snakemake-executor-plugin-slurm.

cluster/slurm-localhost.sh installs (apt, if missing) and starts munged, slurmctld and slurmd on
this machine; the module's fixture stops exactly those daemons afterwards, also when a test fails.
One SLURM attempt of the study is made to fail: an extra profile squeezes the last group (analyze,
figures, summarize) into too little memory, SLURM kills it, and Snakemake must fail with SLURM's
verdict. A rerun with the plain profile must then run only what is missing. Every job of the
study must have run inside a SLURM job, the blocks of replicas must be packed into SLURM jobs by
their cost, and the tables must be byte-identical to a local run.
Skipped only where SLURM cannot be installed and started here (not root, no apt-get); under CI
(CI=true) those reasons fail the test instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SNAKEMAKE, copy_workflow, snakemake

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "cluster" / "slurm-localhost.sh"
CONFIG = "config/slurm.yaml"
# The smoke study cut down to one size, an MLP and k-NN, with its 2 replicas in blocks of 1: 3
# runs (the MLP in 2 regimes), 6 blocks. A block never measured counts as 10 s, so blocks pack 4
# to a group of 40 s: 2 SLURM jobs.
STUDY = {
    "sizes": [80],
    "replicas": 2,
    "replicas_per_job": 1,
    "models": {
        "mlp": {"kind": "mlp", "depth": 1, "widths": [8]},
        "knn": {"kind": "knn", "k": [1]},
    },
    "cluster": {"job_seconds": 40, "block_seconds": 10},
}
BLOCKS, PACKS = 6, 2
# Upper bounds, far above what was measured (cluster up: 2 s, or ~1 min with apt; a SLURM run
# of the smoke study: 3-5 min on a busy 2-core machine).
UP_TIMEOUT = 900
RUN_TIMEOUT = 900
TABLES = (
    "results/tables/metrics.parquet",
    "results/tables/generalization_gap.csv",
    "results/tables/robustness.csv",
    "results/tables/summary.csv",
)
# The last group of profiles/slurm; the failing attempt gives each of these too little memory.
SQUEEZED_RULES = ("analyze", "figures", "summarize")
SQUEEZED_MB = 400  # above the in-job Snakemake (~250 MB), below any rule's step (>= 500 MB)
UPSTREAM_RULES = {"prepare", "label_noise", "subsample", "perturb", "train", "evaluate"}


def _why_no_slurm() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "starting slurmctld, slurmd and munged (and installing them) needs root"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and apt-get is not available to install it"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[dev]')"
    return None


def _script(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["timeout", "-k", "10", str(timeout), str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )


@dataclass
class Cluster:
    started_here: bool
    startup_s: float | None = None


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    wall_s: float

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr


@dataclass
class SlurmStudy:
    work: Path
    plan: list[tuple[str, tuple[str, ...]]]  # every job of the study: (rule, outputs)
    failed: Run  # the attempt with too little memory for the last group
    resumed: Run  # the rerun with the plain profile
    resume_plan: dict[str, int] = field(default_factory=dict)  # rule -> jobs, before the rerun


@pytest.fixture(scope="module")
def cluster():
    reason = _why_no_slurm()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the SLURM test, but: {reason}")
        pytest.skip(reason)
    # A cluster this script already runs (e.g. a developer's) is used and left running.
    if _script("status", timeout=30).returncode == 0:
        yield Cluster(started_here=False)
        return
    t0 = time.monotonic()
    try:
        up = _script("up", timeout=UP_TIMEOUT)
        startup = time.monotonic() - t0
        assert up.returncode == 0, f"the SLURM cluster did not come up:\n{up.stderr[-4000:]}"
        yield Cluster(started_here=True, startup_s=startup)
    finally:
        down = _script("down", timeout=120)
        assert down.returncode == 0, down.stderr


def _timed_snakemake(work: Path, name: str, *args: str) -> Run:
    """Like conftest.snakemake, with a wall-clock time and a timeout that also covers SLURM;
    the output is kept in the work dir as snakemake-<name>.out."""
    env = dict(os.environ)
    t0 = time.monotonic()
    proc = subprocess.run(
        ["timeout", "-k", "30", str(RUN_TIMEOUT), SNAKEMAKE, *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=RUN_TIMEOUT + 60,
    )
    run = Run(proc, time.monotonic() - t0)
    (work / f"snakemake-{name}.out").write_text(run.output)
    return run


def _jobs(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """(rule, outputs) of every job block Snakemake printed, local rules included."""
    jobs, rule = [], None
    for line in text.splitlines():
        m = re.match(r"\s*(?:local)?rule (\w+):$", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"\s*output: (.+)$", line)
        if m and rule:
            jobs.append((rule, tuple(m.group(1).split(", "))))
            rule = None
    return jobs


def _job_stats(text: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table: rule -> number of jobs."""
    m = re.search(r"Job stats:\n.*\n-+\s+-+\n((?:\S+\s+\d+\n)+)", text)
    assert m, text[-3000:]
    rows = dict(line.split() for line in m.group(1).splitlines())
    rows.pop("total", None)
    return {k: int(v) for k, v in rows.items()}


def _submitted(text: str) -> dict[str, Path]:
    """SLURM job id -> its log file, for every job Snakemake submitted."""
    found = re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)\.", text)
    return {jobid: Path(log) for jobid, log in found}


def _slurm_states(jobids) -> dict[str, str]:
    # No accounting database here: squeue keeps finished jobs for MinJobAge (1 h).
    out = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%T", "-j", ",".join(jobids)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return dict(line.split("|") for line in out.split())


def _squeezing_profile(dest: Path) -> Path:
    """A profile giving the last group's rules too little memory (the rules carry what they were
    measured to need; a later --profile replaces the whole set-resources list, so any site
    overrides in profiles/slurm are kept and only those entries are changed)."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    kept = [
        r
        for r in profile.get("set-resources") or []
        if not (r.split(":")[0] in SQUEEZED_RULES and ":mem_mb=" in r)
    ]
    resources = kept + [f"{rule}:mem_mb={SQUEEZED_MB}" for rule in SQUEEZED_RULES]
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump({"set-resources": resources}))
    return dest


def _study_copy(dest: Path) -> Path:
    work = copy_workflow(dest)
    config = yaml.safe_load((work / "config/smoke.yaml").read_text()) | STUDY
    (work / CONFIG).write_text(yaml.safe_dump(config))
    return work


@pytest.fixture(scope="module")
def local_started(tmp_path_factory):
    """The same study run locally, started before the SLURM runs and running beside them (most of
    a SLURM run is waiting for its jobs and their status checks): (work, process)."""
    work = _study_copy(tmp_path_factory.mktemp("local"))
    out = open(work / "snakemake-local.out", "w")  # noqa: SIM115 (closed below)
    cmd = [SNAKEMAKE, "--configfile", CONFIG, "--cores", "2"]
    proc = subprocess.Popen(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        yield work, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        out.close()


@pytest.fixture(scope="module")
def local_run(local_started) -> Path:
    """The same study run locally (--cores 2), as conftest.snakemake would run it."""
    work, proc = local_started
    returncode = proc.wait(timeout=900)
    if returncode != 0:
        printed = (work / "snakemake-local.out").read_text()
        raise AssertionError(f"snakemake {' '.join(proc.args[1:])} failed:\n{printed}")
    return work


@pytest.fixture(scope="module")
def slurm_study(cluster, local_started, tmp_path_factory) -> SlurmStudy:
    work = _study_copy(tmp_path_factory.mktemp("slurm"))
    plan = [j for j in _jobs(snakemake(work, "-n", "--configfile", CONFIG).stdout) if j[0] != "all"]
    squeeze = _squeezing_profile(tmp_path_factory.mktemp("squeeze") / "profile")
    common = ("--profile", "profiles/slurm", "--configfile", CONFIG, "--slurm-keep-successful-logs")
    failed = _timed_snakemake(work, "failed", *common[:2], "--profile", str(squeeze), *common[2:])
    resume_plan = _job_stats(snakemake(work, "-n", *common[2:4]).stdout)
    resumed = _timed_snakemake(work, "resumed", *common)
    return SlurmStudy(work, plan, failed, resumed, resume_plan)


def test_a_job_over_its_memory_fails_the_run_with_slurms_reason(slurm_study):
    failed = slurm_study.failed
    assert failed.proc.returncode != 0, failed.output[-3000:]
    submitted = _submitted(failed.output)
    states = _slurm_states(submitted)
    bad = [jobid for jobid, state in states.items() if state != "COMPLETED"]
    assert len(bad) == 1 and states[bad[0]] in ("FAILED", "OUT_OF_MEMORY"), states
    jobid, log = bad[0], submitted[bad[0]]
    assert "Error in group tables" in failed.output
    # For a single job the plugin also prints the SLURM state; Snakemake 9.27 drops that message
    # for group jobs, so it is optional here.
    m = re.search(r"SLURM-job '(\d+)' failed, SLURM status is: '(\w+)'", failed.output)
    assert not m or m.groups() == (jobid, states[jobid])
    # Snakemake names SLURM's log of the failed job and prints it (show-failed-logs): SLURM's
    # reason is in the output.
    printed = failed.output.split(f"Logfile {log}:", 1)
    assert len(printed) == 2, failed.output[-5000:]
    assert re.search(r"slurmstepd.*exceeded memory limit \(\d+ > \d+\)", printed[1]), printed[1]
    # Everything upstream of the squeezed group finished.
    for rule, outputs in slurm_study.plan:
        if rule in UPSTREAM_RULES:
            assert all((slurm_study.work / f).is_file() for f in outputs), (rule, outputs)


def test_a_rerun_resumes_with_only_the_missing_jobs(slurm_study):
    resumed = slurm_study.resumed
    assert resumed.proc.returncode == 0, resumed.output[-5000:]
    ran = _job_stats(resumed.output)
    assert ran == slurm_study.resume_plan
    assert set(ran) - {"all"} and not UPSTREAM_RULES & set(ran), ran
    # The missing jobs form one group: one SLURM job.
    assert len(_submitted(resumed.output)) == 1, resumed.output[-3000:]


def test_every_job_ran_inside_a_completed_slurm_job(slurm_study):
    study = slurm_study
    submitted = {**_submitted(study.failed.output), **_submitted(study.resumed.output)}
    states = _slurm_states(submitted)
    assert set(states) == set(submitted)
    assert list(states.values()).count("COMPLETED") == len(states) - 1, states  # and 1 failed
    # What each completed SLURM job ran, from the log SLURM wrote for it (--output <jobid>.log).
    done = set()
    for jobid, log in submitted.items():
        assert log.name == f"{jobid}.log"
        if states[jobid] == "COMPLETED":
            done.update(out for _, outs in _jobs(log.read_text()) for out in outs)
    missing = [(rule, outs) for rule, outs in study.plan if not set(outs) <= done]
    assert not missing, f"jobs that did not run inside a completed SLURM job: {missing}"
    # Groups: far fewer SLURM jobs than Snakemake jobs; the blocks packed by cost into PACKS.
    assert 4 * len(submitted) <= len(study.plan) + 4, (len(submitted), len(study.plan))
    blocks_per_job = []
    for jobid, log in submitted.items():
        ran = [out for rule, outs in _jobs(log.read_text()) if rule == "train" for out in outs]
        if ran and states[jobid] == "COMPLETED":
            blocks_per_job.append(len({Path(out).parent for out in ran}))
    assert sorted(blocks_per_job) == [2, 4], blocks_per_job
    assert sum(blocks_per_job) == BLOCKS and len(blocks_per_job) == PACKS
    # Nothing ran on the submitting machine but the target rule `all` (checked on the run that
    # succeeded: the failed one prints SLURM's log, with the job's own `localrule` lines).
    assert set(re.findall(r"^\s*localrule (\w+):", study.resumed.output, re.M)) == {"all"}


def test_tables_are_identical_to_a_local_run(slurm_study, local_run):
    local = local_run
    for name in TABLES:
        theirs, ours = (slurm_study.work / name).read_bytes(), (local / name).read_bytes()
        assert theirs == ours, f"{name} differs between the SLURM and the local run"
