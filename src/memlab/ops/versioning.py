"""Versioning results with DVC: record a run's datasets and checkpoints, restore any revision.

``record`` (after a run) puts the datasets, checkpoints and user data into one frozen DVC stage,
``versions/dvc.yaml``, beside ``versions/manifest.json`` (each file's md5, what it was made from,
its rule's script and Snakemake's metadata record). ``restore`` runs ``dvc pull`` and then makes
Snakemake trust exactly the restored files whose content, inputs and script match the record.
What is recorded, how restore settles trust by content, mtimes, the DVC cache type and
Snakemake's rerun triggers: ``docs/versioning.md``. Snakemake is reached only through
:mod:`memlab.ops.snakemake`.

Commands (also ``./run.sh record|restore``)::

    python -m memlab.ops.versioning record [--no-push] [--no-git-add] [snakemake args]
    python -m memlab.ops.versioning restore [--no-pull] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from memlab.ops import snakemake as smk
from memlab.plan.registry import FINDINGS_FILE

FORMAT = "memlab-versioning/1"
# What is versioned: every output under results/data/ (the datasets) and of the train rules (the
# checkpoints, with the learning curves the train job writes beside them: a train job missing an
# output would rerun; the removal experiment's, with the first-stage evaluations its choice was
# made from), and everything those were made from.
DATA_PREFIX = "results/data/"
CHECKPOINT_RULES = frozenset({"train", "removal_train"})
USER_DATA_DIR = "data"
VERSIONS_DIR = "versions"
STAGE_NAME = "study"
STAGE_FILE = f"{VERSIONS_DIR}/dvc.yaml"
LOCK_FILE = f"{VERSIONS_DIR}/dvc.lock"
MANIFEST_FILE = f"{VERSIONS_DIR}/manifest.json"
# The study's findings (memlab.plan.registry.FINDINGS_FILE) as a DVC metric in git beside the
# record: `dvc metrics show` and `dvc metrics diff REV_A REV_B` compare recorded revisions.
FINDINGS_METRIC = "findings.json"  # relative to versions/dvc.yaml
# What the last record/restore left in this workspace (not versioned, beside Snakemake's records).
SETTLED_FILE = ".snakemake/memlab-versioning.json"
# Restored files get mtimes this far apart per DAG level (well above float-seconds resolution).
MTIME_STEP_NS = 10_000_000
_CHUNK = 1 << 20


class VersioningError(RuntimeError):
    """A record or restore that cannot go on; the message says why and what to do."""


# ----------------------------------------------------------------------------------------------
# Small helpers


def md5_file(path: str | os.PathLike[str]) -> str:
    """The md5 of a file's content (what DVC 3 stores for a file)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def find_tool(name: str) -> str:
    """The ``name`` executable of this environment, else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise VersioningError(f"'{name}' not found: install memlab (./run.sh setup).")
    return found


def _run(cmd: Sequence[str], root: Path, what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise VersioningError(
            f"{what} failed ({shlex.join(cmd)}):\n{proc.stdout.strip()}\n{proc.stderr.strip()}"
        )
    return proc


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


# ----------------------------------------------------------------------------------------------
# What a record holds


@dataclass
class Entry:
    """One recorded file: its content hash and, for an output, how Snakemake made it."""

    path: str
    md5: str
    size: int
    rule: str | None = None  # None: user data (a DAG root)
    inputs: list[str] = field(default_factory=list)
    script: str | None = None
    metadata: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"md5": self.md5, "size": self.size}
        if self.rule is not None:
            out.update(rule=self.rule, script=self.script, metadata=self.metadata)
            if self.metadata is None or sorted(self.metadata.get("input") or []) != self.inputs:
                out["inputs"] = self.inputs
        return out

    @classmethod
    def from_json(cls, path: str, d: Mapping[str, Any]) -> Entry:
        recorded_inputs = (d.get("metadata") or {}).get("input") or []
        return cls(
            path=path,
            md5=d["md5"],
            size=d["size"],
            rule=d.get("rule"),
            inputs=list(d["inputs"]) if "inputs" in d else sorted(recorded_inputs),
            script=d.get("script"),
            metadata=d.get("metadata"),
        )


@dataclass
class Manifest:
    files: dict[str, Entry]
    sources: dict[str, str]  # scripts and inputs outside the record: path -> md5
    snakemake_args: list[str]

    def to_json(self) -> dict[str, Any]:
        # Snakemake stores each rule's conda env file in every record: keep it once.
        envs: dict[str, str] = {}
        files = {}
        for path, entry in sorted(self.files.items()):
            d = entry.to_json()
            meta = d.get("metadata")
            if meta and meta.get("conda_env"):
                key = hashlib.md5(meta["conda_env"].encode(), usedforsecurity=False).hexdigest()
                envs[key] = meta["conda_env"]
                d["metadata"] = {**meta, "conda_env": f"@{key}"}
            files[path] = d
        return {
            "format": FORMAT,
            "snakemake_args": self.snakemake_args,
            "files": files,
            "sources": dict(sorted(self.sources.items())),
            "conda_envs": envs,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Manifest:
        if d.get("format") != FORMAT:
            raise VersioningError(f"{MANIFEST_FILE}: unknown format {d.get('format')!r}.")
        envs = d.get("conda_envs", {})
        files = {}
        for path, e in d["files"].items():
            entry = Entry.from_json(path, e)
            env = (entry.metadata or {}).get("conda_env")
            if entry.metadata is not None and isinstance(env, str) and env.startswith("@"):
                entry.metadata = {**entry.metadata, "conda_env": envs[env[1:]]}
            files[path] = entry
        return cls(files=files, sources=dict(d["sources"]), snakemake_args=d["snakemake_args"])

    def write(self, root: Path) -> None:
        path = root / MANIFEST_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=False) + "\n")
        os.replace(tmp, path)

    @classmethod
    def read(cls, root: Path) -> Manifest:
        path = root / MANIFEST_FILE
        if not path.exists():
            raise VersioningError(
                f"{MANIFEST_FILE} not found: this commit has no recorded results "
                "(record a run with ./run.sh record)."
            )
        return cls.from_json(json.loads(path.read_text()))

    def order(self) -> list[str]:
        """Recorded files in DAG order (inputs before the files made from them)."""
        done: dict[str, None] = {}
        visiting: set[str] = set()

        def visit(p: str) -> None:
            if p in done:
                return
            if p in visiting:
                raise VersioningError(f"{MANIFEST_FILE}: a cycle through {p}.")
            visiting.add(p)
            for i in self.files[p].inputs:
                if i in self.files:
                    visit(i)
            visiting.discard(p)
            done[p] = None

        for p in sorted(self.files):
            visit(p)
        return list(done)

    def depths(self) -> dict[str, int]:
        depth: dict[str, int] = {}
        for p in self.order():
            ins = [depth[i] for i in self.files[p].inputs if i in self.files]
            depth[p] = 1 + max(ins) if ins else 0
        return depth


# ----------------------------------------------------------------------------------------------
# Record


def versioned_rows(rows: Sequence[smk.SummaryRow], meta: smk.Metadata) -> list[smk.SummaryRow]:
    """The datasets and checkpoints of the study, closed over the files they were made from
    and over the other outputs of the same jobs (a job with a missing output reruns)."""
    records = {r.path: meta.read(r.path) or {} for r in rows}
    # The outputs of one job share its log files (and no two jobs write the same log).
    siblings: dict[tuple[str, ...], list[str]] = {}
    for r in rows:
        key = (r.rule, *(records[r.path].get("log") or ["output:" + r.path]))
        siblings.setdefault(key, []).append(r.path)
    job_of = {p: key for key, paths in siblings.items() for p in paths}
    todo = [r.path for r in rows if r.rule in CHECKPOINT_RULES or r.path.startswith(DATA_PREFIX)]
    chosen: set[str] = set()
    while todo:
        p = todo.pop()
        if p in chosen:
            continue
        chosen.add(p)
        todo.extend(siblings[job_of[p]])
        todo.extend(i for i in records[p].get("input") or [] if i in records)
    return [r for r in rows if r.path in chosen]


def user_data_files(root: Path, files: Mapping[str, Entry]) -> list[str]:
    """The user data the study read: inputs of ``files`` under ``data/`` that git does not track
    (those DVC versions). Anything else under ``data/`` (a stray or broken file no dataset of
    the study names) is not the study's, and is left alone."""
    prefix = USER_DATA_DIR + "/"
    read = {os.path.normpath(i) for e in files.values() for i in e.inputs}
    read = {i for i in read if i.startswith(prefix) and (root / i).is_file()}
    if not read:
        return []
    tracked = set(
        _run(["git", "ls-files", "-z", USER_DATA_DIR], root, "git ls-files")
        .stdout.strip("\0")
        .split("\0")
    )
    return sorted(read - tracked)


