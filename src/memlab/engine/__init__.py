"""The training engine: rules ``train`` and ``evaluate`` (and their removal twins).

- :mod:`~memlab.engine.models`, :mod:`~memlab.engine.random_features`,
  :mod:`~memlab.engine.memory_net`: stacked replicas of each model kind, built from a kind by
  :mod:`~memlab.engine.builders`;
- :mod:`~memlab.engine.fastpath`: hand-written forward/backward steps;
  :mod:`~memlab.engine.optim`: the stacked AdamW;
- :mod:`~memlab.engine.train`: the epoch loop (stopping, dynamics, resume via
  :mod:`~memlab.engine.resume`); :mod:`~memlab.engine.dynamics`: per-example training sums;
- :mod:`~memlab.engine.runs`: one run's replicas trained (chunked) and evaluated;
- :mod:`~memlab.engine.evaluate`: per-example outputs on train, held-out and perturbed data;
- :mod:`~memlab.engine.device`: the ``training.device`` setting.

May import :mod:`memlab.plan`, :mod:`memlab.data` and the base modules; never the analysis or
the reporting above it.
"""
