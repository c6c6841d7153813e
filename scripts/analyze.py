"""Rule analyze: gather every run into tidy study tables, with the per-example analyses
(memorization scores, membership inference, chance nulls) computed from the evaluations."""

from memlab import analysis
from memlab.io import atomic_path, load_npz
from memlab.registry import TABLES
from memlab.seeds import derive_seed
from memlab.study import run_path_of
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    metrics = analysis.gather(sm.input.metrics)
    history = analysis.gather(sm.input.histories)
    log(f"{len(sm.input.metrics)} runs: {len(metrics)} metric rows, {len(history)} history rows")

    def evaluations():
        # One run at a time: the per-example arrays of a large study need not fit in memory.
        for path in sm.input.evaluations:
            yield sm.params.runs[run_path_of(path)], load_npz(path)

    memorization, mem_summary = analysis.memorization_tables(evaluations())
    membership, roc = analysis.membership_tables(evaluations())
    scored = int((mem_summary["status"] == "ok").sum()) if len(mem_summary) else 0
    log(f"memorization scores for {scored} runs; membership attacks: {len(membership)} rows")
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
    for table in TABLES:
        frame = frames[table.frame]
        with atomic_path(sm.output[table.name]) as tmp:
            if table.format == "parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False, float_format="%.6g")
