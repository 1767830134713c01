"""The layering of DESIGN.md "Packages", as import-linter contracts in setup.cfg: kept by the code, and able to fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the perfbench package found in ``root`` (that folder first on the import path)."""
    command = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(command), "--no-cache", "--no-logo", str(root / "setup.cfg")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_package_keeps_every_layering_contract() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "4 kept, 0 broken" in done.stdout


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    shutil.copytree(ROOT / "perfbench", tmp_path / "perfbench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    path = tmp_path / "perfbench" / module
    path.write_text(path.read_text() + f"\n{line}\n")
    return tmp_path


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    done = _lint_imports(_copy_with(tmp_path, "results/records.py", "from perfbench.metrics import METRICS  # upward"))
    assert done.returncode == 1
    assert "perfbench.results is not allowed to import perfbench.metrics" in done.stdout


def test_a_type_only_import_closing_a_cycle_breaks_it(tmp_path: Path) -> None:
    line = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from perfbench.workload.trace import Trace"
    done = _lint_imports(_copy_with(tmp_path, "workload/prompts.py", line))  # trace imports prompts
    assert done.returncode == 1
    assert "no import cycle between sibling modules or packages BROKEN" in done.stdout


def test_a_server_reaching_into_the_client_breaks_it(tmp_path: Path) -> None:
    done = _lint_imports(_copy_with(tmp_path, "servers/kv_cache.py", "from perfbench.results import records"))
    assert done.returncode == 1
    assert "perfbench.servers is not allowed to import perfbench.results" in done.stdout
