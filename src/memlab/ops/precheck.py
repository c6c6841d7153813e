"""The YAML pre-check of ``./run.sh study``: a syntax error named by file, line and column.

Snakemake's own loader only says "Config file is not valid JSON or YAML", without the file, and
it runs before any Snakefile code, so ``./run.sh`` reads every ``--configfile`` here first.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from memlab.io import MemlabInputError


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; a syntax error names the file, line and column."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MemlabInputError(f"config file {path} not found.") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MemlabInputError(
            f"config file {path} is not valid YAML{where}: {problem}. Check the brackets and "
            "quotes there, and indent with spaces, never tabs; config/README.md lists every key."
        ) from None
    if not isinstance(config, dict):
        raise MemlabInputError(
            f"config file {path} holds a {type(config).__name__}, not a mapping of keys such as "
            "'datasets:' and 'models:'; see config/config.yaml for the layout."
        )
    return config


def config_files(argv: list[str]) -> list[str]:
    """The files given to Snakemake with ``--configfile``/``--configfiles`` in ``argv``."""
    files, taking = [], False
    for arg in argv:
        if arg in ("--configfile", "--configfiles"):
            taking = True
        elif arg.startswith(("--configfile=", "--configfiles=")):
            files.append(arg.split("=", 1)[1])
            taking = False
        elif taking and not arg.startswith("-"):
            files.append(arg)
        else:
            taking = False
    return files


def main(argv: list[str]) -> int:
    """``python -m memlab.ops.precheck SNAKEMAKE_ARGS...``: read the config files they name."""
    try:
        for path in config_files(argv):
            read_config_file(path)
    except MemlabInputError as err:
        print(f"memlab: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
