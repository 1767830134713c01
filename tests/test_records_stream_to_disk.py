"""Records reach requests.jsonl as requests finish, not at the end of the run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def test_requests_jsonl_grows_while_the_run_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # The built-in mock at 150 ms a request, one at a time: the run lasts about 1.5 s.
    command = [sys.executable, "-m", "perfbench", "-c", "1", "-n", "10", "--mock", "ttft_ms=150,itl_ms=0", "--max-tokens", "1",
               "--no-live", "--no-plots", "--no-telemetry", "--output-dir", str(out), "--store", str(tmp_path / "store.db")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while process.poll() is None and time.monotonic() < deadline:
            path = out / "requests.jsonl"
            if path.exists():
                lines = path.read_bytes().count(b"\n")
                if not seen or lines != seen[-1]:
                    seen.append(lines)
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
    assert process.returncode == 0, process.stderr.read().decode() if process.stderr else ""
    partial = [n for n in seen if 0 < n < 10]
    assert len(partial) >= 3, seen  # several counts between none and all were on disk mid-run
    assert seen == sorted(seen)
