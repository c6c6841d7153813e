"""Small tables as columns: a dict of equal-length numpy arrays, written to parquet by pyarrow.

Why not a DataFrame: every Snakemake job starts a fresh interpreter, and importing pandas costs
the train and evaluate jobs 0.4-0.8 s each only to build and write two small tables (the history
and the metrics; benchmarks/README.md, "Per-job fixed cost"). Their columns are built here with
numpy and written with ``pyarrow.parquet`` (~0.25 s, imported only when writing). The columns
get the dtypes pandas would infer from the same values (:func:`from_rows`, :func:`constant`), so
``pandas.read_parquet`` reads back what ``DataFrame.to_parquet`` wrote before; analyses that want
a DataFrame build one with :func:`to_frame`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from memlab.io import atomic_path

if TYPE_CHECKING:
    import pandas as pd

Columns = dict[str, np.ndarray]


def _empty() -> np.ndarray:
    # pandas makes an object column of no values; pyarrow stores it as type null, read back as
    # object: the same as an empty table written by pandas.
    return np.empty(0, object)


def constant(value: Any, n: int) -> np.ndarray:
    """A column of ``n`` copies of ``value``, the dtype pandas infers from ``[value] * n``
    (float64 from no values at all, whatever ``value``)."""
    return np.full(n, value) if n else np.empty(0, np.float64)


def from_rows(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> Columns:
    """The columns of ``rows`` (tuples of Python scalars, one per name), with the dtypes
    ``pandas.DataFrame(rows, columns=names)`` infers (ints int64, floats float64)."""
    if not rows:
        return {n: _empty() for n in names}
    return {n: np.array(values) for n, values in zip(names, zip(*rows, strict=True), strict=True)}


def concat(parts: Sequence[Mapping[str, np.ndarray]]) -> Columns:
    """The rows of ``parts`` (the same column names, in order) one after the other."""
    return {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}


def take(columns: Mapping[str, np.ndarray], index: np.ndarray) -> Columns:
    """Rows ``index`` of every column (a selection or a reordering)."""
    return {n: v[index] for n, v in columns.items()}


def to_frame(columns: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """A DataFrame of the columns (numpy strings become object columns, as pandas builds them)."""
    import pandas as pd

    return pd.DataFrame(dict(columns))


def write_parquet(path: str | os.PathLike[str], columns: Mapping[str, np.ndarray]) -> None:
    """Write the columns as a parquet file atomically (pyarrow's defaults, as pandas uses them:
    snappy; the same bytes for the same columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({n: pa.array(v) for n, v in columns.items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