STATE_DIR = ".snakemake"


def _snakemake_state(root: Path, doing: str) -> smk.Metadata:
    """Snakemake's records here; refuses while a Snakemake run holds the directory."""
    if smk.has_locks(root / STATE_DIR):
        raise VersioningError(f"a Snakemake run is in progress here: {doing} after it finishes.")
    return smk.Metadata(root / STATE_DIR)


def up_to_date_rows(root: Path, snakemake_args: Sequence[str]) -> list[smk.SummaryRow]:
    """The datasets and checkpoints to record (with what they need); refuses any out of date."""
    meta = _snakemake_state(root, "record")
    try:
        rows = smk.summary(find_tool("snakemake"), root, snakemake_args)
    except smk.SnakemakeError as err:
        raise VersioningError(str(err)) from None
    rows = versioned_rows(rows, meta)
    if not rows:
        raise VersioningError("the study has no datasets or checkpoints to record.")
    stale = [r for r in rows if r.status != "ok" or r.plan != "no update"]
    if stale:
        listed = "\n".join(f"  {r.path}: {r.status}" for r in stale[:10])
        more = f"\n  ... and {len(stale) - 10} more" if len(stale) > 10 else ""
        raise VersioningError(
            f"{len(stale)} datasets/checkpoints are missing or out of date:\n{listed}{more}\n"
            f"Run the study first: ./run.sh study {shlex.join(snakemake_args)}".rstrip()
        )
    return rows


