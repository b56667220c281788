"""dlm/ has no import cycles: every module imports alone in a fresh interpreter, and the graph of its
imports (module level and inside functions alike) has no cycle.

    python tests/test_imports.py        # prints the graph's edges
"""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dlm"


def modules(package: Path = PACKAGE) -> list[str]:
    """Every module of the package, dotted (`dlm.generation`, `dlm.render.frames`, ...)."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the modules of the package it imports, anywhere in its code (lazy imports count too)."""
    known = set(modules(package))
    root = package.name
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        here = name if is_package else name.rpartition(".")[0]  # what a relative import is relative to
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here.split(".")[: len(here.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in known:  # `from dlm.x import y`: y is a name, dlm.x the module
                    target = target.rpartition(".")[0]
                if target and target.split(".")[0] == root and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _without_the_package_root(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The package's __init__ re-exports the front doors; `import dlm` in a module is a use of that API,
    not a dependency cycle, as long as the __init__'s own imports never come back to the module."""
    root = PACKAGE.name
    return {m: {t for t in edges if t != root} for m, edges in graph.items()}


def test_the_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_in_dlm():
    graph = import_graph()
    assert "dlm.generation" in graph and "dlm.families" in graph["dlm.generation"]
    cycle = find_cycle(_without_the_package_root(graph))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    for module, edges in graph.items():  # and no module that the package's __init__ needs imports the package
        if PACKAGE.name in edges:
            needed = _closure(graph, PACKAGE.name)
            assert module not in needed, f"{module} imports {PACKAGE.name} while `import {PACKAGE.name}` needs it"


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("group", [0, 1])
def test_every_module_imports_alone_in_a_fresh_interpreter(group):
    # two halves, so a failure names its module sooner; a __main__ module runs its program when imported
    names = [name for name in modules() if not name.endswith(".__main__")][group::2]

    def run(name: str) -> tuple[str, int, str]:
        done = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        return name, done.returncode, done.stderr[-2000:]

    with ThreadPoolExecutor(max_workers=2) as pool:
        failed = [(n, err) for n, code, err in pool.map(run, names) if code != 0]
    assert not failed, "\n\n".join(f"import {n} failed:\n{err}" for n, err in failed)


if __name__ == "__main__":
    for module, edges in sorted(import_graph().items()):
        print(f"{module} -> {', '.join(sorted(edges)) or '(nothing in dlm)'}")
