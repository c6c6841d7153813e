"""``./run.sh plan [snakemake args]``: what a run would redo and why, one line per job.

Snakemake's dry run gives each job's reason, but for a params change it prints every changed
param whole, before and after: long dicts in which the one edited value is hard to find. Here
the recorded params are matched to the new ones by name and compared leaf by leaf, so a
one-value config edit reads ``settings.lr, run.lr: 0.003 -> 0.001``. Jobs are grouped by their
reasons, in pipeline order; the DAG comes from :func:`memlab.ops.snakemake.planned_jobs`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from memlab.ops.repair import Problem, forcerun_args, inspect, tidy
from memlab.ops.snakemake import PlannedJob, planned_jobs

# The params entry every rule carries: a hash of the library code its script runs
# (workflow/rules/common.smk), so its change is named, not shown as two hashes.
CODE_PARAM = "code"
# Where Snakemake looks for the workflow when no --snakefile is given.
SNAKEFILES = ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile")
# A value longer than this is cut in the output (a whole list of sizes, say).
MAX_VALUE = 60
# Paths of one change listed before the rest are only counted.
MAX_PATHS = 3
# An added or removed entry is shown with its value only when that is this short.
SHORT_VALUE = 20


class _Absent:
    """The old or new side of a key that one side lacks."""

    def __repr__(self) -> str:
        return "(none)"


ABSENT = _Absent()


class Raw(str):
    """A recorded param that is no Python literal (Snakemake's repr of e.g. a range): compared
    as text."""

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Change:
    """One leaf that differs: its path (``settings.lr``) and the old and new values."""

    path: str
    old: Any
    new: Any


def diff(old: Any, new: Any, path: str = "") -> list[Change]:
    """The leaves that differ between ``old`` and ``new``, by dotted path (``[i]`` for a list
    index). Dicts are compared key by key, lists of equal length item by item; anything else
    (and lists whose length changed) is one leaf."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in sorted({*old, *new}, key=str):
            sub = f"{path}.{key}" if path else str(key)
            changes += diff(old.get(key, ABSENT), new.get(key, ABSENT), sub)
        return changes
    if isinstance(old, list | tuple) and isinstance(new, list | tuple) and len(old) == len(new):
        return [
            c
            for i, (o, n) in enumerate(zip(old, new, strict=True))
            for c in diff(o, n, f"{path}[{i}]")
        ]
    # By repr, as Snakemake compares: 1 and 1.0 are different params to it.
    return [] if repr(old) == repr(new) else [Change(path, old, new)]


def parse_param(text: str) -> Any:
    """A serialized param (a repr) back as a value; text that is no literal stays text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return Raw(text)


def _kind(value: Any) -> type:
    # Numbers pair with numbers: an edit from 1 to 1.5 changes the type.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float
    return type(value)


def _likeness(old: Any, new: Any) -> float:
    """How alike two params are, to tell which recorded value a new param replaced (the
    records keep values only): 0 for different kinds, more for shared dict keys or equal
    lengths."""
    if _kind(old) is not _kind(new):
        return 0.0
    if isinstance(old, dict):
        keys = set(old) | set(new)
        same = sum(1 for k in keys if k in old and k in new and repr(old[k]) == repr(new[k]))
        return 1 + (len(set(old) & set(new)) + same) / (2 * len(keys) or 1)
    if isinstance(old, list | tuple | str):
        return 1.5 if len(old) == len(new) else 1.0
    return 1.0


def pair_params(
    named: dict[str, str], before: Iterable[str], now: Iterable[str]
) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """Match the recorded values that are gone (``before``) to the new params by name.

    ``named`` maps each param's name to its serialized new value; ``now`` are the serialized
    new values the records lack. Returns (name, old, new) pairs, names of new params without a
    recorded counterpart, and recorded values no param took over."""
    new_values = set(now)
    names = [name for name, value in named.items() if value in new_values]
    olds = list(before)
    parsed = {text: parse_param(text) for text in [*olds, *(named[n] for n in names)]}
    scored = sorted(
        (
            (-_likeness(parsed[o], parsed[named[n]]), i, j)
            for i, n in enumerate(names)
            for j, o in enumerate(olds)
        )
    )
    pairs, used_names, used_olds = [], set(), set()
    for score, i, j in scored:
        if score < 0 and i not in used_names and j not in used_olds:
            pairs.append((names[i], olds[j], named[names[i]]))
            used_names.add(i)
            used_olds.add(j)
    added = [n for i, n in enumerate(names) if i not in used_names]
    removed = [o for j, o in enumerate(olds) if j not in used_olds]
    if len(added) == 1 and len(removed) == 1:  # one each: the one replaced the other
        pairs.append((added[0], removed[0], named[added[0]]))
        added, removed = [], []
    pairs.sort(key=lambda pair: names.index(pair[0]))  # the rule's order of params
    return pairs, added, removed


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 3] + "..."


def describe_changes(changes: Sequence[Change]) -> list[str]:
    """``path, path: old -> new`` per distinct (old, new): a setting copied into several params
    (a regime's lr in ``settings`` and ``run``) reads as one change."""
    by_values: dict[str, list[str]] = {}
    for c in changes:
        by_values.setdefault(_show_change(c.old, c.new), []).append(c.path)
    return [f"{_paths(paths)}: {change}" for change, paths in by_values.items()]


def _show_change(old: Any, new: Any) -> str:
    # An added or removed entry (a new size's run, say) is named, not printed whole.
    if old is ABSENT or new is ABSENT:
        value = new if old is ABSENT else old
        text = f" = {_show(value)}" if len(repr(value)) <= SHORT_VALUE else ""
        return ("added" if old is ABSENT else "removed") + text
    return f"{_show(old)} -> {_show(new)}"


def _paths(paths: list[str]) -> str:
    # The analysis rules carry every run's columns: one edit changes a leaf in each.
    if len(paths) <= MAX_PATHS:
        return ", ".join(paths)
    return f"{paths[0]} and {len(paths) - 1} more"


def params_reasons(job: PlannedJob) -> list[str]:
    """The job's params changes in words: changed settings by path, 'library code changed'."""
    pairs, added, removed = pair_params(job.params, job.params_before, job.params_now)
    reasons, changes = [], []
    for name, old, new in pairs:
        if name == CODE_PARAM:
            reasons.append("library code changed")
        else:
            changes += diff(parse_param(old), parse_param(new), name)
    reasons += describe_changes(changes)
    reasons += [f"new param {name} = {_show(parse_param(job.params[name]))}" for name in added]
    reasons += [f"a param is gone (was {_show(parse_param(old))})" for old in removed]
    return reasons


def reasons(
    job: PlannedJob, makers: dict[str, str], problems: Mapping[str, Problem] = MappingProxyType({})
) -> list[str]:
    """Why ``job`` would run, in words, most telling first. ``makers`` maps each output of the
    planned jobs to its rule, to say which rerun remakes an input; ``problems`` are the damaged
    or missing outputs the run remakes (:mod:`memlab.ops.repair`), by path."""
    if job.missing and not job.recorded:
        return ["new"]  # whatever else holds (its inputs are made too) adds nothing
    found = [problems[f].describe() for f in job.output if f in problems]
    if found:
        return found  # the run forces it for that; its other outputs go with it
    out = []
    if job.missing:
        out.append("output missing")
    if job.incomplete:
        out.append("incomplete (an interrupted run)")
    if job.forced:
        out.append("forced")
    out += params_reasons(job)
    if job.code_changed:
        out.append("rule code changed (script, shell or run block)")
    if job.updated_input:
        out.append(f"input changed: {', '.join(job.updated_input)}")
    if job.input_changed:
        out.append("set of input files changed")
    if job.software_changed:
        out.append("software environment changed")
    if job.upstream_input:
        rules = sorted({makers.get(f, "?") for f in job.upstream_input})
        out.append(f"input changed: remade by {', '.join(rules)}")
    return out or ["(no reason given by Snakemake)"]


def job_label(job: PlannedJob) -> str:
    """The rule and its wildcards (``train dataset=digits ... block=0``), or the rule alone."""
    return " ".join([job.rule, *(f"{k}={v}" for k, v in job.wildcards.items())])


def format_plan(jobs: Sequence[PlannedJob], problems: Sequence[Problem] = ()) -> list[str]:
    """The plan's lines: per group of jobs with the same reasons, the reasons, then one line
    per job; a final count. Jobs without outputs (the target rule ``all``) make nothing; a job
    that remakes one of ``problems`` gives that as its reason."""
    jobs = [job for job in jobs if job.output]
    makers = {f: job.rule for job in jobs for f in job.output}
    by_path = {p.path: p for p in problems}
    groups: dict[tuple[str, ...], list[PlannedJob]] = {}
    for job in jobs:
        groups.setdefault(tuple(reasons(job, makers, by_path)), []).append(job)
    lines = []
    for why, members in groups.items():
        lines.append(f"{'; '.join(why)}:")
        lines += [f"  {job_label(job)}" for job in members]
    n = len(jobs)
    lines.append(
        f"memlab: {n} job{'s' if n != 1 else ''} would run." if n else "memlab: nothing to run."
    )
    return lines


def _names_snakefile(argv: list[str]) -> bool:
    return any(a in ("-s", "--snakefile") or a.startswith("--snakefile=") for a in argv)


def main(argv: list[str]) -> int:
    """``python -m memlab.ops.plan [SNAKEMAKE_ARGS...]``: print what a run would redo, and why."""
    root = Path.cwd()
    if not _names_snakefile(argv) and not any((root / n).is_file() for n in SNAKEFILES):
        print(
            f"memlab: no Snakefile in {root}; run the plan in the workflow's directory.",
            file=sys.stderr,
        )
        return 1
    try:
        found = inspect(root, argv)
        jobs = planned_jobs(root, [*argv, *forcerun_args(argv, found.problems)])
    except Exception as err:
        # Snakemake's errors (a bad config, incomplete files, a syntax error) share no base
        # class; their messages say what is wrong.
        print(f"memlab: could not plan the run: {err}", file=sys.stderr)
        return 1
    # What the run does first: the same lines, nothing moved.
    before = [f"memlab: {line}" for line in tidy(root, found, dry=True)]
    print("\n".join([*before, *format_plan(jobs, found.problems)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
