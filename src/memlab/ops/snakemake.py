"""The one place memlab talks to Snakemake from Python (its state under ``.snakemake``, its DAG).

Everything else in :mod:`memlab.ops` goes through these functions, so a Snakemake upgrade is
checked here. Public interfaces are used where Snakemake has them: ``PersistenceBase.metadata()``
and ``unlock()``, the ``snakemake --summary`` table of the CLI, ``SnakemakeApi`` and the CLI's own
argument parser. What has no public interface is marked ``INTERNAL`` below, each with why it is
needed; all were checked against Snakemake :data:`CHECKED_WITH`. Only the default file backend of
``.snakemake`` is supported (not ``--persistence-backend db``). The tests drive the real CLI
(``tests/ops/test_versioning.py``, the lock tests of ``tests/e2e/test_reliability.py``), so a change
in any of these fails them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKED_WITH = "9.27.1"


class SnakemakeError(RuntimeError):
    """Snakemake could not tell us what was asked; the message carries its output."""


def _persistence(state_dir: str | os.PathLike[str]) -> Any:
    # Snakemake's own class for its file backend, so record paths and formats stay Snakemake's.
    # Its constructor creates the subdirectories of .snakemake it needs, as every run does.
    from snakemake.persistence.file import FilePersistence

    return FilePersistence(path=Path(state_dir).absolute())


class Metadata:
    """Snakemake's per-output metadata records (``.snakemake/metadata``), keyed by output path
    relative to the working directory."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self._p = _persistence(state_dir)

    def read(self, path: str) -> dict[str, Any] | None:
        """The record of ``path`` as plain JSON data, or None if Snakemake has none."""
        from snakemake.io import IOFile

        rec = self._p.metadata(IOFile(path))  # public: PersistenceBase.metadata()
        return None if rec is None else json.loads(rec.model_dump_json())

    def write(self, path: str, record: Mapping[str, Any]) -> None:
        """Store ``record`` as the record of ``path`` and drop any "incomplete" marker, as
        Snakemake does when a job finishes."""
        from snakemake.persistence import MetadataRecord

        # INTERNAL (9.27.1): Snakemake has no public way to write a record (only
        # PersistenceBase.finished(job), which needs a live job). _clear_cache, _write_record and
        # _unmark_incomplete are the abstract backend methods finished() itself calls.
        self._p._clear_cache()
        self._p._write_record(path, MetadataRecord.model_validate(dict(record)))
        self._p._unmark_incomplete(path)
        self._p._clear_cache()


def has_locks(state_dir: str | os.PathLike[str]) -> bool:
    """Whether Snakemake's directory locks are set (a run is live, or one was killed)."""
    if not (Path(state_dir) / "locks").is_dir():
        return False
    # INTERNAL (9.27.1): the public PersistenceBase.locked needs a built DAG (it only counts
    # locks on that DAG's files); _read_locks is the backend method it reads them with.
    return any(True for _ in _persistence(state_dir)._read_locks())


def remove_locks(state_dir: str | os.PathLike[str]) -> bool:
    """Remove Snakemake's directory locks, as ``snakemake --unlock`` does; whether there were any.

    Only for locks nobody holds any more (see :mod:`memlab.ops.locks`).
    """
    if not has_locks(state_dir):
        return False
    _persistence(state_dir).unlock()  # public: what `snakemake --unlock` calls
    _persistence(state_dir)  # makes the (emptied) locks directory again, as a run would
    return True


def register_group(workflow: Any, group: str, parent: str) -> None:
    """Make ``group`` (a job group a rule's ``group:`` function returned) take its
    ``--group-components`` count from ``parent``'s entry, as a group named with wildcards does."""
    # INTERNAL (9.27.1): Snakemake fills Workflow.parent_groupids for groups written with
    # wildcards (Rule.expand_group) and nowhere else; the DAG looks group counts up through it.
    workflow.parent_groupids[group] = parent


def executes_locally(workflow: Any) -> bool:
    """Whether this Snakemake process runs its jobs itself (no cluster executor): job groups
    then mean nothing."""
    # INTERNAL (9.27.1): Workflow.local_exec, what Snakemake itself asks before grouping jobs.
    return bool(workflow.local_exec)


