"""The study config's validation, with messages a person can act on.

The schema (``workflow/schemas/config.schema.yaml``) is the single source of allowed keys and
defaults. :func:`check_config` turns the first schema violation into one sentence that names the
key, what was found and what is allowed; :func:`memlab.plan.study.plan_study` then resolves what
needs the data (pool sizes, fractions of the pool, image-only models) before any job runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from memlab.io import MemlabInputError
from memlab.plan.study import MEMORY_REGIME


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
    return f"{'an' if kind[:1] in tuple('aeiou') else 'a'} {kind} {' and '.join(bits)}".strip()


def _message(err: jsonschema.ValidationError) -> str:
    where = _where(err.absolute_path)
    found = err.instance
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(found) - set(allowed))
        bad = extra[0] if extra else "?"
        if "kind" in allowed and isinstance(found, Mapping) and "kind" in found:
            return (
                f"config: {where}.{bad} does not apply to kind {found['kind']!r}; remove it "
                f"(allowed there: {', '.join(allowed)}; see config/README.md)."
            )
        close = difflib.get_close_matches(bad, allowed, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (
            f"config: unknown key {bad!r} in {where}.{hint} Allowed keys there: "
            f"{', '.join(allowed)} (see config/README.md)."
        )
    if v == "required":
        missing = next((k for k in err.validator_value if k not in found), "?")
        kind = (
            f" (kind {found['kind']!r})" if isinstance(found, Mapping) and "kind" in found else ""
        )
        about = err.schema.get("properties", {}).get(missing, {}).get("description")
        return f"config: {where}{kind} needs the key {missing!r}" + (
            f": {about}." if about else "."
        )
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
    if v in ("minItems", "maxItems") and err.schema.get("minItems") == err.schema.get("maxItems"):
        about = err.schema.get("description")
        return f"config: {where} has {len(found)} values; give exactly {err.schema['minItems']}" + (
            f" ({about})." if about else "."
        )
    if v in ("minItems", "minProperties"):
        return f"config: {where} must not be empty."
    if v in ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum"):
        return (
            f"config: {where} = {found!r} is not allowed; expected {_allowed(err.schema)}."
            + _yaml_number_hint(found)
        )
    return f"config: {where}: {err.message}."


def _yaml_number_hint(found: Any) -> str:
    """YAML 1.1 (PyYAML, Snakemake) reads ``1e-8``, without a dot, as a string: say so."""
    mantissa, e, exponent = str(found).lower().partition("e")
    try:
        float(found)
    except (TypeError, ValueError):
        return ""
    if not isinstance(found, str) or not e or "." in mantissa:
        return ""
    return f" YAML reads {found} (no dot) as text: write {float(mantissa)!r}e{exponent}."


def check_config(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """Validate against the schema; raise MemlabInputError with one clear sentence."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        # The deepest error of the first bad key is the most specific one.
        err = jsonschema.exceptions.best_match(errors)
        raise MemlabInputError(_message(err))
