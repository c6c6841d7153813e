"""Tests for memlab.data.datasets: dataset loading, the pool/test split, label noise and subsets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.data.datasets import (
    DATASET_KINDS,
    Dataset,
    balanced_subsets,
    dataset_shape,
    flip_labels,
    load_dataset,
    pool_size,
    resolve_size,
    split_pool_test,
    token_shape,
)
from memlab.io import MemlabInputError

# --------------------------------------------------------------------------- built-in kinds


SCHEMA_PATH = Path(__file__).parents[2] / "workflow/schemas/config.schema.yaml"
# One spec per kind (tests/data/test_data.py's own files under tmp_path), for the checks every kind
# must pass; a kind without one fails test_every_kind_has_a_spec_here.
KIND_SPECS = {
    "digits": {"kind": "digits"},
    "gaussian": {"kind": "gaussian"},
    "gaussian_set": {
        "kind": "gaussian",
        "n_samples": 103,
        "n_features": 4,
        "n_classes": 7,
        "separation": 2,
        "seed": 5,
    },
    "modular_addition": {"kind": "modular_addition"},
    "file_csv": {"kind": "file", "path": "data/breast_cancer.csv", "label_column": "diagnosis"},
    "file_npz": {"kind": "file", "path": "imgs.npz"},
}
# sha256 of X and y as the code before the kinds were classes built them (prefix): the data,
# and so every split and subset drawn from them, must never change unnoticed.
KIND_DIGESTS = {
    "digits": "8b3b6ae90863430b",
    "gaussian": "6b99e0bbd7af8f13",
    "gaussian_set": "8ca7afe84818f9d2",
    "modular_addition": "ba1a0cfbbf32410c",
    "file_csv": "65ae6105ad08b046",
    "file_npz": "29f4b308991e588d",
}


@pytest.fixture
def kind_root(tmp_path: Path) -> Path:
    """A project directory with the npz images of KIND_SPECS (the CSV is the shipped example,
    built in memory)."""
    X = np.arange(40 * 20).reshape(40, 4, 5) % 7
    np.savez(tmp_path / "imgs.npz", X=X, y=np.arange(40) % 3)
    return tmp_path


def _schema() -> dict:
    from memlab.plan.config import load_schema

    return load_schema(SCHEMA_PATH)


def _resolve(schema: dict, node: dict) -> dict:
    """``node``, or what its local ``$ref`` points at."""
    if "$ref" not in node:
        return node
    target = schema
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    return _resolve(schema, target)


def test_dataset_kinds_are_the_schemas():
    schema = _schema()
    entry = schema["properties"]["datasets"]["additionalProperties"]
    assert list(DATASET_KINDS) == entry["properties"]["kind"]["enum"]
    chosen = {c["if"]["properties"]["kind"]["const"]: c["then"]["$ref"] for c in entry["allOf"]}
    assert chosen == {kind: f"#/$defs/dataset_{kind}" for kind in DATASET_KINDS}


@pytest.mark.parametrize("kind", DATASET_KINDS)
def test_each_kinds_keys_and_defaults_are_its_schema_entry(kind):
    """The class and its schema entry state the same keys, defaults and required keys; every
    key has a description (`grid` is the study's, not the data's: the schema's only)."""
    from memlab.data.dataset_kinds import KINDS, VARIANT_KEYS

    schema, cls = _schema(), KINDS[kind]
    entry = schema["$defs"][f"dataset_{kind}"]
    assert entry["description"] and cls.__doc__
    assert entry["additionalProperties"] is False
    assert set(entry["properties"]) == {*cls.allowed_keys(), "grid"}
    assert entry["properties"]["kind"] == {"const": kind}
    assert set(entry.get("required", ())) == set(cls.required)
    assert set(cls.variant_keys) <= set(VARIANT_KEYS)
    for key in cls.variant_keys:
        assert entry["properties"][key] == {"$ref": f"#/$defs/{key}"}
    for key in (*cls.required, *cls.defaults):
        ref = entry["properties"][key]
        # Behind a $ref, so Snakemake's validate() does not write the default into the config.
        assert ref == {"$ref": f"#/$defs/dataset_keys/{kind}/{key}"}, key
        own = _resolve(schema, ref)
        assert own["description"], key
        if key in cls.required:
            assert "default" not in own, key
        else:
            assert own["default"] == cls.defaults[key], key
            assert type(own["default"]) is type(cls.defaults[key]), key
    assert set(schema["$defs"]["dataset_keys"].get(kind, {})) == {*cls.required, *cls.defaults}


def test_validate_writes_no_dataset_default():
    """A dataset's keys travel whole to rule prepare as its params: defaults written into them
    would change those params, and rerun every study written without them."""
    import copy

    import yaml
    from snakemake.utils import validate

    config = yaml.safe_load((SCHEMA_PATH.parents[2] / "config" / "smoke.yaml").read_text())
    specs = {k: s for k, s in KIND_SPECS.items() if k != "gaussian_set"}
    config["datasets"] = copy.deepcopy(specs)
    config["datasets"]["tail"] = {"kind": "gaussian", "long_tail": {"head": 4}}
    validate(config, str(SCHEMA_PATH))
    assert {k: config["datasets"][k] for k in specs} == specs
    # The long tail's own defaults are filled in, as they always were.
    assert config["datasets"]["tail"] == {
        "kind": "gaussian",
        "long_tail": {"subpopulations": 8, "head": 4, "exponent": 1.5},
    }


def test_every_kind_has_a_spec_here():
    """Every kind of examples; text (documents) is tested in tests/data/test_data_sequences.py."""
    from memlab.data.dataset_kinds import KINDS

    examples = {k for k in DATASET_KINDS if not KINDS[k].sequences}
    assert {s["kind"] for s in KIND_SPECS.values()} == examples == set(DATASET_KINDS) - {"text"}


@pytest.mark.parametrize("key", sorted(KIND_SPECS))
def test_every_kind_builds_the_data_it_always_built(kind_root, key):
    import hashlib

    ds = load_dataset(KIND_SPECS[key], root=kind_root)
    digest = hashlib.sha256(ds.X.tobytes() + ds.y.tobytes()).hexdigest()
    assert digest[:16] == KIND_DIGESTS[key]
    assert (ds.X.dtype, ds.y.dtype) == (np.float32, np.int64)


@pytest.mark.parametrize("key", sorted(KIND_SPECS))
def test_shapes_known_before_loading_are_the_loaded_ones(kind_root, key):
    spec = KIND_SPECS[key]
    ds = load_dataset(spec, name=key, root=kind_root)
    assert dataset_shape(spec, kind_root, name=key) == (len(ds.y), ds.image_shape)
    assert token_shape(spec, key) == ds.token_shape
    assert ds.name == key


def test_a_kind_fills_in_its_defaults_and_keeps_what_was_given():
    from memlab.data.dataset_kinds import DataFile, Gaussian, ModularAddition, from_spec

    assert from_spec({"kind": "gaussian", "seed": 2}, "g") == Gaussian(
        "g", n_samples=1000, n_features=20, n_classes=5, separation=3.0, seed=2, standardize=False
    )
    assert from_spec({"kind": "modular_addition"}) == ModularAddition("dataset", p=23)
    file = from_spec({"kind": "file", "path": "x.csv", "long_tail": {}}, "f")
    assert file == DataFile("f", "x.csv", label_column="label", image_shape=None, standardize=None)


@pytest.mark.parametrize("kind", DATASET_KINDS)
def test_an_unknown_key_names_the_dataset_and_the_kinds_keys(kind):
    """Both where the data are loaded and where the config is checked (the schema)."""
    from memlab.data.dataset_kinds import KINDS
    from memlab.plan.config import check_config

    spec = {"kind": kind, "path": "x.csv"} if kind == "file" else {"kind": kind}
    spec["sead"] = 1
    with pytest.raises(MemlabInputError) as e:
        load_dataset(spec, name="mine")
    for part in ("'mine'", "sead", *KINDS[kind].allowed_keys()):
        assert part in str(e.value), part
    models = {"m": {"kind": "knn", "k": [1]}}
    config = {"datasets": {"mine": spec}, "sizes": [1], "models": models, "regimes": {"r": {}}}
    with pytest.raises(MemlabInputError) as e:
        check_config(config, _schema())
    for part in ("datasets.mine.sead", *KINDS[kind].allowed_keys()):
        assert part in str(e.value), part


def test_modular_addition_is_every_pair_once():
    ds = load_dataset({"kind": "modular_addition", "p": 7})
    assert ds.X.shape == (49, 14) and ds.n_classes == 7
    assert dataset_shape({"kind": "modular_addition", "p": 7}) == (49, None)
    a, b = ds.X[:, :7].argmax(1), ds.X[:, 7:].argmax(1)
    assert (ds.X.sum(1) == 2).all()
    assert len(set(zip(a.tolist(), b.tolist(), strict=True))) == 49
    np.testing.assert_array_equal(ds.y, (a + b) % 7)
    assert ds.token_shape == token_shape({"kind": "modular_addition", "p": 7}) == (2, 7)
    assert load_dataset({"kind": "digits"}).token_shape is None
    assert token_shape({"kind": "gaussian"}) is None


@pytest.mark.parametrize("randomization", [None, {"kind": "shuffled_pixels"}])
def test_token_shape_travels_with_the_split(tmp_path, randomization):
    """make_split, randomize, save_split and load_split keep it; digits have none."""
    from memlab.data.datasets import load_split, make_split, save_split
    from memlab.data.randomization import randomize
    from memlab.io import load_npz, save_npz

    ds = load_dataset({"kind": "modular_addition", "p": 5})
    split, _ = randomize(make_split(ds, *split_pool_test(ds.y, 0.4, 0)), randomization, 0)
    save_split(tmp_path / "split.npz", split)
    loaded = load_split(tmp_path / "split.npz")
    assert (split.token_shape, loaded.token_shape, loaded.image_shape) == ((2, 5), (2, 5), None)
    digits = load_dataset({"kind": "digits"})
    save_split(tmp_path / "digits.npz", make_split(digits, *split_pool_test(digits.y, 0.25, 0)))
    assert load_split(tmp_path / "digits.npz").token_shape is None
    # A split written before token shapes existed has none.
    old = {k: v for k, v in load_npz(tmp_path / "split.npz").items() if k != "token_shape"}
    save_npz(tmp_path / "old.npz", **old)
    assert load_split(tmp_path / "old.npz").token_shape is None


def test_digits_shape_range_and_image_shape():
    ds = load_dataset({"kind": "digits"}, name="digits")
    assert isinstance(ds, Dataset)
    assert ds.X.shape == (1797, 64)
    assert ds.X.dtype == np.float32
    assert ds.y.dtype == np.int64
    assert ds.X.min() == 0.0
    assert ds.X.max() == 1.0
    assert ds.n_classes == 10
    assert set(np.unique(ds.y)) == set(range(10))
    assert ds.image_shape == (8, 8)
    assert ds.name == "digits"
    assert dataset_shape({"kind": "digits"}) == (len(ds.y), ds.image_shape)


def test_gaussian_defaults_balance_and_determinism():
    spec = {"kind": "gaussian", "seed": 3}
    a = load_dataset(spec, name="g")
    b = load_dataset(dict(spec))
    assert a.X.shape == (1000, 20)
    assert a.X.dtype == np.float32
    assert a.y.dtype == np.int64
    assert a.n_classes == 5
    assert a.image_shape is None
    assert a.name == "g"
    np.testing.assert_array_equal(np.bincount(a.y), [200] * 5)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert dataset_shape(spec) == (1000, None)


def test_gaussian_uneven_balance_and_seeds_differ():
    spec = {"kind": "gaussian", "n_samples": 103, "n_features": 4, "n_classes": 7, "seed": 0}
    a = load_dataset(spec)
    counts = np.bincount(a.y, minlength=7)
    assert counts.sum() == 103
    assert counts.max() - counts.min() <= 1
    assert a.X.shape == (103, 4)
    b = load_dataset({**spec, "seed": 1})
    assert not np.array_equal(a.X, b.X)
    assert dataset_shape(spec)[0] == 103


def test_gaussian_separation_controls_difficulty():
    def nearest_mean_accuracy(sep: float) -> float:
        ds = load_dataset({"kind": "gaussian", "n_samples": 2000, "separation": sep, "seed": 1})
        means = np.stack([ds.X[ds.y == k].mean(axis=0) for k in range(ds.n_classes)])
        dist = ((ds.X[:, None, :] - means[None]) ** 2).sum(axis=-1)
        return float((dist.argmin(axis=1) == ds.y).mean())

    easy, hard = nearest_mean_accuracy(8.0), nearest_mean_accuracy(0.5)
    assert easy > 0.95
    assert hard < 0.6


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"kind": "gaussian", "n_samples": 0}, "n_samples"),
        ({"kind": "gaussian", "n_classes": 1}, "n_classes"),
        ({"kind": "gaussian", "n_features": 2.5}, "n_features"),
        ({"kind": "gaussian", "separation": -1.0}, "separation"),
        ({"kind": "gaussian", "seed": True}, "seed"),
        ({"kind": "gaussian", "n_sample": 10}, "n_sample"),
        ({"kind": "digits", "path": "x.csv"}, "path"),
        ({"kind": "gaussian", "standardize": None}, "standardize"),
        ({"kind": "gaussian", "standardize": "yes"}, "standardize"),
        ({"kind": "file", "path": "x.csv", "standardize": 1}, "standardize"),
        ({"kind": "modular_addition", "p": 1}, "`p` is 1"),
    ],
)
def test_bad_builtin_specs(spec, key):
    with pytest.raises(MemlabInputError, match=key):
        load_dataset(spec)


