# Helpers shared by the rules: config validation, the study plan and per-rule config slices.
# Each rule's params carry only the settings that affect it, so a config edit reruns exactly the
# jobs it touches (Snakemake's params rerun trigger).
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Rule scripts import the library from this checkout (also inside conda envs and cluster jobs).
_SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, _SRC)
# (Set, not required: hence no envvars directive.) One OpenMP thread per job: jobs run side
# by side, and two threads per job on a busy 2-core machine were 16-57x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)
)

from memlab.config import MEMORY_REGIME, check_config, load_schema, plan_study
from memlab.io import MemlabInputError
from memlab.ops.locks import release_stale_locks

SCHEMA = Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"

try:
    check_config(config, load_schema(SCHEMA))
    validate(config, str(SCHEMA))  # fills in the schema's defaults
    STUDY = plan_study(config, root=os.getcwd())
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
    model="[A-Za-z][A-Za-z0-9_]*-[wk][0-9]+",
    regime="[A-Za-z][A-Za-z0-9_]*",


RUN = "{dataset}/noise{noise}/n{size}/{model}/{regime}"
TRAINING_KEYS = ("batch_size", "lr", "max_epochs")
EARLY_STOPPING_KEYS = ("patience", "val_fraction")


def canonical(obj):
    """Dicts with sorted keys, recursively: Snakemake compares params by their serialized form,
    so reordering keys in a config file (or in the schema's defaults) must not look like a change.
    """
    if isinstance(obj, dict):
        return {k: canonical(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def dataset_spec(wildcards):
    return canonical(STUDY.datasets[wildcards.dataset].spec)


def dataset_files(wildcards):
    """A user data file is an input of prepare, so editing it reruns the study on it."""
    spec = dataset_spec(wildcards)
    return [spec["path"]] if spec["kind"] == "file" else []


def variant(wildcards):
    return canonical(STUDY.variants[wildcards.model])


def train_settings(wildcards):
    """Training defaults merged with the regime: only the keys that shape this run."""
    if variant(wildcards)["kind"] == "knn":
        return {}
    regime = config["regimes"][wildcards.regime]
    training = config["training"]
    settings = {k: training[k] for k in TRAINING_KEYS}
    settings.update(regime)
    if settings["early_stopping"]:
        settings.update({k: training[k] for k in EARLY_STOPPING_KEYS})
    return canonical(settings)


def run_settings(wildcards):
    """The run's coordinates as table columns (derived from the wildcards or a planned Run)."""
    v = variant(wildcards)
    return canonical(
        {
            "dataset": wildcards.dataset,
            "label_noise": float(wildcards.noise),
            "size": int(wildcards.size),
            "model": wildcards.model,
            "model_name": v["name"],
            "kind": v["kind"],
            "width": v.get("width", 0),
            "k": v.get("k", 0),
            "regime": wildcards.regime,
        }
    )


def run_files(name):
    return [f"results/runs/{run.path}/{name}" for run in STUDY.runs]


def all_run_settings():
    """Coordinates of every run, keyed by its path under results/runs (sorted keys: the order
    of datasets or models in the config file must not look like a change)."""
    return canonical({run.path: run_settings(run) for run in STUDY.runs})


# Keys that never change a number: left out of every params slice, so editing them reruns nothing.
OPERATIONAL_KEYS = {"training": ("log_every", "resume_every")}


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


def _scores_possible(ds):
    """Some size lets every example be both in and out of a subset (Feldman-Zhang design)."""
    return ds.replicas >= 2 and any(
        size < ds.n_pool and ds.replicas * size >= ds.n_pool for size in ds.sizes
    )


def study_figures():
    """The figures this study can draw (an analysis without its runs is left out)."""
    figures = [
        "accuracy_vs_size",
        "generalization_gap",
        "robustness",
        "learning_curves",
        "accuracy_vs_width",
    ]
    datasets = STUDY.datasets.values()
    kinds = {v["kind"] for v in STUDY.variants.values()}
    scored = [ds for ds in datasets if _scores_possible(ds)]
    if scored:
        figures.append("memorization_scores")
        if any(ds.image_shape for ds in scored):
            figures.append("memorized_gallery")
        if "mlp" in kinds and any(v.get("k") == 1 for v in STUDY.variants.values()):
            figures.append("memorization_scatter")
        if any(ds.replicas >= 3 for ds in scored):
            figures.append("membership_roc")
    if any("randomization" in ds.spec for ds in datasets):
        figures.append("randomization_tests")
    if any(len(ds.label_noise) >= 2 for ds in datasets):
        figures.append("noise_sweep")
    widths = {v["width"] for v in STUDY.variants.values() if v["kind"] == "mlp"}
    if len(widths) >= 2:
        figures.append("capacity")
    if any(ds.spec["kind"] == "modular_addition" for ds in datasets):
        figures.append("grokking")
    return figures


FIGURES = study_figures()
# The tables figures and the summary read (outputs of analyze).
TABLES = {
    "metrics": "results/tables/metrics.parquet",
    "history": "results/tables/history.parquet",
    "memorization": "results/tables/memorization.parquet",
    "memorization_summary": "results/tables/memorization_summary.csv",
    "membership": "results/tables/membership.csv",
    "membership_roc": "results/tables/membership_roc.parquet",
    "chance_null": "results/tables/chance_null.csv",
    "noise_sweep": "results/tables/noise_sweep.csv",
}


def final_outputs():
    return [
        "results/tables/metrics.parquet",
        *expand("results/figures/{name}.{ext}", name=FIGURES, ext=("png", "svg")),
        "results/report/summary.html",
    ]
