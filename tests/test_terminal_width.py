"""The terminal at 80 columns: no cut number, no wrapped title, a ladder of 8 steps readable, no Python None."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from perfbench.core.numbers import format_number
from perfbench.metrics import summarize_step
from perfbench.results.records import OK, RequestRecord
from perfbench.report.terminal import render_summary

LONG_URL = "http://inference-gateway.internal.example.com:8443/openai/deployments/llama-70b/v1/chat/completions"


def _step(concurrency: int | None, rate: float | None, scale: float) -> dict:
    records = [
        RequestRecord(0, i, False, OK, 200, None, 0, 0, int(scale * 9e9), (int(scale * 1e9), int(scale * 2e9)), (1, 1), 12345, 2, "usage")
        for i in range(5)
    ]
    return summarize_step(records, concurrency=concurrency, rate_req_s=rate, requests_expected=5).to_dict()


def _render(width: int, steps: list[dict]) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False)
    render_summary(console, {"target": {"url": LONG_URL, "api": "openai-chat", "model": "llama-70b"}, "steps": steps})
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 100, 160])
def test_eight_steps_and_a_long_url_fit_without_cutting_a_number(width: int) -> None:
    steps = [_step(2**k, None, 1000.0 * (k + 1)) for k in range(7)] + [_step(None, 12.5, 3.0)]
    text = _render(width, steps)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    cells = [cell.strip() for line in lines if line[:1] in "│┃" for cell in re.split("[│┃]", line)[1:-1]]
    assert not [cell for cell in cells if cell.endswith("…") or cell.startswith("…")], "a cell was cut"
    assert all(re.fullmatch(r"[\w .,()/%=:;+-]*", cell) for cell in cells), [c for c in cells if not re.fullmatch(r"[\w .,()/%=:;+-]*", c)]
    titles = [line for line in lines if line.startswith("perfbench — ")]
    assert titles and all(line.rstrip().endswith(("llama-70b", "of 8)")) for line in titles)  # never wrapped
    for label in ["c=1", "c=64", "rate=12.5/s"]:
        assert label in text
    assert "None" not in text
    largest = max(step["latency_ms"]["max"] for step in steps)
    assert format_number(largest) in text  # the largest latency, whole


def test_a_wide_terminal_shows_every_statistic_and_the_whole_url() -> None:
    text = _render(220, [_step(4, None, 1.0)])
    assert LONG_URL in text
    header = next(line for line in text.splitlines() if "┃ count" in line)
    assert all(stat in header for stat in ("mean", "std", "min", "p50", "p90", "p95", "p99", "max"))
