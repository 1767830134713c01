"""What a server (or a file, or the history store) says is data: it never leaks the key, never
acts on the terminal, and is never read as rich markup.

Every test runs the real command line against a raw server on 127.0.0.1 (tests/raw_server.py)
or the built-in mock, and reads what a user would: stdout, stderr and the run's files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from raw_server import RawServer, chat_answer, error_response, sse_response

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-Zq7Secret0123456789"  # no 6-character start of it may reach any output
CUT = 300  # where a record's error text is cut (perfbench.core.redact.ERROR_TEXT_CHARS)
FINISH_CUT = 40  # where a finish reason is cut


def perfbench(tmp_path: Path, *argv: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with the user's home out of reach."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "perfbench", *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout_s, env=env)


# ---------------------------------------------------------------- 1. secrets survive no cut


def _across(cut: int, prefix: str) -> list[int]:
    """Where the key starts: from 10 characters before it reaches the cut to 10 after the cut, for
    a cut counted in the server's words and one counted in the whole line (after ``prefix``)."""
    return list(range(cut - len(prefix) - len(KEY) - 10, cut + 11))


HTTP_STARTS = _across(CUT, "HTTP 500: ")
EVENT_STARTS = _across(CUT, "error event: ")
FINISH_STARTS = _across(FINISH_CUT, "")
KINDS = [("http", s) for s in HTTP_STARTS] + [("event", s) for s in EVENT_STARTS] + [("finish", s) for s in FINISH_STARTS]


def _echoing(start: int, size: int) -> str:
    return "x" * start + KEY + "y" * (size - start)


def echo_across_the_cut(index: int, headers: dict[str, str]) -> bytes:
    """Request k echoes the key at the k-th place around a cut: in an HTTP 500 body, an error event or a finish reason."""
    assert headers.get("authorization") == f"Bearer {KEY}"  # the key is sent, and so known to the server
    kind, start = KINDS[index % len(KINDS)]
    if kind == "http":
        return error_response(500, _echoing(start, 2 * CUT))
    if kind == "event":
        return sse_response({"error": {"message": _echoing(start, 2 * CUT)}})
    return chat_answer(finish_reason=_echoing(start, FINISH_CUT))


def _outputs(run: subprocess.CompletedProcess[str], run_dir: Path) -> dict[str, str]:
    files = {name: (run_dir / name).read_text(encoding="utf-8") for name in ("requests.jsonl", "summary.json", "report.html")}
    return {"stdout": run.stdout, "stderr": run.stderr, **files}


def test_a_key_echoed_across_the_cut_of_an_error_text_reaches_no_output(tmp_path):
    run_dir = tmp_path / "run"
    with RawServer(echo_across_the_cut) as server:
        run = perfbench(tmp_path, "--url", server.url, "--api-key", KEY, "-n", str(len(KINDS)), "-c", "8",
                        "--no-preflight", "--no-live", "--no-telemetry", "--output-dir", str(run_dir),
                        "--store", str(tmp_path / "store.sqlite"))
    assert run.returncode == 0, run.stderr[-3000:]
    outputs = _outputs(run, run_dir)
    for name, text in outputs.items():
        assert KEY[:6] not in text, (name, text[max(0, text.find(KEY[:6]) - 80):][:200])
    assert "HTTP 500: xxxx" in outputs["requests.jsonl"] and "error event: xxxx" in outputs["requests.jsonl"]
    assert "xxx***yyy" in outputs["requests.jsonl"]  # a key wholly before the cut is masked where it was


def test_a_pre_flight_error_echoing_the_key_across_the_cut_leaves_no_trace_on_stderr(tmp_path):
    for offset in (-12, -7, -1):  # the cut falls 12, 7 and 1 characters into the key
        start = CUT - len("HTTP 500: ") - len(KEY) - offset
        with RawServer(lambda index, headers: error_response(500, _echoing(start, 2 * CUT))) as server:
            run = perfbench(tmp_path, "--url", server.url, "--api-key", KEY, "-n", "1", "--no-live", "--no-telemetry",
                            "--output-dir", str(tmp_path / f"run{offset}"), "--store", str(tmp_path / "store.sqlite"))
        assert run.returncode == 3, run.stderr
        assert "pre-flight request failed (http_500): HTTP 500: xxxx" in run.stderr
        assert KEY[:6] not in run.stdout + run.stderr, run.stderr
