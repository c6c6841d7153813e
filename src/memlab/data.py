"""Datasets, the fixed pool/test split, label noise and balanced training subsets.

Everything random here takes an explicit seed and draws from ``np.random.default_rng`` (or, for
the stratified split, scikit-learn seeded with that integer), so a config fully determines the data.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memlab.examples import example_frame, example_named_by
from memlab.io import MemlabInputError, load_npz, save_npz
from memlab.seeds import derive_seed

if TYPE_CHECKING:
    import pandas as pd

DATASET_KINDS = ("digits", "gaussian", "file", "modular_addition")

_DIGITS_N = 1797  # rows of sklearn's bundled digits; checked against load_digits in the tests
# Every kind also takes `randomization` (applied after the split, see memlab.randomization),
# `long_tail` (the split thinned to a long tail, see memlab.long_tail) and `recall` (exact
# recall of perturbed training examples, see memlab.analysis.recall).
_VARIANTS = {"randomization", "long_tail", "recall"}
_ALLOWED_KEYS = {
    "digits": {"kind"},
    "gaussian": {
        "kind",
        "n_samples",
        "n_features",
        "n_classes",
        "separation",
        "seed",
        "standardize",
    },
    "file": {"kind", "path", "label_column", "image_shape", "standardize"},
    "modular_addition": {"kind", "p"},
}
_ALLOWED_KEYS = {kind: keys | _VARIANTS for kind, keys in _ALLOWED_KEYS.items()}
_GAUSSIAN_DEFAULTS: dict[str, Any] = {
    "n_samples": 1000,
    "n_features": 20,
    "n_classes": 5,
    "separation": 3.0,
    "seed": 0,
}
_FILE_SUFFIXES = (".npz", ".csv")


# eq=False: the generated __eq__/__hash__ would compare/hash arrays elementwise and fail.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset held in memory."""

    X: np.ndarray  # float32 [n, d]; digits scaled to [0, 1]
    y: np.ndarray  # int64 [n], labels 0..n_classes-1
    n_classes: int
    image_shape: tuple[int, int] | None  # (h, w) with h * w == d, or None for tabular data
    name: str
    # (n_tokens, vocab) with n_tokens * vocab == d: X is n_tokens one-hot blocks of a vocabulary
    # (what a model's token embedding looks up); None for data without tokens.
    token_shape: tuple[int, int] | None = None


# --------------------------------------------------------------------------- spec validation


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _kind(spec: Mapping[str, Any], name: str) -> str:
    if not isinstance(spec, Mapping):
        raise MemlabInputError(
            f"dataset '{name}': the spec must be a mapping with a `kind` key, found "
            f"{type(spec).__name__} {spec!r}. Allowed kinds: {', '.join(DATASET_KINDS)}."
        )
    kind = spec.get("kind")
    if kind not in DATASET_KINDS:
        found = "no `kind` key" if "kind" not in spec else f"unknown kind {kind!r}"
        raise MemlabInputError(
            f"dataset '{name}': {found}. Set `kind` to one of: {', '.join(DATASET_KINDS)}."
        )
    unknown = sorted(str(k) for k in spec if k not in _ALLOWED_KEYS[kind])
    if unknown:
        raise MemlabInputError(
            f"dataset '{name}' (kind {kind!r}): unknown key(s) {', '.join(unknown)}. Allowed keys "
            f"for this kind: {', '.join(sorted(_ALLOWED_KEYS[kind]))}; check for typos."
        )
    return kind


def _int_key(spec: Mapping[str, Any], key: str, name: str, minimum: int) -> int:
    value = spec.get(key, _GAUSSIAN_DEFAULTS.get(key))
    if not _is_int(value) or value < minimum:
        raise MemlabInputError(
            f"dataset '{name}': `{key}` is {value!r}; it must be an integer >= {minimum}."
        )
    return int(value)


