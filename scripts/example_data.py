"""Rule example_data: write a shipped example CSV (memlab.data.examples) where it is missing."""

from memlab.data.examples import write_example
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    name = snakemake.wildcards.example
    rows = write_example(name, snakemake.output[0])
    log(f"{snakemake.output[0]}: example {name!r}, {rows} rows, from scikit-learn (offline)")
