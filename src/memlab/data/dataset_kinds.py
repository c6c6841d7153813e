"""Dataset kinds: one class per kind owns its keys and their defaults, its shape and its loading.
Adding a kind is one class here plus its entry in the config schema (``$defs/dataset_<kind>``,
its keys under ``$defs/dataset_keys``); tests/data/test_data.py checks that the two agree.

A config entry such as ``g: {kind: gaussian, n_samples: 300}`` becomes ``Gaussian(name="g",
n_samples=300, ...)`` through :func:`from_spec`, which fills in the kind's defaults and rejects
what the kind does not take. Every kind also takes the *variant* keys (:data:`VARIANT_KEYS`),
which act on the split, not on the data: they are other modules' to read.

Everything random takes an explicit seed, so a spec fully determines its data. This module imports
neither scikit-learn nor pandas up front: the workflow plans a study with it on every start.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from memlab.data.examples import example_frame, example_named_by
from memlab.io import MemlabInputError, load_npz

if TYPE_CHECKING:
    import pandas as pd

# Keys every kind takes besides its own: `randomization` (applied after the split, see
# memlab.data.randomization), `long_tail` (the split thinned to a long tail, see
# memlab.data.long_tail) and `recall` (exact recall of perturbed training examples, see
# memlab.analysis.metrics.recall) and `canaries` (inserted canaries and their never-trained
# references, see memlab.data.canaries). They are variants of any data, not kinds: `{kind: digits,
# long_tail: {...}}` is long-tailed digits.
VARIANT_KEYS = ("randomization", "long_tail", "recall", "canaries")
_FILE_SUFFIXES = (".npz", ".csv")
_DIGITS_N = 1797  # rows of sklearn's bundled digits; checked against load_digits in the tests


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


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int_key(values: Mapping[str, Any], key: str, name: str, minimum: int) -> int:
    value = values[key]
    if not _is_int(value) or value < minimum:
        raise MemlabInputError(
            f"dataset '{name}': `{key}` is {value!r}; it must be an integer >= {minimum}."
        )
    return int(value)


def _bool_key(values: Mapping[str, Any], key: str, name: str, *, optional: bool = False) -> Any:
    """A true/false key; with ``optional``, None too (a default that leaves it to the data)."""
    value = values[key]
    if not isinstance(value, bool) and not (optional and value is None):
        raise MemlabInputError(f"dataset '{name}': `{key}` is {value!r}; it must be true or false.")
    return value


# --------------------------------------------------------------------------- the kinds


@dataclass(frozen=True)
class DatasetKind(ABC):
    """One dataset entry of the config, its keys checked and its defaults filled in; the
    subclasses are the kinds."""

    name: str  # the entry's name in the config (in messages, and the Dataset's name)

    kind: ClassVar[str]
    # The kind's own keys and their defaults, as its schema entry states them (a default of
    # None: the data decide). A required key has no default.
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    required: ClassVar[tuple[str, ...]] = ()
    # The VARIANT_KEYS this kind takes (text takes canaries only: its own, memlab.data.text).
    variant_keys: ClassVar[tuple[str, ...]] = VARIANT_KEYS
    # Documents for sequence models (memlab.data.sequences), not examples with labels: the
    # classification path (prepare, label_noise, ...) never loads it.
    sequences: ClassVar[bool] = False

    @classmethod
    def allowed_keys(cls) -> tuple[str, ...]:
        """Every key a spec of this kind may have, sorted."""
        return tuple(sorted({"kind", *cls.required, *cls.defaults, *cls.variant_keys}))

    @classmethod
    def settings(cls, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The kind's own keys of ``spec``, defaults filled in (a missing required key: None)."""
        own = (*cls.required, *cls.defaults)
        return {key: spec.get(key, cls.defaults.get(key)) for key in own}

    @classmethod
    @abstractmethod
    def parse(cls, values: Mapping[str, Any], name: str) -> DatasetKind:
        """The kind from its :meth:`settings`, each value checked."""

    @abstractmethod
    def load(self, root: str | Path = ".") -> Dataset:
        """Load or generate the data (user files relative to ``root``)."""

    @abstractmethod
    def shape(self, root: str | Path = ".") -> tuple[int, tuple[int, int] | None]:
        """(examples, image shape) of :meth:`load`'s data; generated kinds without loading."""

    def token_shape(self) -> tuple[int, int] | None:
        """(n_tokens, vocab) of the inputs, None without tokens (no loading)."""
        return None

    def standardizes(self, ds: Dataset) -> bool:
        """Whether prepare standardizes the features of ``ds`` (this kind's data)."""
        return False


