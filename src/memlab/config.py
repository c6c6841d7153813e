"""The study config: validation with messages a person can act on, and the plan of runs.

The schema (``workflow/schemas/config.schema.yaml``) is the single source of allowed keys and
defaults. :func:`check_config` turns the first schema violation into one sentence that names the
key, what was found and what is allowed; :func:`plan_study` then resolves everything that needs
the data (pool sizes, fractions of the pool, image-only models) before any job runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from memlab import data
from memlab.io import MemlabInputError

# k-NN has no training regime; its runs carry this pseudo-regime (reserved in the schema).
MEMORY_REGIME = "memory"


def load_schema(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def _where(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the top level"


def _allowed(schema: Mapping[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    bits = []
    for key, word in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in schema:
            bits.append(f"{word} {schema[key]}")
    kind = schema.get("type", "")
    return f"{'an' if kind == 'integer' else 'a'} {kind} {' and '.join(bits)}".strip()


def _message(err: jsonschema.ValidationError) -> str:
    where = _where(err.absolute_path)
    found = err.instance
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(found) - set(allowed))
        bad = extra[0] if extra else "?"
        close = difflib.get_close_matches(bad, allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (
            f"config: unknown key {bad!r} in {where}.{hint} Allowed keys there: "
            f"{', '.join(allowed)} (see config/README.md)."
        )
    if v == "required":
        return f"config: {where} is missing a required key: {err.message}."
    if v in ("pattern", "not") or (v == "allOf" and isinstance(found, str)):
        return (
            f"config: name {found!r} in {where} is not allowed. Names become file paths: "
            "use a letter then letters, digits or underscores (at most 40), and not the "
            f"reserved name {MEMORY_REGIME!r}."
        )
    if v == "oneOf" and "sizes" in where:
        return (
            f"config: {where} = {found!r} is not a training-set size. Use a count (an "
            "integer >= 1, at most the pool size) or a fraction of the pool in (0, 1]."
        )
    if v == "uniqueItems":
        return f"config: {where} lists a value twice: {found!r}."
    if v in ("minItems", "minProperties"):
        return f"config: {where} must not be empty."
    if v in ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"):
        return f"config: {where} = {found!r} is not allowed; expected {_allowed(err.schema)}."
    return f"config: {where}: {err.message}."


def check_config(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Validate against the schema; raise MemlabInputError with one clear sentence."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        # The deepest error of the first bad key is the most specific one.
        err = jsonschema.exceptions.best_match(errors)
        raise MemlabInputError(_message(err))


def noise_label(noise: float) -> str:
    """Wildcard form of a noise rate: 0 -> '0', 0.2 -> '0.2'."""
    return f"{float(noise):g}"


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset and its slice of the grid (top-level settings unless its `grid` overrides)."""

    name: str
    spec: dict[str, Any]  # what prepare needs: the dataset spec without `grid`
    n: int
    test_fraction: float
    n_pool: int
    image_shape: tuple[int, int] | None
    sizes: tuple[int, ...]
    label_noise: tuple[float, ...]
    replicas: int
    models: tuple[str, ...]  # model names (config keys), not variant ids
    regimes: tuple[str, ...]


@dataclass(frozen=True)
class Run:
    """One train job: all replicas of one (dataset, noise, size, model variant, regime)."""

    dataset: str
    noise: str
    size: int
    model: str  # variant id, e.g. "mlp-w128" or "knn-k1"
    regime: str

    @property
    def path(self) -> str:
        return f"{self.dataset}/noise{self.noise}/n{self.size}/{self.model}/{self.regime}"


@dataclass(frozen=True)
class Study:
    datasets: dict[str, DatasetInfo]
    variants: dict[str, dict[str, Any]]
    runs: tuple[Run, ...]
    notes: tuple[str, ...]


