"""Example data files made from tables every install has offline (scikit-learn's bundled ones).

``config/tabular.yaml`` reads ``data/breast_cancer.csv``; the rule ``example_data``
(workflow/rules/data.smk) writes it where it is missing, so the study runs from a fresh clone
with no other step. Only a missing file at an example's own path is ever written: a user's file
at that path, or any file at another path, is never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from memlab.io import save_text

if TYPE_CHECKING:
    import pandas as pd

EXAMPLE_DIR = "data"  # relative to the project directory, as a config's `path`
LABEL_COLUMN = "diagnosis"


def _breast_cancer() -> pd.DataFrame:
    """Wisconsin diagnostic breast cancer: 569 tumours, 30 numeric features, label column
    `diagnosis` (malignant or benign), as scikit-learn bundles it (no download)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    names = bunch.target_names[bunch.target.to_numpy()]
    return bunch.data.assign(**{LABEL_COLUMN: names})


EXAMPLES: Mapping[str, Callable[[], pd.DataFrame]] = MappingProxyType(
    {"breast_cancer": _breast_cancer}
)


def example_path(name: str) -> str:
    """Where example ``name``'s CSV lives, relative to the project directory."""
    return f"{EXAMPLE_DIR}/{name}.csv"


def example_named_by(path: str | Path, root: str | Path = ".") -> str | None:
    """The example whose file ``path`` (relative to ``root``, or absolute) is, else None."""
    target = Path(path) if Path(path).is_absolute() else Path(root) / path
    for name in EXAMPLES:
        if target.resolve() == (Path(root) / example_path(name)).resolve():
            return name
    return None


def missing_examples(root: str | Path = ".") -> list[str]:
    """The examples whose files are not in ``root`` (the ones rule example_data may write)."""
    return [name for name in EXAMPLES if not (Path(root) / example_path(name)).exists()]


def example_frame(name: str) -> pd.DataFrame:
    """Example ``name``'s table, exactly what :func:`write_example` writes."""
    return EXAMPLES[name]()


def write_example(name: str, path: str | Path) -> int:
    """Write example ``name`` as CSV to ``path`` (atomically); returns its rows."""
    frame = example_frame(name)
    # float64 written with repr precision: reading it back gives the same numbers.
    save_text(path, frame.to_csv(index=False))
    return len(frame)
