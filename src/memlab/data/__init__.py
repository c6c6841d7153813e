"""The data stage: rules ``prepare``, ``label_noise``, ``subsample``, ``perturb`` (and
``example_data``).

- :mod:`~memlab.data.dataset_kinds`: one class per dataset kind (its keys, shape, loading);
- :mod:`~memlab.data.datasets`: the fixed pool/held-out split, label noise and balanced subsets
  in blocks;
- :mod:`~memlab.data.perturb`: the corruptions and their severities;
- :mod:`~memlab.data.randomization`: randomized labels and inputs (Zhang et al. 2017);
- :mod:`~memlab.data.long_tail`: a split thinned to a long tail of subpopulations;
- :mod:`~memlab.data.canaries`: inserted canaries and their references (exposure);
- :mod:`~memlab.data.text`: a seeded synthetic text corpus (Zipf words, facts, canaries,
  typos), word tokens in windows, and a user's text file (not yet a dataset kind);
- :mod:`~memlab.data.examples`: the example files the shipped configs read.

The lowest stage: imports only the base modules (numpy, scikit-learn and scipy where a function
needs them); never torch or pandas at module level.
"""
