"""A run in which every request failed is exit 3 with one line saying why (after its files are written)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from aiohttp import web

from perfbench.analysis import every_request_failed

PERFBENCH = [sys.executable, "-m", "perfbench"]


async def _perfbench(*args: str, timeout_s: float = 90) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *PERFBENCH, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except asyncio.TimeoutError:
        process.kill()  # only the process this test started
        await process.wait()
        raise
    return process.returncode, out.decode(), err.decode()


async def test_every_request_answered_404_is_exit_3_with_the_reason_count_and_server_text(aiohttp_server, tmp_path: Path):
    async def not_found(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"no route {request.path}"}}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    server = await aiohttp_server(app, host="127.0.0.1")
    out = tmp_path / "run"
    code, stdout, stderr = await _perfbench(
        "--url", f"http://127.0.0.1:{server.port}/v1/chat/completions", "-c", "2,3", "-n", "5,7", "--max-tokens", "4",
        "--no-preflight", "--no-live", "--no-telemetry", "--output-dir", str(out),
    )  # fmt: skip
    assert code == 3, stderr
    assert len(stderr.splitlines()) == 1, stderr
    [line] = stderr.splitlines()  # one line, no traceback
    assert line.startswith("perfbench: error: every request failed: http_404 (12): HTTP 404"), line
    assert "no route /v1/chat/completions" in line  # the server's own words
    # summary.json and the report came first, with the failures in them
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert [(s["requests_failed"], s["failure_reasons"]) for s in steps] == [(5, {"http_404": 5}), (7, {"http_404": 7})]
    assert "no route /v1/chat/completions" in steps[0]["failure_examples"]["http_404"]
    assert "no route /v1/chat/completions" in (out / "report.html").read_text()
    assert "http_404" in stdout  # the terminal's failure table


async def test_a_run_with_some_successes_is_not_exit_3(tmp_path: Path):
    code, _, stderr = await _perfbench(
        "-n", "20", "--max-tokens", "4", "--mock", "ttft_ms=0,itl_ms=0,http_error_fraction=0.5",
        "--no-preflight", "--no-live", "--no-telemetry", "--no-plots", "--output-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert code == 0, stderr
    assert "every request failed" not in stderr


def _step(succeeded: int, reasons: dict[str, int], examples: dict[str, str | None] | None = None) -> dict:
    return {"requests_succeeded": succeeded, "failure_reasons": reasons, "failure_examples": examples or {}}


def test_the_line_names_the_most_common_reason_over_all_steps():
    steps = [
        _step(0, {"http_429": 3, "timeout": 2}, {"http_429": "HTTP 429: slow\ndown", "timeout": None}),
        _step(0, {"timeout": 4}, {"timeout": "no answer in 5 s"}),
    ]
    # timeout: 6 over both steps beats http_429: 3; its text is the first one there is
    assert every_request_failed(steps) == "every request failed: timeout (6): no answer in 5 s"
    assert every_request_failed([_step(0, {"b": 2, "a": 2})]) == "every request failed: a (2)"  # a tie, no text
    assert every_request_failed([steps[0], _step(1, {})]) is None  # one success is enough
    assert every_request_failed([_step(0, {})]) is None  # nothing finished
    assert every_request_failed([]) is None
    assert every_request_failed([_step(0, {"http_429": 1}, {"http_429": "HTTP 429: slow\ndown"})]) == (
        "every request failed: http_429 (1): HTTP 429: slow down"  # one line, always
    )
