"""Rule removal_analyze: the removal experiment's table, each arm's held-out accuracy change
against the baseline that removed nothing (memlab.analysis.removal)."""

from pathlib import Path

from memlab.analysis import bank, removal
from memlab.io import atomic_path, load_npz
from memlab.plan.registry import TABLE
from memlab.plan.study import REMOVAL_DIR, RUN_COLUMNS
from memlab.rulejob import rule_job

with rule_job(snakemake) as log:
    sm = snakemake
    specs = sm.params.removals
    by_arm: dict[str, list[str]] = {}
    for path in sm.input.evaluations:
        arm_path = str(Path(path).parent.parent.relative_to(REMOVAL_DIR))
        by_arm.setdefault(arm_path, []).append(path)
    banks = (
        (specs[arm], bank.concat_blocks([load_npz(f) for f in files], arm))
        for arm, files in by_arm.items()
    )
    choices = {str(Path(c).parent.relative_to(REMOVAL_DIR)): load_npz(c) for c in sm.input.choices}
    table = removal.removal_table(banks, choices, RUN_COLUMNS)
    log(f"{len(by_arm)} arms of {len(choices)} first stages: {len(table)} rows")
    with atomic_path(sm.output[TABLE["removal"].name]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
