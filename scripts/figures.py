"""Rule figures: draw one study figure from the tidy tables (PNG and SVG)."""

from pathlib import Path

from memlab.data.perturb import severity_table
from memlab.reporting.figures import DRAW, save_figure
from memlab.reporting.tables import StudyTables
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    splits = {Path(p).parent.name: p for p in sm.input.splits}
    severities = severity_table(sm.params.perturbations.get("parameters"))
    tables = StudyTables.read(dict(sm.input.items()), splits, sm.params.randomizations, severities)
    tables = tables.for_display()  # "k-NN (no training)", not the run id's regime "memory"
    name = sm.wildcards.figure
    save_figure(DRAW[name](tables), sm.output.png, sm.output.svg, dpi=sm.params.dpi)
    log(f"drew {name}")
