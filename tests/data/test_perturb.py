"""Tests for memlab.data.perturb: corrupted copies of a held-out set."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from scipy import ndimage
from sklearn.datasets import load_digits

from memlab.data.perturb import (
    PARAMETER_RANGES,
    PERTURBATIONS,
    SEVERITIES,
    SEVERITY_TABLE,
    applicable,
    perturb,
    perturbed_sets,
    severity_parameter,
    severity_table,
    shift_images,
)
from memlab.io import MemlabInputError

SHAPE = (8, 8)
RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "translate", "occlusion")
DETERMINISTIC = ("blur", "contrast")


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return (load_digits().data[:300] / 16).astype(np.float32)


@pytest.fixture(scope="module")
def all_sets(digits: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    return perturbed_sets(digits, image_shape=SHAPE, names=PERTURBATIONS, seed=0)


def test_covers_every_name_and_severity(all_sets):
    assert set(all_sets) == {(n, s) for n in PERTURBATIONS for s in SEVERITIES}


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_shape_dtype_range_and_input_untouched(digits, all_sets, name):
    before = digits.copy()
    for s in SEVERITIES:
        out = all_sets[name, s]
        assert out.shape == digits.shape
        assert out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not np.shares_memory(out, digits)
        assert not np.array_equal(out, digits), f"{name}@{s} changed nothing"
    np.testing.assert_array_equal(digits, before)


def test_float64_input_gives_float32(digits):
    out = perturb(digits.astype(np.float64), "blur", 2, image_shape=SHAPE, seed=0)
    assert out.dtype == np.float32


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_deterministic_for_a_seed(digits, name):
    a = perturb(digits, name, 3, image_shape=SHAPE, seed=7)
    b = perturb(digits, name, 3, image_shape=SHAPE, seed=7)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", RANDOM)
def test_random_corruptions_differ_across_seeds(digits, name):
    a = perturb(digits, name, 3, image_shape=SHAPE, seed=0)
    b = perturb(digits, name, 3, image_shape=SHAPE, seed=1)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_corruptions_ignore_the_seed(digits, name):
    a = perturb(digits, name, 3, image_shape=SHAPE, seed=0)
    b = perturb(digits, name, 3, image_shape=SHAPE, seed=1)
    np.testing.assert_array_equal(a, b)


def test_rng_is_derived_from_seed_name_and_severity(digits):
    seed, severity = 5, 2
    rng = np.random.default_rng(
        np.random.SeedSequence([seed, zlib.crc32(b"gaussian_noise"), severity])
    )
    sigma = SEVERITY_TABLE["gaussian_noise"][severity - 1]
    expected = np.clip(digits + sigma * rng.standard_normal(digits.shape), 0, 1)
    out = perturb(digits, "gaussian_noise", severity, image_shape=SHAPE, seed=seed)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_independent_of_other_requested_perturbations(digits, all_sets):
    few = perturbed_sets(
        digits, image_shape=SHAPE, names=["occlusion", "translate"], severities=[4], seed=0
    )
    assert set(few) == {("occlusion", 4), ("translate", 4)}
    for key, arr in few.items():
        np.testing.assert_array_equal(arr, all_sets[key])
        np.testing.assert_array_equal(arr, perturb(digits, *key, image_shape=SHAPE, seed=0))


def test_duplicate_names_and_severities_are_dropped(digits):
    out = perturbed_sets(
        digits, image_shape=SHAPE, names=["blur", "blur"], severities=[1, 1, 2], seed=0
    )
    assert list(out) == [("blur", 1), ("blur", 2)]


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_change_grows_with_severity(digits, all_sets, name):
    change = [float(np.abs(all_sets[name, s] - digits).mean()) for s in SEVERITIES]
    assert np.all(np.diff(change) > 0), change


def test_tabular_gaussian_change_grows_with_severity():
    X = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    change = [
        float(np.abs(perturb(X, "gaussian_noise", s, image_shape=None, seed=0) - X).mean())
        for s in SEVERITIES
    ]
    assert np.all(np.diff(change) > 0), change


def test_blur_matches_scipy_per_image_and_does_not_mix(digits):
    batch = digits[:20].copy()
    batch[5] = 0.0  # a blank image between inked ones must stay blank
    out = perturb(batch, "blur", 5, image_shape=SHAPE, seed=0)
    assert np.all(out[5] == 0.0)
    sigma = severity_parameter("blur", 5)
    for i in (0, 4, 6, 19):
        expected = ndimage.gaussian_filter(
            batch[i].reshape(SHAPE).astype(np.float64), sigma, mode="nearest"
        )
        np.testing.assert_allclose(out[i].reshape(SHAPE), expected, atol=1e-6)
    single = perturb(batch[6:7], "blur", 5, image_shape=SHAPE, seed=0)
    np.testing.assert_allclose(single[0], out[6], atol=1e-7)


def test_shift_images_whole_pixel_matches_a_roll_with_zero_fill():
    img = np.arange(1.0, 65.0).reshape(1, 8, 8)
    right = shift_images(img, np.array([[0.0, 1.0]]))[0]
    expected = np.zeros((8, 8))
    expected[:, 1:] = img[0, :, :-1]
    np.testing.assert_allclose(right, expected, atol=1e-12)
    up_left = shift_images(img, np.array([[-2.0, -1.0]]))[0]
    expected = np.zeros((8, 8))
    expected[:-2, :-1] = img[0, 2:, 1:]
    np.testing.assert_allclose(up_left, expected, atol=1e-12)


def test_shift_images_matches_scipy_bilinear(digits):
    images = digits[:10].reshape(-1, *SHAPE).astype(np.float64)
    shifts = np.random.default_rng(3).uniform(-1.7, 1.7, size=(10, 2))
    out = shift_images(images, shifts)
    for img, sh, got in zip(images, shifts, out, strict=True):
        expected = ndimage.shift(img, sh, order=1, mode="grid-constant", cval=0.0)
        np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_translate_moves_mass_by_the_severity_distance(severity):
    n = 50
    X = np.zeros((n, 64), dtype=np.float32)
    X[:, 3 * 8 + 4] = 1.0  # a single lit pixel at row 3, col 4, far enough from the border
    out = perturb(X, "translate", severity, image_shape=SHAPE, seed=0).reshape(n, 8, 8)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 1.0, atol=1e-5)  # nothing left the image
    rows, cols = np.indices(SHAPE)
    dy = (out * rows).sum(axis=(1, 2)) - 3
    dx = (out * cols).sum(axis=(1, 2)) - 4
    np.testing.assert_allclose(
        np.hypot(dy, dx), severity_parameter("translate", severity), atol=1e-5
    )
    angles = np.arctan2(dy, dx)
    assert np.ptp(angles) > np.pi  # directions are random per image, not one global shift


@pytest.mark.parametrize(("shape", "scale"), [((8, 8), 1), ((16, 24), 2)])
@pytest.mark.parametrize("severity", SEVERITIES)
def test_occlusion_zeros_exactly_one_square(shape, scale, severity):
    n = 40
    h, w = shape
    X = np.full((n, h * w), 0.5, dtype=np.float32)
    out = perturb(X, "occlusion", severity, image_shape=shape, seed=1).reshape(n, h, w)
    side = int(SEVERITY_TABLE["occlusion"][severity - 1]) * scale
    assert severity_parameter("occlusion", severity, image_shape=shape) == side
    corners = set()
    for img in out:
        assert set(np.unique(img)) <= {0.0, 0.5}
        r, c = np.nonzero(img == 0.0)
        assert r.size == side * side
        assert r.max() - r.min() + 1 == side and c.max() - c.min() + 1 == side
        corners.add((r.min(), c.min()))
    if side < min(shape):
        assert len(corners) > 1  # positions are random per image


def test_impulse_noise_sets_about_the_fraction_to_0_or_1():
    X = np.full((400, 64), 0.5, dtype=np.float32)
    out = perturb(X, "impulse_noise", 3, image_shape=SHAPE, seed=0)
    hit = out != 0.5
    assert set(np.unique(out[hit])) == {0.0, 1.0}
    assert hit.mean() == pytest.approx(severity_parameter("impulse_noise", 3), abs=0.01)


def test_contrast_keeps_each_image_mean_and_scales_its_spread(digits):
    c = severity_parameter("contrast", 4)
    out = perturb(digits, "contrast", 4, image_shape=SHAPE, seed=0)
    np.testing.assert_allclose(out.mean(axis=1), digits.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1), c * digits.std(axis=1), atol=1e-5)


def test_severity_parameters_follow_the_table():
    for name in PERTURBATIONS:
        values = [severity_parameter(name, s) for s in SEVERITIES]
        assert values == list(SEVERITY_TABLE[name])
    assert (
        severity_parameter("translate", 2, image_shape=(16, 16))
        == 2 * SEVERITY_TABLE["translate"][1]
    )
    # contrast and shot noise's rate decrease (stronger corruption); all others grow
    for name in PERTURBATIONS:
        values = np.array(SEVERITY_TABLE[name])
        steps = np.diff(values)
        falling = name in ("contrast", "shot_noise")
        assert np.all(steps < 0) if falling else np.all(steps > 0), name
    assert SEVERITY_TABLE["translate"][0] < 0.5  # 8x8 digits need sub-pixel shifts


def test_applicable():
    assert applicable("gaussian_noise", None)
    for name in PERTURBATIONS:
        assert applicable(name, SHAPE)
        if name != "gaussian_noise":
            assert not applicable(name, None)
    with pytest.raises(MemlabInputError, match="nope"):
        applicable("nope", SHAPE)


def test_tabular_skips_image_corruptions_and_scales_noise_by_feature_std():
    rng = np.random.default_rng(0)
    X = np.column_stack(
        [rng.normal(0, 1, 500), rng.normal(100, 10, 500), np.full(500, 3.0)]
    ).astype(np.float32)
    out = perturbed_sets(X, image_shape=None, names=PERTURBATIONS, seed=0)
    assert set(out) == {("gaussian_noise", s) for s in SEVERITIES}
    noise = out["gaussian_noise", 5] - X
    sigma = severity_parameter("gaussian_noise", 5)
    assert noise[:, 0].std() == pytest.approx(sigma * X[:, 0].std(), rel=0.1)
    assert noise[:, 1].std() == pytest.approx(sigma * X[:, 1].std(), rel=0.1)
    assert np.all(noise[:, 2] == 0.0)  # constant feature: no scale, no noise
    assert out["gaussian_noise", 5].min() < 0.0  # tabular data are not clipped to [0, 1]
    with pytest.raises(MemlabInputError, match="needs image data"):
        perturb(X, "blur", 1, image_shape=None, seed=0)


def test_empty_input(digits):
    out = perturb(digits[:0], "translate", 3, image_shape=SHAPE, seed=0)
    assert out.shape == (0, 64) and out.dtype == np.float32


def test_unknown_name_lists_allowed_names(digits):
    with pytest.raises(MemlabInputError) as e:
        perturbed_sets(digits, image_shape=SHAPE, names=["blur", "fog"], seed=0)
    msg = str(e.value)
    assert "'fog'" in msg
    assert all(n in msg for n in PERTURBATIONS)
    with pytest.raises(MemlabInputError, match="fog"):
        perturb(digits, "fog", 1, image_shape=SHAPE, seed=0)
    with pytest.raises(MemlabInputError, match="fog"):
        severity_parameter("fog", 1)


@pytest.mark.parametrize("bad", [0, 6, -1, 2.5, True, "3"])
def test_bad_severity_is_rejected(digits, bad):
    with pytest.raises(MemlabInputError, match=r"severity .* 1\.\.5"):
        perturb(digits, "blur", bad, image_shape=SHAPE, seed=0)
    with pytest.raises(MemlabInputError, match=r"1\.\.5"):
        perturbed_sets(digits, image_shape=SHAPE, names=["blur"], severities=[1, bad], seed=0)


def test_numpy_integer_severity_and_seed_are_accepted(digits):
    a = perturb(digits, "occlusion", np.int64(2), image_shape=SHAPE, seed=np.int64(3))
    np.testing.assert_array_equal(a, perturb(digits, "occlusion", 2, image_shape=SHAPE, seed=3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_shape": (8, 7)}, "56 pixels"),
        ({"image_shape": (8, 8, 1)}, "image_shape"),
        ({"image_shape": (0, 64)}, "image_shape"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_shape_or_seed_is_rejected(digits, kwargs, match):
    args = {"image_shape": SHAPE, "seed": 0} | kwargs
    with pytest.raises(MemlabInputError, match=match):
        perturb(digits, "gaussian_noise", 1, **args)


def test_unscaled_or_non_finite_images_are_rejected(digits):
    with pytest.raises(MemlabInputError, match=r"\[0, 1\]"):
        perturb(digits * 16, "blur", 1, image_shape=SHAPE, seed=0)
    bad = digits.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MemlabInputError, match="NaN"):
        perturb(bad, "blur", 1, image_shape=SHAPE, seed=0)
    with pytest.raises(MemlabInputError, match="2-D"):
        perturb(digits[0], "blur", 1, image_shape=SHAPE, seed=0)


def test_image_shape_may_be_a_list_or_array(digits):
    expected = perturb(digits, "blur", 2, image_shape=SHAPE, seed=0)
    for shape in ([8, 8], np.array([8, 8]), (np.int64(8), 8)):
        np.testing.assert_array_equal(
            perturb(digits, "blur", 2, image_shape=shape, seed=0), expected
        )


# --------------------------------------------------------------------------- shot noise


def _rng(seed: int, name: str, severity: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([seed, zlib.crc32(name.encode()), severity])
    )


def test_shot_noise_is_poisson_counts_over_the_rate(digits):
    seed, severity = 3, 4
    lam = SEVERITY_TABLE["shot_noise"][severity - 1]
    expected = np.clip(_rng(seed, "shot_noise", severity).poisson(digits * lam) / lam, 0, 1)
    out = perturb(digits, "shot_noise", severity, image_shape=SHAPE, seed=seed)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert np.all(out[digits == 0] == 0)  # black stays black: no photons, no noise


def test_shot_noise_keeps_the_mean_and_grows_with_severity():
    # A fixed image, grey 0.3 everywhere: Poisson(lam x) / lam has mean x and variance x / lam;
    # clipping at 1 takes a little off the mean where lam is small, exactly
    # E[min(N / lam, 1)] for N ~ Poisson(lam x).
    from scipy import stats

    grey = np.full((2000, 64), 0.3, dtype=np.float32)
    outs = [perturb(grey, "shot_noise", s, image_shape=SHAPE, seed=0) for s in SEVERITIES]
    for s, out in zip(SEVERITIES, outs, strict=True):
        lam = SEVERITY_TABLE["shot_noise"][s - 1]
        k = np.arange(200)
        clipped_mean = (stats.poisson.pmf(k, lam * 0.3) * np.minimum(k / lam, 1)).sum()
        assert out.mean() == pytest.approx(clipped_mean, abs=0.003), s
        if s <= 2:  # hardly clipped: the mean and the Poisson variance
            assert out.mean() == pytest.approx(0.3, abs=0.003), s
            assert out.var() == pytest.approx(0.3 / lam, rel=0.05), s
    change = [float(np.abs(out - grey).mean()) for out in outs]
    assert np.all(np.diff(change) > 0), change
    again = perturb(grey, "shot_noise", 3, image_shape=SHAPE, seed=0)
    np.testing.assert_array_equal(again, outs[2])
    assert not np.array_equal(perturb(grey, "shot_noise", 3, image_shape=SHAPE, seed=1), again)


def test_shot_noise_needs_images():
    assert not applicable("shot_noise", None)
    X = np.random.default_rng(0).random((10, 4)).astype(np.float32)
    with pytest.raises(MemlabInputError, match="needs image data"):
        perturb(X, "shot_noise", 1, image_shape=None, seed=0)


def test_shot_noise_takes_pixels_rounded_just_below_zero(digits):
    x = digits.copy()
    x[x == 0] = -1e-7  # within the tolerance of float32 rounding
    out = perturb(x, "shot_noise", 5, image_shape=SHAPE, seed=0)
    assert out.min() >= 0.0


# --------------------------------------------------------------------------- configured tables


def test_a_configured_table_is_used_as_given(digits):
    sigmas = [0.05, 0.5, 0.01, 1.0, 0.3]  # any order: used as given
    table = {"gaussian_noise": sigmas}
    for severity, sigma in zip(SEVERITIES, sigmas, strict=True):
        assert severity_parameter("gaussian_noise", severity, parameters=table) == sigma
        noise = _rng(4, "gaussian_noise", severity).standard_normal(digits.shape)
        expected = np.clip(digits + sigma * noise, 0, 1)
        out = perturb(
            digits, "gaussian_noise", severity, image_shape=SHAPE, seed=4, parameters=table
        )
        np.testing.assert_allclose(out, expected, atol=1e-6)
    # Deterministic ones: the contrast factor exactly, shot noise at ImageNet-C's rates.
    factors = [1.0, 0.9, 0.5, 0.2, 0.01]
    for severity, c in zip(SEVERITIES, factors, strict=True):
        out = perturb(
            digits,
            "contrast",
            severity,
            image_shape=SHAPE,
            seed=0,
            parameters={"contrast": factors},
        )
        np.testing.assert_allclose(out.std(axis=1), c * digits.std(axis=1), atol=1e-5)
    theirs = {"shot_noise": [60, 25, 12, 5, 3]}
    out = perturb(digits, "shot_noise", 1, image_shape=SHAPE, seed=2, parameters=theirs)
    expected = np.clip(_rng(2, "shot_noise", 1).poisson(digits * 60) / 60, 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_a_configured_table_changes_only_its_corruption(digits, all_sets):
    table = {"blur": [0.1, 0.2, 0.3, 0.4, 2.0], "occlusion": [8, 8, 8, 8, 8]}
    sets = perturbed_sets(digits, image_shape=SHAPE, names=PERTURBATIONS, seed=0, parameters=table)
    for key, arr in sets.items():
        if key[0] in table:
            assert not np.array_equal(arr, all_sets[key]), key
        else:
            np.testing.assert_array_equal(arr, all_sets[key])
    np.testing.assert_array_equal(sets["occlusion", 1], np.zeros_like(digits))  # the whole image
    expected = ndimage.gaussian_filter(
        digits.reshape(-1, 8, 8).astype(np.float64), sigma=(0, 2.0, 2.0), mode="nearest"
    )
    np.testing.assert_allclose(sets["blur", 5], expected.reshape(digits.shape), atol=1e-6)
    # The default table, given explicitly, is the default.
    same = perturbed_sets(
        digits, image_shape=SHAPE, names=["translate"], seed=0, parameters=dict(SEVERITY_TABLE)
    )
    for key, arr in same.items():
        np.testing.assert_array_equal(arr, all_sets[key])


def test_configured_spatial_parameters_scale_with_the_image():
    table = {"translate": [0.5, 1, 1.5, 2, 3], "occlusion": [1, 2, 3, 4, 8]}
    assert severity_parameter("translate", 5, image_shape=(16, 16), parameters=table) == 6.0
    assert severity_parameter("occlusion", 5, image_shape=(16, 24), parameters=table) == 16.0


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"contrast": [1.0, 0.8, 0.6, 0.4, 1.5]}, r"parameters\.contrast\[4\] = 1\.5.*\(0, 1\]"),
        ({"contrast": [0, 0.8, 0.6, 0.4, 0.2]}, r"contrast\[0\] = 0 .*contrast factors"),
        ({"impulse_noise": [0.1, 0.2, 0.3, 0.4, 1.2]}, r"impulse_noise\[4\].*\[0, 1\]"),
        ({"shot_noise": [60, 25, 12, 5, 0]}, r"shot_noise\[4\] = 0 .*> 0"),
        ({"gaussian_noise": [0.1, -0.2, 0.3, 0.4, 0.5]}, r"gaussian_noise\[1\].*>= 0"),
        ({"occlusion": [1, 2, 3, 4, 9]}, r"occlusion\[4\] = 9 .*\(0, 8\]"),
        ({"blur": [0.5, 0.7, float("nan"), 1.1, 1.3]}, r"blur\[2\] = nan"),
        ({"blur": [0.5, 0.7, True, 1.1, 1.3]}, r"blur\[2\] = True"),
        ({"blur": [0.5, 0.7, "1", 1.1, 1.3]}, r"blur\[2\] = '1'"),
        ({"blur": [0.5, 0.7]}, r"parameters\.blur has 2 values; give exactly 5"),
        ({"blur": 0.5}, r"parameters\.blur = 0\.5 .*list of 5"),
        ({"fog": [1, 2, 3, 4, 5]}, r"unknown perturbation 'fog'"),
        ([1, 2, 3], r"perturbations\.parameters must map"),
    ],
)
def test_a_bad_configured_table_names_the_key(digits, table, match):
    with pytest.raises(MemlabInputError, match=match):
        severity_table(table)
    with pytest.raises(MemlabInputError, match=match):
        perturbed_sets(digits, image_shape=SHAPE, names=["blur"], seed=0, parameters=table)


def test_the_default_table_is_within_the_ranges_and_the_schema_mirrors_them():
    from memlab.plan.config import load_schema

    assert severity_table(dict(SEVERITY_TABLE)) == SEVERITY_TABLE
    assert set(PARAMETER_RANGES) == set(PERTURBATIONS)
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    schema = load_schema(root / "workflow" / "schemas" / "config.schema.yaml")
    pert = schema["properties"]["perturbations"]["properties"]
    assert pert["names"]["items"]["enum"] == list(PERTURBATIONS)
    entries = pert["parameters"]["properties"]
    assert set(entries) == set(PERTURBATIONS)
    for name, (low, high, low_in, high_in) in PARAMETER_RANGES.items():
        items = entries[name]["items"]
        assert items.get("minimum" if low_in else "exclusiveMinimum") == low, name
        if high is None:
            assert "maximum" not in items and "exclusiveMaximum" not in items, name
        else:
            assert items.get("maximum" if high_in else "exclusiveMaximum") == high, name
