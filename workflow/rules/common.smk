# Helpers shared by the rules: config validation, the study plan and per-rule config slices.
# Each rule's params carry only the settings that affect it, so a config edit reruns exactly the
# jobs it touches (Snakemake's params rerun trigger).
import math
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# memlab's own files are found from this file, never from workflow.basedir or the working
# directory: when another workflow uses memlab as a module (README: "Use memlab as a module"),
# workflow.basedir is the deploying workflow's directory and the working directory is its own.
# MEMLAB_DIR is the memlab checkout; None for a module read from a git host (github(...)).
_HERE = workflow.current_basedir  # workflow/rules, while this file is parsed
MEMLAB_DIR = Path(_HERE).parents[1] if isinstance(_HERE, os.PathLike) else None


def memlab_file(rel):
    """A file of the memlab repository by its path from the repository root: in the checkout,
    or (a module from a git host) Snakemake's cached copy of it."""
    if MEMLAB_DIR is not None:
        return MEMLAB_DIR / rel
    return Path(workflow.source_path(f"../../{rel}"))


# The rules' conda environment and scripts. Snakemake resolves `conda:` and `script:` paths from
# the file that defines the rule (workflow/rules/*.smk), in a checkout and from a git host alike,
# so they are relative to workflow/rules, never local paths (a git host has none). Snakemake
# records a script rule's code as the text of its `script:` directive (rerun trigger `code`):
# changing how it is spelled (this helper replaced literal paths) reruns every job once, as any
# library edit does; the environment is recorded by its content, not its spelling.
CONDA_ENV = "../../environment.yml"


def rule_script(name):
    """scripts/<name>.py, the script of rule <name> (and of its removal twin)."""
    return f"../../scripts/{name}.py"


# Resources: each rule asks for what it was measured to need (mem_mb; runtime in minutes), so a
# cluster profile only adds its site's settings. Measured on the default study
# (config/config.yaml; results/benchmarks/**.tsv: the script's peak RSS, the slowest job), one
# thread each. On a cluster each script runs under its own Snakemake process, which the
# scheduler counts too (SLURM job steps peaked at the script's RSS + ~230 MB, measured with
# sstat on the smoke study): mem_mb = script peak + 250 MB + ~50% headroom; runtime ~4x the
# slowest job, at least 2 minutes. Bigger data or wider models need more: run a sample of the
# study, read results/benchmarks/ and raise them in the profile (profiles/slurm: set-resources).
# Locally they only matter under --resources. example_data and the removal experiment's rules
# are not measured: they keep generous allowances.


# Rule scripts import the library from this checkout (also inside conda envs and cluster jobs):
# the params hash the checkout's modules (library_code), so the jobs must run exactly those, not
# a memlab installed elsewhere (a non-editable `pip install .`, another checkout's editable one,
# a conda env made for another checkout under a shared --conda-prefix). A module from a git host
# has no checkout and adds nothing: there the jobs import memlab as installed (its conda env
# installs it, see MEMLAB_SOURCE).
_SRC = str(MEMLAB_DIR / "src") if MEMLAB_DIR is not None else None
if _SRC is not None:
    sys.path.insert(0, _SRC)


def _memlab_source(here):
    """What pip installs memlab from into the conda environment (environment.yml's pip
    section): this checkout, editable, or for a module from a git host the same repository at
    the same ref. None where Snakemake read memlab from anywhere else."""
    if MEMLAB_DIR is not None:
        return f"-e {shlex.quote(str(MEMLAB_DIR))}"
    # INTERNAL (Snakemake 9.27.1): the source files of github(...)/gitlab(...) name their host,
    # repository and ref; those of gitfile(...) their local repository and ref.
    ref = getattr(here, "ref", None)
    if getattr(here, "host", None) and getattr(here, "repo", None):
        return f"git+https://{here.host}/{here.repo}@{ref}"
    if getattr(here, "repo_path", None):
        return f"git+file://{os.path.abspath(here.repo_path)}@{ref}"
    return None


