"""Rule analyze_sequences: every language model's run gathered into the sequence tables
(memlab.analysis.sequences: how each is computed)."""

from memlab.analysis.bank import read_runs
from memlab.analysis.frames import analyze_tables, write_table
from memlab.analysis.sequences import SEQUENCE_FRAMES
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    # Read once for all four tables: a language model's bank is a few MB.
    evaluations = list(read_runs(sm.input.evaluations, sm.params.runs))
    for table in analyze_tables("analyze_sequences"):
        frame = SEQUENCE_FRAMES[table.frame](evaluations)
        write_table(table, frame, sm.output[table.name])
        log(f"{table.path}: {len(frame)} rows")