# ----------------------------------------------------------------------------------------------
# The study's DAG


@dataclass
class SummaryRow:
    """One output of the DAG with Snakemake's verdict (``snakemake --summary``)."""

    path: str
    rule: str
    status: str
    plan: str


_SUMMARY_COLUMNS = ("output_file", "rule", "status", "plan")


def summary(snakemake_exe: str, root: Path, args: Sequence[str]) -> list[SummaryRow]:
    """Every output of the study's DAG with Snakemake's verdict: the CLI's ``--summary`` table,
    run exactly as the user runs the study (profile included), read by column name."""
    proc = subprocess.run(
        [snakemake_exe, "--summary", *args], cwd=root, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SnakemakeError(
            f"snakemake --summary failed:\n{proc.stdout.strip()}\n{proc.stderr.strip()}"
        )
    lines = proc.stdout.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("output_file\t"))
    except StopIteration:
        raise SnakemakeError(f"snakemake --summary printed no table:\n{proc.stdout}") from None
    header = lines[start].split("\t")
    col = [header.index(name) for name in _SUMMARY_COLUMNS]
    rows = []
    for line in lines[start + 1 :]:
        cells = line.split("\t")
        if len(cells) == len(header):
            rows.append(SummaryRow(*(cells[i] for i in col)))
    return rows


@contextlib.contextmanager
def _isolated(root: Path) -> Iterator[None]:
    """Undo what loading the workflow in this process changes (cwd, sys.path, environment:
    ``common.smk`` adds ``src`` to both)."""
    cwd, path, environ = Path.cwd(), list(sys.path), dict(os.environ)
    # The workflow imports memlab from its own src/ (common.smk), as a snakemake run does; with
    # this process's memlab still imported, it would hash (library_code) this one instead.
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "memlab"}
    try:
        os.chdir(root)
        yield
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        os.environ.clear()
        os.environ.update(environ)
        for k in [k for k in sys.modules if k.split(".")[0] == "memlab"]:
            del sys.modules[k]
        sys.modules.update(ours)


@contextlib.contextmanager
def _loaded_workflow(
    root: Path, args: Sequence[str], parse: Callable[[Sequence[str]], Any]
) -> Iterator[tuple[Any, Any]]:
    """The workflow ``snakemake ARGS`` loads in ``root`` (a ``WorkflowApi``: loaded, not run)
    and the CLI's options, ``parse(args)``; valid inside the ``with`` only. The CLI's own
    parser, so --configfile/--config/--snakefile (and the profile) mean what they mean there."""
    from snakemake.api import SnakemakeApi
    from snakemake.cli import parse_config
    from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

    root = root.absolute()
    with _isolated(root):
        opts = parse(args)
        config = ConfigSettings(
            config=parse_config(opts.config),
            configfiles=opts.configfile or [],
            config_args=opts.config,
            replace_workflow_config=opts.replace_workflow_config,
        )
        snakefile = Path(opts.snakefile) if opts.snakefile else None
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
            wf = api.workflow(
                resource_settings=ResourceSettings(cores=1),
                config_settings=config,
                snakefile=snakefile,
                workdir=root,
            )
            yield wf, opts


def rule_scripts(root: Path, args: Sequence[str]) -> dict[str, str]:
    """Each rule's ``script:`` as a path relative to ``root`` (rules without one, or whose script
    lies outside ``root``, are left out). ``args`` are the study's snakemake arguments: the
    workflow is loaded (not run) with the same config, through ``SnakemakeApi``."""
    from snakemake.cli import parse_args

    root = root.absolute()
    with _loaded_workflow(root, args, lambda a: parse_args(list(a))[1]) as (wf, _):
        # INTERNAL (9.27.1): WorkflowApi exposes no rules (list_rules() only prints them);
        # _workflow is the parsed workflow its own methods use, and Rule.script/.basedir are
        # what Snakemake's script directive resolves the script from.
        rules = [(r.name, r.script, r.basedir) for r in wf._workflow.rules]
    scripts = {}
    for name, script, basedir in rules:
        if script is None or basedir is None:
            continue
        path = Path(basedir.join(script).get_path_or_uri(secret_free=False))
        with contextlib.suppress(ValueError):
            rel = path.resolve().relative_to(root.resolve())
            if path.is_file():
                scripts[name] = rel.as_posix()
    return scripts


