"""No import cycle inside ``locret``: every import between its modules, at module level or inside a function,
goes one way (a lazy import only hides a cycle)."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import locret

ROOT = Path(locret.__file__).parent


def module_name(path: Path) -> str:
    parts = ["locret", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_locret_modules(path: Path, modules: set[str]) -> set[str]:
    """The ``locret`` modules ``path`` imports (a package's ``__init__`` counts as the package)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in modules and c != name}
    return found


def test_locret_has_no_import_cycle():
    paths = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    # A package's __init__ importing its own submodules is how packages work; what must not happen is a
    # submodule importing back a module that (transitively) imports it.
    graph = {
        module_name(p): {
            m for m in imported_locret_modules(p, modules) if not module_name(p).startswith(m + ".")
        }
        for p in paths
    }
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None
    assert "locret.prefill" in graph["locret.models.base"]
    assert not any(m.startswith("locret.models") or m == "locret.generation" for m in graph["locret.prefill"])
