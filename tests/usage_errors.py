"""Run ``python -m perfbench SUB ...`` in a child process and check bad usage is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def assert_one_line_usage_error(*argv: str, expect: str = "") -> str:
    """The stderr line of ``perfbench *argv``, after checking: exit 2, one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "perfbench", *argv], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("perfbench: error: ") and "Traceback" not in result.stderr, result.stderr
    assert f"see 'perfbench {argv[0]} --help'" in lines[0], lines[0]
    assert expect in lines[0], lines[0]
    return lines[0]