@dataclass(frozen=True)
class Digits(DatasetKind):
    """scikit-learn's bundled 8x8 handwritten digits: 1797 images of 10 classes, pixels scaled to
    [0, 1]; offline."""

    kind: ClassVar[str] = "digits"

    @classmethod
    def parse(cls, values: Mapping[str, Any], name: str) -> Digits:
        return cls(name)

    def load(self, root: str | Path = ".") -> Dataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        X = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
        y = np.asarray(bunch.target, dtype=np.int64)
        return Dataset(X=X, y=y, n_classes=10, image_shape=(8, 8), name=self.name)

    def shape(self, root: str | Path = ".") -> tuple[int, tuple[int, int] | None]:
        # Known, not loaded: planning a study on digits must not import scikit-learn.
        return _DIGITS_N, (8, 8)


@dataclass(frozen=True)
class Gaussian(DatasetKind):
    """Synthetic classes, one isotropic Gaussian cluster each, generated from ``seed``: class
    means standard normal scaled by ``separation / sqrt(n_features)``, unit-variance noise
    around them, classes balanced within one."""

    n_samples: int
    n_features: int
    n_classes: int
    separation: float
    seed: int
    standardize: bool

    kind: ClassVar[str] = "gaussian"
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "n_samples": 1000,
            "n_features": 20,
            "n_classes": 5,
            "separation": 3.0,
            "seed": 0,
            "standardize": False,
        }
    )

    @classmethod
    def parse(cls, values: Mapping[str, Any], name: str) -> Gaussian:
        n_classes = _int_key(values, "n_classes", name, 2)
        return cls(
            name,
            n_samples=_int_key(values, "n_samples", name, n_classes),
            n_features=_int_key(values, "n_features", name, 1),
            n_classes=n_classes,
            separation=_separation(values["separation"], name),
            seed=_int_key(values, "seed", name, 0),
            standardize=_bool_key(values, "standardize", name),
        )

    def load(self, root: str | Path = ".") -> Dataset:
        n, d, k = self.n_samples, self.n_features, self.n_classes
        # Separate streams for means and samples: changing n_samples keeps the same class means.
        mean_ss, sample_ss = np.random.SeedSequence(self.seed).spawn(2)
        means = np.random.default_rng(mean_ss).standard_normal((k, d))
        # /sqrt(d) keeps mean-to-mean distances ~ separation * sqrt(2) whatever n_features is.
        means *= self.separation / math.sqrt(d)
        rng = np.random.default_rng(sample_ss)
        y = rng.permutation(np.arange(n, dtype=np.int64) % k)
        X = means[y] + rng.standard_normal((n, d))
        return Dataset(X=X.astype(np.float32), y=y, n_classes=k, image_shape=None, name=self.name)

    def shape(self, root: str | Path = ".") -> tuple[int, tuple[int, int] | None]:
        return self.n_samples, None

    def standardizes(self, ds: Dataset) -> bool:
        # Off by default: the data are generated on a common scale (and the shipped studies'
        # tables stay as they were).
        return self.standardize


def _separation(value: Any, name: str) -> float:
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise MemlabInputError(
            f"dataset '{name}': `separation` is {value!r}; it must be a finite number >= 0 "
            "(larger means easier; around 3 is moderately hard)."
        )
    return float(value)


@dataclass(frozen=True)
class ModularAddition(DatasetKind):
    """All pairs (a, b) of residues mod p, as two concatenated one-hot tokens; label (a+b) mod p.

    The algorithmic task of grokking studies (Power et al. 2022): the train fraction is
    1 - test_fraction of the p*p pairs. The one-hot form serves every model (k-NN, plain MLPs);
    the token shape (2, p) lets an MLP with an embedding look the tokens up instead.
    """

    p: int

    kind: ClassVar[str] = "modular_addition"
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({"p": 23})

    @classmethod
    def parse(cls, values: Mapping[str, Any], name: str) -> ModularAddition:
        return cls(name, p=_int_key(values, "p", name, 2))

    def load(self, root: str | Path = ".") -> Dataset:
        p = self.p
        a, b = np.divmod(np.arange(p * p), p)
        X = np.zeros((p * p, 2 * p), np.float32)
        X[np.arange(p * p), a] = 1.0
        X[np.arange(p * p), p + b] = 1.0
        y = ((a + b) % p).astype(np.int64)
        return Dataset(
            X=X, y=y, n_classes=p, image_shape=None, name=self.name, token_shape=self.token_shape()
        )

    def shape(self, root: str | Path = ".") -> tuple[int, tuple[int, int] | None]:
        return self.p**2, None

    def token_shape(self) -> tuple[int, int] | None:
        return 2, self.p  # the operands a and b, each one of p residues


