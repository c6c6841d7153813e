"""Per-job fixed cost: every Snakemake job runs one rule script in a fresh interpreter, so what the
script's module-level imports pull in is paid by every job before it does any work (torch about
1.5 s, pandas 0.35 s; benchmarks/README.md, "Per-job fixed cost"). A job imports a heavy module
only where it uses it, and planning a study (every Snakemake start) imports none.

Each script's imports run in a fresh ``python -c`` (all at once, a few seconds in all): a
module-level ``import torch`` or ``import pandas`` put back into a module that a light job imports
(memlab.io, data, seeds, perturb, bank, dynamics, removal, influence, memorization, checkpoint,
workflow, ...) fails here.
"""

from __future__ import annotations

import re

import pytest
from conftest import HEAVY_MODULES, ROOT, fresh_imports, rule_scripts, script_imports

# Of HEAVY_MODULES, what each rule script's job uses (and so may import up front). A job that uses
# none of them starts in a fraction of a second.
USES = {
    "example_data": (),  # pandas and scikit-learn inside memlab.data.examples, once per fresh clone
    "prepare": (),
    "label_noise": (),
    "subsample": (),
    "perturb": (),  # scipy only where it blurs, inside memlab.data.perturb
    "removal_choice": (),
    "removal_subsample": (),
    "removal_analyze": (),  # pandas only to write its table, inside memlab.analysis.removal
    "analyze": ("pandas",),  # every table is a DataFrame
    "summarize": ("pandas", "scipy"),  # the tables; t intervals in memlab.reporting.findings
    "figures": ("pandas", "scipy", "matplotlib", "seaborn"),
    "train": ("torch",),  # the model (its history table: columns through pyarrow)
    "evaluate": ("torch",),  # the checkpoint and model (its metrics: columns through pyarrow)
    "prepare_text": (),  # the corpus: numpy alone
    "subsample_text": (),
    "train_sequence": ("torch",),  # the language model (its history: columns through pyarrow)
    "evaluate_sequence": ("torch",),  # inside memlab.engine.sequence_runs' functions
    "analyze_sequences": ("pandas", "scipy"),  # its tables; Welch t intervals
}
PLANNING = "snakemake start"


def planning_imports() -> str:
    """The memlab imports of workflow/rules/common.smk: what every Snakemake start runs to plan
    the study."""
    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    statement = r"^(?:import memlab\b.*|from memlab\S* import (?:\([^)]*\)|.*))$"
    found = re.findall(statement, text, re.M)
    assert found, "no memlab imports found in workflow/rules/common.smk"
    return "\n".join(found)


@pytest.fixture(scope="module")
def imported() -> dict[str, list[str]]:
    codes = {name: script_imports(path) for name, path in rule_scripts().items()}
    return fresh_imports(codes | {PLANNING: planning_imports()})


def test_every_rule_script_is_listed():
    assert set(USES) == set(rule_scripts()), "list a new rule script in USES"
    assert all(set(m) <= set(HEAVY_MODULES) for m in USES.values())


@pytest.mark.parametrize("script", sorted(USES))
def test_a_job_imports_only_what_it_uses(imported, script):
    extra = sorted(set(imported[script]) - set(USES[script]))
    assert not extra, (
        f"scripts/{script}.py's imports pull in {', '.join(extra)}, which its job does not use: "
        "import it inside the function that needs it (`python -X importtime` shows through "
        "which memlab module)"
    )


def test_planning_imports_no_heavy_module(imported):
    assert imported[PLANNING] == [], f"planning a study imports {imported[PLANNING]}"


def test_the_check_sees_what_a_job_imports(imported):
    # The train job does import torch: an empty answer would mean a broken check.
    assert set(imported["train"]) == {"torch"}
