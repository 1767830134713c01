"""--workers: a step split into slices run by worker processes, merged into one run.

Real processes against the built-in mock on 127.0.0.1: the same requests (indexes, prompts,
counts, open-loop schedule) with 1, 2 and 4 workers; a worker killed mid-step is reported and
the run finishes; SIGTERM stops every worker and keeps every finished record.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from perfbench.apis import get_adapter
from perfbench.commands.main import main
from perfbench.engine.plan import PreparedRequest, StepPlan, Target
from perfbench.engine.live import LiveCounters
from perfbench.results.records import RequestRecord
from perfbench.servers.mock import MockConfig, MockInThread
from perfbench.results.records import WORKER_LOST
from perfbench.workers import WorkerPool, WorkerSetup, split_step
from perfbench.workers.processes import ProcessTransport
from tests.mock_client import mock_process
from tests.test_signals import alive, children, interrupted_run_lines, kill_if_alive, line_count, wait_until

QUIET = ["--no-live", "--no-plots", "--no-telemetry"]


def _indexes(part: StepPlan, schedule_length: int) -> list[int]:
    if part.rate_req_s is not None:
        return list(range(part.arrival_slice, schedule_length, part.arrival_slices))
    return [part.first_index + k * part.index_stride for k in range(part.number or 0)]


@pytest.mark.parametrize("slices", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("plan", [
    StepPlan(step=0, concurrency=10, number=101, duration_s=None, warmup=5, preconnect=10),
    StepPlan(step=1, concurrency=3, number=50, duration_s=None),
    StepPlan(step=0, concurrency=1_000_000, number=77, duration_s=None, rate_req_s=20.0, warmup=3),
    StepPlan(step=2, concurrency=2, number=40, duration_s=None, rate_req_s=20.0),
], ids=["closed", "closed-low-concurrency", "open-uncapped", "open-capped"])
def test_slices_send_exactly_what_the_step_sends(plan: StepPlan, slices: int) -> None:
    parts = split_step(plan, slices)
    assert len(parts) == min(slices, plan.concurrency)  # every slice has work: these steps have requests for all
    assert sum(p.concurrency for p in parts) <= plan.concurrency and all(p.concurrency >= 1 for p in parts)
    assert sum(p.warmup for p in parts) == plan.warmup
    warmups = sorted(p.warmup_first_index + k for p in parts for k in range(p.warmup))
    assert warmups == list(range(plan.warmup))
    indexes = sorted(i for p in parts for i in _indexes(p, plan.number or 0))
    assert indexes == list(range(plan.number or 0))  # every request once: unique indexes, none missing
    if plan.rate_req_s is None:
        assert sum(p.concurrency for p in parts) == plan.concurrency


def test_duration_bound_slices_interleave_their_indexes() -> None:
    parts = split_step(StepPlan(step=0, concurrency=4, number=None, duration_s=1.0), 3)
    assert [(p.first_index, p.index_stride) for p in parts] == [(0, 3), (1, 3), (2, 3)]
    assert [p.concurrency for p in parts] == [2, 1, 1]


@pytest.mark.parametrize("plan", [
    StepPlan(step=0, concurrency=3, number=None, duration_s=1.0, warmup=4, warmup_first_index=2, first_index=1, index_stride=3),
    StepPlan(step=0, concurrency=9, number=600, duration_s=None, rate_req_s=50.0, arrival_slice=2, arrival_slices=3),
], ids=["closed-interleaved", "open-slice"])
def test_a_slices_records_are_counted_not_kept(plan: StepPlan) -> None:
    import random

    from perfbench.workers.slicing import SeenIndexes, unfinished

    rng = random.Random(2)
    first, stride = (plan.arrival_slice, plan.arrival_slices) if plan.rate_req_s else (plan.first_index, plan.index_stride)
    step = [first + k * stride for k in range(200)]
    warmup = [plan.warmup_first_index + k for k in range(plan.warmup)]
    # Records end about in the order sent: each within 8 places of it.
    ended = sorted([(False, i) for i in step] + [(True, i) for i in warmup], key=lambda p: (not p[0]) * 1000 + p[1] + rng.uniform(0, 8 * stride))
    seen, kept, largest = SeenIndexes(plan), set(), 0
    for pair in ended[:150]:
        seen.add(*pair)
        kept.add(pair)
        largest = max(largest, seen.size)
    assert largest <= 16  # what ended out of order, not the 150 records
    assert all((pair in seen) == (pair in kept) for pair in [(w, i) for w in (False, True) for i in range(-3, 700)])
    assert seen.step_records == sum(1 for warm, _ in kept if not warm)
    # A worker lost now owes exactly what has no record (a duration-bound slice: what it had in flight, after its last).
    owed = unfinished(plan, False, seen, in_flight=3)
    if plan.rate_req_s:
        assert owed == [(False, i) for i in range(plan.arrival_slice, 600, plan.arrival_slices) if (False, i) not in kept]
    else:
        last = max(i for warm, i in kept if not warm)
        assert owed == [(False, last + k * stride) for k in range(1, 4)]
def test_a_lost_slice_owes_the_arrivals_of_the_schedule_the_engine_sends_by() -> None:
    """One schedule per step (StepPlan.arrival_offsets_s): what a lost open-loop slice still owed is
    counted from the very due times its engine sends by, a trace's included (not a rate's schedule
    made again beside it)."""
    from perfbench.workers.slicing import SeenIndexes, unfinished

    trace = StepPlan(step=0, concurrency=8, number=None, duration_s=10.0, rate_req_s=1.0,
                     offsets_s=(0.0, 0.1, 0.2, 0.3, 0.4))  # a trace's five due times, whatever its mean rate
    parts = split_step(trace, 2)
    assert [list(p.arrival_indexes(len(p.arrival_offsets_s()))) for p in parts] == [[0, 2, 4], [1, 3]]
    assert unfinished(parts[0], True, SeenIndexes(parts[0]), 0) == [(False, 0), (False, 2), (False, 4)]
    seen = SeenIndexes(parts[1])
    seen.add(False, 1)
    assert unfinished(parts[1], False, seen, 0) == [(False, 3)]
    rated = StepPlan(step=0, concurrency=8, number=30, duration_s=None, rate_req_s=5.0, seed=3)
    assert list(rated.arrival_offsets_s()) == list(split_step(rated, 3)[2].arrival_offsets_s())  # every slice: one schedule


def _run(tmp_path: Path, name: str, *flags: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = tmp_path / name
    assert main([*flags, *QUIET, "--output-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    return summary, lines


@pytest.fixture(scope="module")
def mock_url() -> Any:
    with MockInThread(MockConfig(ttft_ms=20, itl_ms=2, output_tokens=8)) as mock:
        yield mock.base_url


def test_one_two_and_four_workers_send_the_same_requests(tmp_path: Path, mock_url: str) -> None:
    flags = ["--url", mock_url, "-c", "4,8", "-n", "24,40", "--warmup", "4", "--input-tokens", "uniform:10-90", "--seed", "3"]
    runs = {n: _run(tmp_path, f"w{n}", *flags, "--workers", str(n)) for n in (1, 2, 4)}
    shape = {}
    for workers, (summary, lines) in runs.items():
        assert summary["config"]["workers"] == workers
        if workers > 1:  # where each worker ran, on this machine's one clock
            assert [(w["worker"], w["transport"], w["clock_offset_ns"], w["lost"]) for w in summary["workers"]] == \
                [(n, "process", 0, None) for n in range(workers)]
        else:
            assert "workers" not in summary
        steps = summary["steps"]
        assert [s["requests_completed"] for s in steps] == [24, 40] and [s["requests_failed"] for s in steps] == [0, 0]
        assert [s["requests_expected"] for s in steps] == [24, 40]
        for client in (s["client"] for s in steps):  # each worker measured itself; its reading came back with its reply
            assert len(client["workers_cpu_utilization"]) == (workers if workers > 1 else 0)
            assert client["loop_lag_ms"]["count"] > 0  # every worker's timer samples, pooled
            assert client["cpu_utilization"] >= max(client["workers_cpu_utilization"], default=0.0)  # the busiest process
        # The prompt a request carries follows from its index, as in one process: same index, same prompt length.
        shape[workers] = sorted((line["step"], line["warmup"], line["index"], line["input_tokens"], line["output_tokens"])
                                for line in lines)
        assert len(lines) == 4 + 24 + 40
        assert [s["output_tokens_per_request"]["mean"] for s in steps] == [8, 8]
        # The mock's 20 ms to the first token, through 1, 2 or 4 processes (a generous bound: a busy CI box).
        assert all(19 <= s["ttft_ms"]["p50"] < 80 for s in steps), [s["ttft_ms"] for s in steps]
    assert shape[1] == shape[2] == shape[4]
    # ... and it is the one a single process takes: the warm-up first, then each step's requests in turn.
    from perfbench.config.run_config import config_from_settings
    from perfbench.benchmark.prepare import prepare_workload

    requests = prepare_workload(config_from_settings({"url": mock_url, "concurrency": "4,8", "number": "24,40", "warmup": 4,
                                                      "input_tokens": "uniform:10-90", "seed": 3}), get_adapter("openai-chat"), None).requests
    base = {(0, True): 0, (0, False): 4, (1, False): 28}
    for step, warmup, index, input_tokens, _ in shape[4]:
        body = json.loads(requests.get(base[step, warmup] + index).body)
        assert input_tokens == len(body["messages"][-1]["content"].split()), (step, warmup, index)
    assert len({(step, warm, index) for step, warm, index, _, _ in shape[1]}) == len(shape[1])  # indexes unique


def test_workers_send_the_bodies_one_process_sends_and_no_prompt_twice(tmp_path: Path) -> None:
    # A closed-loop step with warm-up and a duration-bound open-loop step: the same bodies reach the
    # server whether one process or three send them, every synthetic prompt its own.
    runs = (["-c", "3,2", "-n", "30,10", "--warmup", "3"], ["--rate", "150", "--duration", "0.3", "-c", "6"])
    received: dict[int, list[list[str]]] = {1: [], 3: []}
    for workers in (1, 3):
        for run, flags in enumerate(runs):
            with MockInThread(MockConfig(ttft_ms=1, itl_ms=0, output_tokens=2)) as mock:
                mock.server.keep_bodies = True
                assert main(["--url", mock.base_url, *flags, "--input-tokens", "uniform:8-16", "--seed", "11", "--workers",
                             str(workers), "--no-preflight", *QUIET, "--output-dir", str(tmp_path / f"b{workers}-{run}")]) == 0
                received[workers].append(sorted(json.loads(entry.body)["messages"][-1]["content"] for entry in mock.server.log))
    assert [len(texts) for texts in received[1]][0] == 43 and len(received[1][1]) >= 30
    assert received[1] == received[3]  # (a duration-bound step's arrivals follow the seed as well)
    assert all(len(set(texts)) == len(texts) for texts in received[1])
    summary = json.loads((tmp_path / "b3-0" / "summary.json").read_text())
    assert summary["workload"] == {"prompts_source": "synthetic", "distinct_prompts": 43, "max_repeats": 1}


def test_open_loop_workers_merge_into_the_requested_schedule(tmp_path: Path, mock_url: str) -> None:
    flags = ["--url", mock_url, "--rate", "100", "-n", "60", "--seed", "5"]
    schedules = {}
    for workers in (1, 3):
        summary, lines = _run(tmp_path, f"open{workers}", *flags, "--workers", str(workers))
        assert summary["steps"][0]["requests_succeeded"] == 60
        by_index = sorted((line["index"], line["scheduled_s"]) for line in lines)
        first = by_index[0][1]
        schedules[workers] = [(index, round(s - first, 6)) for index, s in by_index]
    assert schedules[1] == schedules[3]  # the same arrival times, whichever process sent each


def long_requests(mock_url: str) -> WorkerSetup:
    """Requests of 200 tokens (about 0.4 s against the module's mock): a worker killed mid-step has some in flight."""
    target = Target(url=mock_url + "/v1/chat/completions", api=get_adapter("openai-chat"), headers={"Content-Type": "application/json"})
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                       "max_tokens": 200, "stream_options": {"include_usage": True}}).encode()
    return WorkerSetup(target=target, requests=[PreparedRequest(body, 3)], tokenizer=None, max_connections=8,
                       timeout_s=60, connect_timeout_s=10)


