"""Rule analyze: gather every run into tidy study tables, with the per-example analyses
(memorization scores, membership inference, chance nulls) computed from the evaluations."""

import sys

from memlab import analysis, bank, corruption_error
from memlab.io import atomic_path
from memlab.registry import TABLES
from memlab.seeds import derive_seed
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    metrics = analysis.gather(sm.input.metrics)
    history = analysis.gather(sm.input.histories)
    log(
        f"{len(sm.params.runs)} runs in {len(sm.input.metrics)} blocks: {len(metrics)} metric "
        f"rows, {len(history)} history rows"
    )

    def evaluations():
        # Each run's blocks as one bank, one run at a time.
        return bank.read_runs(sm.input.evaluations, sm.params.runs)

    memorization, mem_summary = analysis.memorization_tables(evaluations())
    membership, roc = analysis.membership_tables(evaluations())
    scored = int((mem_summary["status"] == "ok").sum()) if len(mem_summary) else 0
    log(f"memorization scores for {scored} runs; membership attacks: {len(membership)} rows")
    for r in mem_summary[mem_summary["replicas_undertrained"] > 0].itertuples():
        warning = (
            f"WARNING: {r.dataset}, noise {r.label_noise:g}, n={r.size}, {r.model} / {r.regime}: "
            f"{r.replicas_undertrained} of {r.replicas} replicas under-trained (stopped by "
            f"max_epochs={r.max_epochs} while the train loss still fell), left out of the "
            f"memorization scores (status: {r.status}); raise max_epochs"
        )
        log(warning)
        print(f"memlab: {warning}", file=sys.stderr)
    frames = {
        "metrics": metrics,
        "gap": analysis.generalization_gap(metrics),
        "robustness": analysis.robustness(metrics),
        "history": history,
        "summary": analysis.summarize(metrics),
        "noise_sweep": analysis.noise_sweep(metrics, history),
        "chance_null": analysis.chance_null(
            evaluations(), seed=derive_seed(sm.params.seed, "chance_null")
        ),
        "memorization": memorization,
        "memorization_summary": mem_summary,
        "membership": membership,
        "membership_roc": roc,
    }
    for dataset, b in sm.params.corruption_baselines.items():
        log(
            f"corruption error on {dataset}: "
            + (b["reason"] or f"against {b['model']} / {b['regime']}")
        )
    frames["corruption_error"] = corruption_error.corruption_error_table(
        frames["robustness"],
        sm.params.corruption_baselines,
        seed=derive_seed(sm.params.seed, "corruption_error"),
    )
    for table in TABLES:
        frame = frames[table.frame]
        with atomic_path(sm.output[table.name]) as tmp:
            if table.format == "parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False, float_format="%.6g")
