"""Import arrows between the harness's parts point one way (docs/architecture.md, "Dependencies").

Every import counts, at module level or inside a function (a lazy import is still an arrow:
it only hides a cycle until the function runs). A *unit* is a sub-package (``harness/stack``)
or a top-level module (``harness/run.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "harness"
SAMPLE = HARNESS.parent / "sample_system"

#: unit -> the units it may import (besides itself); units not listed may import any unit.
ONLY: dict[str, set[str]] = {
    "errors": set(),
    "gcpause": set(),
    "workload": {"errors"},
    "history": {"errors", "gcpause"},
    "checkers": {"errors", "history", "gcpause"},
    "processes": {"errors"},
}
#: (from, to) arrows that must not exist, with the reason shown when one does.
FORBIDDEN: dict[tuple[str, str], str] = {
    ("history", "checkers"): "the history is recorded and read without judging it; `check` lives in harness/cli.py",
    ("stack", "workers"): "workers run on a stack, never the other way round (harness.workers.worker_for)",
    ("faults", "workers"): "the nemesis drives the run's workers through the object it is given",
}


def _unit(path: Path) -> str:
    rel = path.relative_to(HARNESS)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_units(path: Path) -> set[tuple[str, int]]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "harness":  # from harness import x: x is the unit
                names = [f"harness.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "harness":
                out.add((parts[1] if len(parts) > 1 else "harness", node.lineno))
    return out


def arrows() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the ``file:line`` of each import."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(HARNESS.rglob("*.py")):
        src = _unit(path)
        for dst, line in _imported_units(path):
            if dst != src:
                graph.setdefault(src, {}).setdefault(dst, []).append(f"{path.relative_to(HARNESS.parent)}:{line}")
    return graph


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_forbidden_arrow() -> None:
    graph = arrows()
    bad = [f"{a} -> {b} ({why}): {graph[a][b]}" for (a, b), why in FORBIDDEN.items() if b in graph.get(a, {})]
    assert not bad, "\n".join(bad)


def test_low_level_parts_import_only_what_they_may() -> None:
    graph = arrows()
    bad = [f"{a} -> {b}: {where}" for a, allowed in ONLY.items() for b, where in graph.get(a, {}).items()
           if b not in allowed]
    assert not bad, "\n".join(bad)


def test_nothing_inside_the_harness_imports_its_public_facade() -> None:
    # harness/__init__.py re-exports from every part; a part importing it would import them all.
    graph = arrows()
    bad = [f"{a}: {where}" for a, deps in graph.items() for b, where in deps.items() if b == "harness"]
    assert not bad, "\n".join(bad)


def test_no_cycle_between_parts() -> None:
    graph = {a: {b: w for b, w in deps.items() if b != "harness"} for a, deps in arrows().items() if a != "__init__"}
    cycles = _cycles(graph)
    detail = [" <-> ".join(c) + ": " + "; ".join(f"{a}->{b} at {graph[a][b][0]}" for a in c for b in c
                                                  if b in graph.get(a, {})) for c in cycles]
    assert not cycles, "\n".join(detail)


def test_the_checker_finds_a_cycle() -> None:
    assert _cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [["a", "b", "c"]]


def test_no_cycle_between_sample_system_modules() -> None:
    # The sample system is what users copy: its modules keep one-way arrows too (deploy ->
    # workload -> deployment; the workload's prepare never imports deploy back).
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(SAMPLE.rglob("*.py")):
        rel = path.relative_to(SAMPLE.parent).with_suffix("")
        src = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                if name.startswith("sample_system.") and name != src:
                    graph.setdefault(src, {}).setdefault(name, []).append(f"{path.name}:{node.lineno}")
    assert not _cycles(graph), _cycles(graph)