# ----------------------------------------------------------------------------------------------
# What a run would do, and why


@dataclass
class PlannedJob:
    """A job the study's DAG would run, with Snakemake's reasons as plain data."""

    rule: str
    wildcards: dict[str, str]
    output: list[str]
    # Non-derived params by name, each serialized as Snakemake records it (a repr string).
    params: dict[str, str]
    # The params against the records of the outputs, as Snakemake compares them: serialized
    # values recorded but no longer given (before), and given but not recorded (now). Compared
    # for every job with records, also where Snakemake stopped at an earlier reason.
    params_before: list[str]
    params_now: list[str]
    missing: list[str]
    recorded: bool  # whether Snakemake has a record of any output (it ran before)
    incomplete: list[str]
    updated_input: list[str]  # inputs newer than the outputs
    upstream_input: list[str]  # inputs that jobs of this run will remake
    input_changed: bool  # the set of input files differs from the recorded one
    code_changed: bool  # the script is newer than the outputs, or a shell or run: block changed
    software_changed: bool
    forced: bool


def _dag_settings(opts: Any) -> Any:
    from snakemake.settings.types import DAGSettings

    # The fields of the CLI's own DAGSettings(...) that decide what reruns.
    return DAGSettings(
        targets=opts.targets,
        target_jobs=opts.target_jobs,
        forcetargets=opts.force,
        forceall=opts.forceall,
        forcerun=opts.forcerun,
        until=opts.until,
        omit_from=opts.omit_from,
        force_incomplete=opts.rerun_incomplete,
        allowed_rules=opts.allowed_rules or frozenset(),
        rerun_triggers=opts.rerun_triggers,
    )


def _params_change(persistence: Any, job: Any, new: set[str]) -> tuple[list[str], list[str]]:
    """What Snakemake's params_changed() finds, as sorted lists, for any job: it only compares
    params when no input is newer than the outputs, and a job downstream of a rerun has one."""
    before, now = set(), set()
    for f in job.output:
        # Records older than format 6 hold unreliable params; Snakemake ignores them too.
        version = persistence.record_format_version(f)  # public: PersistenceBase
        recorded = persistence.params(f) if version is not None and version >= 6 else None
        if recorded is not None:
            before |= set(recorded) - new
            now |= new - set(recorded)
    return sorted(before), sorted(now)


def _planned(dag: Any, job: Any) -> PlannedJob:
    persistence = dag.workflow.persistence
    reason = dag.reason(job)
    # INTERNAL (9.27.1): PersistenceBase._serialize_param and _params are what Snakemake
    # records and compares; names are taken from job.params (the records keep only values).
    serialize = persistence._serialize_param
    compared = set(persistence._params(job))
    params = {name: serialize(v) for name, v in job.params.items()}
    before, now = _params_change(persistence, job, compared)
    return PlannedJob(
        rule=job.rule.name,
        wildcards={k: str(v) for k, v in job.wildcards_dict.items()},
        output=[str(f) for f in job.output],
        params={k: v for k, v in params.items() if v in compared},
        params_before=before,
        params_now=now,
        missing=sorted(map(str, reason.missing_output)),
        recorded=any(persistence.metadata(f) is not None for f in job.output),
        incomplete=sorted(map(str, reason.incomplete_output)),
        updated_input=sorted(map(str, reason.updated_input - reason.updated_input_run)),
        upstream_input=sorted(map(str, reason.updated_input_run)),
        input_changed=bool(reason.input_changed),
        code_changed=bool(reason.code_changed),
        software_changed=bool(reason.software_stack_changed),
        forced=bool(reason.forced),
    )