def kill_worker_0_mid_step(transport: Any, kill: Callable[[WorkerPool], None]) -> tuple[str, list[RequestRecord]]:
    """Two workers run 40 requests; ``kill`` ends worker 0 once a few finished. The step must still
    account for all 40 (the lost ones failed as worker_lost), and the next step runs on worker 1.
    Returns worker 0's recorded reason and the error text of its lost requests."""
    records: list[RequestRecord] = []

    async def scenario() -> str:
        async with WorkerPool(transport, records.append, LiveCounters()) as pool:
            step = asyncio.ensure_future(pool.run_step(StepPlan(step=0, concurrency=4, number=40, duration_s=None)))
            deadline = time.monotonic() + 60
            while len(records) < 4 and time.monotonic() < deadline:  # a few finished: the step is running
                await asyncio.sleep(0.01)
            kill(pool)
            assert await asyncio.wait_for(step, 120) == 40
            assert pool.live_workers == 1 and pool.workers[1]["lost"] is None
            more = await asyncio.wait_for(pool.run_step(StepPlan(step=1, concurrency=2, number=6, duration_s=None)), 60)
            assert more == 6  # the next step runs on the worker that is left
            return pool.workers[0]["lost"]

    why = asyncio.run(scenario())
    first = [r for r in records if r.step == 0]
    assert sorted(r.index for r in first) == list(range(40))
    lost = [r for r in first if r.status == WORKER_LOST]
    assert lost and len({r.error for r in lost}) == 1
    assert sum(r.ok for r in first) == 40 - len(lost) >= 4
    assert len([r for r in records if r.step == 1 and r.ok]) == 6
    return why, [r.error or "" for r in lost]


