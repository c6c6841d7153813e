"""Interruptions: a study killed at any point and rerun ends with the same bytes as a clean run.

The clean run is the shared small study (conftest.small_study: the smoke study cut to one size,
an MLP in both regimes and k-NN; ``--cores 2``, never interrupted): every kind of step killed
here is in it, and what is asserted (the same bytes as a clean run) does not depend on the study's
size. Here the same config runs one job at a time (``--cores 1``) and is killed four times, four
ways: Ctrl-C during
prepare, SIGKILL of a training job right after it saved its resumable state, SIGTERM to Snakemake
during evaluation, and SIGKILL of everything (power loss) while figures are drawn. Each step has
its own deterministic trigger (tests/faults/sitecustomize.py: the job of that rule waits at a
known point until signalled, or kills itself), armed for that step alone. Then the command that
Ctrl-C printed is run as printed; no ``--unlock`` or ``--rerun-incomplete`` by hand.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, SMALL_CONFIG, SNAKEMAKE, copy_workflow, snakemake

from memlab.checkpoint import load_checkpoint
from memlab.io import load_npz
from memlab.ops.locks import release_stale_locks

pytestmark = pytest.mark.e2e

FAULTS = ROOT / "tests" / "faults"
# run.sh in this test's environment as it is: no install from the copy into it.
RUN_SH_ENV = {"MEMLAB_VENV": str(Path(sys.executable).parents[1]), "MEMLAB_SKIP_SETUP": "1"}


def _start(work: Path, env: dict[str, str], fault: str, *, run_sh: bool = False):
    """The killed study, with one fault armed (tests/faults/sitecustomize.py)."""
    args = ["--configfile", "config/killed.yaml", "--cores", "1"]
    cmd = ["./run.sh", "study", *args] if run_sh else [SNAKEMAKE, *args]
    log = open(work / "snakemake.out", "a")  # noqa: SIM115 (closed by the child's exit)
    env = {**env, "MEMLAB_FAULT": fault}
    return subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=log, start_new_session=True)


def _wait_for(proc: subprocess.Popen, path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"snakemake ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _check_no_half_files(results: Path) -> None:
    """Every result file present reads back whole (a later step would read it)."""
    for f in results.rglob("*"):
        if f.name.startswith("."):
            continue  # temp files of killed writers: never read, swept by the next run
        if f.suffix == ".npz":
            load_npz(f)
        elif f.name == "train-state.pt":
            torch.load(f, weights_only=True)
        elif f.suffix == ".pt":
            load_checkpoint(f)
        elif f.suffix == ".parquet":
            pd.read_parquet(f)


def test_killed_four_ways_and_rerun_gives_identical_results(small_study, tmp_path):
    clean = small_study
    work = copy_workflow(tmp_path / "work")
    shutil.copy2(ROOT / "run.sh", work / "run.sh")
    # The small study's config as it ran (the smoke study's ran twice as long at --cores 1).
    config = yaml.safe_load((clean / SMALL_CONFIG).read_text())
    # Save resumable state every 5 epochs; not a rerun trigger, so results must not change.
    config["training"]["resume_every"] = 5
    # Key order kept: tables list runs in the config's order.
    (work / "config" / "killed.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    faults = tmp_path / "faults"
    faults.mkdir()
    env = {
        **os.environ,
        **RUN_SH_ENV,
        "PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]),
        "MEMLAB_FAULT_DIR": str(faults),
    }
    results = work / "results"
    out = work / "snakemake.out"

    # 1. Ctrl-C (SIGINT to the whole process group of ./run.sh) while the dataset is prepared:
    #    no traceback, one line with the command that resumes.
    proc = _start(work, env, "pause:prepare", run_sh=True)
    _wait_for(proc, faults / "paused-prepare")
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(120) == 130
    printed = out.read_text()
    assert "Traceback" not in printed, printed[-3000:]
    resume = re.findall(r"memlab: interrupted\. .*resume with: (.*)", printed)
    assert resume == ["./run.sh study --configfile config/killed.yaml --cores 1"], printed[-2000:]
    assert not (results / "data" / "digits" / "split.npz").exists()
    _check_no_half_files(results)

    # 2. SIGKILL of a training job just after it saved its state; Snakemake sees the job fail
    #    and stops. The rerun resumes that job from its state.
    proc = _start(work, env, "kill-after-save")
    assert proc.wait(300) != 0, out.read_text()[-3000:]
    killed = (faults / "killed-mid-training").read_text().split()
    state_name, epoch = killed[0], int(killed[-1])  # relative to the working directory
    state = work / state_name
    assert state.exists() and not (state.parent / "checkpoint.pt").exists()
    _check_no_half_files(results)

    # 3. SIGTERM to Snakemake alone while a run is evaluated: it lets that job finish, then stops.
    proc = _start(work, env, "pause:evaluate")
    _wait_for(proc, faults / "paused-evaluate")
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(1)
    (faults / "release-evaluate").touch()
    assert proc.wait(120) != 0
    _check_no_half_files(results)

    # 4. SIGKILL of Snakemake and every job (power loss) while figures are drawn: Snakemake's
    #    locks and incomplete markers stay behind, and the same command must still just work.
    proc = _start(work, env, "pause:figures")
    _wait_for(proc, faults / "paused-figures")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)
    assert list((work / ".snakemake" / "locks").glob("*.lock"))
    _check_no_half_files(results)

    # 5. The command Ctrl-C printed, as printed.
    out.write_text("")
    rerun = subprocess.run(
        resume[0], shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    printed = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, printed[-3000:]
    assert "removed the locks left by an earlier Snakemake run that was killed" in printed
    # The job killed mid-training continued from its saved state (the log is the last attempt's).
    run = state.parent.relative_to(results / "runs")
    train_log = (results / "logs" / "train" / run).with_suffix(".log").read_text()
    resumed = re.search(rf"resuming from {re.escape(state_name)} after epoch (\d+)", train_log)
    assert resumed and int(resumed.group(1)) >= epoch, train_log[:2000]
    assert not state.exists(), "a finished job removes its resumable state"

    tables = sorted(p.relative_to(clean) for p in (clean / "results" / "tables").iterdir())
    assert len(tables) >= 10
    for rel in tables:
        assert (work / rel).read_bytes() == (clean / rel).read_bytes(), rel
    checkpoints = sorted((clean / "results" / "runs").rglob("checkpoint.pt"))
    for ckpt in checkpoints:
        rel = ckpt.relative_to(clean)
        assert (work / rel).read_bytes() == ckpt.read_bytes(), rel
    figures = {p.name for p in (clean / "results" / "figures").iterdir()}
    assert figures == {p.name for p in (results / "figures").iterdir()}
    assert not list(results.rglob(".*.tmp*")), "temp files of killed writers were swept"


def test_stale_locks_and_temp_files_go_only_when_no_run_owns_them(tmp_path):
    locks, results = tmp_path / ".snakemake" / "locks", tmp_path / "results"
    locks.mkdir(parents=True)
    (results / "runs").mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    half = results / "runs" / ".checkpoint.abc123.tmp.pt"
    half.write_bytes(b"half")
    owner = release_stale_locks(tmp_path / ".snakemake", results)  # nobody owned it: stale
    assert owner is not None and not list(locks.iterdir()) and not half.exists()
    (locks / "0.output.lock").write_text("y")  # now a live run's lock, and its temp file
    half.write_bytes(b"being written")
    assert release_stale_locks(tmp_path / ".snakemake", results) is None
    assert (locks / "0.output.lock").exists() and half.exists()
    owner.close()  # that run ends, or dies: the kernel drops its lock either way
    again = release_stale_locks(tmp_path / ".snakemake", results)
    assert again is not None and not list(locks.iterdir())
    again.close()


# --------------------------------------------------------------------------- bad input, via CLI


def _csv(name, text):
    return {f"data/{name}": text}


_ROWS = "".join(f"{i % 7},{(i * 3) % 5},{i % 3}\n" for i in range(60))
BAD_INPUTS = {
    # id: (config edit, files to write, what the message must say)
    "typo": (lambda c: c.update(sizez=[10]), {}, ["unknown key 'sizez'", "'sizes'"]),
    "wrong-type": (
        lambda c: c["training"].update(lr="fast"),
        {},
        ["training.lr", "'fast'", "number"],
    ),
    "negative-width": (
        lambda c: c["models"]["mlp"].update(widths=[-3]),
        {},
        ["models.mlp.widths[0] = -3", ">= 1"],
    ),
    "fraction-above-1": (lambda c: c.update(label_noise=[1.5]), {}, ["label_noise[0]", "<= 1"]),
    "size-above-pool": (lambda c: c.update(sizes=[99999]), {}, ["sizes[0]", "99999", "1347"]),
    "zero-replicas": (lambda c: c.update(replicas=0), {}, ["replicas", ">= 1"]),
    "unknown-dataset": (
        lambda c: c["datasets"].update(digits={"kind": "mnist"}),
        {},
        ["datasets.digits.kind", "'mnist'", "'digits'"],
    ),
    "unknown-model": (
        lambda c: c["models"]["mlp"].update(kind="transformer"),
        {},
        ["models.mlp.kind", "'transformer'", "'mlp'"],
    ),
    "unknown-regime": (
        lambda c: c["datasets"]["digits"].update(grid={"regimes": ["memorise"]}),
        {},
        ["memorise", "memorize"],
    ),
    "unknown-perturbation": (
        lambda c: c["perturbations"].update(names=["fog"]),
        {},
        ["perturbations.names[0]", "'fog'", "gaussian_noise"],
    ),
    "csv-without-labels": (
        lambda c: c["datasets"].update(mine={"kind": "file", "path": "data/nolabel.csv"}),
        _csv("nolabel.csv", "a,b,target\n" + _ROWS),
        ["nolabel.csv", "label_column"],
    ),
    "csv-with-nan": (
        lambda c: c["datasets"].update(mine={"kind": "file", "path": "data/nan.csv"}),
        _csv("nan.csv", "a,b,label\n" + _ROWS + "nan,1,0\n"),
        ["nan.csv", "'a'"],
    ),
    "csv-single-class": (
        lambda c: c["datasets"].update(mine={"kind": "file", "path": "data/one.csv"}),
        _csv("one.csv", "a,b,label\n" + "".join(f"{i},{i},x\n" for i in range(60))),
        ["one.csv", "at least 2 classes"],
    ),
    "npz-mismatched-shapes": (
        lambda c: c["datasets"].update(mine={"kind": "file", "path": "data/shapes.npz"}),
        {"data/shapes.npz": (np.zeros((60, 4)), np.arange(50) % 2)},
        ["shapes.npz", "60 examples", "50"],
    ),
}


@pytest.fixture(scope="module")
def finished_study(smoke_study, tmp_path_factory) -> Path:
    """A copy of the finished smoke study: bad input must leave every result as it was."""
    work = copy_workflow(tmp_path_factory.mktemp("finished"))
    shutil.copytree(smoke_study[0] / "results", work / "results")
    shutil.copytree(smoke_study[0] / ".snakemake", work / ".snakemake", symlinks=True)
    for name in ("run.sh", "pyproject.toml"):
        shutil.copy2(ROOT / name, work / name)
    return work


def _snapshot(results: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in results.rglob("*")}


def _fails_cleanly(proc: subprocess.CompletedProcess, expected: list[str]) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert "Traceback" not in out, out[-3000:]
    for text in expected:
        assert text in out, f"{text!r} not in:\n{out[-2000:]}"
    return out


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_stops_before_any_work_and_keeps_results(finished_study, case):
    edit, files, expected = BAD_INPUTS[case]
    work = finished_study
    for rel, content in files.items():
        (work / rel).parent.mkdir(exist_ok=True)
        if isinstance(content, tuple):
            np.savez(work / rel, X=content[0], y=content[1])
        else:
            (work / rel).write_text(content)
    config = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    edit(config)
    (work / "config" / f"{case}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = _snapshot(work / "results")
    proc = snakemake(work, "--configfile", f"config/{case}.yaml", "--cores", "1", check=False)
    out = _fails_cleanly(proc, expected)
    assert "Nothing was run" in out
    assert _snapshot(work / "results") == before


def test_malformed_yaml_names_file_and_line(finished_study):
    work = finished_study
    bad = work / "config" / "malformed.yaml"
    bad.write_text("seed: 0\ndatasets:\n  digits: {kind: digits\nsizes: [80]\n")
    before = _snapshot(work / "results")
    env = {**os.environ, **RUN_SH_ENV}
    proc = subprocess.run(
        ["./run.sh", "study", "--configfile", "config/malformed.yaml", "--cores", "1"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    _fails_cleanly(proc, ["config/malformed.yaml is not valid YAML at line 4", "column"])
    # Snakemake itself, called directly, refuses it too (with its own, vaguer message).
    proc = snakemake(work, "--configfile", "config/malformed.yaml", "--cores", "1", check=False)
    _fails_cleanly(proc, ["not valid JSON or YAML"])
    assert _snapshot(work / "results") == before


@pytest.mark.parametrize(("args", "rc"), [([], 2), (["--help"], 0), (["stduy"], 2)])
def test_run_sh_without_a_known_command_prints_its_usage(args, rc):
    """A bare ./run.sh (or a typo) prints the commands instead of starting a 12-minute study."""
    proc = subprocess.run([str(ROOT / "run.sh"), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == rc
    assert "./run.sh study" in proc.stderr and "./run.sh plan" in proc.stderr
    assert "Building DAG" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("flag", ["-n", "--dry-run", "-pn"])
def test_run_sh_dry_run_writes_nothing(tmp_path, flag):
    """`./run.sh study -n` plans only: no job runs, and no report is built after it."""
    work = copy_workflow(tmp_path / "work")
    shutil.copy2(ROOT / "run.sh", work / "run.sh")
    proc = subprocess.run(
        ["./run.sh", "study", "--configfile", "config/smoke.yaml", flag],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, **RUN_SH_ENV},
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "This was a dry-run" in out
    assert "Creating report" not in out
    assert not (work / "results").exists()


def test_run_sh_setup_says_each_step(tmp_path):
    """A first `./run.sh setup` names each step as it starts; a second one has nothing to do."""
    calls = tmp_path / "calls"
    # A stand-in for python3: `-m venv DIR` makes DIR/bin/python, which records its arguments.
    fake = tmp_path / "python3"
    fake.write_text(
        "#!/bin/sh\n"
        'mkdir -p "$3/bin"\n'
        f'printf \'#!/bin/sh\\necho "$*" >> {calls}\\n\' > "$3/bin/python"\n'
        'chmod +x "$3/bin/python"\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "MEMLAB_VENV": str(tmp_path / "venv")}
    env.pop("MEMLAB_SKIP_SETUP", None)

    def setup() -> str:
        run = [str(ROOT / "run.sh"), "setup"]
        proc = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    said = setup().splitlines()
    assert [line.split()[1] for line in said] == [
        "creating",
        "upgrading",
        "installing",
        "installing",
        "environment",
    ], said
    assert "torch" in said[2] and "CPU" in said[2] and "memlab" in said[3]
    pip = calls.read_text().splitlines()
    assert [c.split()[-1] for c in pip] == ["pip", "torch==2.13.0", ".[dev,slurm]"]
    assert setup() == ""
