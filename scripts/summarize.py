"""Rule summarize: the study's findings and headline numbers (summary page, findings.json, the
findings as text and as the report's front-page list)."""

import json
from importlib.metadata import version

from memlab.checkpoint import software_versions
from memlab.io import save_text
from memlab.reporting.findings import findings_metrics, study_findings
from memlab.reporting.report import figure_uris, findings_front, findings_text, summary_html
from memlab.reporting.tables import StudyTables
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    tables = StudyTables.read(
        dict(snakemake.input.items()), randomizations=snakemake.params.randomizations
    )
    found = study_findings(tables)
    versions = {**software_versions(), "snakemake": version("snakemake")}
    figures = figure_uris(snakemake.input.figures)
    page = summary_html(tables, snakemake.params.study, versions, found, figures)
    save_text(snakemake.output.summary, page)
    metrics = json.dumps(findings_metrics(found), indent=2, sort_keys=True)
    save_text(snakemake.output.findings, metrics + "\n")
    save_text(snakemake.output.text, findings_text(found))
    save_text(snakemake.output.front, findings_front(found))
    log(f"{sum(f.answer is not None for f in found)} of {len(found)} questions answered")