def _parse_cli(parse_args: Any, args: Sequence[str]) -> Any:
    """The CLI's own options for ``args``; a bad argument is a SnakemakeError with the parser's
    one-line complaint (it exits the process otherwise, after its whole usage text)."""
    # The parser also says which profile it uses: not part of what the caller prints.
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return parse_args(list(args))[1]
    except SystemExit as stop:
        if not stop.code:  # --help, printed on stdout
            raise
        lines = said.getvalue().strip().splitlines() or ["invalid arguments"]
        # argparse's last line is "PROG: error: WHAT"; PROG would be this script's name.
        raise SnakemakeError(lines[-1].split("error: ", 1)[-1]) from None


@contextlib.contextmanager
def _study_dag(root: Path, args: Sequence[str]) -> Iterator[Any]:
    """The DAG ``snakemake ARGS`` builds in ``root``, built in this process as a dry run builds
    it (the CLI's own parser reads ``args``, profile included; the rerun triggers, targets and
    --forcerun are the run's). Valid inside the ``with`` only: the workflow is loaded there."""
    from snakemake.cli import parse_args

    with _loaded_workflow(root, args, lambda a: _parse_cli(parse_args, a)) as (wf, opts):
        wf.dag(dag_settings=_dag_settings(opts))  # sets them on the workflow
        # INTERNAL (9.27.1): the DAG API has no call that returns jobs (its summary() and
        # list_changes() print). _prepare_dag/_build_dag are what those call (with the dry
        # run's lock_warn_only), and Workflow.dag is the DAG they build.
        workflow = wf._workflow
        workflow._prepare_dag(forceall=opts.forceall, ignore_incomplete=False, lock_warn_only=True)
        workflow._build_dag()
        yield workflow.dag


def cli_options(args: Sequence[str]) -> Any:
    """The CLI's own reading of ``args`` (``.dryrun``, ``.forcerun``, ...); a bad argument is a
    SnakemakeError with the parser's complaint."""
    from snakemake.cli import parse_args

    return _parse_cli(parse_args, args)


def planned_jobs(root: Path, args: Sequence[str]) -> list[PlannedJob]:
    """The jobs ``snakemake ARGS`` would run in ``root``, in the DAG's order, with why.

    Why not the CLI's output: ``--summary`` and ``--list-changes params`` name only outputs and
    a status; the dry run's "Params have changed" line joins the changed reprs with commas,
    which dict reprs contain too, and no output names the params (the records keep only a
    sorted list of values). Here each job's reasons are Snakemake's own objects.
    """
    return [_planned(dag, job) for job, dag in dag_jobs(root, args)]


def dag_jobs(root: Path, args: Sequence[str]) -> Iterator[tuple[Any, Any]]:
    """Each job ``snakemake ARGS`` would run in ``root``, with the DAG, in the DAG's order (a job
    comes after every job it needs). While it iterates, this process is set up as the workflow
    sets up a job (working directory ``root``, memlab imported from its ``src/``)."""
    with _study_dag(root, args) as dag:
        # INTERNAL (9.27.1): DAG.needrun_jobs()/reason(job), Job.params/wildcards_dict are what
        # the dry run prints its jobs from; DAG.toposorted() gives its order (pipeline levels).
        levels = dag.toposorted(set(dag.needrun_jobs()))
        by_output = lambda job: [str(f) for f in job.output]  # noqa: E731
        for level in levels:
            for job in sorted(level, key=by_output):
                yield job, dag


@dataclass(frozen=True)
class DagOutput:
    """One output file of the study's DAG: the rule that makes it and whether this run would."""

    path: str
    rule: str
    will_run: bool


def dag_outputs(root: Path, args: Sequence[str]) -> list[DagOutput]:
    """Every output of every job in the DAG of ``snakemake ARGS``, needed by this run or not,
    in pipeline order (a file before the files made from it)."""
    with _study_dag(root, args) as dag:
        # INTERNAL (9.27.1): DAG.jobs holds every job of the DAG (also those whose outputs are
        # up to date), DAG.needrun(job) Snakemake's verdict on each.
        levels = dag.toposorted(set(dag.jobs))
        return [
            DagOutput(str(f), job.rule.name, bool(dag.needrun(job)))
            for level in levels
            for job in sorted(level, key=lambda j: [str(f) for f in j.output])
            for f in job.output
        ]
