"""The live dashboard: what it shows while a step runs, at 80 columns, and that it stays off without a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from perfbench.engine.engine import UNCAPPED
from perfbench.engine.live import LiveCounters
from perfbench.results.records import OK, RequestRecord
from perfbench.report.terminal import LiveDisplay


def _ok(ttft_ms: float, gap_ms: float) -> RequestRecord:
    t0 = 1_000_000
    times = tuple(t0 + int((ttft_ms + k * gap_ms) * 1e6) for k in range(20))
    return RequestRecord(1, 0, False, OK, 200, None, t0, t0, times[-1], times, (1,) * 20, 5, 20, "usage")


def _lines(display: LiveDisplay, console: Console) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=console.width, color_system=None).print(display._render())
    return out.getvalue().splitlines()


def test_a_step_shows_progress_eta_failures_and_running_percentiles() -> None:
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    counters = LiveCounters()
    display = LiveDisplay(console, counters, steps=5, enabled=True)
    with display:
        assert display.active and counters.track_recent
        counters.start_step(1, 200, concurrency=8)
        for k in range(99):
            counters.count(_ok(50.0 + k % 10, 5.0))
        counters.count(RequestRecord(1, 99, False, "http_429", 429, "HTTP 429", 0, 0, 1, (), (), None, None, None))
        counters.in_flight = 8
        lines = _lines(display, console)
    assert lines[0].startswith("step 2 of 5 (c=8)") and "100/200" in lines[0] and "ETA" in lines[0]
    assert "in flight 8" in lines[1] and "ok 99" in lines[1] and "failed 1 (http_429)" in lines[1]
    assert "TTFT p50 54.00 / p99 59.00 ms" in lines[2] and "ITL p99 5.00 ms" in lines[2]
    assert all(len(line) <= 80 for line in lines)


def test_a_search_names_its_probe_and_an_uncapped_open_loop_its_rate() -> None:
    console = Console(file=io.StringIO(), width=100, force_terminal=True)
    counters = LiveCounters()
    display = LiveDisplay(console, counters, steps=1, enabled=True, search=True, duration_s=10.0)
    counters.start_step(6, None, concurrency=UNCAPPED, rate_req_s=16.0)
    lines = _lines(display, console)
    assert lines[0].startswith("search probe 7 (rate=16/s)") and "ETA" in lines[0]
    assert "None" not in "".join(lines)


def test_no_terminal_no_display_and_no_samples_kept() -> None:
    counters = LiveCounters()
    with LiveDisplay(Console(file=io.StringIO(), width=80), counters, steps=1, enabled=True) as display:
        assert not display.active
        counters.count(_ok(50.0, 5.0))
    assert not counters.track_recent and not counters.recent_ttft_ms and not counters.recent_itl_ms
