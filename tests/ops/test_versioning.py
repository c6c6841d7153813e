"""DVC versioning through the real git, dvc and snakemake CLIs (no mocks).

A tiny study (digits and a user CSV under data/) is run, recorded and committed as revision A;
one regime's weight decay is changed, rerun, recorded and committed as B. Then: a fresh clone
restores B without training; checking out A restores A's checkpoints, and the evaluations B left
behind for the changed regime are recomputed, never trusted; switching back restores B.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, copy_workflow, snakemake

from memlab.ops import versioning
from memlab.ops.snakemake import Metadata
from memlab.ops.versioning import Entry, Manifest

pytestmark = pytest.mark.e2e

CONFIG = "config/tiny.yaml"
# A broken file under data/ that no dataset of the study names.
STRAY = "data/broken.csv"
DATA_RULES = {"prepare", "label_noise", "subsample", "perturb"}
# As in a fresh clone: results/ exists (with its README) while what lands in it is git-ignored.
DVC_FILES = (".dvc/config", ".dvc/.gitignore", ".dvcignore", ".gitignore", "results/README.md")


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def git(cwd: Path, *args: str) -> str:
    return run(cwd, "git", *args).stdout.strip()


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(cwd, str(Path(sys.executable).with_name("dvc")), *args, check=check)


def versioning_cli(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(cwd, sys.executable, "-m", "memlab.ops.versioning", *args, check=check)


def planned(work: Path) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job `snakemake -n` plans."""
    out = snakemake(work, "-n", "--configfile", CONFIG).stdout
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", out):
        m = re.match(r"rule (\w+):", block)
        if m:
            wc = re.search(r"wildcards: (.*)", block)
            pairs = dict(p.split("=", 1) for p in wc.group(1).split(", ")) if wc else {}
            jobs.append((m.group(1), pairs))
    return jobs