def test_unknown_kind_lists_allowed():
    with pytest.raises(MemlabInputError) as e:
        load_dataset({"kind": "mnist"}, name="mine")
    msg = str(e.value)
    assert "mnist" in msg
    assert "mine" in msg
    for kind in DATASET_KINDS:
        assert kind in msg
    with pytest.raises(MemlabInputError, match="kind"):
        load_dataset({}, name="mine")
    with pytest.raises(MemlabInputError, match="kind"):
        dataset_shape({"kind": "nope"})


# --------------------------------------------------------------------------- user files


def test_csv_string_labels_mapped_sorted(tmp_path):
    df = pd.DataFrame(
        {"a": [0.0, 1.0, 2.0, 3.0], "cls": ["dog", "cat", "emu", "cat"], "b": [1, 2, 3, 4]}
    )
    df.to_csv(tmp_path / "d.csv", index=False)
    spec = {"kind": "file", "path": "d.csv", "label_column": "cls"}
    ds = load_dataset(spec, name="mine", root=tmp_path)
    np.testing.assert_array_equal(ds.y, [1, 0, 2, 0])  # cat < dog < emu
    assert ds.y.dtype == np.int64
    assert ds.n_classes == 3
    assert ds.X.dtype == np.float32
    np.testing.assert_array_equal(ds.X, [[0, 1], [1, 2], [2, 3], [3, 4]])
    assert ds.image_shape is None
    assert dataset_shape(spec, tmp_path) == (4, None)


