"""Rule figures: draw every study figure from the tidy tables (PNG and SVG)."""

import pandas as pd

from memlab.figures import FIGURES, save_figure
from memlab.workflow import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    metrics = pd.read_parquet(sm.input.metrics)
    history = pd.read_parquet(sm.input.history)
    for name, draw in FIGURES.items():
        save_figure(
            draw(metrics, history), sm.output[name], sm.output[f"{name}_svg"], dpi=sm.params.dpi
        )
        log(f"drew {name}")
