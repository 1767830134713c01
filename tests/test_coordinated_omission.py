"""Coordinated omission in open loop: every time is measured from the *scheduled* send time.

A server that stalls (the mock with one slot, answering slower than requests arrive) must show
its queue in TTFT; a client that cannot keep up (a concurrency cap) must show its lag in queue
time and in TTFT. Both would vanish if t0 were the actual send; sends must not drift either.
"""

from __future__ import annotations

import numpy as np

from perfbench.results import records as R
from perfbench.apis import get_adapter
from perfbench.engine.engine import Engine
from perfbench.engine.transport_factory import make_transport
from perfbench.engine.plan import PreparedRequest, StepPlan, Target
from perfbench.metrics import ttft_ms
from perfbench.workload.prompts import Prompt
from perfbench.servers.mock import MockConfig, MockInThread

INTERVAL_MS = 20.0  # constant arrivals, 50 requests/s
SERVICE_MS = 40.0  # the mock's TTFT: one slot serves a request every ~40 ms, arrivals every 20 ms
COUNT = 12


async def open_loop(base_url: str, *, cap: int) -> list[R.RequestRecord]:
    api = get_adapter("openai-chat")
    body = api.build_body([Prompt("one two", None, None)], model="m", max_tokens=1, extra={})
    records: list[R.RequestRecord] = []
    target = Target(base_url + api.path, api, {})
    async with make_transport(target, timeout_s=30, connect_timeout_s=5, max_connections=64) as transport:
        engine = Engine(transport, target, [PreparedRequest(body, 2)], records.append)
        plan = StepPlan(step=0, concurrency=cap, number=COUNT, duration_s=None, rate_req_s=1000 / INTERVAL_MS, arrivals="constant")
        await engine.run_step(plan)
    return sorted(records, key=lambda r: r.index)


def _scheduled_offsets_ms(records: list[R.RequestRecord]) -> np.ndarray:
    return np.array([(r.scheduled_ns - records[0].scheduled_ns) / 1e6 for r in records])


async def test_a_stalling_server_shows_in_ttft_while_sends_stay_on_schedule():
    with MockInThread(MockConfig(ttft_ms=SERVICE_MS, itl_ms=0, capacity=1)) as mock:
        records = await open_loop(mock.base_url, cap=COUNT)
    assert all(r.ok for r in records)
    # Absolute deadlines: request k is due exactly k intervals after the first (no drift).
    assert np.allclose(_scheduled_offsets_ms(records), INTERVAL_MS * np.arange(COUNT), atol=0.01)
    # The client sent each on time (generous bound for a busy machine) ...
    assert max(r.queue_ns for r in records) / 1e6 < 15
    # ... so the server's queue lands in TTFT: request k waits for k earlier ones at ~40 ms each,
    # arriving 20 ms apart, so its TTFT grows by ~20 ms per request.
    ttfts = np.array([ttft_ms(r) for r in records])
    slope_ms = np.polyfit(np.arange(COUNT), ttfts, 1)[0]
    assert 12 < slope_ms < 30, ttfts
    assert ttfts[-1] > SERVICE_MS + 150  # measured from the actual send it would stay near 40 ms


async def test_a_client_behind_its_schedule_shows_in_queue_time_and_ttft():
    with MockInThread(MockConfig(ttft_ms=SERVICE_MS, itl_ms=0)) as mock:
        records = await open_loop(mock.base_url, cap=1)  # the cap: one request in flight at a time
    assert all(r.ok for r in records)
    assert np.allclose(_scheduled_offsets_ms(records), INTERVAL_MS * np.arange(COUNT), atol=0.01)
    queues = np.array([r.queue_ns / 1e6 for r in records])
    ttfts = np.array([ttft_ms(r) for r in records])
    assert 12 < np.polyfit(np.arange(COUNT), queues, 1)[0] < 30, queues  # the lag grows ~20 ms a request
    assert np.all(ttfts >= queues + SERVICE_MS - 5)  # TTFT includes the client's own lag


def test_no_request_of_a_rate_run_leaves_before_its_deadline(tmp_path):
    # The loop's timers fire early (uvloop's whole milliseconds: a third of sleeps woke up to 0.5 ms
    # early here); every send waits out the rest, so no queue time is negative.
    import json

    from perfbench.commands.main import main

    out = tmp_path / "run"
    assert main(["--mock", "ttft_ms=1,itl_ms=0", "--rate", "250", "-n", "300", "--max-tokens", "2", "--seed", "3",
                 "--no-live", "--no-plots", "--no-telemetry", "--output-dir", str(out)]) == 0
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(lines) == 300 and all(line["status"] == "ok" for line in lines)
    early = [line["queue_ms"] for line in lines if line["queue_ms"] < 0]
    assert early == [], f"{len(early)} of 300 left early, by up to {-min(early):.3f} ms"
    assert json.loads((out / "summary.json").read_text())["steps"][0]["queue_ms"]["min"] >= 0