def _gaussian_params(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    n_classes = _int_key(spec, "n_classes", name, 2)
    params: dict[str, Any] = {
        "n_samples": _int_key(spec, "n_samples", name, n_classes),
        "n_features": _int_key(spec, "n_features", name, 1),
        "n_classes": n_classes,
        "seed": _int_key(spec, "seed", name, 0),
    }
    sep = spec.get("separation", _GAUSSIAN_DEFAULTS["separation"])
    if not _is_real(sep) or not math.isfinite(sep) or sep < 0:
        raise MemlabInputError(
            f"dataset '{name}': `separation` is {sep!r}; it must be a finite number >= 0 "
            "(larger means easier; around 3 is moderately hard)."
        )
    params["separation"] = float(sep)
    return params


# --------------------------------------------------------------------------- loaders


def _load_digits(name: str) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    return Dataset(X=X, y=y, n_classes=10, image_shape=(8, 8), name=name)


def _make_gaussian(p: Mapping[str, Any], name: str) -> Dataset:
    n, d, k = p["n_samples"], p["n_features"], p["n_classes"]
    # Separate streams for means and samples: changing n_samples keeps the same class means.
    mean_ss, sample_ss = np.random.SeedSequence(p["seed"]).spawn(2)
    means = np.random.default_rng(mean_ss).standard_normal((k, d))
    # /sqrt(d) keeps mean-to-mean distances ~ separation * sqrt(2) whatever n_features is.
    means *= p["separation"] / math.sqrt(d)
    rng = np.random.default_rng(sample_ss)
    y = rng.permutation(np.arange(n, dtype=np.int64) % k)
    X = means[y] + rng.standard_normal((n, d))
    return Dataset(X=X.astype(np.float32), y=y, n_classes=k, image_shape=None, name=name)


def _modulus(spec: Mapping[str, Any], name: str) -> int:
    return _int_key(spec, "p", name, 2) if "p" in spec else 23


def _make_modular_addition(spec: Mapping[str, Any], name: str) -> Dataset:
    """All pairs (a, b) of residues mod p, as two concatenated one-hot tokens; label (a+b) mod p.

    The algorithmic task of grokking studies (Power et al. 2022): the train fraction is
    1 - test_fraction of the p*p pairs. The one-hot form serves every model (k-NN, plain MLPs);
    ``token_shape`` (2, p) lets an MLP with an embedding look the tokens up instead.
    """
    p = _modulus(spec, name)
    a, b = np.divmod(np.arange(p * p), p)
    X = np.zeros((p * p, 2 * p), np.float32)
    X[np.arange(p * p), a] = 1.0
    X[np.arange(p * p), p + b] = 1.0
    y = ((a + b) % p).astype(np.int64)
    tokens = token_shape(spec, name)
    return Dataset(X=X, y=y, n_classes=p, image_shape=None, name=name, token_shape=tokens)


def _resolve_path(spec: Mapping[str, Any], name: str, root: str | Path) -> Path:
    raw = spec.get("path")
    if not isinstance(raw, str | Path) or not str(raw).strip():
        raise MemlabInputError(
            f"dataset '{name}' (kind 'file'): `path` is {raw!r}; set it to a local .npz or .csv "
            "file (relative paths are resolved against the project directory)."
        )
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = Path(root) / path
    if not path.exists() and example_named_by(path, root):
        return path  # rule example_data writes it before any job reads it
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "was not found"
        raise MemlabInputError(
            f"dataset '{name}': data file {raw} {what} (looked up {path.resolve()}). Data files "
            "are read from local disk only, nothing is downloaded: put the file there or fix "
            "`path`."
        )
    if path.suffix.lower() not in _FILE_SUFFIXES:
        raise MemlabInputError(
            f"dataset '{name}': data file {path} has extension {path.suffix or '(none)'!r}; "
            "allowed are .npz (arrays X and y) and .csv (a label column plus numeric features)."
        )
    return path


def _encode_labels(raw: np.ndarray, path: Path, name: str, where: str) -> tuple[np.ndarray, int]:
    """Map sorted unique labels (ints or strings) to 0..K-1."""
    if raw.dtype == object:  # pandas strings; NaN already rejected by the caller
        raw = raw.astype(str)
    kind = raw.dtype.kind
    if kind in "US":
        stripped = np.char.strip(raw)
        missing = int(np.count_nonzero(stripped == ("" if kind == "U" else b"")))
        if missing:
            raise MemlabInputError(
                f"dataset '{name}': {path} has {missing} empty label(s) in {where}; every "
                "example needs a label (drop those rows or fill them in)."
            )
        raw = stripped
    elif kind == "f":
        bad = ~np.isfinite(raw)
        if bad.any():
            raise MemlabInputError(
                f"dataset '{name}': {path} has {int(bad.sum())} missing or non-finite label(s) "
                f"in {where} (first at row {int(np.argmax(bad))}); every example needs a label."
            )
        if np.any(raw != np.round(raw)):
            example = raw[raw != np.round(raw)][0]
            raise MemlabInputError(
                f"dataset '{name}': {path} has non-integer numeric labels in {where} (e.g. "
                f"{example}); labels must be integers or strings naming classes."
            )
        raw = raw.astype(np.int64)
    elif kind not in "iub":
        raise MemlabInputError(
            f"dataset '{name}': {path} has labels of dtype {raw.dtype} in {where}; labels must be "
            "integers or strings."
        )
    classes, y = np.unique(raw, return_inverse=True)
    if len(classes) < 2:
        found = f"only the label {classes[0].item()!r}" if len(classes) else "no labels"
        raise MemlabInputError(
            f"dataset '{name}': {path} has {found} in {where}; classification needs at least 2 "
            "classes."
        )
    return y.reshape(-1).astype(np.int64), len(classes)


def _check_features(X: np.ndarray, path: Path, name: str, columns: list[str] | None) -> np.ndarray:
    with np.errstate(over="ignore"):
        X32 = X.astype(np.float32)
    bad = ~np.isfinite(X32)
    if bad.any():
        rows, cols = np.nonzero(bad)
        where = f"column {columns[cols[0]]!r}" if columns is not None else f"column {cols[0]}"
        raise MemlabInputError(
            f"dataset '{name}': {path} has {int(bad.sum())} NaN, missing or infinite feature "
            f"value(s) (or values too large for float32), first at row {rows[0]}, {where}. "
            "Remove or impute them before use."
        )
    return X32


def _image_shape(
    spec: Mapping[str, Any], d: int, from_file: tuple[int, int] | None, path: Path, name: str
) -> tuple[int, int] | None:
    raw = spec.get("image_shape")
    if raw is None:
        return from_file
    if (
        not isinstance(raw, list | tuple)
        or len(raw) != 2
        or not all(_is_int(v) and v > 0 for v in raw)
        or raw[0] * raw[1] != d
    ):
        raise MemlabInputError(
            f"dataset '{name}': `image_shape` is {raw!r} but {path} has {d} features per example; "
            f"it must be [height, width], two positive integers with height * width == {d}, or "
            "left out for tabular data."
        )
    return (int(raw[0]), int(raw[1]))


def _load_npz_file(spec: Mapping[str, Any], path: Path, name: str) -> Dataset:
    arrays = load_npz(path)
    missing = [k for k in ("X", "y") if k not in arrays]
    if missing:
        raise MemlabInputError(
            f"dataset '{name}': {path} lacks array(s) {', '.join(missing)}; found "
            f"{', '.join(sorted(arrays)) or 'no arrays'}. Save it with "
            "np.savez(path, X=..., y=...)."
        )
    X, y = arrays["X"], arrays["y"]
    if X.ndim not in (2, 3) or X.shape[0] == 0 or (X.ndim == 3 and 0 in X.shape):
        raise MemlabInputError(
            f"dataset '{name}': {path} has X of shape {X.shape}; it must be 2-D [n, features] or "
            "3-D images [n, height, width] with n >= 1."
        )
    if X.dtype.kind not in "iufb":
        raise MemlabInputError(
            f"dataset '{name}': {path} has X of dtype {X.dtype}; features must be numeric."
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(X):
        raise MemlabInputError(
            f"dataset '{name}': {path} has X with {len(X)} examples but y of shape {y.shape}; y "
            "must be 1-D with one label per row of X."
        )
    file_shape = (int(X.shape[1]), int(X.shape[2])) if X.ndim == 3 else None
    X = X.reshape(len(X), -1)
    X32 = _check_features(X, path, name, None)
    labels, k = _encode_labels(y, path, name, "array y")
    shape = _image_shape(spec, X.shape[1], file_shape, path, name)
    return Dataset(X=X32, y=labels, n_classes=k, image_shape=shape, name=name)


def _read_csv(spec: Mapping[str, Any], path: Path, name: str, root: str | Path) -> pd.DataFrame:
    """The CSV as a DataFrame; a shipped example not yet written is built in memory (the same
    table rule example_data writes: planning needs its shape before that job runs)."""
    import pandas as pd

    example = example_named_by(path, root)
    if example and not path.exists():
        return example_frame(example)
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise MemlabInputError(
            f"dataset '{name}': {path} is not a readable CSV ({e}). Expected a header row, a "
            f"label column `{spec.get('label_column', 'label')}` and numeric feature columns."
        ) from None


def _load_csv_file(spec: Mapping[str, Any], path: Path, name: str, root: str | Path) -> Dataset:
    import pandas as pd

    label_col = spec.get("label_column", "label")
    df = _read_csv(spec, path, name, root)
    columns = [str(c) for c in df.columns]
    if label_col not in df.columns:
        shown = ", ".join(columns[:20]) + (" ..." if len(columns) > 20 else "")
        raise MemlabInputError(
            f"dataset '{name}': {path} has no label column {label_col!r}; columns found: "
            f"{shown or '(none)'}. Set the config key `label_column` to the column holding labels."
        )
    features = df.drop(columns=[label_col])
    if features.shape[1] == 0 or len(df) == 0:
        raise MemlabInputError(
            f"dataset '{name}': {path} has {len(df)} row(s) and {features.shape[1]} feature "
            f"column(s) besides {label_col!r}; it needs at least one of each."
        )
    non_numeric = [
        str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
    ]
    if non_numeric:
        raise MemlabInputError(
            f"dataset '{name}': {path} has non-numeric feature column(s) "
            f"{', '.join(non_numeric)}; every column except the label column {label_col!r} must "
            "be numeric. Encode or drop them (or set `label_column` if one of them is the label)."
        )
    labels_raw = df[label_col]
    if labels_raw.isna().any():
        first = int(np.argmax(labels_raw.isna().to_numpy()))
        raise MemlabInputError(
            f"dataset '{name}': {path} has {int(labels_raw.isna().sum())} missing label(s) in "
            f"column {label_col!r} (first at data row {first}); every example needs a label."
        )
    X32 = _check_features(
        features.to_numpy(dtype=np.float64), path, name, [str(c) for c in features.columns]
    )
    labels, k = _encode_labels(labels_raw.to_numpy(), path, name, f"column {label_col!r}")
    shape = _image_shape(spec, X32.shape[1], None, path, name)
    return Dataset(X=X32, y=labels, n_classes=k, image_shape=shape, name=name)


def load_dataset(
    spec: Mapping[str, Any], *, name: str = "dataset", root: str | Path = "."
) -> Dataset:
    """Load or generate the dataset described by ``spec`` (``spec["kind"]`` in DATASET_KINDS)."""
    kind = _kind(spec, name)
    if kind == "digits":
        return _load_digits(name)
    if kind == "gaussian":
        return _make_gaussian(_gaussian_params(spec, name), name)
    if kind == "modular_addition":
        return _make_modular_addition(spec, name)
    path = _resolve_path(spec, name, root)
    if path.suffix.lower() == ".npz":
        return _load_npz_file(spec, path, name)
    return _load_csv_file(spec, path, name, root)


def dataset_shape(
    spec: Mapping[str, Any], root: str | Path = ".", *, name: str = "dataset"
) -> tuple[int, tuple[int, int] | None]:
    """(examples, image shape) of ``load_dataset(spec)``, loading only user files (to check
    them): planning a study on digits must not import scikit-learn on every snakemake start."""
    kind = _kind(spec, name)
    if kind == "digits":
        return _DIGITS_N, (8, 8)
    if kind == "gaussian":
        return _gaussian_params(spec, name)["n_samples"], None
    if kind == "modular_addition":
        return _modulus(spec, name) ** 2, None
    ds = load_dataset(spec, name=name, root=root)
    standardizes(spec, ds, name)  # a `standardize` the data cannot take fails before any job
    return len(ds.y), ds.image_shape


def token_shape(spec: Mapping[str, Any], name: str = "dataset") -> tuple[int, int] | None:
    """(n_tokens, vocab) of ``load_dataset(spec)``'s inputs, None without tokens (no loading)."""
    if _kind(spec, name) == "modular_addition":
        return 2, _modulus(spec, name)  # the operands a and b, each one of p residues
    return None


# --------------------------------------------------------------------------- splits and noise


def _check_seed(seed: Any, what: str) -> int:
    if not _is_int(seed) or seed < 0:
        raise MemlabInputError(f"{what} `seed` is {seed!r}; it must be an integer >= 0.")
    return int(seed)


def _check_test_fraction(test_fraction: Any) -> float:
    if not _is_real(test_fraction) or not 0 < test_fraction < 1:
        raise MemlabInputError(
            f"`test_fraction` is {test_fraction!r}; it must be a number strictly between 0 and 1 "
            "(e.g. 0.2)."
        )
    return float(test_fraction)


def pool_size(n: int, test_fraction: float) -> int:
    """Examples left in the training pool by :func:`split_pool_test` (n - ceil(fraction * n))."""
    frac = _check_test_fraction(test_fraction)
    if not _is_int(n) or n < 2:
        raise MemlabInputError(
            f"dataset size is {n!r}; a pool/test split needs at least 2 examples."
        )
    n_test = math.ceil(frac * n)  # exactly sklearn's rule in train_test_split
    if n_test >= n:
        raise MemlabInputError(
            f"`test_fraction` {frac} of {n} examples leaves an empty training pool; lower it."
        )
    return int(n) - n_test


def split_pool_test(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One fixed stratified split; returns sorted int64 ``(pool_idx, test_idx)``."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    if y.ndim != 1:
        raise MemlabInputError(f"labels must be 1-D to split them; found shape {y.shape}.")
    n = len(y)
    n_pool = pool_size(n, test_fraction)
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise MemlabInputError(f"split `seed` is {seed!r}; it must be an integer in [0, 2**32).")
    try:
        pool_idx, test_idx = train_test_split(
            np.arange(n, dtype=np.int64),
            test_size=float(test_fraction),
            random_state=int(seed),
            shuffle=True,
            stratify=y,
        )
    except ValueError as e:  # too few members in a class, or fewer test slots than classes
        counts = np.unique(y, return_counts=True)[1]
        raise MemlabInputError(
            f"cannot make a stratified split with `test_fraction` {test_fraction} of {n} examples "
            f"in {len(counts)} classes (smallest class has {counts.min()}): {e}. Every class needs "
            "at least 2 examples, and both pool and test set at least one per class; use more "
            "data or change `test_fraction`."
        ) from None
    assert len(pool_idx) == n_pool
    return np.sort(pool_idx).astype(np.int64), np.sort(test_idx).astype(np.int64)


def flip_labels(
    y: np.ndarray, fraction: float, n_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Give round(fraction * n) random examples a uniformly drawn *different* label.

    Returns ``(noisy_labels, flipped_mask)``.
    """
    if not _is_real(fraction) or not 0 <= fraction <= 1:
        raise MemlabInputError(
            f"label noise `fraction` is {fraction!r}; it must be a number in [0, 1] (e.g. 0.1)."
        )
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise MemlabInputError(
            f"labels must be a 1-D integer array; found dtype {y.dtype} and shape {y.shape}."
        )
    noisy = y.astype(np.int64, copy=True)
    flipped = np.zeros(len(y), dtype=bool)
    n_flip = round(fraction * len(y))
    if n_flip == 0:
        return noisy, flipped
    if not _is_int(n_classes) or n_classes < 2:
        raise MemlabInputError(f"`n_classes` is {n_classes!r}; flipping labels needs at least 2.")
    if noisy.min() < 0 or noisy.max() >= n_classes:
        raise MemlabInputError(
            f"labels range over [{noisy.min()}, {noisy.max()}] but `n_classes` is {n_classes}; "
            f"labels must lie in 0..{n_classes - 1}."
        )
    rng = np.random.default_rng(_check_seed(seed, "label noise"))
    idx = rng.choice(len(y), size=n_flip, replace=False)
    # An offset in 1..K-1 (mod K) is uniform over the other K-1 classes and never 0.
    noisy[idx] = (noisy[idx] + rng.integers(1, n_classes, size=n_flip)) % n_classes
    flipped[idx] = True
    return noisy, flipped


def resolve_size(size: int | float, n_pool: int, *, key: str = "sizes") -> int:
    """A training-set size as a count: ints are counts, floats in (0, 1] fractions of the pool."""
    allowed = (
        f"Use an integer count from 1 to {n_pool} or a fraction in (0, 1] of the pool (1.0 = the "
        "whole pool); note 1 means one example."
    )
    if _is_int(size):
        if not 1 <= size <= n_pool:
            raise MemlabInputError(
                f"`{key}`: count {size} is outside the training pool of {n_pool} examples. "
                + allowed
            )
        return int(size)
    if _is_real(size) and isinstance(size, float | np.floating):
        if not 0 < size <= 1:  # also rejects NaN
            hint = (
                " Floats are fractions; write counts as integers (e.g. 500, not 500.0)."
                if size > 1
                else ""
            )
            raise MemlabInputError(
                f"`{key}`: fraction {size} is not in (0, 1] (training pool has {n_pool} "
                f"examples).{hint} " + allowed
            )
        return max(1, round(float(size) * n_pool))
    raise MemlabInputError(
        f"`{key}`: {size!r} ({type(size).__name__}) is not a size (training pool has {n_pool} "
        "examples). " + allowed
    )


def balanced_subsets(n_pool: int, size: int, replicas: int, seed: int) -> np.ndarray:
    """``replicas`` random subsets of ``size`` pool examples, as a bool [replicas, n_pool] mask.

    Every example is in the same number of subsets (±1 when replicas * size is not a multiple of
    n_pool), the balanced design that Feldman & Zhang's in/out memorization estimates rely on.
    """
    if not _is_int(n_pool) or n_pool < 1:
        raise MemlabInputError(f"`n_pool` is {n_pool!r}; it must be an integer >= 1.")
    if not _is_int(replicas) or replicas < 1:
        raise MemlabInputError(f"`replicas` is {replicas!r}; it must be an integer >= 1.")
    if not _is_int(size) or not 1 <= size <= n_pool:
        raise MemlabInputError(
            f"subset `size` is {size!r}; it must be an integer from 1 to the pool size {n_pool}."
        )
    rng = np.random.default_rng(_check_seed(seed, "subset"))
    total = replicas * size
    base, extra = divmod(total, n_pool)
    col_sums = np.full(n_pool, base, dtype=np.int64)
    col_sums[rng.choice(n_pool, size=extra, replace=False)] += 1
    # Each column independently gets col_sums[j] uniformly chosen replicas (ranks of random keys).
    ranks = np.argsort(np.argsort(rng.random((replicas, n_pool)), axis=0), axis=0)
    mask = ranks < col_sums[None, :]
    # Repair row sums without touching column sums: move Trues within columns from an over-full
    # row to an under-full one. Each step fills or drains at least one row, so < replicas steps.
    row_sums = mask.sum(axis=1)
    while True:
        over = np.flatnonzero(row_sums > size)
        if len(over) == 0:
            break
        under = np.flatnonzero(row_sums < size)
        a, b = rng.choice(over), rng.choice(under)
        k = min(row_sums[a] - size, size - row_sums[b])
        # |A \ B| >= |A| - |B| >= k, so there are always enough eligible columns.
        cols = rng.choice(np.flatnonzero(mask[a] & ~mask[b]), size=k, replace=False)
        mask[a, cols] = False
        mask[b, cols] = True
        row_sums[a] -= k
        row_sums[b] += k
    return mask


# --------------------------------------------------------------------------- prepared split


@dataclass(frozen=True, eq=False)
class Split:
    """The fixed training pool and held-out test set of one dataset (as written by prepare)."""

    x_pool: np.ndarray
    y_pool: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, int] | None
    token_shape: tuple[int, int] | None = None  # as Dataset.token_shape
    # Long-tailed data only (memlab.long_tail; None otherwise): each pool and held-out example's
    # subpopulation id, and each subpopulation's count in the pool (its training frequency).
    pool_subpopulation: np.ndarray | None = None
    test_subpopulation: np.ndarray | None = None
    subpopulation_frequency: np.ndarray | None = None
    # Standardized tabular data only (:func:`standardize`; None otherwise): the pool's per-feature
    # mean and the scale each feature was divided by, so raw values can be recovered.
    feature_mean: np.ndarray | None = None
    feature_scale: np.ndarray | None = None

    def train_frequency(self, part: str) -> np.ndarray | None:
        """The training frequency of each ``part`` ('pool' or 'test') example's subpopulation."""
        sub = self.pool_subpopulation if part == "pool" else self.test_subpopulation
        if sub is None or self.subpopulation_frequency is None:
            return None
        return self.subpopulation_frequency[sub]


def block_subsets(n_pool: int, size: int, replicas: range, seed: int) -> np.ndarray:
    """The subsets of one block of replicas (a bool [len(replicas), n_pool] mask).

    Balanced within the block (:func:`balanced_subsets`) and drawn from the study seed, the size
    and the block's replica range alone: a block's subsets never depend on how many replicas the
    study has, so adding replicas adds blocks and leaves the existing ones as they are.
    """
    stream = derive_seed(
        _check_seed(seed, "subset"), "subsample", size, replicas.start, replicas.stop
    )
    return balanced_subsets(n_pool, size, len(replicas), stream)


def block_few_shot_subsets(
    labels: np.ndarray, per_class: int, replicas: range, seed: int
) -> np.ndarray:
    """Few-shot subsets of one block of replicas (bool [len(replicas), n_pool]): exactly
    ``per_class`` examples of every class in each, and within each class a balanced design
    (every example of the class in the same number of the block's subsets, within one). Drawn,
    like :func:`block_subsets`, from the study seed, the size and the replica range alone."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    mask = np.zeros((len(replicas), len(labels)), bool)
    for c in classes:
        members = np.flatnonzero(labels == c)
        stream = derive_seed(
            _check_seed(seed, "subset"),
            "few_shot",
            per_class * len(classes),
            int(c),
            replicas.start,
            replicas.stop,
        )
        mask[:, members] = balanced_subsets(len(members), per_class, len(replicas), stream)
    return mask


def make_split(ds: Dataset, pool_idx: np.ndarray, test_idx: np.ndarray) -> Split:
    return Split(
        ds.X[pool_idx],
        ds.y[pool_idx],
        ds.X[test_idx],
        ds.y[test_idx],
        ds.n_classes,
        ds.image_shape,
        ds.token_shape,
    )


def standardizes(spec: Mapping[str, Any], ds: Dataset, name: str = "dataset") -> bool:
    """Whether ``spec``'s features are standardized: its `standardize` key, by default on for
    tabular user files (csv, npz without an image shape) and off for every other kind (digits'
    pixel scale is what the perturbations corrupt; gaussian and modular_addition data are kept as
    generated, so the shipped studies' tables stay as they were)."""
    value = spec.get("standardize", spec.get("kind") == "file" and ds.image_shape is None)
    if not isinstance(value, bool):
        raise MemlabInputError(
            f"dataset '{name}': `standardize` is {value!r}; it must be true or false."
        )
    if value and ds.image_shape is not None:
        raise MemlabInputError(
            f"dataset '{name}': `standardize: true` on image data (image_shape "
            f"{list(ds.image_shape)}): the perturbations need pixels in [0, 1]. Remove the "
            "`standardize` key (images are never standardized); if the data are not images, "
            "remove `image_shape` instead (or save X as 2-D [n, features])."
        )
    return value


def standardize(split: Split) -> Split:
    """Pool and held-out features centred and scaled by the training pool's per-feature mean and
    standard deviation: held-out rows never enter the statistics, so nothing about the test set
    leaks into training. A constant feature (std 0) is only centred."""
    mean = split.x_pool.mean(axis=0, dtype=np.float64)
    std = split.x_pool.std(axis=0, dtype=np.float64)
    scale = np.where(std > 0, std, 1.0)

    def scaled(x: np.ndarray) -> np.ndarray:
        return ((x.astype(np.float64) - mean) / scale).astype(np.float32)

    return replace(
        split,
        x_pool=scaled(split.x_pool),
        x_test=scaled(split.x_test),
        feature_mean=mean,
        feature_scale=scale,
    )


def _optional(split: Split) -> dict[str, np.ndarray]:
    """The split's optional arrays that are set (a split without them is saved as before)."""
    names = ("feature_mean", "feature_scale")
    return {n: getattr(split, n) for n in names if getattr(split, n) is not None}


def save_split(path: str | Path, split: Split, **extra: np.ndarray) -> None:
    """Write the split atomically ((0, 0) stands for no image shape, no token shape)."""
    save_npz(
        path,
        x_pool=split.x_pool,
        y_pool=split.y_pool,
        x_test=split.x_test,
        y_test=split.y_test,
        n_classes=np.int64(split.n_classes),
        image_shape=np.array(split.image_shape or (0, 0), dtype=np.int64),
        token_shape=np.array(split.token_shape or (0, 0), dtype=np.int64),
        **_optional(split),
        **extra,
    )


def _pair(a: Mapping[str, np.ndarray], key: str) -> tuple[int, int] | None:
    """A saved shape; (0, 0) or absent (a split written before the key existed): None."""
    h, w = (int(s) for s in a.get(key, (0, 0)))
    return None if (h, w) == (0, 0) else (h, w)


def load_split(path: str | Path) -> Split:
    a = load_npz(path)
    return Split(
        a["x_pool"],
        a["y_pool"],
        a["x_test"],
        a["y_test"],
        int(a["n_classes"]),
        _pair(a, "image_shape"),
        _pair(a, "token_shape"),
        a.get("pool_subpopulation"),
        a.get("test_subpopulation"),
        a.get("subpopulation_frequency"),
        a.get("feature_mean"),
        a.get("feature_scale"),
    )


def split_reader(paths: Iterable[str | Path]) -> Callable[[str], Split]:
    """``dataset -> Split`` from split files at ``.../<dataset>/split.npz``, each read once."""
    from functools import cache

    files = {Path(p).parent.name: p for p in paths}

    @cache
    def split_of(dataset: str) -> Split:
        if dataset not in files:
            raise MemlabInputError(f"no split file for dataset {dataset!r} among {sorted(files)}.")
        return load_split(files[dataset])

    return split_of
