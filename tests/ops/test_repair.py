"""A damaged or missing output repairs itself: ``./run.sh study`` finds it before Snakemake runs,
moves it aside and remakes it and what depends on it, ending with the tables of an undamaged
run, byte for byte; ``./run.sh plan`` names the file first.

Each kind of file the study verifies is damaged here the way files get damaged (cut short, bits
flipped, replaced by something else, deleted). The kinds of one level of the pipeline share one
rerun, each in a different run or dataset file, so that each is found on its own: a file is
checked only where the run would not remake it anyway (a damaged subset reruns its block's
training, which remakes a damaged checkpoint of that block without being asked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import ROOT, copy_workflow, snakemake

from memlab.ops.integrity import damage

pytestmark = pytest.mark.e2e

RUNS = "results/runs/digits/noise0.2"
CONFIG = ("--configfile", "config/smoke.yaml")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bits(path: Path) -> None:
    # In the middle of the file: inside a compressed member, so only its CRC can tell.
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4] = bytes(b ^ 0xFF for b in data[mid : mid + 4])
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    torch.save({"weights": torch.zeros(3)}, path)  # a torch file, but not a memlab checkpoint


def _delete(path: Path) -> None:
    path.unlink()


Damage = Callable[[Path], None]

# Per pipeline level: the files to damage, each in its own run, and how.
BLOCK_FILES: dict[str, Damage] = {
    f"{RUNS}/n80/mlp-w8/memorize/block0/checkpoint.pt": _truncate,
    f"{RUNS}/n80/mlp-w16/memorize/block0/checkpoint.pt": _foreign,
    f"{RUNS}/n160/mlp-w8/memorize/block0/checkpoint.pt": _delete,
    f"{RUNS}/n160/mlp-w16/memorize/block0/history.parquet": _truncate,
    f"{RUNS}/n80/cnn-w4/memorize/block0/evaluation.npz": _flip_bits,
    f"{RUNS}/n160/cnn-w4/regularized/block0/metrics.parquet": _truncate,
}
# Made from the split (itself an .npz like these, as are the labels: their repair reruns the
# whole study), read by a block's training and by every evaluation.
DATASET_FILES: dict[str, Damage] = {
    "results/data/digits/subsets-n80/block0.npz": _flip_bits,
    "results/data/digits/perturbed.npz": _truncate,
}


def _env() -> dict[str, str]:
    # This test's environment as it is: no install from the copy into it.
    return {
        **os.environ,
        "MEMLAB_VENV": str(Path(sys.executable).parents[1]),
        "MEMLAB_SKIP_SETUP": "1",
    }


def _run_sh(work: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["./run.sh", *args], cwd=work, capture_output=True, text=True, env=_env(), timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _tables(results: Path) -> dict[str, bytes]:
    files = [*(results / "tables").glob("*"), results / "findings.json"]
    return {p.name: p.read_bytes() for p in files if p.is_file()}


def _finished_copy(smoke_study, dest: Path) -> Path:
    """A copy of the finished smoke study (times and Snakemake's records kept) with run.sh."""
    work = copy_workflow(dest)
    shutil.copytree(smoke_study[0] / "results", work / "results")
    shutil.copytree(smoke_study[0] / ".snakemake", work / ".snakemake", symlinks=True)
    for name in ("run.sh", "pyproject.toml"):
        shutil.copy2(ROOT / name, work / name)
    return work


@pytest.mark.parametrize("files", [BLOCK_FILES, DATASET_FILES], ids=["blocks", "datasets"])
def test_damaged_or_missing_outputs_are_remade_to_the_same_bytes(smoke_study, tmp_path, files):
    work = _finished_copy(smoke_study, tmp_path)
    good = {rel: (work / rel).read_bytes() for rel in files}
    for rel, how in files.items():
        how(work / rel)
    damaged = {rel: (work / rel).read_bytes() for rel, how in files.items() if how is not _delete}

    plan = _run_sh(work, "plan", *CONFIG).stdout.splitlines()
    # Every damaged file is named first, with how it is damaged, before any job.
    head = plan[: len(files)]
    for rel, how in files.items():
        expected = f"memlab: missing: {rel}" if how is _delete else f"memlab: damaged: {rel}: "
        assert any(line.startswith(expected) for line in head), (rel, plan[:20])
    assert plan[len(files)] == "memlab: this run remakes them and what was computed from them"
    assert {rel: (work / rel).read_bytes() for rel in damaged} == damaged  # plan moves nothing

    out = _run_sh(work, "study", *CONFIG, "--cores", "2").stderr
    for rel, how in files.items():
        assert (work / rel).read_bytes() == good[rel], rel  # remade to the very same bytes
        if how is not _delete:
            # Set aside, never deleted: the damaged bytes are kept under results/damaged/.
            moved = list((work / "results/damaged").glob(f"*/{Path(rel).relative_to('results')}"))
            assert len(moved) == 1 and damage(moved[0]), rel
            assert f"memlab: damaged: {rel}: " in out
    assert _tables(work / "results") == _tables(smoke_study[0] / "results")
    # And the study is whole: a second run has nothing to do.
    assert "Nothing to be done" in snakemake(work, *CONFIG, "-n").stdout
    assert "memlab: " not in _run_sh(work, "plan", *CONFIG).stdout.split("memlab: nothing")[0]


def test_a_dry_run_moves_nothing(smoke_study, tmp_path):
    work = _finished_copy(smoke_study, tmp_path)
    ckpt = work / f"{RUNS}/n80/mlp-w8/memorize/block0/checkpoint.pt"
    _truncate(ckpt)
    cut = ckpt.read_bytes()
    proc = _run_sh(work, "study", *CONFIG, "-n")
    assert f"memlab: damaged: {ckpt.relative_to(work)}" in proc.stderr
    assert ckpt.read_bytes() == cut and not (work / "results/damaged").exists()
    # The dry run lists the jobs the repair would run: the block's training among them.
    assert "rule train:" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("how", "phrase"),
    [(_truncate, "not a readable zip"), (_flip_bits, "CRC"), (_foreign, "not a memlab-checkpoint")],
)
def test_integrity_names_how_a_checkpoint_is_damaged(smoke_study, tmp_path, how, phrase):
    src = smoke_study[0] / f"{RUNS}/n80/mlp-w8/memorize/block0/checkpoint.pt"
    ckpt = tmp_path / "checkpoint.pt"
    shutil.copy2(src, ckpt)
    assert damage(ckpt) is None
    how(ckpt)
    assert phrase in (damage(ckpt) or "")


