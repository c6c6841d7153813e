"""Rule summarize: the headline numbers of the study, in sentences and one short table."""

from memlab.io import save_text
from memlab.report import summary_html
from memlab.tables import StudyTables
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    tables = StudyTables.read(
        dict(snakemake.input.items()), randomizations=snakemake.params.randomizations
    )
    save_text(snakemake.output[0], summary_html(tables))