def test_a_worker_killed_mid_step_is_reported_and_the_step_finishes(mock_url: str) -> None:
    why, errors = kill_worker_0_mid_step(ProcessTransport(2, long_requests(mock_url)),
                                         lambda pool: os.kill(pool.workers[0]["pid"], signal.SIGKILL))
    assert why == "it exited with code -9"
    assert errors[0].startswith("worker process 0 (pid ") and errors[0].endswith("ended before this request finished: it exited with code -9")


def test_sigterm_stops_every_worker_and_keeps_every_finished_record(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = subprocess.Popen(
        [sys.executable, "-m", "perfbench", "--mock", "ttft_ms=5,itl_ms=40", "-c", "4", "-n", "10000", "--max-tokens", "10",
         "--workers", "2", *QUIET, "--output-dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    workers: list[int] = []
    try:
        wait_until(lambda: line_count(out / "requests.jsonl") >= 8 or run.poll() is not None, 90, "8 finished requests")
        assert run.poll() is None, run.communicate()
        workers = children(run.pid)
        assert len(workers) >= 2, workers
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        kill_if_alive(run.pid)
    lines = interrupted_run_lines(out, run.returncode, stderr, at_least=8)
    assert all(line["status"] == "ok" for line in lines), {line["status"] for line in lines}
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "a worker outlived the run"


def test_large_batches_cross_the_pipe_whole(tmp_path: Path) -> None:
    """Batches of hundreds of 256-package records are megabytes: a pipe read must wait for the whole
    message (under uvloop a watched descriptor is non-blocking, and a read of it failed half-way)."""
    with mock_process("--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "256") as mock:  # its own process: fast
        summary, lines = _run(tmp_path, "big", "--url", mock.base_url, "-c", "64", "-n", "1500", "--workers", "2")
    assert summary["steps"][0]["requests_succeeded"] == 1500, summary["steps"][0]["failure_reasons"]
    assert len(lines) == 1500 and {line["packages"] for line in lines} == {256}

