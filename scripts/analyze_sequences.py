"""Rule analyze_sequences: every language model's run gathered into the sequence tables
(memlab.analysis.sequences: how each is computed)."""

from memlab.analysis.bank import read_runs
from memlab.analysis.frames import write_table
from memlab.analysis.sequences import SEQUENCE_FRAMES
from memlab.plan.registry import TABLES
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    for table in TABLES:
        if table.made_by == "analyze_sequences":
            frame = SEQUENCE_FRAMES[table.frame](read_runs(sm.input.evaluations, sm.params.runs))
            write_table(table, frame, sm.output[table.name])
            log(f"{table.path}: {len(frame)} rows")
