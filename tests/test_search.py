"""Max-load search and knee detection against arithmetic server models, then against the mock."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfbench.benchmark.search import (
    STOP_BISECTED,
    STOP_MAX_LOAD,
    STOP_SATURATED,
    STOP_START_FAILED,
    SearchResult,
    search_max_load,
)
from perfbench.metrics.knee import find_knee


@dataclass(frozen=True)
class _Stats:
    p50: float
    p99: float


@dataclass(frozen=True)
class FakeSummary:
    """The StepSummary fields the search reads, plus TTFT for the SLO judge."""

    request_throughput_req_s: float
    latency_ms: _Stats
    ttft_ms: _Stats
    client: Any = None  # a metrics.ClientCheck; None: the step was not checked (never client-bound)


class ClosedLoopServer:
    """K slots, each request takes S ms; c clients in a closed loop (the fluid M/D/K model).

    Throughput = min(c, K) / S; by Little's law latency = c / throughput = S * max(1, c / K).
    A request's TTFT is its queueing time plus ``ttft_ms``: (latency - S) + ttft_ms.
    """

    def __init__(self, slots: int, service_ms: float, ttft_ms: float = 10.0) -> None:
        self.slots, self.service_ms, self.ttft_ms = slots, service_ms, ttft_ms
        self.probed: list[float] = []

    async def __call__(self, concurrency: float) -> FakeSummary:
        self.probed.append(concurrency)
        throughput = min(concurrency, self.slots) / (self.service_ms / 1000)
        latency = self.service_ms * max(1.0, concurrency / self.slots)
        ttft = latency - self.service_ms + self.ttft_ms
        return FakeSummary(throughput, _Stats(latency, latency), _Stats(ttft, ttft))


def latency_p50_within(limit_ms: float):
    return lambda summary: summary.latency_ms.p50 <= limit_ms


async def test_concurrency_search_finds_slo_limit_and_knee_at_capacity() -> None:
    server = ClosedLoopServer(slots=8, service_ms=1000)
    # latency = 1000 * c / 8 <= 1500 ms  <=>  c <= 12
    result = await search_max_load(
        server, dimension="concurrency", start=1, max_load=256, precision=0.1, passes=latency_p50_within(1500)
    )
    assert result.max_passing == 12
    assert result.knee == 8
    assert result.stop_reason == STOP_BISECTED
    # doubling 1, 2, 4, 8 (pass), 16 (fail); bisect 12 (pass), 14, 13 (fail): hi - lo = 1
    assert server.probed == [1, 2, 4, 8, 16, 12, 14, 13]
    assert [p.load for p in result.probes] == server.probed
    assert [p.passed for p in result.probes] == [True] * 4 + [False, True, False, False]


async def test_ttft_slo_below_one_service_time_stops_at_capacity() -> None:
    # Beyond K requests queue, so TTFT jumps by the queueing time: the SLO limit is K itself.
    server = ClosedLoopServer(slots=6, service_ms=400, ttft_ms=20)
    result = await search_max_load(
        server,
        dimension="concurrency",
        start=1,
        max_load=64,
        precision=0.05,
        passes=lambda s: s.ttft_ms.p99 <= 50,
    )
    assert result.max_passing == 6
    assert result.knee == 6
    assert all(p.load == int(p.load) for p in result.probes)


async def test_start_failing_gives_no_max_passing() -> None:
    server = ClosedLoopServer(slots=1, service_ms=100)
    result = await search_max_load(
        server, dimension="concurrency", start=4, max_load=64, precision=0.1, passes=latency_p50_within(100)
    )
    assert result.max_passing is None
    assert result.stop_reason == STOP_START_FAILED
    assert server.probed == [4]


async def test_passing_at_the_cap_stops_there() -> None:
    server = ClosedLoopServer(slots=1000, service_ms=100)
    result = await search_max_load(
        server, dimension="concurrency", start=3, max_load=20.7, precision=0.1, passes=latency_p50_within(200)
    )
    assert server.probed == [3, 6, 12, 20]  # a concurrency cap is a whole number
    assert result.max_passing == 20
    assert result.stop_reason == STOP_MAX_LOAD
    assert result.knee is None  # throughput still climbing


async def test_saturation_stops_growth_early_and_reports_knee() -> None:
    server = ClosedLoopServer(slots=8, service_ms=100)
    result = await search_max_load(
        server, dimension="concurrency", start=1, max_load=4096, precision=0.1, passes=lambda s: True
    )
    # 16 doubles the load of 8 for no extra throughput while latency doubles: stop there.
    assert server.probed == [1, 2, 4, 8, 16]
    assert result.stop_reason == STOP_SATURATED
    assert result.max_passing == 16
    assert result.knee == 8


class OpenLoopServer:
    """Arrivals at r req/s into a server of capacity C req/s (M/M/1-like latency S / (1 - r/C))."""

    def __init__(self, capacity_req_s: float, service_ms: float) -> None:
        self.capacity, self.service_ms = capacity_req_s, service_ms
        self.probed: list[float] = []

    async def __call__(self, rate: float) -> FakeSummary:
        self.probed.append(rate)
        load = rate / self.capacity
        latency = self.service_ms / (1 - load) if load < 0.99 else self.service_ms * 100
        throughput = min(rate, self.capacity)
        return FakeSummary(throughput, _Stats(latency, latency), _Stats(latency, latency))


async def test_rate_search_bisects_to_the_stated_precision() -> None:
    server = OpenLoopServer(capacity_req_s=10, service_ms=100)
    # latency <= 400 ms  <=>  1 / (1 - r/10) <= 4  <=>  r <= 7.5 req/s
    result = await search_max_load(
        server, dimension="rate", start=1, max_load=100, precision=0.05, passes=latency_p50_within(400)
    )
    assert result.max_passing is not None
    assert 7.5 / 1.05 <= result.max_passing <= 7.5
    failing = min(p.load for p in result.probes if not p.passed)
    assert (failing - result.max_passing) / result.max_passing <= 0.05
    assert result.dimension == "rate"
    assert result.to_dict() == {
        "dimension": "rate",
        "max_passing": result.max_passing,
        "knee": result.knee,
        "precision": 0.05,
        "stop_reason": STOP_BISECTED,
        "probes": [{"load": p.load, "passed": p.passed, "client_bound": False} for p in result.probes],
    }


@settings(max_examples=200, deadline=None)
@given(
    slots=st.integers(1, 64),
    limit_factor=st.floats(1.0, 5.0),
    start=st.integers(1, 8),
    max_load=st.integers(8, 600),
)
async def test_concurrency_search_matches_brute_force(slots: int, limit_factor: float, start: int, max_load: int) -> None:
    server = ClosedLoopServer(slots=slots, service_ms=100)
    limit_ms = 100 * limit_factor
    result = await search_max_load(
        server, dimension="concurrency", start=start, max_load=max_load, precision=1e-9, passes=latency_p50_within(limit_ms)
    )
    passing = [c for c in range(start, max_load + 1) if 100 * max(1.0, c / slots) <= limit_ms]
    if result.stop_reason == STOP_SATURATED:  # a lower bound: the last doubling bought nothing
        assert result.max_passing in passing and result.max_passing > slots
    else:
        assert result.max_passing == (max(passing) if passing else None)
    assert len(server.probed) <= 2 * math.log2(max_load) + 4  # logarithmic, not a scan


@pytest.mark.parametrize(
    ("loads", "throughputs", "latencies", "knee"),
    [
        ([1, 2, 4, 8, 16, 32], [1, 2, 4, 8, 8, 8], [10, 10, 10, 10, 20, 40], 8),  # textbook
        ([32, 1, 16, 4, 8, 2], [8, 1, 8, 4, 8, 2], [40, 10, 20, 10, 10, 10], 8),  # order does not matter
        ([1, 2, 4, 8], [1, 2, 4, 8], [10, 10, 10, 10], None),  # still climbing
        ([1, 2, 4, 8], [1, 2, 4, 4], [10, 10, 10, 10], None),  # flat but latency flat: not queueing
        ([1, 2, 4, 8, 16], [1, 1.9, 3.7, 7.4, 7.6], [10, 10.5, 11, 12, 24], 8),  # noisy plateau
        ([1, 2, 3], [1, 2, 2.05], [10, 10, 11.5], None),  # 3 < 1.25 * 2 with a 20% rise: not enough
        ([4], [4], [10], None),
        ([], [], [], None),
        ([1, 2, 4, 8], [1, 2, math.nan, 2], [10, 10, math.nan, 40], 2),  # NaN points skipped
    ],
)
def test_find_knee(loads, throughputs, latencies, knee) -> None:
    assert find_knee(loads, throughputs, latencies) == knee


def test_find_knee_rejects_ragged_input() -> None:
    with pytest.raises(ValueError):
        find_knee([1, 2], [1], [1, 2])


async def test_bad_arguments() -> None:
    server = ClosedLoopServer(slots=1, service_ms=1)
    with pytest.raises(ValueError):
        await search_max_load(server, dimension="users", start=1, max_load=2, precision=0.1, passes=bool)
    with pytest.raises(ValueError):
        await search_max_load(server, dimension="rate", start=4, max_load=2, precision=0.1, passes=bool)
    assert isinstance(SearchResult("rate", None, None, 0.1, ()).to_dict(), dict)


# ---------------------------------------------------------------- end to end: the real mock

MOCK_SLOTS = 4  # K: at most 4 requests generate at once, the rest queue
MOCK_TTFT_MS = 30.0
MOCK_ITL_MS = 5.0
MOCK_TOKENS = 20  # service time S = 30 + 19 * 5 = 125 ms per request


async def test_search_against_mock_with_capacity_finds_k() -> None:
    """Closed loop against the mock with capacity K: below K nothing queues (TTFT = 30 ms); above
    K a request waits a whole service time (>= 125 ms) for a slot, so p99 TTFT <= 80 ms holds
    exactly up to K, and throughput stops rising at K while latency climbs: the knee is K too.
    """
    from perfbench.apis import get_adapter
    from perfbench.engine.engine import Engine
    from perfbench.engine.transport_factory import make_transport
    from perfbench.engine.plan import PreparedRequest, StepPlan, Target
    from perfbench.metrics import summarize_step
    from perfbench.workload.prompts import Prompt
    from perfbench.servers.mock import MockConfig, MockServer
    from perfbench.metrics.slo import parse_slos

    server = MockServer(
        MockConfig(ttft_ms=MOCK_TTFT_MS, itl_ms=MOCK_ITL_MS, output_tokens=MOCK_TOKENS, capacity=MOCK_SLOTS)
    )
    base_url = await server.start()
    api = get_adapter("openai-chat")
    body = api.build_body([Prompt(text="how many slots", messages=None, input_tokens=None)], model="mock", max_tokens=MOCK_TOKENS, extra={})
    slos = parse_slos(f"ttft_p99={MOCK_TTFT_MS + 50:g}")
    records: list = []
    try:
        target = Target(base_url + api.path, api, {})
        async with make_transport(target, timeout_s=10, connect_timeout_s=5, max_connections=64) as transport:
            engine = Engine(transport, target, [PreparedRequest(body, None)], records.append)

            async def probe(concurrency: float) -> object:
                step = len({r.step for r in records})
                c = int(concurrency)
                # 3 waves of requests per slot in use: short, yet every request past K queues.
                plan = StepPlan(step=step, concurrency=c, number=3 * c, duration_s=None, warmup=0)
                await engine.run_step(plan)
                mine = [r for r in records if r.step == step]
                return summarize_step(mine, concurrency=c, rate_req_s=None, requests_expected=3 * c, slos=slos)

            result = await asyncio.wait_for(
                search_max_load(
                    probe, dimension="concurrency", start=1, max_load=64, precision=0.1, passes=lambda s: bool(s.slo_passed)
                ),
                timeout=20,
            )
    finally:
        await server.stop()

    assert result.max_passing == MOCK_SLOTS, result.to_dict()
    assert result.knee == MOCK_SLOTS, result.to_dict()
    # 1, 2, 4 pass; 8 fails; bisection: 6, 5 fail.
    assert [p.load for p in result.probes] == [1, 2, 4, 8, 6, 5]
    assert all(r.ok for r in records)
    # The summaries behind the knee: throughput flat past K, p50 latency about c/K service times.
    by_load = {p.load: p.summary for p in result.probes}
    service_s = (MOCK_TTFT_MS + (MOCK_TOKENS - 1) * MOCK_ITL_MS) / 1000
    assert by_load[4].request_throughput_req_s == pytest.approx(MOCK_SLOTS / service_s, rel=0.25)
    assert by_load[8].request_throughput_req_s == pytest.approx(MOCK_SLOTS / service_s, rel=0.25)
    assert by_load[8].latency_ms.p50 > 1.5 * by_load[4].latency_ms.p50
