"""The analysis stage: rule ``analyze`` (and ``removal_choice``, ``removal_analyze``).

- :mod:`~memlab.analysis.frames`: every table the rule writes, each computed once;
- :mod:`~memlab.analysis.metrics`: the per-run metrics tables (gap, robustness, few-shot,
  recall, memory effect);
- :mod:`~memlab.analysis.bank`: the model bank, every replica's evaluation of a run;
- :mod:`~memlab.analysis.memorization`: Feldman-Zhang memorization scores;
- :mod:`~memlab.analysis.membership`: membership inference (LiRA, RMIA);
- :mod:`~memlab.analysis.influence`, :mod:`~memlab.analysis.removal`: train-to-test influence
  and the removal experiment;
- :mod:`~memlab.analysis.evidence`, :mod:`~memlab.analysis.neighbours`: per-example evidence
  and the detectors scored against injected flips;
- :mod:`~memlab.analysis.corruption_error`: error under corruption against its baselines;
- :mod:`~memlab.analysis.sequences`: the text runs' language models (rule
  ``analyze_sequences``): counterfactual memorization, fact recall, perplexity, rare words.

May import the engine (for the training-dynamics arrays), the plan, the data and the base
modules; never the reporting above it.
"""
