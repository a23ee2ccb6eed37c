"""The package's layout, read from its imports (``ast``): no circle, imports only point down, files written in one place.

The floors are README's "Code layout"; a module may import its own floor or any below it, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fdf_build"

#: floor of each module or subpackage, bottom (0) to top; a name not listed is a new module: give it a floor
FLOORS = {
    "records": 0, "errors": 0, "files": 0, "geometry": 0, "split": 0, "flickr": 0, "localserver": 0, "lock": 0, "storage": 0,
    "sources": 1, "fetch": 1, "decode": 1, "dedup": 1, "deadline": 1,
    "config": 2, "identity": 2, "models": 2,
    "models.stack": 3, "dataset": 3, "crop": 3, "facefilter": 3, "quality": 3,
    "privacy": 4, "card": 4,
    "shard": 5, "remote": 5,
    "distributed": 6,
    "pipeline": 7, "rehydrate": 7,
    "attributes": 8, "report": 8, "demo": 8, "features": 8, "export": 8,
    "cli": 9, "__main__": 9,
}
#: what a model may see: arrays and records (and the error types it raises), never the config, a dataset or the network
MODELS_MAY_IMPORT = ("records", "errors", "geometry", "models")
#: the calls that put a file or folder in place; only files.py makes them (zip extraction moves what zipfile wrote)
PLACING = {("os", "replace"), ("os", "rename"), ("tempfile", "mkstemp"), ("tempfile", "mkdtemp"),
           ("tempfile", "NamedTemporaryFile"), ("shutil", "move")}
PLACING_ALLOWED = {"files", "dataset.archive"}
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolved(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The module (without ``fdf_build.``) an ``ImportFrom`` of module ``name`` reads from; None outside the package."""
    parts = name.split(".") if name else []
    package = parts if path.name == "__init__.py" else parts[:-1]
    if node.level:
        return ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    if node.module and node.module.split(".")[0] == "fdf_build":
        return node.module.partition(".")[2]
    return None


def defined_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level (inside top-level if/try blocks too)."""
    names, body = set(), list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.If, ast.Try)):
            body += node.body + node.orelse + getattr(node, "finalbody", []) + [
                n for h in getattr(node, "handlers", []) for n in h.body]
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign):
            names |= {n.id for target in node.targets for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules ``name`` imports, anywhere in it (a function-level import counts too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = resolved(name, path, node)
            if target is None:
                continue
            for alias in node.names:  # `from . import x`: x is a module when the package has one of that name
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            found |= {a.name.partition(".")[2] for a in node.names if a.name.split(".")[0] == "fdf_build"}
    found.discard("")
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items() if name}


def floor(name: str) -> int:
    for k in range(name.count(".") + 1, 0, -1):
        prefix = ".".join(name.split(".")[:k])
        if prefix in FLOORS:
            return FLOORS[prefix]
    raise AssertionError(f"fdf_build.{name} has no floor: add it to FLOORS here and to README's Code layout")


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    state, stack = {}, []

    def visit(node) -> list[str]:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_graph_is_read_from_the_code():
    edges = graph()
    # known edges, so that a reader that finds nothing cannot pass the tests below
    assert {"shard", "distributed", "privacy.removal", "dataset.writer"} <= edges["pipeline"]
    assert "shard" in edges["distributed"] and "pipeline" not in edges["distributed"]
    assert "cli.InputError" not in edges["cli.search"] and "cli" in edges["cli.search"]


def test_every_import_of_the_package_resolves():
    """Function-level imports too, which only fail when their function runs: each names a module or what it defines."""
    mods = modules()
    defined = {name: defined_names(path) for name, path in mods.items()}
    broken = []
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (target := resolved(name, path, node)) is not None:
                for alias in node.names:
                    sub = f"{target}.{alias.name}" if target else alias.name
                    if target not in defined or (sub not in mods and alias.name not in defined[target]):
                        broken.append(f"{name}:{node.lineno} from {target or 'fdf_build'} import {alias.name}")
    assert broken == []


def test_no_import_circle():
    assert find_cycle(graph()) == []


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_imports_only_point_down():
    upward = [f"{name} (floor {floor(name)}) imports {dep} (floor {floor(dep)})"
              for name, deps in graph().items() for dep in sorted(deps) if floor(dep) > floor(name)]
    assert upward == []


def test_dataset_never_imports_privacy():
    assert [(n, d) for n, deps in graph().items() if n.startswith("dataset") for d in deps
            if d.startswith("privacy")] == []


def test_models_see_arrays_and_records_only():
    wrong = [(name, dep) for name, deps in graph().items()
             if name.startswith("models") and name != "models.stack"
             for dep in deps if dep.split(".")[0] not in MODELS_MAY_IMPORT]
    assert wrong == []


def test_only_files_puts_files_in_place():
    calls = []
    for name, path in modules().items():
        if name in PLACING_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and (node.func.value.id, node.func.attr) in PLACING):
                calls.append(f"{name}:{node.lineno} {node.func.value.id}.{node.func.attr}")
    assert calls == []


def test_no_module_over_450_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert len(sizes) > 40 and max(sizes.values()) > 300  # the package, not an empty folder
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_loader_has_a_short_path():
    import fdf_build
    from fdf_build.dataset.loader import FDF256Dataset

    assert fdf_build.FDF256Dataset is FDF256Dataset
    with pytest.raises(AttributeError):
        fdf_build.NoSuchThing