# Read by pip when Snakemake creates the conda env (--software-deployment-method conda): a
# relative path in the env file would resolve against Snakemake's copy of it under
# .snakemake/conda/, and a git host gives no path at all. A value set by hand wins.
_MEMLAB_SOURCE = _memlab_source(_HERE)
if _MEMLAB_SOURCE:
    os.environ.setdefault("MEMLAB_SOURCE", _MEMLAB_SOURCE)

# (Set, not required: hence no envvars directive.) One OpenMP thread per job: jobs run side
# by side, and two threads per job on a busy 2-core machine were 16-57x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)
)

import memlab
from memlab.plan.config import check_config, load_schema
from memlab.analysis.corruption_error import resolve_baselines
from memlab.data.examples import EXAMPLE_DIR, missing_examples
from memlab.io import MemlabInputError
from memlab.plan.kinds import VARIANT_ID_PATTERN
from memlab.ops.codehash import function_hash, library_hash
from memlab.ops.locks import release_stale_locks
from memlab.ops.packing import block_costs, block_groups
from memlab.ops.snakemake import executes_locally, register_group
from memlab.plan.registry import (
    FIGURE_FORMATS,
    FIGURE_TABLES,
    FINDINGS_FILE,
    FINDINGS_FRONT,
    FINDINGS_TEXT,
    SUMMARY_PAGE,
    TABLE,
    TABLES,
    finding_figures,
    study_figures,
    writes_table,
)
from memlab.plan.study import (
    BLOCK_PATTERN,
    REMOVAL_ARMS,
    REMOVAL_BLOCK_PATTERN,
    REMOVAL_DIR,
    RUN_PATTERN,
    RUNS_DIR,
    SEQUENCE_RUNS_DIR,
    plan_study,
)

SCHEMA = memlab_file("workflow/schemas/config.schema.yaml")

try:
    check_config(config, load_schema(SCHEMA))
    validate(config, str(SCHEMA))  # fills in the schema's defaults
    STUDY = plan_study(config, root=os.getcwd())
    CORRUPTION_BASELINES = resolve_baselines(STUDY, config["perturbations"])
except MemlabInputError as err:
    raise WorkflowError(
        f"{err}\n(Nothing was run; fix the config or data and rerun.)"
    ) from None

for _note in STUDY.notes:
    print(f"memlab: {_note}", file=sys.stderr)


# A killed run leaves Snakemake's locks behind; remove them unless a live run owns them. Only in
# the main process: job processes (local or on a cluster) run inside a live main run.
if workflow.is_main_process:
    _OWNER = release_stale_locks()


wildcard_constraints:
    dataset="[A-Za-z][A-Za-z0-9_]*",
    noise="[0-9.]+",
    size="[0-9]+",
    model=VARIANT_ID_PATTERN,
    regime="[A-Za-z][A-Za-z0-9_]*",
    block="[0-9]+",
    arm="|".join(REMOVAL_ARMS),
    k="[0-9]+",


# A block's files are under results/runs/<Run.path>/block<index>; the path's parts are the train
# and evaluate rules' wildcards.
BLOCK = BLOCK_PATTERN
# The removal experiment's files: its choice under the first-stage run's path, its blocks under
# that path's arm and k (memlab.plan.study.Removal).
RUN = RUN_PATTERN
REMOVAL_BLOCK = REMOVAL_BLOCK_PATTERN


def canonical(obj):
    """Dicts with sorted keys, recursively: Snakemake compares params by their serialized form,
    so reordering keys in a config file (or in the schema's defaults) must not look like a change.
    """
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def library_code(script):
    """A hash of the memlab modules a rule's script runs (see memlab.ops.codehash); editing one
    reruns exactly the rules whose scripts run it."""
    # The memlab the jobs import: this checkout's src/, or an installed package without it.
    src = Path(memlab.__file__).resolve().parents[1]
    return library_hash(memlab_file(f"scripts/{script}"), src)


