"""``./run.sh plan``: after a config edit it names the changed setting, old -> new, and the jobs.

A small study (one MLP width, k-NN, two regimes, one corruption) is run once with the real
snakemake CLI; each test edits a copy of its config and runs ``python -m memlab.ops.plan``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL_CONFIG, plan_stdout, small_config

from memlab.ops.plan import ABSENT, Change, describe_changes, diff, pair_params, params_reasons
from memlab.ops.snakemake import PlannedJob

CONFIG = SMALL_CONFIG


def study_config(**edits) -> dict:
    """The small study (conftest.small_config: about 20 jobs), with ``edits`` applied by dotted
    key."""
    config = small_config()
    for key, value in edits.items():
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


@pytest.fixture(scope="module")
def work(small_study) -> Path:
    """The small study, run once for the session (tests/e2e/test_reliability.py compares with
    it): the tests here add edited configs to it and plan, and change no result."""
    return small_study


def plan(work: Path, config: dict | None = None) -> str:
    """The plan's stdout for ``config`` (the study's own when None)."""
    return plan_stdout(work, config, CONFIG if config is None else "config/edited.yaml")


def groups(out: str) -> dict[str, list[str]]:
    """Reason line -> the job lines under it."""
    found: dict[str, list[str]] = {}
    header = None
    for line in out.splitlines():
        if line.startswith("  "):
            found[header].append(line.strip())
        elif not line.startswith("memlab:"):
            header = line.rstrip(":")
            found[header] = []
    return found


def count(out: str) -> int:
    m = re.search(r"memlab: (\d+) jobs? would run\.", out)
    return int(m.group(1)) if m else 0


@pytest.mark.e2e
def test_plan_names_the_changed_setting(work):
    assert plan(work).strip() == "memlab: nothing to run."
    out = plan(work, study_config(**{"regimes.regularized.weight_decay": 0.5}))
    found = groups(out)
    train = found["settings.weight_decay, run.weight_decay: 1.0 -> 0.5"]
    assert train == [
        "train dataset=digits noise=0.2 size=80 model=mlp-w8 regime=regularized block=0"
    ]
    evaluate = found["run.weight_decay: 1.0 -> 0.5; input changed: remade by train"]
    assert evaluate == [
        "evaluate dataset=digits noise=0.2 size=80 model=mlp-w8 regime=regularized block=0"
    ]
    # Nothing else trains or evaluates again: not the other regime, not k-NN, not the data.
    jobs = [job for members in found.values() for job in members]
    assert not [j for j in jobs if "regime=memorize" in j or "knn" in j]
    assert not {j.split()[0] for j in jobs} & {"prepare", "label_noise", "subsample", "perturb"}
    assert (
        "study.regimes.regularized.weight_decay: 1.0 -> 0.5; input changed: remade by analyze, "
        "figures" in found
    )
    assert count(out) == len(jobs)


@pytest.mark.e2e
def test_plan_calls_a_new_size_new(work):
    out = plan(work, study_config(sizes=[80, 120]))
    found = groups(out)
    new = found["new"]
    assert new[0] == "subsample dataset=digits size=120 block=0"
    assert all("size=120" in job for job in new)
    assert [job.split()[0] for job in new] == ["subsample"] + ["train"] * 3 + ["evaluate"] * 3
    assert "study.sizes: [80] -> [80, 120]; input changed: remade by analyze, figures" in found
    assert not [j for members in found.values() for j in members if "size=80" in j]


@pytest.mark.e2e
def test_plan_says_library_code_changed(work):
    figures = work / "src/memlab/reporting/figures.py"
    original = figures.read_text()
    try:
        figures.write_text(original + "\n_PLANNED = 1\n")  # a real change to its syntax tree
        drawn = ("accuracy_vs_size", "generalization_gap", "learning_curves", "robustness")
        # The findings page shows figures inline: it is remade with them.
        assert groups(plan(work)) == {
            "library code changed": [f"figures figure={name}" for name in drawn],
            "input changed: remade by figures": ["summarize"],
        }
    finally:
        figures.write_text(original)


def test_plan_outside_a_workflow_says_so(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "memlab.ops.plan"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "no Snakefile" in proc.stderr


def test_diff_names_nested_leaves():
    old = {"training": {"lr": 0.003, "batch_size": 32}, "sizes": [80, 160], "seed": 0}
    new = {"training": {"lr": 0.001, "batch_size": 32}, "sizes": [80, 240], "extra": 1, "seed": 0}
    assert diff(old, new) == [
        Change("extra", ABSENT, 1),
        Change("sizes[1]", 160, 240),
        Change("training.lr", 0.003, 0.001),
    ]
    assert diff([1, 2], [1, 2, 3], "sizes") == [Change("sizes", [1, 2], [1, 2, 3])]
    assert diff({"a": 1}, {"a": 1.0}) == [Change("a", 1, 1.0)]  # Snakemake compares reprs
    assert diff({"a": {"b": [1]}}, {"a": {"b": [1]}}) == []


def test_describe_changes_merges_a_setting_copied_into_params():
    changes = [Change("settings.lr", 0.003, 0.001), Change("run.lr", 0.003, 0.001)]
    changes += [Change(f"runs.r{i}", ABSENT, {"lr": 0.001}) for i in range(5)]
    assert describe_changes(changes) == [
        "settings.lr, run.lr: 0.003 -> 0.001",
        "runs.r0 and 4 more: added = {'lr': 0.001}",
    ]


def planned(params: dict, before: list, now: list) -> PlannedJob:
    return PlannedJob(
        rule="train",
        wildcards={},
        output=["out"],
        params={k: repr(v) for k, v in params.items()},
        params_before=[repr(v) for v in before],
        params_now=[repr(v) for v in now],
        missing=[],
        recorded=True,
        incomplete=[],
        updated_input=[],
        upstream_input=[],
        input_changed=False,
        code_changed=False,
        software_changed=False,
        forced=False,
    )


def test_params_are_matched_by_likeness_and_code_is_named():
    new = {
        "code": "feedbeef",
        "model": {"kind": "mlp", "width": 8},
        "settings": {"lr": 0.001, "wd": 0.0},
        "seed": 0,
    }
    # The records keep values only, sorted: which old dict was `settings` must be inferred.
    before = ["0123abcd", {"lr": 0.003, "wd": 0.0}, {"kind": "mlp", "width": 4}]
    now = ["feedbeef", new["settings"], new["model"]]
    assert params_reasons(planned(new, before, now)) == [
        "library code changed",
        "model.width: 4 -> 8",
        "settings.lr: 0.003 -> 0.001",
    ]
    # Values of different kinds are never taken for each other (unless one of each is left).
    named = {"seed": "1", "n": "'x'", "m": "'y'"}
    pairs, added, removed = pair_params(named, ["2", "[1]", "(2,)"], ["1", "'x'", "'y'"])
    assert pairs == [("seed", "2", "1")]
    assert added == ["n", "m"] and removed == ["[1]", "(2,)"]
    assert pair_params({"n": "'x'"}, ["[1]"], ["'x'"]) == ([("n", "[1]", "'x'")], [], [])
