"""Rule summarize: the headline numbers of the study, in sentences and one short table."""

import pandas as pd

from memlab.io import save_text
from memlab.report import summary_html
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    metrics = pd.read_parquet(snakemake.input.metrics)
    save_text(snakemake.output[0], summary_html(metrics))
