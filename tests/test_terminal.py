"""perfbench.report.terminal: the summary tables, rendered to a plain-text console."""

from __future__ import annotations

import io
import re

from rich.console import Console

from perfbench.metrics import summarize_step
from perfbench.results.records import OK, RequestRecord
from perfbench.report.terminal import render_summary


def _step(failures: list[tuple[str, str | None]], concurrency: int) -> dict:
    records = [RequestRecord(0, 0, False, OK, 200, None, 0, 0, 9, (5, 9), (1, 1), 3, 2, "usage")]
    records += [
        RequestRecord(0, 1 + k, False, status, None, error, k, k, k + 9, (), (), 3, None, None)
        for k, (status, error) in enumerate(failures)
    ]
    return summarize_step(records, concurrency=concurrency, rate_req_s=None, requests_expected=len(records)).to_dict()


def _render(steps: list[dict]) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None, force_terminal=False)
    render_summary(console, {"target": {"url": "http://127.0.0.1:1/v1/chat/completions", "api": "openai-chat"}, "steps": steps})
    return out.getvalue()


def test_each_failure_reason_shows_its_counts_and_a_sample_error() -> None:
    steps = [
        _step([("http_429", "HTTP 429: rate limited [bold]x[/bold]"), ("http_429", "HTTP 429: other"), ("timeout", None)], 1),
        _step([("http_500", "HTTP 500: boom"), ("http_429", "HTTP 429: later"), ("timeout", "no answer in 5 s")], 2),
    ]
    text = _render(steps)
    table = text[text.index("Failed requests by reason"):]
    rows = {}
    for line in table.splitlines():
        if line[:1] in "│┃" and line.strip():
            cells = [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
            rows[cells[0]] = cells[1:]
    assert rows["Reason"] == ["c=1", "c=2", "Sample error"]
    # markup in a server's text is shown as written, not interpreted
    assert rows["http_429"] == ["2", "1", "HTTP 429: rate limited [bold]x[/bold]"]
    assert rows["http_500"] == ["0", "1", "HTTP 500: boom"]
    assert rows["timeout"] == ["1", "1", "no answer in 5 s"]  # the first step had no text for it


def test_no_failures_no_failure_table() -> None:
    assert "Failed requests by reason" not in _render([_step([], 1)])
