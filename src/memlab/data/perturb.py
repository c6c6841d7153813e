"""Corrupted copies of a held-out set, after Hendrycks & Dietterich (2019) and MNIST-C.

Each corruption comes at five severities. A corrupted set is a pure function of
``(X, name, severity, seed)``: its random generator is seeded from
``SeedSequence([seed, crc32(name), severity])``, so it never depends on which other corruptions
or severities are requested, or in what order. Corrupted sets are for evaluation only.

Image data are float arrays ``X[n, h*w]`` with pixels in ``[0, 1]`` and ``image_shape=(h, w)``;
outputs stay in ``[0, 1]``. Tabular data (``image_shape=None``) only get ``gaussian_noise``, with
sigma in units of each feature's standard deviation.

The severity tables were calibrated on scikit-learn's 8x8 digits (pixel / 16): held-out accuracy
of a logistic regression and a small MLP falls monotonically with severity, a little at 1 and a
lot, but not to chance, at 5. Spatial parameters (blur sigma, shift distance, patch side) are
given in pixels of an 8x8 image and scale with the shorter image side for other sizes.

``shot_noise`` is Hendrycks & Dietterich's: ``x' = clip(Poisson(lam * x) / lam, 0, 1)``, photon
noise whose variance ``x / lam`` grows with the pixel's brightness (black stays black). Their
ImageNet-C rates ``lam = (60, 25, 12, 5, 3)`` barely touch 8x8 digits (both models above keep
84-97%); the default ``(12, 6, 3, 1.6, 1)`` is calibrated like the others (about 93, 89, 83,
74, 57%, close to ``gaussian_noise``). Pass ``parameters={"shot_noise": [60, 25, 12, 5, 3]}`` (in a
study: ``perturbations.parameters``) for theirs.

Every table can be replaced per corruption: ``parameters={name: [p1, ..., p5]}``, one value per
severity 1..5 in the units of ``SEVERITY_TABLE`` and within ``PARAMETER_RANGES``, used as given
(:func:`severity_table`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import numpy as np

from memlab.io import MemlabInputError

PERTURBATIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "blur",
    "contrast",
    "translate",
    "occlusion",
)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# Physical parameter per severity 1..5, calibrated on 8x8 digits: gaussian_noise the noise sigma
# (pixel scale; feature std for tabular data), shot_noise the Poisson rate lam (photons per unit
# of brightness: smaller is noisier), impulse_noise the fraction of pixels set to 0 or 1,
# blur the Gaussian blur sigma (px on 8x8), contrast the factor c in (x - mean) * c + mean,
# translate the shift distance (px on 8x8, random direction), occlusion the side of the zeroed
# square patch (px on 8x8).
SEVERITY_TABLE: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {
        "gaussian_noise": (0.15, 0.25, 0.35, 0.45, 0.6),
        "shot_noise": (12.0, 6.0, 3.0, 1.6, 1.0),
        "impulse_noise": (0.04, 0.1, 0.17, 0.27, 0.4),
        "blur": (0.5, 0.7, 0.9, 1.1, 1.3),
        "contrast": (0.65, 0.55, 0.45, 0.37, 0.3),
        "translate": (0.25, 0.4, 0.6, 0.8, 1.0),
        "occlusion": (1.0, 2.0, 3.0, 4.0, 5.0),
    }
)
REFERENCE_SIDE = 8  # spatial parameters are in pixels of an image this many pixels across
# The values a configured table may hold, per corruption: (low, high, low included, high
# included); high None: no upper bound. Mirrored by the config schema
# (perturbations.parameters), which a test checks.
PARAMETER_RANGES: Mapping[str, tuple[float, float | None, bool, bool]] = MappingProxyType(
    {
        "gaussian_noise": (0.0, None, True, False),  # sigma >= 0
        "shot_noise": (0.0, None, False, False),  # lam > 0
        "impulse_noise": (0.0, 1.0, True, True),  # a fraction in [0, 1]
        "blur": (0.0, None, True, False),  # sigma >= 0 (px on 8x8)
        "contrast": (0.0, 1.0, False, True),  # a factor in (0, 1]
        "translate": (0.0, None, True, False),  # a distance >= 0 (px on 8x8)
        "occlusion": (0.0, float(REFERENCE_SIDE), False, True),  # a side in (0, 8] (px on 8x8)
    }
)
# A figure's axis for the parameter (what a severity means, in the corruption's own unit).
PARAMETER_AXIS: Mapping[str, str] = MappingProxyType(
    {
        "gaussian_noise": "noise sigma",
        "shot_noise": "Poisson rate lam",
        "impulse_noise": "share of pixels hit",
        "blur": "blur sigma (px of 8x8)",
        "contrast": "contrast factor",
        "translate": "shift (px of 8x8)",
        "occlusion": "patch side (px of 8x8)",
    }
)
PARAMETER_MEANING: Mapping[str, str] = MappingProxyType(
    {
        "gaussian_noise": "noise sigmas",
        "shot_noise": "Poisson rates lam",
        "impulse_noise": "fractions of pixels",
        "blur": "blur sigmas in px of an 8x8 image",
        "contrast": "contrast factors",
        "translate": "shift distances in px of an 8x8 image",
        "occlusion": "patch sides in px of an 8x8 image",
    }
)
_SPATIAL = frozenset({"blur", "translate", "occlusion"})
_TABULAR_OK = frozenset({"gaussian_noise"})
# Why each image corruption cannot apply to tabular data (image_shape None): what it needs that a
# table lacks. The perturb log and the findings page say it.
_GRID = "needs a 2-D pixel grid; the columns of a table have no neighbours"
NOT_TABULAR: Mapping[str, str] = MappingProxyType(
    {
        "shot_noise": "photon counts of pixel brightness in [0, 1]; table features have no such "
        "scale",
        "impulse_noise": "sets pixels to black or white (0 or 1); table features have no such "
        "extremes",
        "blur": _GRID,
        "contrast": "scales pixel intensities about each image's mean brightness; a row of a "
        "table has no common unit to average",
        "translate": _GRID,
        "occlusion": _GRID,
    }
)
_RANGE_TOL = 1e-6  # slack for pixel ranges produced by float32 rounding


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in PERTURBATIONS:
        raise MemlabInputError(
            f"perturbation name {name!r} is unknown; allowed: {', '.join(PERTURBATIONS)}."
        )
    return name


def _check_severity(severity: object) -> int:
    if (
        isinstance(severity, bool)
        or not isinstance(severity, int | np.integer)
        or int(severity) not in SEVERITIES
    ):
        raise MemlabInputError(
            f"severity {severity!r} is not allowed; use an integer in "
            f"{SEVERITIES[0]}..{SEVERITIES[-1]}."
        )
    return int(severity)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or int(seed) < 0:
        raise MemlabInputError(f"seed {seed!r} is not allowed; use a non-negative integer.")
    return int(seed)


def _check_image_shape(image_shape: object) -> tuple[int, int] | None:
    if image_shape is None:
        return None
    if isinstance(image_shape, np.ndarray):  # e.g. read back from an .npz
        image_shape = tuple(image_shape.tolist())
    if (
        not isinstance(image_shape, tuple | list)
        or len(image_shape) != 2
        or not all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0
            for v in image_shape
        )
    ):
        raise MemlabInputError(
            f"image_shape {image_shape!r} is not allowed; use (height, width) with positive "
            "integers, or None for tabular data."
        )
    return int(image_shape[0]), int(image_shape[1])


def _check_X(X: object, image_shape: tuple[int, int] | None) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise MemlabInputError(
            f"X must be a 2-D numeric array [n_samples, n_features]; got shape {arr.shape} "
            f"and dtype {arr.dtype}."
        )
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise MemlabInputError("X contains NaN or infinite values; perturbations need finite X.")
    if image_shape is not None:
        h, w = image_shape
        if h * w != arr.shape[1]:
            raise MemlabInputError(
                f"image_shape {image_shape} has {h * w} pixels but X has {arr.shape[1]} "
                "features; they must match."
            )
        if arr.size and (arr.min() < -_RANGE_TOL or arr.max() > 1 + _RANGE_TOL):
            raise MemlabInputError(
                f"image pixels must lie in [0, 1]; X spans [{arr.min():g}, {arr.max():g}]. "
                "Scale the images (digits: pixel / 16)."
            )
    return arr


def _stable_id(name: str) -> int:
    # crc32 rather than hash(): str hashes are salted per process.
    return zlib.crc32(name.encode("utf-8"))


def _rng(seed: int, name: str, severity: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _stable_id(name), severity]))


def applicable(name: str, image_shape: tuple[int, int] | None) -> bool:
    """Whether corruption ``name`` can be applied: ``gaussian_noise`` always, others need images."""
    _check_name(name)
    return image_shape is not None or name in _TABULAR_OK


def not_applicable(names: Iterable[str], image_shape: tuple[int, int] | None) -> dict[str, str]:
    """The corruptions of ``names`` that cannot apply to the data, each with the reason."""
    return {n: NOT_TABULAR[n] for n in dict.fromkeys(names) if not applicable(n, image_shape)}


def _interval(name: str) -> str:
    low, high, low_in, high_in = PARAMETER_RANGES[name]
    if high is None:
        return f"{'>=' if low_in else '>'} {low:g}"
    return f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def _in_range(name: str, value: float) -> bool:
    low, high, low_in, high_in = PARAMETER_RANGES[name]
    above = value >= low if low_in else value > low
    below = high is None or (value <= high if high_in else value < high)
    return bool(np.isfinite(value) and above and below)


def severity_table(
    parameters: Mapping[str, Iterable[float]] | None = None,
    *,
    key: str = "perturbations.parameters",
) -> Mapping[str, tuple[float, ...]]:
    """``SEVERITY_TABLE`` with the corruptions in ``parameters`` replaced, as given.

    ``parameters`` maps a corruption name to its five values, one per severity 1..5, in the units
    of ``SEVERITY_TABLE`` and within ``PARAMETER_RANGES`` (not necessarily monotone: they are used
    as given). A wrong name, count or value raises :class:`MemlabInputError` naming ``key``.
    """
    if not parameters:
        return SEVERITY_TABLE
    if not isinstance(parameters, Mapping):
        raise MemlabInputError(
            f"{key} must map corruption names to {len(SEVERITIES)} values each; got "
            f"{type(parameters).__name__}."
        )
    table = dict(SEVERITY_TABLE)
    for name, values in parameters.items():
        if name not in PERTURBATIONS:
            raise MemlabInputError(
                f"{key} names the unknown perturbation {name!r}; allowed: "
                f"{', '.join(PERTURBATIONS)}."
            )
        where = f"{key}.{name}"
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise MemlabInputError(
                f"{where} = {values!r} is not allowed; give a list of {len(SEVERITIES)} "
                f"{PARAMETER_MEANING[name]}, one per severity 1-{SEVERITIES[-1]}."
            )
        values = list(values)
        if len(values) != len(SEVERITIES):
            raise MemlabInputError(
                f"{where} has {len(values)} values; give exactly {len(SEVERITIES)} "
                f"{PARAMETER_MEANING[name]}, one per severity 1-{SEVERITIES[-1]}."
            )
        for i, v in enumerate(values):
            number = isinstance(v, int | float | np.integer | np.floating) and not isinstance(
                v, bool
            )
            if not number or not _in_range(name, float(v)):
                raise MemlabInputError(
                    f"{where}[{i}] = {v!r} is not allowed; {PARAMETER_MEANING[name]} must be "
                    f"numbers {_interval(name)}."
                )
        table[name] = tuple(float(v) for v in values)
    return MappingProxyType(table)


def severity_parameter(
    name: str,
    severity: int,
    *,
    image_shape: tuple[int, int] | None = None,
    parameters: Mapping[str, Iterable[float]] | None = None,
) -> float:
    """The physical parameter of ``name`` at ``severity`` (units: see ``SEVERITY_TABLE``).

    Spatial parameters are in pixels of an 8x8 image; pass ``image_shape`` to get the value
    actually used on images of that size (for occlusion, the patch side in whole pixels).
    ``parameters`` replaces tables (:func:`severity_table`).
    """
    name = _check_name(name)
    value = severity_table(parameters)[name][_check_severity(severity) - 1]
    shape = _check_image_shape(image_shape)
    if shape is None or name not in _SPATIAL:
        return float(value)
    side = min(shape)
    scaled = value * side / REFERENCE_SIDE
    if name == "occlusion":
        return float(min(side, max(1, round(scaled))))
    return float(scaled)


def shift_images(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each image ``images[i]`` (shape ``[n, h, w]``) by ``shifts[i] = (dy, dx)`` pixels.

    Bilinear interpolation with zeros flowing in from outside, i.e. per image
    ``scipy.ndimage.shift(image, shift, order=1, mode="grid-constant")``, but vectorized.
    Positive ``dy`` moves content down, positive ``dx`` moves it right.
    """
    images = np.asarray(images, dtype=np.float64)
    shifts = np.asarray(shifts, dtype=np.float64)
    n, h, w = images.shape
    if shifts.shape != (n, 2):
        raise ValueError(f"shifts must have shape ({n}, 2); got {shifts.shape}.")
    if n == 0:
        return images.copy()
    pad = int(np.ceil(np.abs(shifts).max())) + 1
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    src_r = np.arange(h)[None, :] - shifts[:, :1]  # output[r] = input[r - dy]
    src_c = np.arange(w)[None, :] - shifts[:, 1:]
    r0 = np.floor(src_r)
    c0 = np.floor(src_c)
    fr = (src_r - r0)[:, :, None]
    fc = (src_c - c0)[:, None, :]
    rows = r0.astype(np.intp)[:, :, None] + pad
    cols = c0.astype(np.intp)[:, None, :] + pad
    idx = np.arange(n)[:, None, None]
    return (
        (1 - fr) * (1 - fc) * padded[idx, rows, cols]
        + (1 - fr) * fc * padded[idx, rows, cols + 1]
        + fr * (1 - fc) * padded[idx, rows + 1, cols]
        + fr * fc * padded[idx, rows + 1, cols + 1]
    )