@dataclass(frozen=True)
class DataFile(DatasetKind):
    """Your data, read from local disk (nothing is downloaded): a ``.npz`` with arrays X ([n, d],
    or [n, h, w] images) and y, or a ``.csv`` with a label column and numeric feature columns.
    Labels (integers or strings) are mapped, sorted, to 0..K-1."""

    path: str | Path
    label_column: str
    image_shape: Any  # as given ([h, w] or None); checked against the data when loaded
    standardize: bool | None  # None: the data decide (tabular yes, images no)

    kind: ClassVar[str] = "file"
    required: ClassVar[tuple[str, ...]] = ("path",)
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {"label_column": "label", "image_shape": None, "standardize": None}
    )

    @classmethod
    def parse(cls, values: Mapping[str, Any], name: str) -> DataFile:
        raw = values["path"]
        if not isinstance(raw, str | Path) or not str(raw).strip():
            raise MemlabInputError(
                f"dataset '{name}' (kind 'file'): `path` is {raw!r}; set it to a local .npz or "
                ".csv file (relative paths are resolved against the project directory)."
            )
        return cls(
            name,
            path=raw,
            label_column=values["label_column"],
            image_shape=values["image_shape"],
            standardize=_bool_key(values, "standardize", name, optional=True),
        )

    def load(self, root: str | Path = ".") -> Dataset:
        path = self._resolve(root)
        if path.suffix.lower() == ".npz":
            return _load_npz_file(self, path)
        return _load_csv_file(self, path, root)

    def shape(self, root: str | Path = ".") -> tuple[int, tuple[int, int] | None]:
        # Loaded to check it; a `standardize` the data cannot take fails before any job.
        ds = self.load(root)
        self.standardizes(ds)
        return len(ds.y), ds.image_shape

    def standardizes(self, ds: Dataset) -> bool:
        # On by default for tabular files, where features come in arbitrary units; images never
        # (the perturbations corrupt pixels in [0, 1]).
        value = ds.image_shape is None if self.standardize is None else self.standardize
        if value and ds.image_shape is not None:
            raise MemlabInputError(
                f"dataset '{self.name}': `standardize: true` on image data (image_shape "
                f"{list(ds.image_shape)}): the perturbations need pixels in [0, 1]. Remove the "
                "`standardize` key (images are never standardized); if the data are not images, "
                "remove `image_shape` instead (or save X as 2-D [n, features])."
            )
        return value

    def _resolve(self, root: str | Path) -> Path:
        raw, name = self.path, self.name
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = Path(root) / path
        if not path.exists() and example_named_by(path, root):
            return path  # rule example_data writes it before any job reads it
        if not path.is_file():
            what = "is a directory, not a file" if path.is_dir() else "was not found"
            raise MemlabInputError(
                f"dataset '{name}': data file {raw} {what} (looked up {path.resolve()}). Data "
                "files are read from local disk only, nothing is downloaded: put the file there "
                "or fix `path`."
            )
        if path.suffix.lower() not in _FILE_SUFFIXES:
            raise MemlabInputError(
                f"dataset '{name}': data file {path} has extension {path.suffix or '(none)'!r}; "
                "allowed are .npz (arrays X and y) and .csv (a label column plus numeric "
                "features)."
            )
        return path