def test_a_job_reading_a_damaged_checkpoint_says_what_works_as_printed(smoke_study, tmp_path):
    """Snakemake called directly (no repair first): the failing job names the file and a command
    that works from the project directory; following it restores the same bytes."""
    work = _finished_copy(smoke_study, tmp_path)
    ckpt = work / f"{RUNS}/n80/mlp-w8/memorize/block0/checkpoint.pt"
    good = ckpt.read_bytes()
    _truncate(ckpt)  # a foreign file reads the same way (test_integrity_names_how...)
    others = {p: p.read_bytes() for p in (work / "results/runs").rglob("checkpoint.pt")}
    # Rewritten, the checkpoint is newer than its evaluation: Snakemake reruns the evaluation.
    proc = snakemake(work, *CONFIG, "--cores", "1", check=False)
    rel = str(ckpt.relative_to(work))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out[-3000:]
    hint = f"./run.sh study --forcerun {rel}"
    assert rel in out and hint in out and ("unreadable" in out or "not a memlab-checkpoint" in out)
    for p, content in others.items():
        assert p.read_bytes() == content, p  # nothing else touched, the damaged file kept
    # The hint, with the config (two cores: what it remakes is not about the order of its jobs).
    _run_sh(work, "study", *CONFIG, "--cores", "2", "--forcerun", rel)
    assert ckpt.read_bytes() == good  # retrained to the very same bytes
    assert "Nothing to be done" in snakemake(work, *CONFIG, "-n").stdout


def test_another_studys_figures_and_tables_are_moved_out_of_the_way(smoke_study, tmp_path):
    """Studies share results/, but results/figures and results/tables show the study that ran
    last: what it does not make is moved to results/previous/ (a run of chosen targets moves
    nothing: it does not know the whole study)."""
    work = _finished_copy(smoke_study, tmp_path)
    strays = ["results/figures/noise_sweep.png", "results/tables/removal.csv"]
    for rel in strays:
        (work / rel).write_bytes(b"from another study")
    ours = sorted(p.name for p in (work / "results/figures").iterdir())

    target = "results/tables/metrics.parquet"
    _run_sh(work, "study", *CONFIG, "--cores", "1", target)
    assert all((work / rel).exists() for rel in strays)

    plan = _run_sh(work, "plan", *CONFIG).stdout
    assert "would move to results/previous/" in plan and "noise_sweep.png" in plan

    out = _run_sh(work, "study", *CONFIG, "--cores", "1").stderr
    assert "not made by this study, moved to results/previous/" in out
    for rel in strays:
        assert not (work / rel).exists()
        moved = list((work / "results/previous").glob(f"*/{Path(rel).relative_to('results')}"))
        assert len(moved) == 1 and moved[0].read_bytes() == b"from another study"
    assert sorted(p.name for p in (work / "results/figures").iterdir()) == [
        n for n in ours if n != "noise_sweep.png"
    ]
