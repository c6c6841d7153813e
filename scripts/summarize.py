"""Rule summarize: the headline numbers of the study, in sentences and one short table."""

from importlib.metadata import version

from memlab.checkpoint import software_versions
from memlab.io import save_text
from memlab.report import summary_html
from memlab.tables import StudyTables
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    tables = StudyTables.read(
        dict(snakemake.input.items()), randomizations=snakemake.params.randomizations
    )
    versions = {**software_versions(), "snakemake": version("snakemake")}
    save_text(snakemake.output[0], summary_html(tables, snakemake.params.study, versions))