@dataclass(frozen=True)
class Text(DatasetKind):
    """Documents for a language model (memlab.data.text, memlab.data.sequences): a corpus
    generated from ``seed`` (a Zipf vocabulary, facts repeated by a power law, canaries), or a
    user's UTF-8 ``path``, one document per line. Only sequence models (kind ``gru``) train on it.
    """

    settings_: tuple[tuple[str, Any], ...]  # every key below, checked

    kind: ClassVar[str] = "text"
    variant_keys: ClassVar[tuple[str, ...]] = ("canaries",)
    sequences: ClassVar[bool] = True
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "path": None,
            "context": 24,
            "seed": 0,
            "vocab_size": 2000,
            "zipf_exponent": 1.0,
            "documents": 2000,
            "held_out": 500,
            "sentences": [1, 3],
            "facts": 512,
            "entities": 256,
            "values": 32,
            "fact_exponent": 2.0,
            "fact_max_repetitions": 16,
            "canary_names": 64,
        }
    )

    @classmethod
    def parse(cls, values: Mapping[str, Any], name: str) -> Text:
        checked = dict(values)
        for key in cls.defaults:
            if key in ("zipf_exponent", "fact_exponent") and not (
                _is_real(values[key]) and values[key] >= 0
            ):
                raise MemlabInputError(
                    f"dataset '{name}': `{key}` is {values[key]!r}; it must be a number >= 0."
                )
        for key, minimum in (("context", 4), ("seed", 0), ("vocab_size", 3), ("documents", 0),
                             ("held_out", 0), ("facts", 0), ("entities", 1), ("values", 1),
                             ("fact_max_repetitions", 1), ("canary_names", 1)):  # fmt: skip
            checked[key] = _int_key(values, key, name, minimum)
        path = values["path"]
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise MemlabInputError(
                f"dataset '{name}' (kind 'text'): `path` is {path!r}; set it to a local UTF-8 "
                "text file, one document per line, or leave it out to generate a corpus."
            )
        return cls(name, settings_=tuple(sorted(checked.items())))

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.settings_)

    def file(self, root: str | Path = ".") -> Path | None:
        """The user's file (resolved against ``root``), None for a generated corpus."""
        raw = self.options["path"]
        if raw is None:
            return None
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else Path(root) / path
        if not path.is_file():
            raise MemlabInputError(
                f"dataset '{self.name}': text file {raw} was not found (looked up "
                f"{path.resolve()}); put it there or fix `path`."
            )
        return path

    def load(self, root: str | Path = ".") -> Dataset:
        raise MemlabInputError(
            f"dataset '{self.name}' is text: only sequence models (kind gru) train on it."
        )

    def shape(self, root: str | Path = ".") -> tuple[int, tuple[int, int] | None]:
        return 0, None  # planned by memlab.plan.study.plan_text, never as examples


# One home for the kind names: the config schema's `kind` enum lists these, in this order.
KINDS: Mapping[str, type[DatasetKind]] = MappingProxyType(
    {cls.kind: cls for cls in (Digits, Gaussian, DataFile, ModularAddition, Text)}
)
DATASET_KINDS = tuple(KINDS)


def from_spec(spec: Mapping[str, Any], name: str = "dataset") -> DatasetKind:
    """The kind of dataset ``spec`` describes, its keys checked and its defaults filled in."""
    cls = _kind_class(spec, name)
    return cls.parse(cls.settings(spec), name)


def _kind_class(spec: Mapping[str, Any], name: str) -> type[DatasetKind]:
    if not isinstance(spec, Mapping):
        raise MemlabInputError(
            f"dataset '{name}': the spec must be a mapping with a `kind` key, found "
            f"{type(spec).__name__} {spec!r}. Allowed kinds: {', '.join(DATASET_KINDS)}."
        )
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        found = "no `kind` key" if "kind" not in spec else f"unknown kind {kind!r}"
        raise MemlabInputError(
            f"dataset '{name}': {found}. Set `kind` to one of: {', '.join(DATASET_KINDS)}."
        )
    cls = KINDS[kind]
    unknown = sorted(str(k) for k in spec if k not in cls.allowed_keys())
    if unknown:
        raise MemlabInputError(
            f"dataset '{name}' (kind {kind!r}): unknown key(s) {', '.join(unknown)}. Allowed keys "
            f"for this kind: {', '.join(cls.allowed_keys())}; check for typos."
        )
    return cls


# --------------------------------------------------------------------------- reading user files


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
    kind: DataFile, d: int, from_file: tuple[int, int] | None, path: Path
) -> tuple[int, int] | None:
    raw = kind.image_shape
    if raw is None:
        return from_file
    if (
        not isinstance(raw, list | tuple)
        or len(raw) != 2
        or not all(_is_int(v) and v > 0 for v in raw)
        or raw[0] * raw[1] != d
    ):
        raise MemlabInputError(
            f"dataset '{kind.name}': `image_shape` is {raw!r} but {path} has {d} features per "
            f"example; it must be [height, width], two positive integers with height * width == "
            f"{d}, or left out for tabular data."
        )
    return (int(raw[0]), int(raw[1]))


def _load_npz_file(kind: DataFile, path: Path) -> Dataset:
    name = kind.name
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
    shape = _image_shape(kind, X.shape[1], file_shape, path)
    return Dataset(X=X32, y=labels, n_classes=k, image_shape=shape, name=name)


def _read_csv(kind: DataFile, path: Path, root: str | Path) -> pd.DataFrame:
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
            f"dataset '{kind.name}': {path} is not a readable CSV ({e}). Expected a header row, "
            f"a label column `{kind.label_column}` and numeric feature columns."
        ) from None


def _load_csv_file(kind: DataFile, path: Path, root: str | Path) -> Dataset:
    import pandas as pd

    name, label_col = kind.name, kind.label_column
    df = _read_csv(kind, path, root)
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
    shape = _image_shape(kind, X32.shape[1], None, path)
    return Dataset(X=X32, y=labels, n_classes=k, image_shape=shape, name=name)
