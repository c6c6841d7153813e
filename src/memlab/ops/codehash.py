"""Library code as a rerun trigger: a hash of the memlab modules a rule script runs.

Snakemake reruns a job when its rule's script changes, not when a module the script imports
does. Each rule therefore carries, in ``params:``, a hash of every ``memlab`` module its script
imports, directly or through other memlab modules (imports inside functions count too). The hash
is taken over each module's syntax tree, not its bytes: an edit of comments or blank lines
changes nothing, any edit of code or docstrings reruns the rules whose scripts run it.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = "memlab"


def _runs(node: ast.AST) -> bool:
    """False for an ``if TYPE_CHECKING:`` block: its imports are for type checkers only."""
    test = getattr(node, "test", None)
    return not (isinstance(node, ast.If) and getattr(test, "id", None) == "TYPE_CHECKING")


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    for child in ast.iter_child_nodes(node):
        if _runs(child):
            yield from _walk(child)


def _version(path: Path) -> tuple[Path, int, int]:
    """A file as it is now: the key of the caches below (every rule's hash reads the same
    modules; an edited file is read again)."""
    st = path.stat()
    return path, st.st_mtime_ns, st.st_size


@cache
def _tree(version: tuple[Path, int, int]) -> ast.Module:
    return ast.parse(version[0].read_text())


@cache
def _digest(version: tuple[Path, int, int]) -> bytes:
    return hashlib.sha256(ast.dump(_tree(version)).encode()).digest()


@cache
def _imported(version: tuple[Path, int, int]) -> frozenset[str]:
    """Dotted names of the memlab modules (and candidate submodules) a file imports."""
    names: set[str] = set()
    for node in _walk(_tree(version)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return frozenset(n for n in names if n == PACKAGE or n.startswith(f"{PACKAGE}."))


def _module_file(name: str, src: Path) -> Path | None:
    base = src.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_packages(name: str) -> list[str]:
    """A module and the packages above it (importing memlab.ops.x runs memlab/__init__ too)."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def library_modules(script: Path, src: Path) -> dict[str, Path]:
    """Every memlab module ``script`` runs: module name -> file, sorted by name."""
    found: dict[str, Path] = {}
    todo = sorted(_imported(_version(script)))
    while todo:
        name = todo.pop()
        for module in _with_packages(name):
            path = _module_file(module, src)
            if path is None or module in found:
                continue
            found[module] = path
            todo.extend(sorted(_imported(_version(path))))
    return dict(sorted(found.items()))


def library_hash(script: str | Path, src: str | Path, without: tuple[str, ...] = ()) -> str:
    """sha256 over the syntax trees of the memlab modules ``script`` runs (see module doc), but
    the modules named in ``without`` (hashed per function instead: :func:`function_hash`)."""
    h = hashlib.sha256()
    for name, path in library_modules(Path(script), Path(src)).items():
        if name in without:
            continue
        h.update(name.encode() + b"\0")
        h.update(_digest(_version(path)))
    return h.hexdigest()[:16]


def _definitions(module: ast.Module) -> tuple[dict[str, ast.AST], list[ast.AST]]:
    """A module's top-level functions and classes by name, and every other top-level statement
    (imports, constants, tables of functions: the prelude every function's hash includes)."""
    defs: dict[str, ast.AST] = {}
    prelude: list[ast.AST] = []
    for node in module.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[node.name] = node
        else:
            prelude.append(node)
    return defs, prelude


def function_hash(path: str | Path, name: str) -> str:
    """sha256 over the syntax trees of the top-level function ``name`` of the module at
    ``path``, of every top-level function or class it names (transitively), and of the module's
    other top-level statements: an edit of one function changes the hash of the functions that
    reach it and no other (an edit of a constant or an import changes every hash)."""
    defs, prelude = _definitions(_tree(_version(Path(path))))
    if name not in defs:
        raise KeyError(f"{path} has no top-level function {name!r}")
    closure, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in closure:
            continue
        closure.add(current)
        used = {n.id for n in ast.walk(defs[current]) if isinstance(n, ast.Name)}
        todo.extend(sorted(used & defs.keys() - closure))
    h = hashlib.sha256()
    for node in prelude:
        h.update(ast.dump(node).encode())
    for part in sorted(closure):
        h.update(part.encode() + b"\0" + ast.dump(defs[part]).encode())
    return h.hexdigest()[:16]
