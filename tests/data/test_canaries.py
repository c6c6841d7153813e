"""Canaries (memlab.data.canaries): the split's canary rows, their subsets, label noise beside
them, and the config checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from memlab.data import datasets as data
from memlab.data.canaries import (
    DEFAULTS,
    CanarySpec,
    add_canaries,
    canary_subsets,
    check_combination,
    real_rows,
)
from memlab.io import MemlabInputError

ROOT = Path(__file__).resolve().parents[2]
SPEC = CanarySpec(per_repetition=4, repetitions=(0, 1, 4, 16), references=4096)


@pytest.fixture(scope="module")
def canary_split(digits_split) -> data.Split:
    return add_canaries(digits_split, SPEC, seed=3)


def test_canary_groups_follow_the_real_pool_unchanged(digits_split, canary_split):
    n = len(digits_split.y_pool)
    s = canary_split
    assert real_rows(s) == n
    np.testing.assert_array_equal(s.x_pool[:n], digits_split.x_pool)
    np.testing.assert_array_equal(s.y_pool[:n], digits_split.y_pool)
    # 4 canaries of each level; a canary of r repetitions is r identical rows, controls none.
    assert len(s.y_pool) - n == 4 * (1 + 4 + 16) == SPEC.pool_rows()
    np.testing.assert_array_equal(s.canary_repetitions, np.repeat([0, 1, 4, 16], 4))
    ids = s.pool_canary[n:]
    np.testing.assert_array_equal(np.bincount(ids, minlength=16), s.canary_repetitions)
    np.testing.assert_array_equal(s.x_pool[n:], s.canary_x[ids])
    np.testing.assert_array_equal(s.y_pool[n:], s.canary_y[ids])
    assert (s.pool_canary[:n] == -1).all()
    # Uniform noise in the pixel range, labels over every class; references the same law.
    assert s.canary_x.min() >= 0 and s.canary_x.max() <= 1 and s.canary_x.std() > 0.25
    assert s.reference_x.shape == (4096, 64) and s.reference_y.shape == (4096,)
    assert set(np.unique(s.reference_y)) == set(range(10))
    assert abs(s.reference_x.mean() - 0.5) < 0.01


def test_tabular_canaries_span_each_features_pool_range():
    ds = data.load_dataset({"kind": "gaussian", "n_samples": 200, "n_features": 3})
    split = data.make_split(ds, *data.split_pool_test(ds.y, 0.25, 0))
    s = add_canaries(split, SPEC, seed=0)
    low, high = split.x_pool.min(0), split.x_pool.max(0)
    assert (s.reference_x >= low).all() and (s.reference_x <= high).all()
    # Spread over the whole range, not the unit interval.
    assert (s.reference_x.max(0) - s.reference_x.min(0) > 0.95 * (high - low)).all()


def test_a_split_with_canaries_saves_and_loads_whole(tmp_path, digits_split, canary_split):
    data.save_split(tmp_path / "c.npz", canary_split)
    back = data.load_split(tmp_path / "c.npz")
    for name in data.CANARY_ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(canary_split, name))
    # Without canaries nothing is added: the split file is the one written before canaries.
    assert add_canaries(digits_split, None, seed=3) is digits_split
    data.save_split(tmp_path / "p.npz", digits_split)
    with np.load(tmp_path / "p.npz") as saved:
        assert not set(saved.files) & set(data.CANARY_ARRAYS)
    assert data.load_split(tmp_path / "p.npz").pool_canary is None


@pytest.mark.parametrize("replicas", [range(0, 4), range(4, 10)])
def test_subsets_keep_groups_whole_and_hold_half_of_each_level(canary_split, replicas):
    s = canary_split
    n = real_rows(s)
    members = canary_subsets(s, replicas, seed=0)
    ids = s.pool_canary[n:]
    assert members.shape == (len(replicas), len(ids))
    per_canary = np.zeros((len(replicas), 16), int)
    for i in range(16):
        rows = members[:, ids == i]
        if rows.size:  # the rows of one group: in or out together
            assert (rows == rows[:, :1]).all()
            per_canary[:, i] = rows[:, 0]
    reps = s.canary_repetitions
    for level in (1, 4, 16):
        # Every replica holds exactly half of the level's canaries...
        assert (per_canary[:, reps == level].sum(1) == 2).all()
        # ...and each canary is in half of the replicas (within one), so both in and out.
        held = per_canary[:, reps == level].sum(0)
        assert held.min() >= len(replicas) // 2 and held.max() <= -(-len(replicas) // 2)
    # Equal rows per replica (the engine needs them), and controls are no pool rows at all.
    assert len(set(members.sum(1))) == 1 and members.sum(1)[0] == 2 * (1 + 4 + 16)
    assert not np.isin(np.flatnonzero(reps == 0), ids).any()


def test_subsets_depend_on_the_block_not_on_the_study(canary_split):
    a = canary_subsets(canary_split, range(4, 8), seed=0)
    np.testing.assert_array_equal(a, canary_subsets(canary_split, range(4, 8), seed=0))
    assert not np.array_equal(a, canary_subsets(canary_split, range(0, 4), seed=0))


def test_label_noise_never_flips_a_canary(digits_split, canary_split):
    n = real_rows(canary_split)
    y, flipped = data.flip_labels(canary_split.y_pool, 0.3, 10, 5, n)
    np.testing.assert_array_equal(y[n:], canary_split.y_pool[n:])
    assert not flipped[n:].any() and flipped.sum() == round(0.3 * n)
    # The real examples get the very flips they get without canaries.
    y0, flipped0 = data.flip_labels(digits_split.y_pool, 0.3, 10, 5)
    np.testing.assert_array_equal(y[:n], y0)
    np.testing.assert_array_equal(flipped[:n], flipped0)


@pytest.mark.parametrize(
    ("entry", "names"),
    [
        ({"per_repetiton": 8}, ["canaries", "per_repetiton", "per_repetition"]),
        ({"per_repetition": 3}, ["canaries.per_repetition", "even"]),
        ({"references": 100}, ["canaries.references", "4096"]),
        ({"repetitions": [1, 1]}, ["canaries.repetitions", "distinct"]),
        ("yes", ["canaries", "mapping"]),
    ],
)
def test_a_bad_canaries_entry_names_the_key(entry, names):
    with pytest.raises(MemlabInputError) as e:
        CanarySpec.from_config(entry, "mine")
    for part in ("datasets.mine", *names):
        assert part in str(e.value), part


def test_canaries_refuse_a_long_tail_and_take_the_defaults():
    with pytest.raises(MemlabInputError, match=r"datasets\.d: `canaries` and `long_tail`"):
        check_combination({"kind": "digits", "canaries": {}, "long_tail": {"head": 4}}, "d")
    spec = check_combination({"kind": "digits", "canaries": {}}, "d")
    assert spec == CanarySpec(16, (0, 1, 4, 16), 4096)
    assert check_combination({"kind": "digits"}, "d") is None


def test_the_schema_states_the_defaults_and_bounds():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["$defs"]["canaries"]["properties"]
    assert {k: v["default"] for k, v in props.items()} == dict(DEFAULTS)
    assert props["references"]["minimum"] == 4096
    assert props["per_repetition"]["multipleOf"] == 2


def test_the_config_check_and_the_plan_name_the_key(tmp_path):
    from conftest import full, smoke

    from memlab.plan.study import plan_study

    config = smoke()
    config["datasets"] = {"digits": {"kind": "digits", "canaries": {"per_repetition": 5}}}
    with pytest.raises(MemlabInputError, match=r"datasets\.digits\.canaries\.per_repetition"):
        full(config)
    # The schema cannot see a combination: planning refuses it before any job runs.
    entry = {"kind": "digits", "canaries": {}, "long_tail": {"head": 4}}
    config["datasets"] = {"digits": entry}
    with pytest.raises(MemlabInputError, match="`canaries` and `long_tail`"):
        plan_study(full(config), tmp_path)


def test_a_study_with_canaries_draws_exposure_and_keeps_them_out_of_removal(tmp_path):
    from conftest import full, smoke

    from memlab.plan.registry import study_figures
    from memlab.plan.study import plan_study

    def planned(canaries: bool):
        config = smoke()
        entry = {"kind": "digits", **({"canaries": {}} if canaries else {})}
        config |= {"datasets": {"digits": entry}, "sizes": [0.5], "replicas": 4}
        config["analysis"] = {"power": {"min_in_out": 1, "min_shadows": 2}}
        config["removal"] = {"k": [2], "replicas": 2}
        return full(config)

    study = plan_study(planned(canaries=False), tmp_path)
    assert study.removals and "exposure" not in {f.name for f in study_figures(study)}
    with pytest.raises(MemlabInputError, match="no run can choose what to remove"):
        plan_study(planned(canaries=True), tmp_path)
    config = planned(canaries=True)
    del config["removal"]
    assert "exposure" in {f.name for f in study_figures(plan_study(config, tmp_path))}
