"""The model bank: replicas in blocks that a study can add to, read back as one bank."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import copy_workflow, planned_jobs, snakemake, train_regime

from memlab.analysis.bank import concat_blocks, read_runs
from memlab.data import datasets as data
from memlab.engine import runs
from memlab.io import MemlabInputError, save_npz
from memlab.plan.kinds import MLP
from memlab.plan.study import replica_blocks


def test_blocks_cover_the_replicas_in_order():
    blocks = replica_blocks(10, 4)
    assert [(b.index, b.start, b.stop) for b in blocks] == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    # More replicas add blocks; the full ones stay as they were.
    assert replica_blocks(16, 4)[:2] == blocks[:2]


def test_block_subsets_depend_on_their_replica_range_only():
    a = data.block_subsets(90, 30, range(0, 6), seed=0)
    assert (a == data.block_subsets(90, 30, range(0, 6), seed=0)).all()
    assert a.shape == (6, 90) and (a.sum(1) == 30).all()
    counts = a.sum(0)
    assert counts.min() == counts.max() == 2  # balanced within the block: 6 x 30 / 90
    b = data.block_subsets(90, 30, range(6, 12), seed=0)
    assert not (a == b).all()  # the next block draws its own subsets
    assert not (a == data.block_subsets(90, 30, range(0, 6), seed=1)).all()


def _block(replicas, n=5, shared_label=None):
    r = len(replicas)
    rng = np.random.default_rng(replicas[0])
    return {
        "replica": np.asarray(replicas),
        "pool_loss": rng.random((r, n)).astype(np.float32),
        "train_mask": rng.random((r, n)) < 0.5,
        "pool_label": np.arange(n) if shared_label is None else shared_label,
        "perturbation": np.array(["blur"]),
    }


def test_a_bank_concatenates_blocks_in_replica_order():
    b0, b1 = _block([0, 1]), _block([2, 3, 4])
    bank = concat_blocks([b1, b0])  # any order of files: the bank is in replica order
    assert bank["replica"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(
        bank["pool_loss"], np.concatenate([b0["pool_loss"], b1["pool_loss"]])
    )
    np.testing.assert_array_equal(bank["pool_label"], np.arange(5))  # shared: kept once
    with pytest.raises(MemlabInputError, match="disagree on 'pool_label'"):
        concat_blocks([b0, _block([2], shared_label=np.zeros(5, int))])
    with pytest.raises(MemlabInputError, match="a replica is in two blocks"):
        concat_blocks([b0, _block([1])])


def test_read_runs_groups_block_files_by_run(tmp_path, monkeypatch):
    files = []
    for run in ("d/noise0/n5/m-w8/erm", "d/noise0/n5/knn-k1/memory"):
        for i, replicas in enumerate(([0, 1], [2])):
            path = tmp_path / "results/runs" / run / f"block{i}" / "evaluation.npz"
            path.parent.mkdir(parents=True)
            save_npz(path, **_block(replicas))
            files.append(f"results/runs/{run}/block{i}/evaluation.npz")
    monkeypatch.chdir(tmp_path)
    out = list(
        read_runs(files, {"d/noise0/n5/m-w8/erm": "mlp", "d/noise0/n5/knn-k1/memory": "knn"})
    )
    assert [name for name, _ in out] == ["mlp", "knn"]
    assert all(bank["replica"].tolist() == [0, 1, 2] for _, bank in out)


@pytest.mark.parametrize(
    "settings, same",
    [({}, True), ({"early_stopping": True}, True), ({"dropout": 0.3}, False)],
    ids=["memorize", "early_stopping", "dropout"],
)
def test_one_block_or_four_train_the_same_replicas(digits_split, settings, same):
    """The same replicas on the same subsets, as 1 block of 4 or 4 blocks of 1: every seed of a
    replica (init, batch order, validation carve) derives from its number, so they train to the
    same weights up to the rounding of a batched matmul over another stack size (bit-identical
    results hold for one block layout, whatever the cores or the executor); only dropout
    differs, since each stack of replicas draws its masks from one stream of its own."""
    split = digits_split
    regime = train_regime(max_epochs=4, batch_size=32, **settings)
    members = data.balanced_subsets(len(split.y_pool), 60, 4, seed=3)
    flipped = np.zeros(len(split.y_pool), bool)
    variant = MLP("mlp", 8, 1)

    def train(rows):
        return runs.train_run(
            split, split.y_pool, flipped, members[rows], variant, regime, seed=0,
            replicas=rows, log=lambda s: None,
        )  # fmt: skip

    state, arrays, _ = train([0, 1, 2, 3])
    for r in range(4):
        s_r, a_r, _ = train([r])
        assert a_r["replica"].tolist() == [r]
        np.testing.assert_array_equal(a_r["train_mask"][0], arrays["train_mask"][r])
        np.testing.assert_array_equal(a_r["stop_epoch"][0], arrays["stop_epoch"][r])
        close = all(np.allclose(s_r[k][0], state[k][r], rtol=1e-5, atol=1e-5) for k in state)
        assert close == same, (r, settings)


# ------------------------------------------------------------------ the workflow grows its bank


def _bank_config(work, replicas: int, name: str) -> str:
    config = yaml.safe_load((work / "config/smoke.yaml").read_text())
    config.update(
        datasets={"gauss": {"kind": "gaussian", "n_samples": 120, "n_features": 6, "n_classes": 3}},
        sizes=[0.5],
        replicas=replicas,
        replicas_per_job=2,
        models={
            "mlp": {"kind": "mlp", "depth": 1, "widths": [8]},
            "knn": {"kind": "knn", "k": [1]},
        },
        regimes={"memorize": {}},
        perturbations={"names": ["gaussian_noise"], "severities": [1]},
    )
    (work / "config" / name).write_text(yaml.safe_dump(config))
    return f"config/{name}"


BLOCK_FILES = ("checkpoint.pt", "history.parquet", "evaluation.npz", "metrics.parquet")
TABLES = ("metrics.parquet", "memorization.parquet", "memorization_summary.csv", "membership.csv")


def _files(work):
    """Bytes and mtime of every block's files and subsets."""
    found = [*(work / "results/runs").rglob("block*/*"), *(work / "results/data").rglob("block*")]
    return {p.relative_to(work): (p.read_bytes(), p.stat().st_mtime_ns) for p in found}