def rules(jobs: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [r for r, _ in jobs]


def checkpoints(work: Path) -> dict[str, bytes]:
    return {
        p.relative_to(work).as_posix(): p.read_bytes()
        for p in sorted((work / "results/runs").rglob("checkpoint.pt"))
    }


def lock_md5s(work: Path) -> dict[str, str]:
    return versioning.lock_hashes(work)


def tiny_config(weight_decay: float) -> dict:
    """The smoke study cut down: digits and a user CSV, one size, one MLP width and 1-NN."""
    cfg = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    cfg["datasets"] = {
        "digits": {"kind": "digits"},
        "table": {"kind": "file", "path": "data/table.csv", "label_column": "target"},
    }
    cfg["sizes"] = [50]
    cfg["models"] = {
        "mlp": {"kind": "mlp", "depth": 1, "widths": [8]},
        "knn": {"kind": "knn", "k": [1]},
    }
    cfg["regimes"]["regularized"]["weight_decay"] = weight_decay
    cfg["perturbations"] = {"names": ["gaussian_noise"], "severities": [1]}
    return cfg


def write_table(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    frame["target"] = (x[:, 0] + x[:, 1] > 0).astype(int)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> dict:
    """A git+DVC repository with two recorded revisions, A and B (B checked out)."""
    base = tmp_path_factory.mktemp("versioning")
    work = base / "work"
    work.mkdir()
    copy_workflow(work)
    for name in DVC_FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, work / name)
    git(work, "init", "-q", "-b", "main")
    git(work, "config", "user.name", "memlab test")
    git(work, "config", "user.email", "test@memlab.invalid")
    remote = base / "remote"
    # The one line that points the default remote elsewhere (here: per machine, not committed).
    dvc(work, "remote", "modify", "--local", "local", "url", str(remote))
    (work / CONFIG).write_text(yaml.safe_dump(tiny_config(weight_decay=1.0)))
    git(work, "add", "-A")
    git(work, "commit", "-qm", "workflow")
    write_table(work / "data/table.csv")  # user data: versioned by DVC, not git
    (work / STRAY).write_text("not a table\x00")  # never read by the study: never versioned

    facts: dict = {"work": work, "remote": remote, "base": base}
    snakemake(work, "--configfile", CONFIG, "--cores", "2")
    facts["metrics_A"] = pd.read_parquet(work / "results/tables/metrics.parquet")
    facts["record_A"] = versioning_cli(work, "record", "--configfile", CONFIG)
    facts["dvc_status_A"] = dvc(work, "status", "--quiet", check=False).returncode
    facts["cloud_status_A"] = dvc(work, "status", "--cloud").stdout
    facts["plan_after_record_A"] = planned(work)
    facts["staged_A"] = git(work, "diff", "--cached", "--name-only").split()
    git(work, "commit", "-qm", "A: results recorded")
    facts["A"] = git(work, "rev-parse", "HEAD")
    facts["ckpt_A"] = checkpoints(work)
    facts["md5_A"] = lock_md5s(work)
    (work / STRAY).unlink()  # its part is done: git status stays clean for the tests

    (work / CONFIG).write_text(yaml.safe_dump(tiny_config(weight_decay=0.05)))
    snakemake(work, "--configfile", CONFIG, "--cores", "2")
    facts["record_B"] = versioning_cli(work, "record", "--configfile", CONFIG)
    git(work, "commit", "-qam", "B: regularized weight decay 0.05")
    facts["B"] = git(work, "rev-parse", "HEAD")
    facts["ckpt_B"] = checkpoints(work)
    facts["md5_B"] = lock_md5s(work)
    return facts


def test_record_leaves_dvc_and_snakemake_clean(repo):
    assert repo["dvc_status_A"] == 0
    assert "in sync" in repo["cloud_status_A"]
    assert repo["plan_after_record_A"] == []
    assert set(repo["staged_A"]) == {
        "versions/dvc.yaml",
        "versions/dvc.lock",
        "versions/manifest.json",
        "versions/findings.json",
        "data/.gitignore",
    }
    md5 = repo["md5_A"]
    assert "data/table.csv" in md5
    assert STRAY not in md5 and STRAY not in Manifest.read(repo["work"]).files
    assert "broken.csv" not in (repo["work"] / "data/.gitignore").read_text()
    assert {p for p in md5 if p.endswith("checkpoint.pt")} == set(repo["ckpt_A"])
    # 2 datasets x (MLP x 2 regimes + 1-NN), each checkpoint beside its learning curves.
    assert len(repo["ckpt_A"]) == 6
    assert any(p.startswith("results/data/table/") for p in md5)


def test_push_moves_only_missing_content(repo):
    work = repo["work"]
    new = set(repo["md5_B"].values()) - set(repo["md5_A"].values())
    # Only the regularized runs changed: their checkpoints and histories, nothing else.
    changed = {p for p in repo["md5_B"] if repo["md5_B"][p] != repo["md5_A"].get(p)}
    assert changed and all("/regularized/" in p for p in changed)
    assert f"{len(new)} files pushed" in repo["record_B"].stderr
    assert "Everything is up to date" in dvc(work, "push").stdout
    objects = [p for p in (repo["remote"] / "files").rglob("*") if p.is_file()]
    assert len(objects) == len(set(repo["md5_A"].values()) | set(repo["md5_B"].values()))


def test_fresh_clone_restores_without_training(repo):
    clone = repo["base"] / "clone"
    git(repo["base"], "clone", "-q", str(repo["work"]), str(clone))
    dvc(clone, "remote", "modify", "--local", "local", "url", str(repo["remote"]))
    assert not (clone / "data/table.csv").exists()
    versioning_cli(clone, "restore")

    assert checkpoints(clone) == repo["ckpt_B"]
    assert filecmp.cmp(clone / "data/table.csv", repo["work"] / "data/table.csv", shallow=False)
    for path, md5 in repo["md5_B"].items():
        assert versioning.md5_file(clone / path) == md5, path
    jobs = planned(clone)
    assert "train" not in rules(jobs) and not DATA_RULES & set(rules(jobs))
    # Evaluations are not versioned: every run is evaluated from the restored checkpoints.
    assert rules(jobs).count("evaluate") == len(repo["ckpt_B"])
    assert dvc(clone, "status", "--quiet", check=False).returncode == 0
    assert "Everything is up to date" in dvc(clone, "pull").stdout
    # The restored checkpoints carry their recorded Snakemake metadata: a config that differs
    # from the recorded one still retrains exactly what it changes (without metadata Snakemake
    # would check nothing but mtimes and trust them).
    (clone / CONFIG).write_text(yaml.safe_dump(tiny_config(weight_decay=0.5)))
    trains = [wc for r, wc in planned(clone) if r == "train"]
    assert trains and {wc["regime"] for wc in trains} == {"regularized"}


def test_restore_does_not_trust_what_it_cannot_verify(repo):
    """A script edited after the record: the train outputs it made are rebuilt, not blessed."""
    clone = repo["base"] / "clone-edited"
    git(repo["base"], "clone", "-q", str(repo["work"]), str(clone))
    dvc(clone, "remote", "modify", "--local", "local", "url", str(repo["remote"]))
    with open(clone / "scripts/train.py", "a") as fh:
        fh.write("\n# edited after the results were recorded\n")
    proc = versioning_cli(clone, "restore")
    assert "did not match its record" in proc.stdout
    assert not list((clone / "results/runs").rglob("checkpoint.pt"))
    jobs = planned(clone)
    assert rules(jobs).count("train") == len(repo["ckpt_B"])
    assert not DATA_RULES & set(rules(jobs))


def test_record_refuses_results_that_are_out_of_date(repo):
    work = repo["work"]
    stale = work / "config/stale.yaml"
    stale.write_text(yaml.safe_dump(tiny_config(weight_decay=0.3)))
    try:
        proc = versioning_cli(work, "record", "--configfile", "config/stale.yaml", check=False)
    finally:
        stale.unlink()
    assert proc.returncode == 1
    assert "out of date" in proc.stderr and "params changed" in proc.stderr
    assert git(work, "status", "--porcelain") == ""


def test_switching_revisions_restores_each_ones_results(repo):
    work = repo["work"]
    git(work, "checkout", "-q", repo["A"])
    versioning_cli(work, "restore")
    assert checkpoints(work) == repo["ckpt_A"]
    jobs = planned(work)
    assert "train" not in rules(jobs) and not DATA_RULES & set(rules(jobs))
    # B's evaluations of the changed regime were left behind: they must be recomputed.
    evaluated = [wc for r, wc in jobs if r == "evaluate"]
    assert {wc["regime"] for wc in evaluated} == {"regularized"}
    assert len(evaluated) == sum("/regularized/" in p for p in repo["ckpt_A"])
    snakemake(work, "--configfile", CONFIG, "--cores", "2")
    pd.testing.assert_frame_equal(
        pd.read_parquet(work / "results/tables/metrics.parquet"), repo["metrics_A"]
    )

    git(work, "checkout", "-q", "main")
    versioning_cli(work, "restore")
    assert checkpoints(work) == repo["ckpt_B"]
    jobs = planned(work)
    assert "train" not in rules(jobs)
    assert {wc["regime"] for r, wc in jobs if r == "evaluate"} == {"regularized"}
    assert dvc(work, "status", "--quiet", check=False).returncode == 0


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in tree.items():
        out |= _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def test_dvc_metrics_compare_the_recorded_findings(repo):
    """`dvc metrics show` reads the recorded findings; after a learning-rate change is rerun and
    recorded as revision C, `dvc metrics diff B C` lists exactly the numbers that changed, old
    and new. (Runs last: it leaves C checked out.)"""
    work = repo["work"]
    cfg = tiny_config(weight_decay=0.05)
    cfg["training"]["lr"] = 0.02  # the unregularized baseline too: the findings' numbers move
    (work / CONFIG).write_text(yaml.safe_dump(cfg))
    snakemake(work, "--configfile", CONFIG, "--cores", "2")
    versioning_cli(work, "record", "--configfile", CONFIG)
    git(work, "commit", "-qam", "C: learning rate 0.02")
    revs = {"B": repo["B"], "C": git(work, "rev-parse", "HEAD")}
    recorded = {
        name: _leaves(json.loads(git(work, "show", f"{rev}:versions/findings.json")))
        for name, rev in revs.items()
    }
    assert recorded["C"] == _leaves(json.loads((work / "results/findings.json").read_text()))
    shown = json.loads(dvc(work, "metrics", "show", "--json").stdout)
    (workspace,) = shown.values()  # keyed by revision: "" or "workspace", by DVC version
    assert _leaves(workspace["data"]["versions/findings.json"]["data"]) == recorded["C"]
    diff = json.loads(dvc(work, "metrics", "diff", revs["B"], revs["C"], "--json").stdout)
    changed = diff.get("versions/findings.json", {})
    a, b = recorded["B"], recorded["C"]
    expected = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert "heldout_cost.gap.value" in expected
    assert set(changed) == expected
    for key, entry in changed.items():
        assert (entry["old"], entry["new"]) == (a.get(key), b.get(key))


# ---------------------------------------------------------------------------------------------
# The settling step alone (no DVC, no Snakemake run)


def _entry(root: Path, path: str, inputs: list[str], rule: str | None = "r") -> Entry:
    meta = None if rule is None else {"rule": rule, "input": inputs, "record_format_version": 6}
    return Entry(
        path=path,
        md5=versioning.md5_file(root / path),
        size=(root / path).stat().st_size,
        rule=rule,
        inputs=inputs,
        metadata=meta,
    )


def test_settle_orders_mtimes_and_trusts_only_what_matches(tmp_path):
    files = [("raw", "u"), ("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("eval", "e")]
    for name, text in files:
        (tmp_path / name).write_text(text)
    manifest = Manifest(
        files={
            "raw": _entry(tmp_path, "raw", [], rule=None),
            "a": _entry(tmp_path, "a", ["raw"]),
            "b": _entry(tmp_path, "b", ["a"]),
            "c": _entry(tmp_path, "c", ["b"]),
            "d": _entry(tmp_path, "d", ["c"]),
        },
        sources={},
        snakemake_args=[],
    )
    # Newest first: the reverse of what Snakemake needs; "eval" (not recorded, made from the
    # old "b") is newer than every recorded file.
    for i, name in enumerate(["d", "c", "b", "a", "raw", "eval"]):
        os.utime(tmp_path / name, ns=(10**18 + i * 10**9, 10**18 + i * 10**9))
    eval_mtime = (tmp_path / "eval").stat().st_mtime_ns
    (tmp_path / "c").write_text("not what was recorded")

    report = versioning.settle(tmp_path, manifest, rewritten={"b"}, now_ns=2 * 10**18)

    m = {n: (tmp_path / n).stat().st_mtime_ns for n in ["raw", "a", "b"]}
    assert m["raw"] < m["a"] < m["b"]
    assert m["b"] > eval_mtime == (tmp_path / "eval").stat().st_mtime_ns
    # "c" is not what was recorded (DVC did not replace it): left exactly as it was. "d" is, but
    # was made from the recorded "c": it must be rebuilt, not trusted (DVC still has it).
    assert report.kept == ["c"] and (tmp_path / "c").read_text() == "not what was recorded"
    assert report.deleted == ["d"] and not (tmp_path / "d").exists()
    assert set(report.trusted) == {"raw", "a", "b"}
    meta = Metadata(tmp_path / ".snakemake")
    assert meta.read("b")["input"] == ["a"]
    assert meta.read("c") is None and meta.read("d") is None

    # Nothing changed since: nothing is re-timestamped (downstream outputs stay valid) ...
    again = versioning.settle(tmp_path, manifest)
    assert again.touched == [] and (tmp_path / "b").stat().st_mtime_ns == m["b"]
    # ... but the same content put back with an old mtime behind our back (as a hardlinked
    # `dvc checkout` does) is not taken as it was left: it is re-timestamped, after its input
    # and before what was made from it.
    (tmp_path / "a").unlink()
    (tmp_path / "a").write_text("1")
    os.utime(tmp_path / "a", ns=(10**18, 10**18))
    third = versioning.settle(tmp_path, manifest, now_ns=3 * 10**18)
    assert third.touched == ["a", "b"]
    m3 = {n: (tmp_path / n).stat().st_mtime_ns for n in ["raw", "a", "b"]}
    assert m3["raw"] == m["raw"] < 3 * 10**18 < m3["a"] < m3["b"]


def test_manifest_round_trips(tmp_path):
    (tmp_path / "x").write_text("x")
    entry = _entry(tmp_path, "x", ["in/b", "in/a"])
    entry.metadata["conda_env"] = "ZW52"
    manifest = Manifest(files={"x": entry}, sources={"s.py": "0" * 32}, snakemake_args=["-n"])
    manifest.write(tmp_path)
    again = Manifest.read(tmp_path)
    assert again.files["x"] == entry and again.sources == manifest.sources
    assert again.snakemake_args == ["-n"]