def model_variants(models: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Expand each model entry into its variants: one per width (networks) or per k (k-NN)."""
    out: dict[str, dict[str, Any]] = {}
    for name, spec in models.items():
        kind = spec["kind"]
        needs, forbidden = ({"k"}, {"widths", "depth"}) if kind == "knn" else ({"widths"}, {"k"})
        if kind == "cnn":
            forbidden = forbidden | {"depth"}
        for key in sorted(needs - set(spec)):
            raise MemlabInputError(
                f"config: models.{name} (kind {kind!r}) needs the key "
                f"{key!r}: a list of {'k values' if key == 'k' else 'widths'}."
            )
        for key in sorted(forbidden & set(spec)):
            raise MemlabInputError(
                f"config: models.{name}.{key} does not apply to kind "
                f"{kind!r}; remove it (allowed there: kind, "
                f"{', '.join(sorted(needs | ({'depth'} if kind == 'mlp' else set())))})."
            )
        if kind == "knn":
            for k in spec["k"]:
                out[f"{name}-k{k}"] = {"name": name, "kind": kind, "k": int(k)}
        else:
            for w in spec["widths"]:
                variant = {"name": name, "kind": kind, "width": int(w)}
                if kind == "mlp":
                    variant["depth"] = int(spec.get("depth", 2))
                out[f"{name}-w{w}"] = variant
    return out


def _grid_names(grid: Mapping[str, Any], key: str, known: Mapping[str, Any], name: str) -> tuple:
    chosen = grid.get(key, list(known))
    unknown = [c for c in chosen if c not in known]
    if unknown:
        raise MemlabInputError(
            f"config: datasets.{name}.grid.{key} names {', '.join(map(repr, unknown))}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not defined under `{key}`; defined: "
            f"{', '.join(known)}."
        )
    return tuple(chosen)


def plan_study(config: Mapping[str, Any], root: str | Path = ".") -> Study:
    """Resolve the study grid; data-dependent mistakes raise MemlabInputError before any job."""
    variants = model_variants(config["models"])
    notes: list[str] = []
    infos: dict[str, DatasetInfo] = {}
    for name, full_spec in config["datasets"].items():
        spec = {k: v for k, v in full_spec.items() if k != "grid"}
        grid = full_spec.get("grid", {})
        n_examples, image_shape = data.dataset_shape(spec, root, name=name)
        test_fraction = float(grid.get("test_fraction", config["test_fraction"]))
        n_pool = data.pool_size(n_examples, test_fraction)
        sizes = grid.get("sizes", config["sizes"])
        where = "sizes" if "sizes" not in grid else f"datasets.{name}.grid.sizes"
        resolved = [
            data.resolve_size(s, n_pool, key=f"{where}[{i}] (dataset '{name}')")
            for i, s in enumerate(sizes)
        ]
        infos[name] = DatasetInfo(
            name,
            spec,
            n_examples,
            test_fraction,
            n_pool,
            image_shape,
            tuple(sorted(set(resolved))),
            tuple(grid.get("label_noise", config["label_noise"])),
            int(grid.get("replicas", config["replicas"])),
            _grid_names(grid, "models", config["models"], name),
            _grid_names(grid, "regimes", config["regimes"], name),
        )
    runs: list[Run] = []
    for ds in infos.values():
        for noise in ds.label_noise:
            for size in ds.sizes:
                for vid, v in variants.items():
                    if v["name"] not in ds.models:
                        continue
                    if v["kind"] == "cnn" and ds.image_shape is None:
                        note = f"model {vid} skipped on dataset '{ds.name}': a CNN needs images."
                        if note not in notes:
                            notes.append(note)
                        continue
                    for regime in [MEMORY_REGIME] if v["kind"] == "knn" else ds.regimes:
                        runs.append(Run(ds.name, noise_label(noise), size, vid, regime))
    if not runs:
        raise MemlabInputError(
            "config: the study has no runs (every model was skipped); add an mlp or knn model."
        )
    return Study(infos, variants, tuple(runs), tuple(notes))
