"""`perfbench ... | head`: a reader that goes away early is not an error (DESIGN.md "Exit codes").
A real perfbench process whose stdout is a pipe closed after its first line still writes its files,
records the run in the history, and exits with its verdict's code, without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from perfbench.results.store import RunStore


@pytest.mark.parametrize("slo, code", [("ttft_p99=5000", 0), ("ttft_p99=0.001", 1)])
def test_a_reader_that_leaves_after_one_line_costs_the_run_nothing(slo, code, tmp_path: Path) -> None:
    out, store = tmp_path / "run", tmp_path / "history.sqlite"
    run = subprocess.Popen(
        [sys.executable, "-m", "perfbench", "--mock", "ttft_ms=5,itl_ms=1", "-c", "1,2", "-n", "6", "--max-tokens", "4",
         "--slo", slo, "--no-telemetry", "--output-dir", str(out), "--store", str(store), "--baseline", "last"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = run.stdout.readline()  # `| head -1`: one line, then the reader is gone
        run.stdout.close()
        stderr = run.stderr.read()
        returncode = run.wait(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(timeout=10)
    assert "SIMULATED" in first
    assert returncode == code, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr and "Exception ignored" not in stderr, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"]["passed"] is (code == 0)
    assert (out / "report.html").exists() and f'data-verdict="{"PASSED" if code == 0 else "FAILED"}"' in (out / "report.html").read_text()
    with RunStore(store) as history:
        [recorded] = history.list_runs()
    assert recorded.run_dir == out.resolve() and recorded.tags["check"] == ("pass" if code == 0 else "fail")