def test_csv_int_labels_default_column_and_image_shape(tmp_path):
    X = np.arange(24, dtype=float).reshape(4, 6)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    df["label"] = [5, 3, 5, 9]
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    ds = load_dataset({"kind": "file", "path": str(path), "image_shape": [2, 3]})
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 2])
    assert ds.image_shape == (2, 3)
    np.testing.assert_array_equal(ds.X, X)


def test_npz_3d_images_flattened(tmp_path):
    X = np.random.default_rng(0).random((10, 4, 5))
    y = np.array([2, 7] * 5)
    np.savez(tmp_path / "imgs.npz", X=X, y=y)
    ds = load_dataset({"kind": "file", "path": "imgs.npz"}, root=tmp_path)
    assert ds.X.shape == (10, 20)
    assert ds.image_shape == (4, 5)
    np.testing.assert_allclose(ds.X, X.reshape(10, 20).astype(np.float32))
    np.testing.assert_array_equal(ds.y, [0, 1] * 5)
    assert ds.n_classes == 2


def test_npz_2d_string_labels(tmp_path):
    np.savez(tmp_path / "t.npz", X=np.eye(4), y=np.array(["b", "a", "c", "a"]))
    ds = load_dataset({"kind": "file", "path": "t.npz"}, root=tmp_path)
    np.testing.assert_array_equal(ds.y, [1, 0, 2, 0])
    assert ds.image_shape is None
    assert ds.X.shape == (4, 4)


