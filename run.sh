#!/usr/bin/env bash
# memlab's one-command entry points. Needs only Python 3.11+; everything else goes into .venv.
#   ./run.sh study [snakemake args]   run the default study (or --configfile ...), then the report
#   ./run.sh plan  [snakemake args]   what a run would redo and why (the changed setting, old -> new)
#   ./run.sh test  [pytest args]      run the test suite
#   ./run.sh setup                    only create/update the virtual environment
#   ./run.sh record [snakemake args]  record the run's datasets and checkpoints in DVC (+ push)
#   ./run.sh restore [--force]        dvc pull this commit's, so Snakemake trains nothing again
#   ./run.sh bench [sections] [args]  benchmarks (benchmarks/run.py --help): table + results/benchmarks/
# MEMLAB_VENV=path picks the environment; MEMLAB_SKIP_SETUP=1 uses it as it is (no pip install).
set -euo pipefail
cd "$(dirname "$0")"
VENV=${MEMLAB_VENV:-.venv}
PY=${PYTHON:-python3}

setup() {
    # An environment someone else manages (a test, a cluster image): use it as it is.
    [[ ${MEMLAB_SKIP_SETUP:-} == 1 ]] && return 0
    if [[ ! -x $VENV/bin/python ]]; then
        echo "memlab: creating the virtual environment $VENV" >&2
        "$PY" -m venv "$VENV"
    fi
    # Reinstall only when the dependency list changed.
    local stamp="$VENV/.memlab-installed"
    local want
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
        echo "memlab: upgrading pip in $VENV" >&2
        "$VENV/bin/python" -m pip install -q --upgrade pip
        # The CPU build of torch first: left to choose, pip would fetch a multi-GB CUDA build.
        echo "memlab: installing torch 2.13.0 (CPU build; the longest step)" >&2
        "$VENV/bin/python" -m pip install -q "torch==2.13.0"
        # Core (study, report, DVC) + development tools + the SLURM plugin (CI runs its test).
        echo "memlab: installing memlab and its dependencies (pyproject.toml)" >&2
        "$VENV/bin/python" -m pip install -q -e ".[dev,slurm]"
        echo "$want" > "$stamp"
        echo "memlab: environment ready in $VENV" >&2
    fi
}

# Snakemake's -n/--dry-run (also inside short flags such as -pn): plan only, write nothing.
is_dry_run() {
    local a
    for a in "$@"; do
        [[ $a == --dry-run || $a == --dryrun || $a =~ ^-[a-zA-Z]*n[a-zA-Z]*$ ]] && return 0
    done
    return 1
}

# Ctrl-C: every job stops at once (a job dies quietly: src/memlab/__init__.py), Snakemake keeps
# what finished, and the same command resumes from there.
on_interrupt() {
    echo "memlab: interrupted. Finished steps are kept;" \
        "resume with: ./run.sh$(printf ' %q' "$@")" >&2
    exit 130
}

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
}

# A bare ./run.sh prints the usage rather than starting a 12-minute study.
if [[ $# -eq 0 ]]; then
    usage
    exit 2
fi
cmd=$1
shift
case $cmd in
    setup)
        setup
        ;;
    study)
        setup
        trap 'on_interrupt study "$@"' INT
        # Snakemake's own message for a YAML syntax error names neither file nor line.
        "$VENV/bin/python" -m memlab.ops.precheck "$@"
        # Outputs damaged or missing since they were made: moved aside, remade with what depends
        # on them (Snakemake alone would take them for results, or say "Nothing to be done").
        mapfile -d '' -t repair < <("$VENV/bin/python" -m memlab.ops.repair "$@")
        is_dry_run "$@" && exec "$VENV/bin/snakemake" "$@" "${repair[@]}"
        echo "memlab: Snakemake prints 'N of M steps (x%) done' after each job; a train job" \
            "logs its epochs to the log file it names (follow it with tail -f)" >&2
        "$VENV/bin/snakemake" "$@" "${repair[@]}"
        # The report's own output (a line per file and rule) goes to its log, shown if it fails:
        # the study's last lines are its answers.
        mkdir -p results/logs
        if ! "$VENV/bin/snakemake" "$@" --report results/report.html >results/logs/report.log 2>&1
        then
            cat results/logs/report.log >&2
            exit 1
        fi
        "$VENV/bin/python" -m memlab.ops.answers "$@"
        echo "memlab: figures in results/figures/, tables in results/tables/," \
            "report in results/report.html" >&2
        ;;
    plan)
        setup
        "$VENV/bin/python" -m memlab.ops.plan "$@"
        ;;
    test)
        setup
        "$VENV/bin/python" -m pytest "$@"
        ;;
    record)
        # After a run, never during one: DVC takes a repo-wide lock.
        setup
        "$VENV/bin/python" -m memlab.ops.versioning record "$@"
        ;;
    restore)
        setup
        "$VENV/bin/python" -m memlab.ops.versioning restore "$@"
        ;;
    bench)
        setup
        "$VENV/bin/python" benchmarks/run.py "$@"
        ;;
    -h | --help | help)
        usage
        ;;
    *)
        echo "memlab: unknown command '$cmd'" >&2
        usage
        exit 2
        ;;
esac
