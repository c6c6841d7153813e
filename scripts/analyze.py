"""Rule analyze: gather every run into tidy study tables, with the per-example analyses
(memorization scores, membership inference, chance nulls) computed from the evaluations
(memlab.analysis.frames: how each table of the registry is computed)."""

import sys

from memlab.analysis.frames import Analysis, analyze_tables, frames, write_table
from memlab.analysis.metrics import undertrained_warnings
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    study = Analysis(
        metric_files=sm.input.metrics,
        history_files=sm.input.histories,
        evaluation_files=sm.input.evaluations,
        runs=sm.params.runs,
        split_files=sm.input.splits,
        seed=sm.params.seed,
        agreement_k=sm.params.agreement_k,
        power=sm.params.power,
        influence=sm.params.influence,
        corruption_baselines=sm.params.corruption_baselines,
        randomizations=sm.params.randomizations,
        log=log,
        sequence_files=sm.input.sequence_evaluations,
        sequence_runs=sm.params.sequence_runs,
    )
    computed = frames(study)
    for warning in undertrained_warnings(computed["memorization_summary"]) if study.runs else ():
        log(warning)
        print(f"memlab: {warning}", file=sys.stderr)
    for table in analyze_tables():
        write_table(table, computed[table.frame], sm.output[table.name])