def _csv(tmp_path, name: str, df: pd.DataFrame) -> dict:
    df.to_csv(tmp_path / name, index=False)
    return {"kind": "file", "path": name}


def _npz(tmp_path, name: str, **arrays) -> dict:
    np.savez(tmp_path / name, **arrays)
    return {"kind": "file", "path": name}


def test_missing_file_says_local_only(tmp_path):
    with pytest.raises(MemlabInputError) as e:
        load_dataset({"kind": "file", "path": "nowhere/data.csv"}, name="mine", root=tmp_path)
    msg = str(e.value)
    assert "data.csv" in msg
    assert str(tmp_path) in msg
    assert "local disk" in msg
    with pytest.raises(MemlabInputError, match="path"):
        load_dataset({"kind": "file"}, root=tmp_path)


def test_unknown_extension(tmp_path):
    (tmp_path / "data.txt").write_text("1,2\n")
    with pytest.raises(MemlabInputError, match=r"data\.txt.*\.npz.*\.csv"):
        load_dataset({"kind": "file", "path": "data.txt"}, root=tmp_path)


def test_csv_without_label_column(tmp_path):
    spec = _csv(tmp_path, "nolab.csv", pd.DataFrame({"x1": [1, 2], "target": [0, 1]}))
    with pytest.raises(MemlabInputError) as e:
        load_dataset(spec, root=tmp_path)
    msg = str(e.value)
    for part in ("nolab.csv", "x1", "target", "label_column"):
        assert part in msg


