"""The suite never reads or writes the user's home: a sample of it, run with HOME pointed at an empty folder, leaves it empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Tests that record runs in the history store (a module-scoped fixture among them: it once ran before
# the isolating fixture and wrote ~/.local/share), and a whole simulated run: plots, report.html, the mock.
SAMPLE = ["tests/test_identity.py", "tests/test_cli.py::test_simulated_run_is_labelled"]


def test_a_sample_of_the_suite_leaves_home_untouched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("XDG_")}
    env["HOME"] = str(home)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *SAMPLE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