def _gaussian_noise(
    X: np.ndarray, sigma: float, image_shape: tuple[int, int] | None, rng: np.random.Generator
) -> np.ndarray:
    noise = rng.standard_normal(X.shape)
    if image_shape is None:
        # Constant features get no noise: their std is 0, and there is no scale to borrow.
        return X + sigma * X.std(axis=0, dtype=np.float64) * noise
    return np.clip(X + sigma * noise, 0.0, 1.0)


def _shot_noise(X: np.ndarray, lam: float, rng: np.random.Generator) -> np.ndarray:
    # Photon counts of mean lam * x; x is clipped at 0 first (float32 rounding may leave -1e-7).
    counts = rng.poisson(np.clip(X, 0.0, None) * lam)
    return np.clip(counts / lam, 0.0, 1.0)


def _impulse_noise(X: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    hit = rng.random(X.shape) < fraction
    salt = rng.random(X.shape) < 0.5
    return np.where(hit, salt.astype(np.float64), X)


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage  # 0.3 s: only the jobs that blur pay for it

    # sigma 0 on the image axis: scipy skips that axis, so images never mix.
    return ndimage.gaussian_filter(images, sigma=(0.0, sigma, sigma), mode="nearest")


def _contrast(images: np.ndarray, c: float) -> np.ndarray:
    mean = images.mean(axis=(1, 2), keepdims=True)
    return (images - mean) * c + mean


def _translate(images: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0.0, 2.0 * np.pi, size=images.shape[0])
    shifts = distance * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    return shift_images(images, shifts)


def _occlusion(images: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    n, h, w = images.shape
    top = rng.integers(0, h - side + 1, size=n)[:, None, None]
    left = rng.integers(0, w - side + 1, size=n)[:, None, None]
    r = np.arange(h)[None, :, None]
    c = np.arange(w)[None, None, :]
    patch = (r >= top) & (r < top + side) & (c >= left) & (c < left + side)
    return np.where(patch, 0.0, images)


def perturb(
    X: np.ndarray,
    name: str,
    severity: int,
    *,
    image_shape: tuple[int, int] | None,
    seed: int,
    parameters: Mapping[str, Iterable[float]] | None = None,
) -> np.ndarray:
    """A corrupted float32 copy of ``X`` (same shape); deterministic given (seed, name, severity)
    and the corruption's parameter (``SEVERITY_TABLE``, or ``parameters`` where given there).

    Raises :class:`MemlabInputError` for unknown names, severities outside 1..5, a corruption that
    needs images on tabular data, ``X`` that does not fit ``image_shape``, or a bad
    ``parameters`` table.
    """
    name = _check_name(name)
    severity = _check_severity(severity)
    seed = _check_seed(seed)
    image_shape = _check_image_shape(image_shape)
    if not applicable(name, image_shape):
        raise MemlabInputError(
            f"perturbation {name!r} needs image data (image_shape=(h, w)); for tabular data "
            f"only {', '.join(sorted(_TABULAR_OK))} applies."
        )
    X = _check_X(X, image_shape)
    if X.shape[0] == 0:
        return X.copy()
    value = severity_parameter(name, severity, image_shape=image_shape, parameters=parameters)
    rng = _rng(seed, name, severity)
    Xd = X.astype(np.float64)
    if name == "gaussian_noise":
        out = _gaussian_noise(Xd, value, image_shape, rng)
    elif name == "shot_noise":
        out = _shot_noise(Xd, value, rng)
    elif name == "impulse_noise":
        out = _impulse_noise(Xd, value, rng)
    else:
        assert image_shape is not None
        images = Xd.reshape(-1, *image_shape)
        if name == "blur":
            out = _blur(images, value)
        elif name == "contrast":
            out = _contrast(images, value)
        elif name == "translate":
            out = _translate(images, value, rng)
        else:
            out = _occlusion(images, int(value), rng)
        out = np.clip(out, 0.0, 1.0).reshape(X.shape)
    return np.ascontiguousarray(out, dtype=np.float32)


def perturbed_sets(
    X: np.ndarray,
    *,
    image_shape: tuple[int, int] | None,
    names: Iterable[str],
    severities: Iterable[int] = SEVERITIES,
    seed: int,
    parameters: Mapping[str, Iterable[float]] | None = None,
) -> dict[tuple[str, int], np.ndarray]:
    """Every applicable ``(name, severity)`` corruption of ``X``.

    Names that do not apply to the data (image corruptions on tabular data) are skipped; compare
    the keys with ``names`` to log them. Duplicates are dropped, first occurrence wins.
    ``parameters`` replaces severity tables (:func:`severity_table`).
    """
    if isinstance(names, str):
        names = [names]  # one name, not its characters
    names = list(dict.fromkeys(_check_name(n) for n in names))
    severities = list(dict.fromkeys(_check_severity(s) for s in severities))
    image_shape = _check_image_shape(image_shape)
    seed = _check_seed(seed)
    X = _check_X(X, image_shape)
    table = severity_table(parameters)
    return {
        (name, severity): perturb(
            X, name, severity, image_shape=image_shape, seed=seed, parameters=table
        )
        for name in names
        if applicable(name, image_shape)
        for severity in severities
    }