def build_manifest(root: Path, snakemake_args: Sequence[str]) -> Manifest:
    """Hash the study's datasets, checkpoints and user data; refuse if any is out of date."""
    rows = up_to_date_rows(root, snakemake_args)
    meta = smk.Metadata(root / STATE_DIR)
    scripts = smk.rule_scripts(root, snakemake_args)
    files: dict[str, Entry] = {}
    for r in rows:
        record = meta.read(r.path)
        if record is None:
            raise VersioningError(
                f"{r.path} has no Snakemake metadata (made outside Snakemake or with --touch?): "
                f"rebuild it with ./run.sh study --forcerun {r.rule}, then record."
            )
        p = root / r.path
        files[r.path] = Entry(
            path=r.path,
            md5=md5_file(p),
            size=p.stat().st_size,
            rule=r.rule,
            inputs=sorted(record.get("input") or []),
            script=scripts.get(r.rule),
            metadata=record,
        )
    for rel in user_data_files(root, files):
        files[rel] = Entry(path=rel, md5=md5_file(root / rel), size=(root / rel).stat().st_size)
    sources: dict[str, str] = {}
    for e in files.values():
        for s in [*(i for i in e.inputs if i not in files), *([e.script] if e.script else [])]:
            if s not in sources and (root / s).is_file():
                sources[s] = md5_file(root / s)
    return Manifest(files=files, sources=sources, snakemake_args=list(snakemake_args))


