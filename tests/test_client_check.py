"""The client checks itself (DESIGN.md): each step's ``client`` object and verdict.

Real runs against ``perfbench mock`` in its own process on 127.0.0.1 (so the mock's work never
counts as the client's): a relaxed client is ``ok`` every time; a starved one (its event loop
blocked 20 ms of every 30, or an open-loop rate far past what one process can send) is
``client_bound`` every time. Then the rule at each limit, same-read share by hand, the search
never taking a client-bound probe as the server's limit, the terminal, report.html and compare.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from perfbench.benchmark.search import STOP_BISECTED, STOP_CLIENT_BOUND, STOP_START_FAILED, search_max_load
from perfbench.engine.engine import Engine
from perfbench.metrics import (
    CLIENT_BOUND, CLIENT_LIMITS, CLIENT_OK, ClientCheck, SendFit, StepSummary, achieved_rate_req_s, check_client,
    client_verdict, describe, same_read_share, summarize_step,
)
from perfbench.report.html import write_html_report
from perfbench.report.terminal import render_summary
from perfbench.results.client_reading import ClientReading
from perfbench.results.records import OK, RequestRecord
from tests.run_fixtures import StepSpec, write_run
from tests.test_report_verdict import Page

MS = 1_000_000  # ns per ms
RUNS = 3  # repetitions of each relaxed or starved run (benchmarks/client_check.py does 10 of each)


# ---------------------------------------------------------------- the mock in its own process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """``perfbench mock`` (TTFT 5 ms, 2 ms a token) in a process of its own; its base URL."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "perfbench", "mock", "--port", str(port), "--ttft-ms", "5", "--itl-ms", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the mock did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run(url: str, out: Path, **options: Any) -> dict[str, Any]:
    """One run in this process, up to its summary.json (no report, export or history: they come after the steps)."""
    from perfbench.benchmark.runner import execute, make_run_dir
    from perfbench.config.run_config import config_from_settings
    from perfbench.engine.live import LiveCounters

    config = config_from_settings({"url": url, "model": "m", "plots": False, "telemetry": False, "preflight": False,
                                   "live": False, **options})
    return execute(config, endpoint_url=config.url, model="m", run_dir=make_run_dir(out), counters=LiveCounters(),
                   tokenizer=None).summary


