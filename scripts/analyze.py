"""Rule analyze: gather every run's metrics and history into tidy study tables."""

from memlab import analysis
from memlab.io import atomic_path
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    metrics = analysis.gather(sm.input.metrics)
    history = analysis.gather(sm.input.histories)
    tables = {
        "metrics": metrics,
        "gap": analysis.generalization_gap(metrics),
        "robustness": analysis.robustness(metrics),
        "summary": analysis.summarize(metrics),
    }
    log(f"{len(sm.input.metrics)} runs: {len(metrics)} metric rows, {len(history)} history rows")
    for name, frame in {**tables, "metrics_csv": metrics, "history": history}.items():
        with atomic_path(sm.output[name]) as tmp:
            if str(sm.output[name]).endswith(".parquet"):
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False, float_format="%.6g")
