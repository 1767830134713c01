"""The package's import graph: every module imports on its own, and no two modules import each other in a cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "perfbench"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _runtime_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """perfbench modules ``path`` imports at run time (anywhere, functions included; not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
        if path.name == "__init__.py" and isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            # A package's lazy attributes (perfbench.run, perfbench.load_run) load on first use, never
            # while a module imports the package: no edge of the import graph.
            skipped.update(id(n) for n in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("perfbench"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("perfbench"))
    return {m for m in found if m in modules}


def test_the_import_graph_has_no_cycle() -> None:
    modules = _modules()
    graph = {name: _runtime_imports(path, modules) - {name} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [name, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], cycles


def test_the_run_file_format_sits_below_what_reads_it() -> None:
    # runfiles is the hand-over between a run and everything that looks at it later: nothing it
    # reaches, directly or not, may be one of those readers.
    modules = _modules()
    reached, todo = set(), ["perfbench.results.runfiles"]
    while todo:
        for dep in _runtime_imports(modules[todo.pop()], modules) - reached:
            reached.add(dep)
            todo.append(dep)
    readers = ("perfbench.report", "perfbench.compare", "perfbench.benchmark.finish", "perfbench.commands.main", "perfbench.report.junit", "perfbench.results.store")
    assert sorted(m for m in reached if m.startswith(readers)) == []


def test_every_module_imports_on_its_own() -> None:
    # Each module first, in a fresh interpreter: an import that works only after another module was loaded fails here.
    for name in sorted(n for n in _modules() if not n.endswith("__main__")):
        done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