def _first_in_line() -> None:
    """Run first whenever runnable (real-time FIFO scheduling), where the system allows it: the relaxed
    client must not be starved by unrelated processes on a shared test machine, which would make it
    truly client-bound. Without the permission it runs as it is."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (AttributeError, OSError):
        pass


def _cli_run(url: str, out: Path, *args: str) -> dict[str, Any]:
    """A run of the real command line in a process of its own; its summary.json."""
    done = subprocess.run(
        [sys.executable, "-m", "perfbench", "--url", url, "--model", "m", *args, "--no-plots", "--no-live", "--no-telemetry",
         "--no-preflight", "--output-dir", str(out), "--store", str(out.parent / "store.sqlite")],
        capture_output=True, text=True, timeout=60, preexec_fn=_first_in_line,
    )
    assert done.returncode == 0, done.stderr
    return json.loads((out / "summary.json").read_text())


# ---------------------------------------------------------------- real runs


def test_a_relaxed_client_is_ok_every_time(mock_url: str, tmp_path: Path) -> None:
    # 2 requests in flight, ~35 ms each (5 ms TTFT + 15 gaps of 2 ms): most of a second of idle waiting.
    for run in range(RUNS):
        summary = _cli_run(mock_url, tmp_path / f"relaxed{run}", "-c", "2", "-n", "40", "--max-tokens", "16")
        [step] = summary["steps"]
        client = step["client"]
        assert client["verdict"] == CLIENT_OK, client
        assert client["reasons"] == []
        lag = client["loop_lag_ms"]
        assert lag["count"] >= 30  # ~100 ticks a second over a step of over half a second
        assert 0 <= lag["min"] <= lag["p50"] < CLIENT_LIMITS.loop_lag_p99_ms  # a late tick or two may pass 5 ms: no evidence
        assert 0 < client["cpu_utilization"] < CLIENT_LIMITS.cpu_utilization
        assert client["workers_cpu_utilization"] == []
        assert client["achieved_rate_req_s"] is None and client["requested_rate_req_s"] is None  # closed loop
        assert 0 <= client["same_read_share"] <= 1
        assert StepSummary.from_dict(step).client == ClientCheck.from_dict(client)


def _blocking_every(monkeypatch: pytest.MonkeyPatch, *, busy_s: float, free_s: float) -> None:
    """The engine's loop is kept busy ``busy_s`` of every ``busy_s + free_s`` while a step's load runs,
    as a client with no time to spare would be (a live display, parsing, GC on a small machine)."""
    run_load = Engine.run_load

    async def blocked(self: Engine, plan: Any) -> int:
        loop = asyncio.get_running_loop()

        def hog() -> None:
            end = time.perf_counter() + busy_s
            while time.perf_counter() < end:
                pass
            handle[0] = loop.call_later(free_s, hog)

        handle = [loop.call_later(free_s, hog)]
        try:
            return await run_load(self, plan)
        finally:
            handle[0].cancel()

    monkeypatch.setattr(Engine, "run_load", blocked)


def test_a_client_whose_loop_is_blocked_is_client_bound_every_time(mock_url: str, tmp_path: Path, monkeypatch) -> None:
    _blocking_every(monkeypatch, busy_s=0.020, free_s=0.010)
    for run in range(RUNS):
        summary = _run(mock_url, tmp_path / f"blocked{run}", concurrency=2, number=30, max_tokens=16)
        client = summary["steps"][0]["client"]
        assert client["verdict"] == CLIENT_BOUND, client
        assert client["loop_lag_ms"]["p99"] > 10  # a tick waits up to the 20 ms the loop is held
        assert any(reason.startswith("event-loop lag p99 ") and " ms > 5 ms (" in reason for reason in client["reasons"])


def test_an_open_loop_rate_past_one_process_is_client_bound_every_time(mock_url: str, tmp_path: Path) -> None:
    # 3,000 requests due within 10 ms (300,000 req/s): sending them takes one process far longer
    # (the lean transport keeps up with 30,000 req/s, the rate this test once used).
    for run in range(RUNS):
        summary = _run(mock_url, tmp_path / f"flood{run}", rate=300000.0, arrivals="constant", number=3000, max_tokens=2)
        client = summary["steps"][0]["client"]
        assert client["verdict"] == CLIENT_BOUND, client
        assert client["requested_rate_req_s"] == 300000
        assert client["achieved_rate_req_s"] < CLIENT_LIMITS.rate_share * 300000
        assert any(reason.startswith("achieved ") for reason in client["reasons"])
        assert any(reason.startswith("queue p99 ") for reason in client["reasons"])


def test_a_rate_search_never_takes_the_clients_ceiling_for_the_servers(mock_url: str, tmp_path: Path) -> None:
    summary = _run(mock_url, tmp_path / "search", search="rate", search_start=20000, search_max=40000,
                   slo={"ttft_p99": 60000}, number=400, max_tokens=2, arrivals="constant")
    search = summary["search"]
    assert search["stop_reason"] == STOP_CLIENT_BOUND
    assert search["max_passing"] is None
    assert search["probes"] == [{"load": 20000, "passed": False, "client_bound": True}]
    assert summary["steps"][0]["client"]["verdict"] == CLIENT_BOUND


# ---------------------------------------------------------------- the rule at each limit


def _verdict(**values: Any) -> tuple[str, tuple[str, ...]]:
    """The rule on these values; what is not given is not measured (and a p99 past its limit has enough evidence)."""
    measured = {"loop_lag_p99_ms": None, "late_ticks": 10, "cpu_utilization": {}, "achieved_rate_req_s": None,
                "requested_rate_req_s": None, "queue_p99_ms": None, "late_requests": 10}
    measured.update(values)
    return client_verdict(**measured)


def test_every_limit_is_as_declared() -> None:
    assert (CLIENT_LIMITS.loop_lag_p99_ms, CLIENT_LIMITS.cpu_utilization, CLIENT_LIMITS.rate_share,
            CLIENT_LIMITS.queue_p99_ms, CLIENT_LIMITS.min_over_limit) == (5.0, 0.90, 0.95, 5.0, 10)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"loop_lag_p99_ms": 5.0}, None),  # at the limit: not past it
        ({"loop_lag_p99_ms": 5.01}, "event-loop lag p99 5.01 ms > 5 ms (10 ticks over 5 ms)"),
        ({"loop_lag_p99_ms": 14.2, "late_ticks": 1234}, "event-loop lag p99 14.2 ms > 5 ms (1,234 ticks over 5 ms)"),
        ({"loop_lag_p99_ms": 14.2, "late_ticks": 9}, None),  # one short of the evidence a p99 needs
        ({"cpu_utilization": {"the client process": 0.899}}, None),
        ({"cpu_utilization": {"the client process": 0.90}}, "the client process used 90.0 % of a core ≥ 90 %"),
        ({"cpu_utilization": {"the main process": 0.2, "worker 1": 0.97}}, "worker 1 used 97.0 % of a core ≥ 90 %"),
        ({"achieved_rate_req_s": 95.0, "requested_rate_req_s": 100.0}, None),  # exactly 95 %
        ({"achieved_rate_req_s": 94.9, "requested_rate_req_s": 100.0},
         "achieved 94.9 req/s, 94.9 % of the requested 100 req/s < 95 %"),
        ({"achieved_rate_req_s": 9_000.0, "requested_rate_req_s": 20_000.0},
         "achieved 9,000 req/s, 45.0 % of the requested 20,000 req/s < 95 %"),
        ({"queue_p99_ms": 5.0}, None),
        ({"queue_p99_ms": 5.1}, "queue p99 5.1 ms > 5 ms (10 requests over 5 ms)"),
        ({"queue_p99_ms": 5.0004}, "queue p99 5.0004 ms > 5 ms (10 requests over 5 ms)"),  # enough digits to tell it from 5
        ({"queue_p99_ms": 80.0, "late_requests": 9}, None),
    ],
)
def test_the_rule_just_under_and_just_over_each_limit(values: dict[str, Any], reason: str | None) -> None:
    verdict, reasons = _verdict(**values)
    if reason is None:
        assert (verdict, reasons) == (CLIENT_OK, ())
    else:
        assert (verdict, reasons) == (CLIENT_BOUND, (reason,))


def test_nothing_measured_is_nothing_judged_and_every_reason_is_given() -> None:
    assert _verdict() == (CLIENT_OK, ())
    assert _verdict(achieved_rate_req_s=None, requested_rate_req_s=50.0) == (CLIENT_OK, ())  # too few requests for a rate
    verdict, reasons = _verdict(loop_lag_p99_ms=8.0, cpu_utilization={"the client process": 0.99},
                                achieved_rate_req_s=10.0, requested_rate_req_s=20.0, queue_p99_ms=30.0)
    assert verdict == CLIENT_BOUND
    assert [r.split()[0] for r in reasons] == ["event-loop", "the", "achieved", "queue"]


def _fit(pairs_ms: list[tuple[int, int]]) -> SendFit:
    fit = SendFit()
    for due_ms, sent_ms in pairs_ms:
        fit.add(due_ms * MS, sent_ms * MS)
    return fit


def test_achieved_rate_is_the_slope_of_due_times_against_send_times() -> None:
    on_time = [(k * 100, k * 100) for k in range(10)]  # 10 req/s, each sent when due
    assert achieved_rate_req_s(10.0, _fit(on_time)) == pytest.approx(10.0)
    behind = [(k * 100, k * 125) for k in range(10)]  # the client can send only every 125 ms: 8 req/s
    assert achieved_rate_req_s(10.0, _fit(behind)) == pytest.approx(8.0)
    # Due 0, 100, 200 ms, sent 0, 100, 250: n = 3, sums due 300, sent 350, due*sent 60,000, sent^2 72,500;
    # slope = (3 * 60,000 - 300 * 350) / (3 * 72,500 - 350^2) = 75,000 / 95,000 = 15/19.
    late_last = [(0, 0), (100, 100), (200, 250)]
    assert achieved_rate_req_s(10.0, _fit(late_last)) == pytest.approx(10 * 15 / 19)
    assert achieved_rate_req_s(10.0, _fit(late_last[::-1])) == pytest.approx(10 * 15 / 19)  # any order (chunks, workers)
    hiccup = [(k * 10, k * 10 + (40 if k == 50 else 0)) for k in range(100)]  # one request of 100 sent 40 ms late
    assert achieved_rate_req_s(100.0, _fit(hiccup)) > 0.99 * 100
    assert achieved_rate_req_s(None, _fit(behind)) is None  # closed loop
    assert achieved_rate_req_s(10.0, _fit([(5, 7)])) is None  # one request: no rate to fit


# ---------------------------------------------------------------- same-read share by hand


def _record(index: int, stamps: tuple[int, ...], *, ok: bool = True, scheduled_ns: int = 0, sent_ns: int = 0) -> RequestRecord:
    end = (stamps[-1] if stamps else sent_ns) + 1
    return RequestRecord(0, index, False, OK if ok else "cut_stream", 200, None, scheduled_ns, sent_ns, end, stamps,
                         (1,) * len(stamps), 3, len(stamps), "usage")


def test_same_read_share_counts_equal_stamps_within_a_request() -> None:
    records = [
        _record(0, (10, 10, 20, 20, 20, 30)),  # pairs: 10=10 yes, 10<20 no, 20=20 yes, 20=20 yes, 20<30 no -> 3 of 5
        _record(1, (30, 30)),  # its first stamp equals the last one before it, of another request: not counted; 1 of 1
        _record(2, (40,)),  # one package: no previous one, nothing to count
    ]
    assert same_read_share(records) == pytest.approx(4 / 6)
    assert same_read_share([_record(0, (5,)), _record(1, ())]) is None  # no package with a previous one
    assert same_read_share([_record(0, (1, 2, 3))]) == 0.0
    # In a step: succeeded records only, summed over chunks as they are read back.
    reading = ClientReading(cpu_s=0.1, wall_s=1.0, loop_lag_ns=array("q", [0, MS]))
    failed = _record(3, (50, 50, 50), ok=False)
    step = summarize_step([*records, failed], concurrency=1, rate_req_s=None, requests_expected=4, client_readings=[reading])
    assert step.client is not None and step.client.same_read_share == pytest.approx(4 / 6)


# ---------------------------------------------------------------- a step's client object


def test_readings_of_every_worker_are_pooled_and_each_process_judged() -> None:
    main = ClientReading(cpu_s=0.3, wall_s=2.0)  # the pool's parent: no timer of its own
    workers = [
        ClientReading(cpu_s=1.0, wall_s=2.0, loop_lag_ns=array("q", [1 * MS] * 99 + [9 * MS]), worker=1),
        ClientReading(cpu_s=1.9, wall_s=2.0, loop_lag_ns=array("q", [0] * 100), worker=0),
    ]
    check = check_client([main, *workers], queue_ms=np.array([0.5, 1.0]), same_read=(1, 4), requested_rate_req_s=None,
                         achieved_rate_req_s=None)
    pooled = [1.0] * 99 + [9.0] + [0.0] * 100  # 200 samples, never an average of two p99s
    assert check.loop_lag_ms == describe(pooled)
    assert check.loop_lag_ms.p99 < 5  # two workers' samples: the p99 of the pool
    assert check.cpu_utilization == pytest.approx(0.95)
    assert check.workers_cpu_utilization == pytest.approx((0.95, 0.5))  # by worker number
    assert check.same_read_share == 0.25
    assert (check.verdict, check.reasons) == (CLIENT_BOUND, ("worker 0 used 95.0 % of a core ≥ 90 %",))
    assert ClientCheck.from_dict(json.loads(json.dumps(check.to_dict()))) == check


def test_one_late_tick_in_a_short_step_is_no_evidence() -> None:
    # 16 ticks (a 160 ms step): one 6.2 ms late makes the p99 past 5 ms, but one hiccup of a busy machine decides nothing.
    def check(late: int) -> ClientCheck:
        lag = array("q", [0] * (16 - late) + [int(6.2 * MS)] * late)
        return check_client([ClientReading(cpu_s=0.02, wall_s=0.16, loop_lag_ns=lag)], queue_ms=np.zeros(12),
                            same_read=(0, 0), requested_rate_req_s=None, achieved_rate_req_s=None)

    assert check(1).loop_lag_ms.p99 > 5 and check(1).verdict == CLIENT_OK
    assert check(10).verdict == CLIENT_BOUND
    assert check(10).reasons == ("event-loop lag p99 6.2 ms > 5 ms (10 ticks over 5 ms)",)


def test_a_summary_without_client_still_loads_and_renders(tmp_path: Path) -> None:
    run = write_run(tmp_path / "old")
    summary = json.loads((run / "summary.json").read_text())
    for step in summary["steps"]:
        del step["client"]  # as a version before the check wrote it
    (run / "summary.json").write_text(json.dumps(summary))
    assert StepSummary.from_dict(summary["steps"][0]).client is None
    write_html_report(run)
    page = Page((run / "report.html").read_text(encoding="utf-8"))
    assert "Client" not in page.checks
    assert "Client-bound" not in _terminal(summary)


# ---------------------------------------------------------------- shown: terminal, report.html, compare


def _with_client(step: dict[str, Any], *, lag_ms: float, cpu: float = 0.3) -> dict[str, Any]:
    reading = ClientReading(cpu_s=cpu, wall_s=1.0, loop_lag_ns=array("q", [int(lag_ms * MS)] * 200))
    check = check_client([reading], queue_ms=np.array([0.1]), same_read=(0, 10), requested_rate_req_s=None,
                         achieved_rate_req_s=None)
    return {**step, "client": check.to_dict()}


def _bound_run(tmp_path: Path, name: str, lags_ms: tuple[float, ...] = (1.0, 14.2)) -> Path:
    """A two-step ladder (c=4, c=8) whose second step was client-bound (loop lag p99 14.2 ms)."""
    run = write_run(tmp_path / name, (StepSpec(concurrency=4), StepSpec(concurrency=8)))
    summary = json.loads((run / "summary.json").read_text())
    summary["steps"] = [_with_client(step, lag_ms=lag) for step, lag in zip(summary["steps"], lags_ms)]
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def _terminal(summary: dict[str, Any]) -> str:
    out = io.StringIO()
    render_summary(Console(file=out, width=120, color_system=None, force_terminal=False), summary)
    return out.getvalue()


def test_the_terminal_warns_of_a_client_bound_step_and_names_the_fix(tmp_path: Path) -> None:
    summary = json.loads((_bound_run(tmp_path, "bound") / "summary.json").read_text())
    text = " ".join(_terminal(summary).split())
    assert "Client-bound: in 1 of 2 steps the client, not the server, was the limit" in text
    assert "--workers N, a bigger client machine, or lower load" in text
    assert "c=8: event-loop lag p99 14.2 ms > 5 ms" in text
    assert "c=4:" not in text.split("Client-bound:")[1]  # the step that kept up is not named
    assert "CLIENT-BOUND" in text  # its column in the overview
    ok = json.loads((_bound_run(tmp_path, "ok", (1.0, 2.0)) / "summary.json").read_text())
    assert "Client-bound" not in _terminal(ok) and "CLIENT-BOUND" not in _terminal(ok)


def test_report_html_warns_without_failing_the_run(tmp_path: Path) -> None:
    run = _bound_run(tmp_path, "bound")
    write_html_report(run)
    page = Page((run / "report.html").read_text(encoding="utf-8"))
    assert page.checks["Client"] == "warn"
    assert (page.verdict, page.state) == ("PASSED", "warn")  # a warning: `passed` stands, as the exit code does
    verdict = page.text("verdict")
    assert "In 1 of 2 steps the client, not the server, was the limit" in verdict
    assert "c=8: event-loop lag p99 14.2 ms > 5 ms" in verdict
    rows = {row[0]: row[1:] for row in page.tables["steps"]}
    assert rows["client"] == ["ok", "client-bound"]
    assert rows["event-loop lag p99 (ms)"] == ["1.00", "14.20"]
    ok = _bound_run(tmp_path, "ok", (1.0, 2.0))
    write_html_report(ok)
    assert "Client" not in Page((ok / "report.html").read_text(encoding="utf-8")).checks


def test_a_comparison_names_the_client_bound_steps_of_either_run(tmp_path: Path) -> None:
    from perfbench.commands.compare import main as compare_main
    from perfbench.compare import Comparison, compare_runs

    base, new = _bound_run(tmp_path, "base"), _bound_run(tmp_path, "new", (1.0, 2.0))
    comparison = compare_runs(base, new, n_boot=50)
    assert comparison.to_dict()["client_bound"] == {"base": ["c=8"], "new": []}
    assert Comparison.from_dict(comparison.to_dict()) == comparison
    out = tmp_path / "comparison.json"
    compare_main([str(base), str(new), "--json", str(out)])
    assert json.loads(out.read_text())["client_bound"] == {"base": ["c=8"], "new": []}
    console = Console(file=io.StringIO(), width=400, color_system=None, force_terminal=False)
    from perfbench.commands.compare import render_comparison

    render_comparison(comparison, console)
    shown = console.file.getvalue()
    header = " ".join(shown[: shown.index("┏")].split())  # the table's title, above its top border
    assert header == f"perfbench compare ({comparison.confidence:.0%} CI, bootstrap by request) — CLIENT-BOUND steps: base c=8"
    write_html_report(new, comparison=comparison)
    assert Page((new / "report.html").read_text(encoding="utf-8")).checks["Baseline's client"] == "warn"


# ---------------------------------------------------------------- the search


class _Step:
    """The StepSummary fields the search reads, with a client verdict."""

    def __init__(self, throughput: float, latency_ms: float, client_bound: bool) -> None:
        self.request_throughput_req_s = throughput
        self.latency_ms = describe([latency_ms])
        verdict = CLIENT_BOUND if client_bound else CLIENT_OK
        self.client = ClientCheck(describe([]), 0.5, (), None, None, None, verdict, ("x",) if client_bound else ())


def _server(slo_limit: float, client_ceiling: float, probed: list[float]):
    """A server that meets the SLO up to ``slo_limit``, measured by a client that can drive at most ``client_ceiling``."""

    async def probe(load: float) -> _Step:
        probed.append(load)
        latency_ms = 100 if load <= slo_limit else 900
        if load > client_ceiling:  # the client's own lag inflates latency (within the SLO): it looks like queueing
            latency_ms = min(latency_ms * 4, 900)
        return _Step(throughput=min(load, client_ceiling), latency_ms=latency_ms, client_bound=load > client_ceiling)

    return probe


async def _search(slo_limit: float, client_ceiling: float, start: float = 1, max_load: float = 256) -> tuple[Any, list[float]]:
    probed: list[float] = []  # bisected down to neighbouring whole numbers (precision 1e-9)
    result = await search_max_load(_server(slo_limit, client_ceiling, probed), dimension="concurrency", start=start,
                                   max_load=max_load, precision=1e-9, passes=lambda s: s.latency_ms.p50 <= 500)
    return result, probed


async def test_a_client_bound_probe_is_never_the_servers_limit() -> None:
    # The server would pass up to 100; the client cannot drive more than 12.
    result, probed = await _search(slo_limit=100, client_ceiling=12)
    assert probed == [1, 2, 4, 8, 16, 12, 14, 13]  # 16 bounds the search like a failure; bisection finds the client's edge
    assert result.max_passing == 12 and result.stop_reason == STOP_CLIENT_BOUND
    assert [p["client_bound"] for p in result.to_dict()["probes"]] == [False] * 4 + [True, False, True, True]
    assert all(not p.passed for p in result.probes if p.client_bound)
    assert result.knee is None  # the client's ceiling looks like a knee at 12: client-bound probes are not the curve


async def test_a_server_limit_below_the_clients_is_found_as_before() -> None:
    result, probed = await _search(slo_limit=10, client_ceiling=12)
    assert probed == [1, 2, 4, 8, 16, 12, 10, 11]
    assert result.max_passing == 10 and result.stop_reason == STOP_BISECTED  # 11 failed on the server: its limit


async def test_a_client_bound_start_measures_no_load() -> None:
    result, probed = await _search(slo_limit=100, client_ceiling=2, start=4)
    assert probed == [4]
    assert result.max_passing is None and result.stop_reason == STOP_CLIENT_BOUND
    failed, _ = await _search(slo_limit=2, client_ceiling=100, start=4)
    assert failed.stop_reason == STOP_START_FAILED


@settings(max_examples=150, deadline=None)
@given(slo_limit=st.integers(1, 300), ceiling=st.integers(1, 300), start=st.integers(1, 8))
def test_max_passing_is_never_client_bound(slo_limit: int, ceiling: int, start: int) -> None:
    result, _ = asyncio.run(_search(slo_limit, ceiling, start=start, max_load=256))
    assert result.max_passing not in {p.load for p in result.probes if p.client_bound}
    top = min(slo_limit, ceiling)  # what can be shown to pass: met on the server and driven by the client
    if start > top:
        assert result.max_passing is None
        assert result.stop_reason == (STOP_CLIENT_BOUND if start > ceiling else STOP_START_FAILED)
    elif top >= 256:
        assert result.max_passing == 256
    else:  # bisected to the load itself: the server's limit, or the client's (then said so)
        assert result.max_passing == top
        assert result.stop_reason == (STOP_CLIENT_BOUND if ceiling <= slo_limit else STOP_BISECTED)