# Dataset keys that shape only the evaluation (recall: the pool's perturbed copies), not the split.
EVALUATION_ONLY_KEYS = ("recall",)


def dataset_spec(wildcards):
    spec = STUDY.datasets[wildcards.dataset].spec
    return canonical({k: v for k, v in spec.items() if k not in EVALUATION_ONLY_KEYS})


def dataset_files(wildcards):
    """A user data file is an input of prepare, so editing it reruns the study on it."""
    spec = dataset_spec(wildcards)
    return [spec["path"]] if spec["kind"] == "file" else []


def text_spec(wildcards):
    return canonical(STUDY.texts[wildcards.dataset].spec)


def text_files(wildcards):
    """A user's text file is an input of prepare_text, so editing it reruns what reads it."""
    path = STUDY.texts[wildcards.dataset].spec.get("path")
    return [path] if path else []


def sequence_files(name):
    """The file `name` of every block of every language model's run."""
    return [f for run in STUDY.sequence_runs for f in run.files(name)]


def all_sequence_run_columns():
    """Columns of every sequence run, keyed by its path (as all_run_columns)."""
    return canonical({run.path: run.columns() for run in STUDY.sequence_runs})


def variant(wildcards):
    return canonical(STUDY.run(wildcards).variant.spec())


def train_settings(wildcards):
    """The regime's settings that shape this run (none for a model that does not train)."""
    regime = STUDY.run(wildcards).regime
    return canonical(regime.settings()) if regime else {}


def run_columns(wildcards):
    """The run's columns in every table (its coordinates and settings)."""
    return canonical(STUDY.run(wildcards).columns())


def subset_size(wildcards):
    """A subset's size; a few-shot size also names its examples per class."""
    size = int(wildcards.size)
    shots = STUDY.datasets[wildcards.dataset].shots(size)
    return {"size": size, "per_class": shots} if shots else size


def block_replicas(wildcards):
    """The replica range [start, stop) of a job's block: what its subsets and seeds depend on."""
    return STUDY.block(wildcards).spec()


_PACKING = {}


def _packing():
    """Blocks packed into cluster jobs (memlab.ops.packing), computed once, on first use."""
    if not _PACKING:
        costs = block_costs(STUDY, Path.cwd(), config["cluster"]["block_seconds"])
        groups = block_groups(
            STUDY, Path.cwd(), costs, config["cluster"]["job_seconds"]
        )
        for name in set(groups.values()):
            # `group-components` entries name the prefix (profiles/slurm: blocks, reblocks).
            register_group(workflow, name, name.rstrip("0123456789"))
        _PACKING.update(costs=costs, groups=groups)
    return _PACKING


def _block_key(wildcards):
    return STUDY.run(wildcards).path, int(wildcards.block)


def block_group(wildcards):
    """The cluster job group of a block's train and evaluate jobs; none when jobs run here."""
    if executes_locally(workflow):
        return None
    return _packing()["groups"][_block_key(wildcards)]


def block_minutes(wildcards, local=60):
    """A block job's runtime request on a cluster: 4x its estimated cost, at least 2 minutes
    (a group's request is the sum of its jobs'); `local` where jobs run here."""
    if executes_locally(workflow):
        return local
    return max(2, math.ceil(4 * _packing()["costs"][_block_key(wildcards)] / 60))


def run_files(name):
    """The file `name` of every block of every run."""
    return [f for run in STUDY.runs for f in run.files(name)]


def all_run_columns():
    """Columns of every run, keyed by its path under results/runs (sorted keys: the order
    of datasets or models in the config file must not look like a change)."""
    return canonical({run.path: run.columns() for run in STUDY.runs})


# Keys that never change a number: left out of every params slice, so editing them reruns nothing.
OPERATIONAL_KEYS = {
    "training": ("log_every", "resume_every", "device"),
    "cluster": ("job_seconds", "block_seconds"),
}