def write_stage(root: Path, manifest: Manifest, metrics: bool = False) -> None:
    """One frozen DVC stage whose outs are the recorded files (``dvc repro`` never runs it), and
    the findings as the file's top-level DVC metric (``metrics``)."""
    command = shlex.join(["./run.sh", "study", *manifest.snakemake_args])
    stage: dict[str, Any] = {
        "stages": {
            STAGE_NAME: {
                "wdir": "..",
                "cmd": command,
                "frozen": True,
                "outs": sorted(manifest.files),
            }
        }
    }
    if metrics:
        stage["metrics"] = [FINDINGS_METRIC]
    text = (
        "# Written by `./run.sh record` (memlab.ops.versioning): the datasets and checkpoints of\n"
        "# the last recorded run. Restore them with `./run.sh restore`; do not edit by hand.\n"
        + yaml.safe_dump(stage, sort_keys=False)
    )
    (root / STAGE_FILE).write_text(text)


def lock_hashes(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / LOCK_FILE).read_text())
    outs = lock["stages"][STAGE_NAME]["outs"]
    return {o["path"]: o["md5"] for o in outs}


@dataclass
class RecordReport:
    files: int
    bytes: int
    commit_s: float
    push_s: float | None
    pushed: str


def record(
    root: Path, snakemake_args: Sequence[str], *, push: bool = True, git_add: bool = True
) -> RecordReport:
    """Record the study's datasets, checkpoints and user data in DVC (and push them)."""
    root = root.absolute()
    if not (root / ".dvc").is_dir():
        raise VersioningError(
            f"{root} is not a DVC repository (no .dvc/): run .venv/bin/dvc init (DVC comes with "
            "memlab's environment)."
        )
    manifest = build_manifest(root, snakemake_args)
    (root / VERSIONS_DIR).mkdir(exist_ok=True)
    findings = root / FINDINGS_FILE
    if findings.is_file():
        shutil.copyfile(findings, root / VERSIONS_DIR / FINDINGS_METRIC)
    write_stage(root, manifest, metrics=findings.is_file())
    manifest.write(root)
    # DVC rewrites files it moves into its cache (copy) or links them to a shared object
    # (hardlink): put every file's mtime back, then settle any order it could not keep.
    before = {p: _mtime_ns(root / p) for p in manifest.files}
    t0 = time.perf_counter()
    dvc = find_tool("dvc")
    _run([dvc, "commit", "--force", "--quiet", STAGE_FILE], root, "dvc commit")
    commit_s = time.perf_counter() - t0
    for p, ns in before.items():
        if ns is not None:
            os.utime(root / p, ns=(ns, ns))
    settle(root, manifest, verified=True)
    locked = lock_hashes(root)
    wrong = [p for p, e in manifest.files.items() if locked.get(p) != e.md5]
    if wrong:
        raise VersioningError(f"dvc.lock disagrees with the files it recorded: {wrong[:5]}")
    push_s, pushed = None, "not pushed (--no-push)"
    if push:
        t0 = time.perf_counter()
        proc = _run([dvc, "push", STAGE_FILE], root, "dvc push")
        push_s = time.perf_counter() - t0
        pushed = (proc.stdout.strip().splitlines() or ["pushed"])[-1]
    if git_add:
        paths = [STAGE_FILE, LOCK_FILE, MANIFEST_FILE]
        if findings.is_file():
            paths.append(f"{VERSIONS_DIR}/{FINDINGS_METRIC}")
        # DVC lists the user data it tracks in data/**/.gitignore.
        ignores = (root / USER_DATA_DIR).rglob(".gitignore")
        paths += [p.relative_to(root).as_posix() for p in ignores]
        _run(["git", "add", "--", *paths], root, "git add")
    return RecordReport(
        files=len(manifest.files),
        bytes=sum(e.size for e in manifest.files.values()),
        commit_s=commit_s,
        push_s=push_s,
        pushed=pushed,
    )


