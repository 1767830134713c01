"""Every module imports on its own (cycles and the layering: tests/test_layers.py, with import-linter)."""

from __future__ import annotations

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


def test_every_module_imports_on_its_own() -> None:
    # Each module first, in a fresh interpreter: an import that works only after another module was loaded fails here.
    for name in sorted(n for n in _modules() if not n.endswith("__main__")):
        done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
