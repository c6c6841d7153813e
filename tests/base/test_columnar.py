"""The train and evaluate jobs write their tables as columns through pyarrow (memlab.columnar),
without pandas: ``pandas.read_parquet`` reads back what ``DataFrame.to_parquet`` wrote before
(names, order, dtypes, values), and a rerun writes the same bytes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import checkpoint_of, train_regime

from memlab.columnar import to_frame, write_parquet
from memlab.data import datasets as data
from memlab.engine import runs
from memlab.plan.kinds import KNN, MLP, MemoryNet
from memlab.plan.study import Run, with_run, with_run_columns

RUNS = {
    "mlp_early_stopping": (MLP("mlp", 8, 1), {"early_stopping": True, "max_epochs": 8}),
    "memory_net": (MemoryNet("mem", 8, 1, None, 0.03), {"max_epochs": 4}),
    "knn": (KNN("knn", 1), None),  # no epochs: an empty history
}


def _pandas_built(columns: dict) -> pd.DataFrame:
    """The DataFrame pandas infers from the same values as Python scalars: what the jobs built
    (and wrote) before."""
    rows = list(zip(*(v.tolist() for v in columns.values()), strict=True))
    return pd.DataFrame(rows, columns=list(columns))


def _tables(split: data.Split, name: str) -> tuple[dict, dict]:
    """A real run's tables (history and metrics, as columns) and its run columns, as the
    workflow passes them (keys sorted)."""
    variant, settings = RUNS[name]
    regime = None if settings is None else dataclasses.replace(train_regime(**settings), name="r")
    members = data.balanced_subsets(len(split.y_pool), 40, 2, seed=0)
    flipped = np.arange(len(split.y_pool)) % 5 == 0  # train_clean and train_flipped rows
    state, arrays, history = runs.train_run(
        split, split.y_pool, flipped, members, variant, regime, seed=0, replicas=[3, 4],
        log=lambda s: None,
    )  # fmt: skip
    if regime is None:
        settings = {"model": variant.spec(), "settings": {}, "seed": 0, "wildcards": {}}
        checkpoint = {"state": state, "arrays": arrays, "settings": settings}
    else:
        checkpoint = checkpoint_of(state, arrays, variant, regime)
    labels = {"y_pool": split.y_pool, "flipped": flipped}
    perturbed = {("gaussian_noise", 1): split.x_test}
    _, metrics = runs.evaluate_run(checkpoint, split, labels, perturbed)
    run = Run("digits", "0.2", 40, variant, regime).columns()
    return dict(sorted(run.items())), {"history": history, "metrics": metrics}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_columns_read_back_as_the_dataframes_wrote(digits_split, tmp_path, name):
    run, tables = _tables(digits_split, name)
    assert (len(tables["history"]["epoch"]) == 0) == (name == "knn")
    for table, columns in tables.items():
        before = _pandas_built(columns)
        pd.testing.assert_frame_equal(to_frame(columns), before)  # the DataFrame API
        with_run(before, run).to_parquet(tmp_path / f"{table}-pandas.parquet", index=False)
        for again in ("", "-again"):
            write_parquet(tmp_path / f"{table}{again}.parquet", with_run_columns(columns, run))
        read = pd.read_parquet(tmp_path / f"{table}.parquet")
        pd.testing.assert_frame_equal(read, pd.read_parquet(tmp_path / f"{table}-pandas.parquet"))
        assert len(read) == len(before)
        rerun = (tmp_path / f"{table}-again.parquet").read_bytes()
        assert (tmp_path / f"{table}.parquet").read_bytes() == rerun, "not deterministic"
