"""Rule evaluate: per-example outputs of every replica, and the run's tidy metrics."""

from memlab.checkpoint import load_checkpoint
from memlab.columnar import write_parquet
from memlab.data import datasets as data
from memlab.engine.runs import evaluate_run
from memlab.io import load_npz, save_npz
from memlab.plan.study import with_run_columns
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    split = data.load_split(sm.input.split)
    labels = load_npz(sm.input.labels)
    pert = load_npz(sm.input.perturbed)
    keys = [(str(n), int(s)) for n, s in zip(pert["names"], pert["severities"], strict=True)]
    perturbed = dict(zip(keys, pert["x"], strict=True))
    # Exact recall (a dataset with `recall`): the pool's perturbed copies.
    pool = dict(zip(keys, pert["x_pool"], strict=True)) if "x_pool" in pert else None
    arrays, metrics = evaluate_run(
        load_checkpoint(sm.input.checkpoint), split, labels, perturbed, pool, sm.params.estimators
    )
    # As columns through pyarrow: the job never imports pandas (memlab.columnar).
    metrics = with_run_columns(metrics, sm.params.run)
    save_npz(sm.output.evaluation, **arrays)
    write_parquet(sm.output.metrics, metrics)
    heldout = metrics["value"][(metrics["split"] == "heldout") & (metrics["metric"] == "accuracy")]
    log(
        f"held-out accuracy {heldout.mean():.4f} (replicas {heldout.min():.4f}-{heldout.max():.4f})"
    )
