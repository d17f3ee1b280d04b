"""The layout rules (issue 14), checked on the source: ``solver/`` is a pure library (no gRPC, no
process pools, no Ray, no matplotlib, at any depth of its modules), its modules import each other
without a cycle, and the planner's modules stay readable on their own (≤ 400 lines each)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
SOLVER = REPO / "solver"
#: Packages solver/ must never import (the service, the batch runner and plots live outside).
FORBIDDEN = ("grpc", "google.rpc", "service", "moeplan", "multiprocessing", "ray", "matplotlib",
             "concurrent.futures")
PLANNER_MAX_LINES = 400


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Modules ``path`` imports (``from x import y`` counts as ``x`` and ``x.y``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else \
        _module_name(path).rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


SOURCES = sorted(SOLVER.rglob("*.py"))
MODULES = {_module_name(p): p for p in SOURCES}


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(REPO)) for p in SOURCES])
def test_solver_is_a_pure_library(path: Path) -> None:
    bad = sorted(m for m in _imports(path, top_level_only=False)
                 if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_no_import_cycle_among_solver_modules() -> None:
    """Module-level imports between solver modules form a DAG (imports inside functions are the
    deliberate way to defer a heavy dependency and are not edges here)."""
    graph = {name: {m for m in _imports(path, top_level_only=True) if m in MODULES and m != name}
             for name, path in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("path", sorted((SOLVER / "planner").glob("*.py")),
                         ids=lambda p: p.name)
def test_planner_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= PLANNER_MAX_LINES, f"{path.name}: {lines} lines"


def test_the_check_sees_imports() -> None:
    """The scanner is not vacuous: it finds the imports a module really has."""
    found = _imports(SOLVER / "planner" / "search.py", top_level_only=True)
    assert "ortools.sat.python.cp_model" in found or "ortools.sat.python" in found
    assert "solver.planner.candidates" in found