@pytest.mark.e2e
def test_adding_replicas_trains_only_the_new_blocks(tmp_path):
    work = copy_workflow(tmp_path / "grown")
    small, large = _bank_config(work, 2, "small.yaml"), _bank_config(work, 4, "large.yaml")
    snakemake(work, "--configfile", small, "--cores", "2")
    before = _files(work)
    assert {p.name for p in before} >= set(BLOCK_FILES)

    plan = planned_jobs(work, "--configfile", large)
    per_block = [(rule, wc) for rule, wc in plan if "block" in wc]
    assert {rule for rule, _ in per_block} == {"subsample", "train", "evaluate"}
    assert all(wc["block"] == "1" for _, wc in per_block), per_block  # the new block only
    assert len(per_block) == 1 + 2 + 2  # its subsets, and train + evaluate of mlp and k-NN
    assert {r for r, wc in plan if "block" not in wc} == {"analyze", "figures", "summarize", "all"}

    snakemake(work, "--configfile", large, "--cores", "2")
    after = _files(work)
    assert {p: after[p] for p in before} == before  # same bytes, same mtimes
    # The analyses read the whole bank: 2 blocks of balanced halves put every example in 2 of 4.
    import pandas as pd

    scores = pd.read_parquet(work / "results/tables/memorization.parquet")
    knn = scores[scores.model == "knn-k1"]
    assert len(knn) == 90 and (knn["n_in"] == 2).all() and (knn["n_out"] == 2).all()
    assert sorted(pd.read_parquet(work / "results/tables/metrics.parquet")["replica"].unique()) == [
        0, 1, 2, 3,
    ]  # fmt: skip

    # The same 4 replicas in one run from scratch, one job at a time: identical tables. Only the
    # tables compared are asked for (all of them come from the one analyze job): the figures and
    # the findings page are made from them and compared nowhere.
    fresh = copy_workflow(tmp_path / "fresh")
    _bank_config(fresh, 4, "large.yaml")
    targets = [f"results/tables/{name}" for name in TABLES]
    snakemake(fresh, "--configfile", large, "--cores", "1", *targets)
    for name in TABLES:
        ours, theirs = (work / "results/tables" / name), (fresh / "results/tables" / name)
        assert ours.read_bytes() == theirs.read_bytes(), name
