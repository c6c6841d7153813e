"""The study plan: what a config asks for, checked and expanded into runs.

Read on every Snakemake start (``workflow/rules/common.smk``), so nothing here imports torch,
pandas, matplotlib or scikit-learn at module level (``tests/ops/test_import_cost.py``):

- :mod:`~memlab.plan.config`: the config checked against ``workflow/schemas/``;
- :mod:`~memlab.plan.kinds`: model kinds as classes (their keys, ids and sizes);
- :mod:`~memlab.plan.study`: regimes, runs, blocks and their paths (the DAG's wildcards);
- :mod:`~memlab.plan.power`: how many replicas each question needs (the power gates);
- :mod:`~memlab.plan.registry`: the names of every table and figure.

May import :mod:`memlab.data` and the base modules (``memlab.io``, ``seeds``, ``columnar``,
``checkpoint``, ``rulejob``); never the engine, the analysis or the reporting above it (the
import-linter contract in ``pyproject.toml``).
"""