# ----------------------------------------------------------------------------------------------
# Restore


@dataclass
class SettleReport:
    trusted: list[str] = field(default_factory=list)
    touched: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _load_settled(root: Path) -> dict[str, list[Any]]:
    try:
        return json.loads((root / SETTLED_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _file_state(path: Path, md5: str) -> list[Any]:
    st = path.stat()
    return [st.st_ino, st.st_mtime_ns, st.st_size, md5]


def trusted_files(root: Path, manifest: Manifest) -> tuple[dict[str, bool], dict[str, str]]:
    """Which recorded files to trust (their content, inputs and script are the recorded ones),
    in DAG order, and the md5 of every recorded file that exists."""
    source_ok = {
        s: (root / s).is_file() and md5_file(root / s) == h for s, h in manifest.sources.items()
    }
    order = manifest.order()
    current = {p: md5_file(root / p) for p in order if (root / p).is_file()}
    trusted: dict[str, bool] = {}
    for p in order:
        e = manifest.files[p]
        ok = current.get(p) == e.md5
        for i in e.inputs:
            ok = ok and (trusted[i] if i in manifest.files else source_ok.get(i, False))
        if e.script is not None:
            ok = ok and source_ok.get(e.script, False)
        trusted[p] = ok
    return trusted, current


def settle(
    root: Path,
    manifest: Manifest,
    rewritten: Iterable[str] = (),
    *,
    verified: bool = False,
    now_ns: int | None = None,
) -> SettleReport:
    """Make Snakemake trust exactly the recorded files whose content is the recorded one.

    A trusted file keeps its mtime only if it is newer than its inputs and script and (unless
    ``verified``: Snakemake has just checked the workspace, as at record time) it is exactly as
    the last record or restore here left it (same inode, mtime, size and content) and not in
    ``rewritten``. Any other trusted file gets a fresh mtime, newer than every output made before,
    so whatever was made from other content is recomputed.
    """
    rewritten = set(rewritten)
    report = SettleReport()
    meta = smk.Metadata(root / STATE_DIR)
    settled = {} if verified else _load_settled(root)
    trusted, current = trusted_files(root, manifest)
    # Fresh mtimes: later than anything that existed before (every output not restored), one
    # step per DAG level, and later than the file's inputs and script.
    now = now_ns if now_ns is not None else time.time_ns()
    start = max([now, *(_mtime_ns(root / s) or 0 for s in manifest.sources)])
    depth = manifest.depths()
    state: dict[str, list[Any]] = {}
    for p in trusted:
        e = manifest.files[p]
        path = root / p
        if not path.exists():
            report.missing.append(p)
        if not trusted[p]:
            if e.rule is not None and current.get(p) == e.md5:
                # The recorded content (DVC keeps it), but made from something that is not
                # what it was made from: Snakemake must rebuild it, so it goes.
                path.unlink()
                report.deleted.append(p)
            elif path.exists():
                # Other content that DVC did not replace (a failed pull, or user data changed
                # since): left exactly as it was, for Snakemake to judge as before.
                report.kept.append(p)
            continue
        report.trusted.append(p)
        deps = [*e.inputs, *([e.script] if e.script else [])]
        newest_dep = max((_mtime_ns(root / d) or 0 for d in deps), default=0)
        as_left = verified or (p not in rewritten and settled.get(p) == _file_state(path, e.md5))
        if not as_left or path.stat().st_mtime_ns <= newest_dep:
            new = max(start + (depth[p] + 1) * MTIME_STEP_NS, newest_dep + MTIME_STEP_NS)
            os.utime(path, ns=(new, new))
            report.touched.append(p)
        if e.metadata is not None:
            meta.write(p, e.metadata)
        state[p] = _file_state(path, e.md5)
    # Hardlinked copies of one content share an mtime: take the states once all are set.
    state = {p: _file_state(root / p, manifest.files[p].md5) for p in state}
    (root / SETTLED_FILE).write_text(json.dumps(state, indent=0, sort_keys=True) + "\n")
    return report


def restore(root: Path, *, pull: bool = True, force: bool = False) -> SettleReport:
    """Check out this commit's recorded files with DVC and settle Snakemake's view of them."""
    root = root.absolute()
    manifest = Manifest.read(root)
    _snakemake_state(root, "restore")
    before = {p: _stat_key(root / p) for p in manifest.files}
    cmd = [find_tool("dvc"), "pull" if pull else "checkout", *(["--force"] if force else [])]
    failure: VersioningError | None = None
    try:
        _run([*cmd, STAGE_FILE], root, f"dvc {cmd[1]}")
    except VersioningError as err:
        failure = err
    rewritten = {p for p, key in before.items() if key is None or _stat_key(root / p) != key}
    # Settle even after a failed pull: a partial checkout must not leave anything blessed.
    report = settle(root, manifest, rewritten)
    if failure is not None:
        hint = (
            "\nUnrecorded results would be overwritten: record them first, or rerun with --force."
            if "--force" in str(failure)
            else ""
        )
        raise VersioningError(f"{failure}{hint}")
    return report


# ----------------------------------------------------------------------------------------------
# Command line


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _record_cli(root: Path, args: argparse.Namespace, rest: list[str]) -> None:
    t0 = time.perf_counter()
    r = record(root, rest, push=not args.no_push, git_add=not args.no_git_add)
    push = f", push {r.push_s:.1f} s ({r.pushed})" if r.push_s is not None else ""
    print(
        f"memlab: recorded {r.files} files ({_mb(r.bytes)}) in "
        f"{time.perf_counter() - t0:.1f} s (dvc commit {r.commit_s:.1f} s{push}).\n"
        f"Commit them: git commit -m 'Record results' "
        f"(versions/ is staged{'' if not args.no_git_add else ': run git add versions'}).",
        file=sys.stderr,
    )


def _restore_cli(root: Path, args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    report = restore(root, pull=not args.no_pull, force=args.force)
    manifest = Manifest.read(root)
    print(
        f"memlab: restored {len(report.trusted)} of {len(manifest.files)} recorded files "
        f"in {time.perf_counter() - t0:.1f} s "
        f"({len(report.touched)} re-timestamped).",
        file=sys.stderr,
    )
    for p in report.deleted:
        print(f"memlab: {p} did not match its record: deleted, it will be rebuilt.")
    for p in report.kept:
        print(f"memlab: {p} differs from its record: left as it was (not trusted).")
    study = shlex.join(["./run.sh", "study", *manifest.snakemake_args])
    print(
        f"memlab: now `{study}` recomputes what was made from other content "
        "(evaluations, tables, figures); no training is needed for what was restored.",
        file=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m memlab.ops.versioning",
        description="Record a run's datasets and checkpoints in DVC, or restore this commit's.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser(
        "record",
        help="record after a run; other arguments go to snakemake (e.g. --configfile ...)",
    )
    rec.add_argument("--no-push", action="store_true", help="keep the content in the local cache")
    rec.add_argument("--no-git-add", action="store_true", help="do not stage versions/ in git")
    res = sub.add_parser("restore", help="dvc pull, then make Snakemake agree")
    res.add_argument("--no-pull", action="store_true", help="dvc checkout from the local cache")
    res.add_argument("--force", action="store_true", help="overwrite unrecorded results")
    args, rest = parser.parse_known_args(argv)
    if args.command == "restore" and rest:
        parser.error(f"restore takes no snakemake arguments: {' '.join(rest)}")
    try:
        if args.command == "record":
            _record_cli(Path.cwd(), args, rest)
        else:
            _restore_cli(Path.cwd(), args)
    except VersioningError as err:
        print(f"memlab: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
