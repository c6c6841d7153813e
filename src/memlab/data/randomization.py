"""Randomization tests (Zhang et al. 2017, *Understanding deep learning requires rethinking
generalization*): the same data with part or all of its structure destroyed.

- ``true_labels``: unchanged (the control);
- ``partial_labels``: each pool label independently, with probability ``fraction``, replaced by
  a class drawn uniformly at random (it may by chance be the true one, as in the paper);
- ``random_labels``: every pool label drawn uniformly at random;
- ``shuffled_pixels``: one fixed permutation of the features, applied to pool and test alike;
- ``random_pixels``: a different random permutation for every example (pool and test);
- ``gaussian_inputs``: every input replaced by Gaussian noise with the pool's per-feature mean
  and standard deviation (pool and test); labels kept, so they carry no signal.

Label randomizations touch the training pool only: held-out labels stay true, so held-out
accuracy measures generalization (chance for random labels). Input randomizations apply to pool
and test alike, since a model is asked to generalize under the same input distribution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from memlab.data.datasets import Split
from memlab.io import MemlabInputError

RANDOMIZATIONS = (
    "true_labels",
    "partial_labels",
    "random_labels",
    "shuffled_pixels",
    "random_pixels",
    "gaussian_inputs",
)


def randomize(split: Split, spec: Mapping[str, Any] | None, seed: int) -> tuple[Split, np.ndarray]:
    """Apply a randomization to a split; return it and the mask of pool labels it changed."""
    changed = np.zeros(len(split.y_pool), bool)
    if not spec:
        return split, changed
    kind = spec.get("kind")
    if kind not in RANDOMIZATIONS:
        raise MemlabInputError(
            f"randomization kind {kind!r} is unknown; allowed: {', '.join(RANDOMIZATIONS)}."
        )
    rng = np.random.default_rng(seed)
    x_pool, y_pool, x_test = split.x_pool, split.y_pool.copy(), split.x_test
    k = split.n_classes
    if kind in ("partial_labels", "random_labels"):
        fraction = 1.0 if kind == "random_labels" else float(spec.get("fraction", 0.5))
        if not 0.0 <= fraction <= 1.0:
            raise MemlabInputError(f"randomization.fraction is {fraction}; it must be in [0, 1].")
        hit = rng.random(len(y_pool)) < fraction
        y_pool[hit] = rng.integers(0, k, int(hit.sum()))
        changed = y_pool != split.y_pool
    elif kind == "shuffled_pixels":
        perm = rng.permutation(x_pool.shape[1])
        x_pool, x_test = x_pool[:, perm], x_test[:, perm]
    elif kind == "random_pixels":
        x_pool = np.take_along_axis(x_pool, rng.random(x_pool.shape).argsort(1), 1)
        x_test = np.take_along_axis(x_test, rng.random(x_test.shape).argsort(1), 1)
    elif kind == "gaussian_inputs":
        mean, std = x_pool.mean(0), x_pool.std(0)
        x_pool = mean + std * rng.standard_normal(x_pool.shape)
        x_test = mean + std * rng.standard_normal(x_test.shape)
        if split.image_shape is not None:  # stay in the pixel range the perturbations assume
            x_pool, x_test = np.clip(x_pool, 0, 1), np.clip(x_test, 0, 1)
    out = Split(
        np.ascontiguousarray(x_pool, np.float32),
        y_pool,
        np.ascontiguousarray(x_test, np.float32),
        split.y_test,
        k,
        split.image_shape,
        # Kept under input randomizations too: the embedding then maps the randomized blocks
        # linearly (a lookup is x @ E), the control for the token inputs.
        split.token_shape,
    )
    return out, changed