def study_config():
    """The validated config (defaults filled) minus operational keys, for the report."""
    study = {k: v for k, v in config.items()}
    for section, keys in OPERATIONAL_KEYS.items():
        study[section] = {k: v for k, v in study[section].items() if k not in keys}
    return canonical(study)


def randomizations():
    """Dataset name -> randomization kind, for the datasets that have one."""
    return {
        name: info.spec["randomization"]["kind"]
        for name, info in STUDY.datasets.items()
        if "randomization" in info.spec
    }


def table_outputs(rule="analyze"):
    """Every table of a rule by name; those with a caption go into the report."""
    out = {}
    for t in TABLES:
        if t.made_by != rule:
            continue
        caption = f"../report/{t.caption}.rst" if t.caption else None
        out[t.name] = (
            t.path if caption is None else report(t.path, caption, category="Tables")
        )
    return out


FIGURES = [f.name for f in study_figures(STUDY)]
# The tables figures and the summary read (outputs of analyze; of removal_analyze if the study
# has a removal stage, of analyze_sequences if it has text runs: registry.writes_table).
FIGURE_INPUTS = {
    name: TABLE[name].path for name in FIGURE_TABLES if writes_table(STUDY, TABLE[name])
}


def figure_code(wildcards):
    """The code that draws one figure: the memlab modules the figures script runs, but of
    memlab.reporting.figures only the figure's own function and what it calls, so that editing
    one figure's code redraws that figure alone (memlab.ops.codehash.function_hash)."""
    src = Path(memlab.__file__).resolve().parents[1]
    rest = library_hash(
        memlab_file("scripts/figures.py"), src, without=("memlab.reporting.figures",)
    )
    figures = src / "memlab" / "reporting" / "figures.py"
    return f"{rest}-{function_hash(figures, wildcards.figure)}"


def figure_caption(wildcards):
    """The figure's caption (workflow/report/<figure>.rst), which the report shows under it
    (through workflow/report/figure.rst: a report caption cannot name a wildcard)."""
    return Path(memlab_file(f"workflow/report/{wildcards.figure}.rst")).read_text()


def removal_block_replicas(wildcards):
    """The replica range [start, stop) of a removal block (its arm and k share them)."""
    return STUDY.removal(wildcards).blocks[int(wildcards.block)].spec()


def first_stage_evaluations(wildcards):
    """The first-stage run's evaluations, whose scores choose what its removals leave out."""
    return STUDY.run(wildcards).files("evaluation.npz")


def pair_thresholds():
    """What makes a high-influence pair (analysis.influence less the display gate, whose
    change must not retrain the removal stage)."""
    influence = config["analysis"]["influence"]
    return {k: influence[k] for k in ("min_influence", "min_memorization")}


def removal_files(name):
    """The file `name` of every block of every removal arm."""
    return [f for r in STUDY.removals for f in r.files(name)]


def removal_specs():
    """Per removal arm (by path): its first stage, arm, k and the first stage's columns."""
    return canonical({r.path: r.spec() for r in STUDY.removals})


def final_outputs():
    return [
        TABLE["metrics"].path,
        *(
            t.path
            for t in TABLES
            if t.made_by == "analyze_sequences" and STUDY.sequence_runs
        ),
        *(f.path(ext) for f in study_figures(STUDY) for ext in FIGURE_FORMATS),
        SUMMARY_PAGE,
        FINDINGS_FILE,
        FINDINGS_TEXT,
        FINDINGS_FRONT,
    ]


# The perturbations keys the perturbed sets depend on (the baseline only shapes the analysis): a
# configured table of a corruption that is not listed changes nothing, so it is left out.
PERTURB_KEYS = ("names", "severities")


def perturb_settings():
    p = config["perturbations"]
    out = {k: p[k] for k in PERTURB_KEYS}
    tables = {n: v for n, v in p.get("parameters", {}).items() if n in p["names"]}
    return canonical(out | ({"parameters": tables} if tables else {}))
