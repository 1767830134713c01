"""The open-files limit: raised to the hard limit when that is enough, else the run is refused in one line.

perfbench runs as a real subprocess whose limits are lowered with ``resource.setrlimit`` before
it starts; the server is ``perfbench mock`` in its own process (its limits untouched).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from tests.mock_client import mock_process

PERFBENCH = [sys.executable, "-m", "perfbench"]
DEAD_URL = "http://127.0.0.1:9/v1/chat/completions"  # never reached: the check comes first


def with_open_files(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--url", DEAD_URL, "-c", "2000", "-n", "1"],
         "--concurrency 2000 needs about 2100 open files but the limit is 1024 (hard 1024); "
         "raise it with `ulimit -n 4096` or lower --concurrency"),
        (["--url", DEAD_URL, "-c", "1,2000", "-n", "1"],
         "--concurrency 2000 needs about 2100 open files"),
        (["--url", DEAD_URL, "--search", "concurrency", "--search-max", "3000", "--slo", "ttft_p99=100"],
         "--search-max 3000 needs about 3100 open files but the limit is 1024 (hard 1024); "
         "raise it with `ulimit -n 4096` or lower --search-max"),
        (["-c", "1000", "-n", "1"],  # the built-in mock serves every connection in the same process
         "--concurrency 1000 needs about 2100 open files"),
    ],
)  # fmt: skip
def test_a_load_beyond_the_hard_limit_is_refused_in_one_line(args, message, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [*PERFBENCH, *args, "--no-live", "--output-dir", str(out)], capture_output=True, text=True, timeout=60,
        preexec_fn=with_open_files(1024, 1024),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"perfbench: error: {message}") and result.stderr.count("\n") == 1, result.stderr
    assert not out.exists()  # refused before anything started


def test_the_soft_limit_is_raised_when_the_hard_one_allows(tmp_path):
    """400 streams at once with a soft limit of 256: without raising it most would fail (EMFILE)."""
    with mock_process("--ttft-ms", "500", "--itl-ms", "5") as mock:
        out = tmp_path / "run"
        result = subprocess.run(
            [*PERFBENCH, "--url", mock.base_url, "-c", "400", "-n", "400", "--max-tokens", "2",
             "--no-live", "--no-plots", "--no-telemetry", "--output-dir", str(out)],
            capture_output=True, text=True, timeout=120, preexec_fn=with_open_files(256, 4096),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    step = json.loads((out / "summary.json").read_text())["steps"][0]
    assert step["requests_succeeded"] == 400, step["failure_reasons"]
    assert step["concurrency_achieved"] > 256  # the streams really were open together
