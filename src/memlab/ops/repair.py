"""Put the results folder in order before a run: remake what is damaged or missing, and move
another study's figures and tables out of this one's way.

Snakemake decides what to run from times and records: it takes a truncated checkpoint for a
result, and it does not remake a missing intermediate file while the files made from it are
present ("Nothing to be done"). So before ``./run.sh study`` starts Snakemake, every output of
the study's DAG that this run would not remake anyway is checked: a file that does not read
back whole (:mod:`memlab.ops.integrity`) is moved aside under ``results/damaged/`` (never
deleted: it may be all that is left of a long run), and each damaged or missing file is handed
to Snakemake with ``--forcerun``, which remakes it and everything computed from it.

Studies share ``results/`` (their runs form one growing bank), but ``results/figures/`` and
``results/tables/`` hold one study's view: files there that the study about to run does not make
(a CSV study's ``detectors.png`` before a digits study) are moved to ``results/previous/``.

``./run.sh plan`` lists the same files first, without moving anything. As a command,

    python -m memlab.ops.repair SNAKEMAKE_ARGS...

prints what it found and did on stderr and, on stdout, the arguments to add to the Snakemake
command (NUL-separated; none when all is well), which ``run.sh`` appends.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from memlab.ops.integrity import damage
from memlab.ops.snakemake import DagOutput, cli_options, dag_outputs

RESULTS = Path("results")
# Where damaged files go, and another study's figures and tables: one folder per run.
DAMAGED_DIR = RESULTS / "damaged"
PREVIOUS_DIR = RESULTS / "previous"
# The folders that show one study's outputs only.
STUDY_VIEWS = (RESULTS / "figures", RESULTS / "tables")


@dataclass(frozen=True)
class Problem:
    """An output of the study that a run must remake: damaged (``why`` says how) or missing."""

    path: str
    why: str | None = None  # None: missing

    def describe(self) -> str:
        return f"damaged: {self.path}: {self.why}" if self.why else f"missing: {self.path}"


@dataclass(frozen=True)
class Inspection:
    """What a run finds before it starts: problems to remake, and other studies' files."""

    problems: list[Problem]
    others: list[str]  # files in STUDY_VIEWS this study does not make


def find_problems(root: Path, outputs: Sequence[DagOutput]) -> list[Problem]:
    """The ``outputs`` in ``root`` that are damaged or missing although the run would not remake
    them, in pipeline order. Outputs the run remakes anyway are not read."""
    problems = []
    for out in outputs:
        if out.will_run:
            continue
        path = root / out.path
        if not path.exists():
            problems.append(Problem(out.path))
        elif why := damage(path):
            problems.append(Problem(out.path, why))
    return problems


def other_studies_files(root: Path, outputs: Sequence[DagOutput]) -> list[str]:
    """Files in the study's view folders that none of ``outputs`` names, sorted."""
    ours = {out.path for out in outputs}
    found = (p for folder in STUDY_VIEWS for p in (root / folder).rglob("*") if p.is_file())
    return sorted(rel for p in found if (rel := p.relative_to(root).as_posix()) not in ours)


def inspect(root: Path, args: Sequence[str]) -> Inspection:
    """What ``snakemake ARGS`` in ``root`` would find: problems, and (when it makes the whole
    study, not chosen targets) the files of other studies in its view folders."""
    outputs = dag_outputs(root, args)
    opts = cli_options(args)
    whole = not (opts.targets or opts.until or opts.omit_from)
    others = other_studies_files(root, outputs) if whole else []
    return Inspection(find_problems(root, outputs), others)


def forcerun_args(args: Sequence[str], problems: Sequence[Problem]) -> list[str]:
    """What to append to ``args`` so that Snakemake remakes each problem file and what depends
    on it, keeping any ``--forcerun`` the user gave (the last one on a command line wins)."""
    if not problems:
        return []
    given = cli_options(args).forcerun or []
    return ["--forcerun", *given, *(p.path for p in problems)]


def move_aside(root: Path, path: str, folder: Path) -> Path:
    """Move ``path`` (relative to ``root``) into ``folder``, keeping its place under
    ``results``; where it went, relative to ``root``."""
    rel = Path(path)
    inside = rel.relative_to(RESULTS) if rel.parts[:1] == RESULTS.parts else rel
    dest = root / folder / inside
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(root / path, dest)
    return dest.relative_to(root)


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())


def tidy(root: Path, found: Inspection, *, dry: bool) -> list[str]:
    """Move damaged files and other studies' files aside (unless ``dry``); the lines that say
    what was found and done."""
    stamp = _stamp()
    lines = []
    for p in found.problems:
        line = p.describe()
        if p.why and not dry:
            line += f" (moved to {move_aside(root, p.path, DAMAGED_DIR / stamp)})"
        lines.append(line)
    if found.problems:
        them = "it" if len(found.problems) == 1 else "them"
        lines.append(f"this run remakes {them} and what was computed from {them}")
    if found.others:
        where = PREVIOUS_DIR / stamp
        if not dry:
            for path in found.others:
                move_aside(root, path, where)
        names = ", ".join(Path(p).name for p in found.others)
        verb = "would move" if dry else "moved"
        lines.append(f"not made by this study, {verb} to {where}/: {names}")
    return lines


@contextlib.contextmanager
def _no_live_run(root: Path) -> Iterator[bool]:
    """Whether no other run is live in ``root`` (its main process holds ``memlab-owner``, see
    :mod:`memlab.ops.locks`); held for the ``with``, so none starts meanwhile."""
    state = root / ".snakemake"
    if not state.is_dir():
        yield True
        return
    with open(state / "memlab-owner", "a") as owner:
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _quiet_inspect(root: Path, args: Sequence[str]) -> Inspection | None:
    """:func:`inspect` without the workflow's own start-up messages (Snakemake prints them when
    it loads the workflow again); None when the workflow does not load: Snakemake says why."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
            return inspect(root, args)
    except Exception:  # a config error, a syntax error: Snakemake's own run reports it
        return None


def main(argv: list[str]) -> int:
    """``python -m memlab.ops.repair SNAKEMAKE_ARGS...``: see the module docstring."""
    root = Path.cwd()
    with _no_live_run(root) as free:
        found = _quiet_inspect(root, argv) if free else None
        if found is None:
            return 0
        for line in tidy(root, found, dry=cli_options(argv).dryrun):
            print(f"memlab: {line}", file=sys.stderr)
        sys.stdout.write("".join(f"{a}\0" for a in forcerun_args(argv, found.problems)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