def test_csv_non_numeric_features_named(tmp_path):
    df = pd.DataFrame({"x1": [1, 2], "colour": ["red", "blue"], "label": [0, 1]})
    with pytest.raises(MemlabInputError, match=r"strs\.csv.*colour"):
        load_dataset(_csv(tmp_path, "strs.csv", df), root=tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_csv_nonfinite_features(tmp_path, bad):
    df = pd.DataFrame({"x1": [1.0, bad, 3.0], "label": [0, 1, 0]})
    with pytest.raises(MemlabInputError, match=r"nan\.csv.*x1"):
        load_dataset(_csv(tmp_path, "nan.csv", df), root=tmp_path)


def test_csv_missing_labels(tmp_path):
    (tmp_path / "gap.csv").write_text("x,label\n1,a\n2,\n3,b\n")
    with pytest.raises(MemlabInputError, match=r"gap\.csv.*missing label"):
        load_dataset({"kind": "file", "path": "gap.csv"}, root=tmp_path)


def test_csv_one_class(tmp_path):
    df = pd.DataFrame({"x": [1, 2, 3], "label": ["a", "a", "a"]})
    with pytest.raises(MemlabInputError, match=r"one\.csv.*at least 2 classes"):
        load_dataset(_csv(tmp_path, "one.csv", df), root=tmp_path)


def test_csv_bad_image_shape(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": [3, 4], "c": [5, 6], "label": [0, 1]})
    spec = {**_csv(tmp_path, "img.csv", df), "image_shape": [2, 2]}
    with pytest.raises(MemlabInputError, match=r"image_shape.*img\.csv.*3 features"):
        load_dataset(spec, root=tmp_path)


def test_npz_missing_arrays_lists_keys(tmp_path):
    spec = _npz(tmp_path, "keys.npz", features=np.eye(3), y=np.arange(3))
    with pytest.raises(MemlabInputError) as e:
        load_dataset(spec, root=tmp_path)
    msg = str(e.value)
    assert "keys.npz" in msg
    assert "features" in msg
    assert "X" in msg
    spec = _npz(tmp_path, "noy.npz", X=np.eye(3))
    with pytest.raises(MemlabInputError, match=r"noy\.npz.*\by\b"):
        load_dataset(spec, root=tmp_path)


def test_npz_length_mismatch(tmp_path):
    spec = _npz(tmp_path, "len.npz", X=np.eye(4), y=np.array([0, 1, 0]))
    with pytest.raises(MemlabInputError, match=r"len\.npz.*4 examples"):
        load_dataset(spec, root=tmp_path)


def test_npz_nonfinite_features_and_missing_labels(tmp_path):
    X = np.eye(4)
    X[2, 1] = np.nan
    spec = _npz(tmp_path, "nanx.npz", X=X, y=np.array([0, 1, 0, 1]))
    with pytest.raises(MemlabInputError, match=r"nanx\.npz.*NaN"):
        load_dataset(spec, root=tmp_path)
    spec = _npz(tmp_path, "nany.npz", X=np.eye(4), y=np.array([0.0, np.nan, 1.0, 1.0]))
    with pytest.raises(MemlabInputError, match=r"nany\.npz.*missing"):
        load_dataset(spec, root=tmp_path)
    spec = _npz(tmp_path, "blank.npz", X=np.eye(3), y=np.array(["a", "", "b"]))
    with pytest.raises(MemlabInputError, match=r"blank\.npz.*empty label"):
        load_dataset(spec, root=tmp_path)


def test_npz_one_class_and_bad_shapes(tmp_path):
    spec = _npz(tmp_path, "single.npz", X=np.eye(3), y=np.zeros(3, dtype=int))
    with pytest.raises(MemlabInputError, match=r"single\.npz.*at least 2 classes"):
        load_dataset(spec, root=tmp_path)
    spec = _npz(tmp_path, "four.npz", X=np.zeros((2, 2, 2, 2)), y=np.array([0, 1]))
    with pytest.raises(MemlabInputError, match=r"four\.npz.*shape"):
        load_dataset(spec, root=tmp_path)
    spec = {
        **_npz(tmp_path, "sq.npz", X=np.eye(4), y=np.array([0, 1, 0, 1])),
        "image_shape": [3, 2],
    }
    with pytest.raises(MemlabInputError, match=r"image_shape.*sq\.npz"):
        load_dataset(spec, root=tmp_path)


def test_corrupt_npz(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(MemlabInputError, match=r"bad\.npz"):
        load_dataset({"kind": "file", "path": "bad.npz"}, root=tmp_path)


# --------------------------------------------------------------------------- pool/test split


@pytest.mark.parametrize("n", [20, 37, 100, 1797])
@pytest.mark.parametrize("frac", [0.1, 0.2, 0.25, 0.3, 0.7])
def test_pool_size_matches_split(n, frac):
    y = np.arange(n) % 2
    pool, test = split_pool_test(y, frac, seed=0)
    assert len(pool) == pool_size(n, frac)
    assert len(test) == math.ceil(frac * n)


def test_pool_size_rejects_bad_fraction():
    for bad in (0, 0.0, 1.0, -0.1, 1.5, True, "0.2"):
        with pytest.raises(MemlabInputError, match="test_fraction"):
            pool_size(100, bad)
    with pytest.raises(MemlabInputError, match="empty training pool"):
        pool_size(2, 0.9)


def test_split_stratified_disjoint_deterministic():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    rng = np.random.default_rng(0)
    y = rng.permutation(y)
    pool, test = split_pool_test(y, 0.3, seed=7)
    assert pool.dtype == np.int64 and test.dtype == np.int64
    assert np.all(np.diff(pool) > 0) and np.all(np.diff(test) > 0)
    assert len(np.intersect1d(pool, test)) == 0
    np.testing.assert_array_equal(np.union1d(pool, test), np.arange(len(y)))
    n_test = len(test)
    for k, count in enumerate(np.bincount(y)):
        expected = count * n_test / len(y)
        assert abs(np.sum(y[test] == k) - expected) <= 1
    pool2, test2 = split_pool_test(y, 0.3, seed=7)
    np.testing.assert_array_equal(pool, pool2)
    np.testing.assert_array_equal(test, test2)
    _, test3 = split_pool_test(y, 0.3, seed=8)
    assert not np.array_equal(test, test3)


def test_split_errors():
    with pytest.raises(MemlabInputError, match="test_fraction"):
        split_pool_test(np.array([0, 1, 0, 1]), 1.2, seed=0)
    with pytest.raises(MemlabInputError, match="stratified"):
        split_pool_test(np.array([0, 0, 0, 1]), 0.5, seed=0)


# --------------------------------------------------------------------------- label noise


def test_flip_labels_counts_and_never_own_label():
    y = np.arange(1000) % 10
    noisy, flipped = flip_labels(y, 0.237, n_classes=10, seed=1)
    assert noisy.dtype == np.int64 and flipped.dtype == bool
    assert flipped.sum() == round(0.237 * 1000)
    assert np.all(noisy[flipped] != y[flipped])
    np.testing.assert_array_equal(noisy[~flipped], y[~flipped])
    assert noisy.min() >= 0 and noisy.max() < 10
    again, flipped_again = flip_labels(y, 0.237, n_classes=10, seed=1)
    np.testing.assert_array_equal(noisy, again)
    np.testing.assert_array_equal(flipped, flipped_again)
    other, _ = flip_labels(y, 0.237, n_classes=10, seed=2)
    assert not np.array_equal(noisy, other)


def test_flip_labels_uniform_over_other_classes():
    k = 5
    y = np.arange(30000) % k
    noisy, flipped = flip_labels(y, 0.5, n_classes=k, seed=0)
    for c in range(k):
        targets = noisy[flipped & (y == c)]
        share = np.bincount(targets, minlength=k) / len(targets)
        assert share[c] == 0
        others = np.delete(share, c)
        assert np.all(np.abs(others - 1 / (k - 1)) < 0.04), share


def test_flip_labels_zero_full_and_errors():
    y = np.array([0, 1, 2, 1])
    noisy, flipped = flip_labels(y, 0.0, n_classes=3, seed=0)
    np.testing.assert_array_equal(noisy, y)
    assert not flipped.any()
    noisy[0] = 2
    assert y[0] == 0  # a copy, not a view
    noisy, flipped = flip_labels(y, 1.0, n_classes=3, seed=0)
    assert flipped.all() and np.all(noisy != y)
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(MemlabInputError, match="fraction"):
            flip_labels(y, bad, n_classes=3, seed=0)
    with pytest.raises(MemlabInputError, match="n_classes"):
        flip_labels(y, 0.5, n_classes=2, seed=0)


# --------------------------------------------------------------------------- sizes


def test_resolve_size_counts_and_fractions():
    assert resolve_size(1, 500) == 1
    assert resolve_size(500, 500) == 500
    assert resolve_size(np.int64(37), 500) == 37
    assert resolve_size(1.0, 500) == 500
    assert resolve_size(0.5, 500) == 250
    assert resolve_size(0.123, 1000) == 123
    assert resolve_size(1e-6, 500) == 1  # at least one example


@pytest.mark.parametrize("bad", [0, -3, 501, 0.0, -0.5, 1.5, 500.0, True, "10", None])
def test_resolve_size_errors(bad):
    with pytest.raises(MemlabInputError) as e:
        resolve_size(bad, 500, key="train_sizes")
    msg = str(e.value)
    assert "train_sizes" in msg
    assert "500" in msg


# --------------------------------------------------------------------------- balanced subsets


@pytest.mark.parametrize(
    "n_pool, size, replicas",
    [(100, 50, 8), (100, 30, 7), (10, 3, 5), (1500, 700, 128), (50, 1, 3), (20, 19, 9)],
)
def test_balanced_subsets_row_and_column_sums(n_pool, size, replicas):
    m = balanced_subsets(n_pool, size, replicas, seed=0)
    assert m.shape == (replicas, n_pool)
    assert m.dtype == bool
    np.testing.assert_array_equal(m.sum(axis=1), size)
    cols = m.sum(axis=0)
    assert cols.sum() == replicas * size
    assert cols.max() - cols.min() <= 1
    if replicas * size % n_pool == 0:
        assert cols.min() == cols.max() == replicas * size // n_pool
    if replicas > 1 and size < n_pool:
        assert len({row.tobytes() for row in m}) > 1


def test_balanced_subsets_deterministic_and_seeded():
    a = balanced_subsets(200, 80, 16, seed=5)
    np.testing.assert_array_equal(a, balanced_subsets(200, 80, 16, seed=5))
    assert not np.array_equal(a, balanced_subsets(200, 80, 16, seed=6))


def test_balanced_subsets_full_pool_all_true():
    assert balanced_subsets(40, 40, 6, seed=0).all()


def test_balanced_subsets_looks_random():
    # Balance fixes the mean pairwise overlap; its spread should match independent random subsets
    # (hypergeometric sd ~7.9 here), not a structured design where overlaps are 0 or 500.
    n_pool, size, replicas = 1000, 500, 32
    m = balanced_subsets(n_pool, size, replicas, seed=1).astype(int)
    off = (m @ m.T)[~np.eye(replicas, dtype=bool)]
    c = replicas * size // n_pool
    assert off.mean() == pytest.approx(n_pool * c * (c - 1) / (replicas * (replicas - 1)))
    assert 5 < off.std() < 11
    # Inclusion of neighbouring examples should be uncorrelated.
    corr = np.corrcoef(m[:, :-1].ravel(), m[:, 1:].ravel())[0, 1]
    assert abs(corr) < 0.05


def test_balanced_subsets_large_design():
    for size in (750, 701):
        m = balanced_subsets(1500, size, 128, seed=0)
        assert (m.sum(axis=1) == size).all()
        counts = m.sum(axis=0)
        assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize(
    "args, key",
    [
        ((10, 0, 3, 0), "size"),
        ((10, 11, 3, 0), "size"),
        ((10, 5, 0, 0), "replicas"),
        ((0, 1, 1, 0), "n_pool"),
        ((10, 5, 2, -1), "seed"),
    ],
)
def test_balanced_subsets_errors(args, key):
    with pytest.raises(MemlabInputError, match=key):
        balanced_subsets(*args)
