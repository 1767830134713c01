"""Tests for the mock server (perfbench.servers.mock): a real server on 127.0.0.1, raw SSE bytes.

The mock is the ground truth for everything else, so its timings are checked against its own
deadlines (admitted + ttft + itl * tokens after the first package) and against what a plain
aiohttp client receives.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections import Counter

import aiohttp
import pytest

from perfbench.core.errors import ConfigError, TargetError
from perfbench.servers.mock import MockConfig, MockInThread, MockRequestLog, main
from perfbench.core.mock_config import FAULT_KINDS, FaultSchedule
from tests.mock_client import MS, Reply, mock, mock_process, post, session  # noqa: F401 (fixtures)
from usage_errors import assert_one_line_usage_error

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def chat_body(stream: bool = True, max_tokens: int = 8, **extra: object) -> dict:
    body = {"model": "m", "messages": [{"role": "user", "content": "say hello to the mock"}], "max_tokens": max_tokens, "stream": stream}
    return {**body, **extra}


def completions_body(stream: bool = True, max_tokens: int = 8, **extra: object) -> dict:
    return {"model": "m", "prompt": "one two three", "max_tokens": max_tokens, "stream": stream, **extra}


def deadlines_ns(entry: MockRequestLog, ttft_ms: float, itl_ms: float) -> list[int]:
    """Independent recomputation of when each package was due."""
    assert entry.admitted_ns is not None
    out, after_first = [], 0
    for p, tokens in enumerate(entry.package_tokens):
        after_first += tokens if p else 0
        out.append(entry.admitted_ns + round(ttft_ms * MS + itl_ms * MS * after_first))
    return out


# ---------------------------------------------------------------------------- timing


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def test_timing_is_exact_and_does_not_drift(mock, session):
    server, url = await mock(ttft_ms=40, itl_ms=5)
    t_send = time.perf_counter_ns()
    reply = await post(session, url + CHAT, chat_body(max_tokens=200))
    (entry,) = server.log
    assert entry.package_tokens == [1] * 200 and entry.completion_tokens == 200
    # The first output package leaves ttft after the request came in (admission is immediate).
    assert 0 <= entry.admitted_ns - entry.received_ns < 2 * MS
    assert 40 * MS <= entry.package_sent_ns[0] - entry.received_ns < 60 * MS
    lateness_ms = [(s - d) / MS for s, d in zip(entry.package_sent_ns, deadlines_ns(entry, 40, 5))]
    assert min(lateness_ms) >= 0  # never early
    # A few ms of wake-up jitter (bounds are loose: CI machines are shared and busy).
    assert _median(lateness_ms) < 4 and sorted(lateness_ms)[180] < 12 and max(lateness_ms) < 80
    # No drift: the last packages are as punctual as the first ones; the 200th is due at 40 + 199*5 = 1035 ms.
    assert _median(lateness_ms[-50:]) < 5 and _median(lateness_ms[-50:]) < _median(lateness_ms[:50]) + 4
    assert 1035 <= (entry.package_sent_ns[-1] - entry.admitted_ns) / MS < 1035 + 80
    # The client sees the same: the first content ~40 ms after sending, the last ~1035 ms.
    first = reply.arrival_ns(b'"content":" ')
    assert 40 <= (first - t_send) / MS < 100
    assert 1035 <= (reply.reads[-1][0] - t_send) / MS < 1200


async def test_tokens_per_package(mock, session):
    server, url = await mock(ttft_ms=20, itl_ms=10, tokens_per_package=3)
    reply = await post(session, url + COMPLETIONS, completions_body(max_tokens=10))
    (entry,) = server.log
    assert entry.package_tokens == [3, 3, 3, 1]
    texts = [c["choices"][0]["text"] for c in reply.chunks()]
    assert [len(re.findall(r" \w+|[,.]", t)) for t in texts] == [3, 3, 3, 1]  # one word per token
    # A package of k tokens follows the previous one by k*itl: due at 20, 50, 80, 90 ms.
    due_ms = [(d - entry.admitted_ns) / MS for d in deadlines_ns(entry, 20, 10)]
    assert due_ms == pytest.approx([20, 50, 80, 90], abs=1e-6)
    lateness_ms = sorted((s - d) / MS for s, d in zip(entry.package_sent_ns, deadlines_ns(entry, 20, 10)))
    assert lateness_ms[0] >= 0 and lateness_ms[2] < 6 and lateness_ms[3] < 40


async def test_role_chunk_goes_out_at_once_and_is_not_output(mock, session):
    server, url = await mock(ttft_ms=150, itl_ms=1)
    t_send = time.perf_counter_ns()
    reply = await post(session, url + CHAT, chat_body(max_tokens=2))
    chunks = reply.chunks()
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert (reply.reads[0][0] - t_send) / MS < 50  # long before the 150 ms ttft
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:]] != ["", ""]
    assert len(server.log[0].package_sent_ns) == 2  # the role chunk is not logged as output

    server, url = await mock(ttft_ms=10, itl_ms=1, role_chunk=False)
    chunks = (await post(session, url + CHAT, chat_body(max_tokens=2))).chunks()
    assert "role" not in chunks[0]["choices"][0]["delta"] and chunks[0]["choices"][0]["delta"]["content"]


async def test_reasoning_tokens_go_out_as_reasoning_content(mock, session):
    server, url = await mock(ttft_ms=5, itl_ms=1, reasoning_tokens=3, tokens_per_package=2)
    reply = await post(session, url + CHAT, chat_body(max_tokens=7, stream_options={"include_usage": True}))
    deltas = [c["choices"][0]["delta"] for c in reply.chunks()[1:] if c["choices"]]
    assert [list(d) for d in deltas] == [["reasoning_content"], ["reasoning_content"], ["content"], ["content"]]
    assert server.log[0].package_tokens == [2, 1, 2, 2]  # reasoning and content never share a package
    usage = reply.chunks()[-1]["usage"]
    assert usage["completion_tokens"] == 7 and usage["completion_tokens_details"] == {"reasoning_tokens": 3}


@pytest.mark.parametrize("placement", ["last", "separate", "none"])
@pytest.mark.parametrize("asked", [True, False])
async def test_usage_placement_and_include_usage(mock, session, placement, asked):
    server, url = await mock(ttft_ms=1, itl_ms=1, usage=placement)
    extra = {"stream_options": {"include_usage": True}} if asked else {}
    chunks = (await post(session, url + CHAT, chat_body(max_tokens=4, **extra))).chunks()
    with_usage = [c for c in chunks if "usage" in c]
    if not asked or placement == "none":
        assert with_usage == []
        return
    (chunk,) = with_usage
    assert chunk is chunks[-1]
    # prompt_tokens = whitespace-separated words of "say hello to the mock"
    assert chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    if placement == "last":
        assert chunk["choices"][0]["finish_reason"] == "length" and chunk["choices"][0]["delta"]["content"]
    else:
        assert chunk["choices"] == [] and chunks[-2]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("send_done", [True, False])
async def test_done_on_and_off(mock, session, send_done):
    _, url = await mock(ttft_ms=1, itl_ms=1, send_done=send_done)
    data = (await post(session, url + COMPLETIONS, completions_body(max_tokens=3))).data()
    assert (data[-1] == b"[DONE]") is send_done
    assert data.count(b"[DONE]") == int(send_done)


async def test_crlf_line_endings(mock, session):
    _, url = await mock(ttft_ms=1, itl_ms=1, crlf=True, ping_interval_ms=2, role_chunk=True)
    raw = (await post(session, url + CHAT, chat_body(max_tokens=3))).raw
    assert raw.endswith(b"data: [DONE]\r\n\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n") > 0  # no bare \n anywhere

    _, url = await mock(ttft_ms=1, itl_ms=1)
    assert b"\r" not in (await post(session, url + CHAT, chat_body(max_tokens=3))).raw


async def test_pings_between_packages(mock, session):
    server, url = await mock(ttft_ms=100, itl_ms=50, ping_interval_ms=20)
    reply = await post(session, url + COMPLETIONS, completions_body(max_tokens=3))
    blocks = reply.blocks()
    pings = [i for i, b in enumerate(blocks) if b == b": ping"]
    # 200 ms of stream with a ping every 20 ms: ~9 pings (a ping due with a package is skipped).
    assert 7 <= len(pings) <= 10
    assert pings[0] == 0 and blocks[-1] == b"data: [DONE]"  # pings come first, while waiting for ttft
    assert len(reply.chunks()) == 3 and server.log[0].package_tokens == [1, 1, 1]


# ---------------------------------------------------------------------------- faults


def test_fault_schedule_single_kind_follows_the_floor_rule():
    schedule = FaultSchedule(MockConfig(cut_fraction=0.1))
    assert [i for i in range(100) if schedule.fault_for(i)] == [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]
    schedule = FaultSchedule(MockConfig(stall_fraction=0.57))
    assert sum(1 for i in range(100) if schedule.fault_for(i)) == 57  # 0.57 read as 57/100, not a float below it


@pytest.mark.parametrize(
    "fractions",
    [(0.1, 0.1, 0.1, 0.1, 0.1), (0.1, 0.2, 0.0, 0.3, 0.4), (0.25, 0, 0, 0, 0.75), (0.05, 0.15, 0.2, 0.3, 0.3)],
)
def test_fault_schedule_kinds_never_collide_and_hit_exact_counts(fractions):
    config = MockConfig(**{f"{k}_fraction": f for k, f in zip(("http_error", "bad_body", "cut", "error_event", "stall"), fractions)})
    schedule = FaultSchedule(config)
    counts = Counter(schedule.fault_for(i) for i in range(100))  # one kind per request by construction
    for kind, f in zip(FAULT_KINDS, fractions):
        assert counts[kind] == round(100 * f)
    assert counts[None] == 100 - round(100 * sum(fractions))


async def _fire(session: aiohttp.ClientSession, url: str, n: int, body: dict) -> list[Reply]:
    return await asyncio.gather(*(post(session, url, body) for _ in range(n)))


async def test_http_error_fraction(mock, session):
    server, url = await mock(ttft_ms=0, itl_ms=0, http_error_fraction=0.1)
    replies = await _fire(session, url + CHAT, 100, chat_body(max_tokens=4))
    errors = [r for r in replies if r.status == 500]
    assert len(errors) == 10 and all(json.loads(r.raw)["code"] == 500 for r in errors)
    assert sorted(e.index for e in server.log if e.fault == "http_error") == list(range(9, 100, 10))


async def test_bad_body_fraction(mock, session):
    server, url = await mock(ttft_ms=0, itl_ms=0, bad_body_fraction=0.1)
    replies = await _fire(session, url + COMPLETIONS, 100, completions_body(max_tokens=4))
    bad = [r for r in replies if r.content_type.startswith("text/html")]
    assert len(bad) == 10 and all(r.status == 200 and b"<html>" in r.raw for r in bad)


async def test_cut_fraction_aborts_halfway(mock, session):
    server, url = await mock(ttft_ms=0, itl_ms=1, cut_fraction=0.1)
    replies = await _fire(session, url + CHAT, 100, chat_body(max_tokens=6))
    cut = [r for r in replies if r.error is not None]
    assert len(cut) == 10
    for reply in cut:  # half the output arrived, then the transport broke: no finish, no [DONE]
        assert len([c for c in reply.chunks() if c["choices"][0]["delta"].get("content")]) == 3
        assert b"[DONE]" not in reply.raw
    entries = [e for e in server.log if e.fault == "cut"]
    assert len(entries) == 10 and all(e.package_tokens == [1, 1, 1] and e.finished_ns is None for e in entries)
    assert all(r.error is None and r.data()[-1] == b"[DONE]" for r in replies if r not in cut)


async def test_error_event_fraction(mock, session):
    server, url = await mock(ttft_ms=0, itl_ms=1, error_event_fraction=0.1)
    replies = await _fire(session, url + COMPLETIONS, 100, completions_body(max_tokens=4))
    failed = [r for r in replies if any("error" in c for c in r.chunks())]
    assert len(failed) == 10
    for reply in failed:
        chunks = reply.chunks()
        assert chunks[-1]["error"]["code"] == 500 and chunks[-1]["error"]["message"]
        assert len(chunks) == 3 and b"[DONE]" not in reply.raw and reply.error is None


async def test_stall_fraction_pauses_halfway_then_continues(mock, session):
    server, url = await mock(ttft_ms=5, itl_ms=2, stall_fraction=0.25, stall_s=0.3)
    replies = await _fire(session, url + CHAT, 4, chat_body(max_tokens=6))
    assert all(r.data()[-1] == b"[DONE]" for r in replies)
    (stalled,) = [e for e in server.log if e.fault == "stall"]
    gaps_ms = [(b - a) / MS for a, b in zip(stalled.package_sent_ns, stalled.package_sent_ns[1:])]
    assert gaps_ms[2] == pytest.approx(302, abs=8)  # between package 3 and 4: itl + stall
    assert max(gaps_ms[:2] + gaps_ms[3:]) < 8
    assert stalled.completion_tokens == 6 and stalled.finished_ns is not None


async def test_pings_continue_while_queued_and_stalled(mock, session):
    server, url = await mock(ttft_ms=5, itl_ms=1, capacity=1, stall_fraction=0.5, stall_s=0.3, ping_interval_ms=30)
    tasks = []
    for _ in range(3):  # request 1 stalls 300 ms halfway; request 2 waits in the queue behind it
        tasks.append(asyncio.create_task(post(session, url + CHAT, chat_body(max_tokens=4))))
        await asyncio.sleep(0.03)
    replies = await asyncio.gather(*tasks)
    assert [e.fault for e in server.log] == [None, "stall", None]
    assert all(r.data()[-1] == b"[DONE]" for r in replies)
    kinds = [[b"ping" if b == b": ping" else b"out" if b'"content":" ' in b else b"other" for b in r.blocks()] for r in replies]
    assert b"ping" not in kinds[0]
    stalled, queued = kinds[1], kinds[2]
    # Stalled: two output packages, pings through the 300 ms stall, then the last two.
    assert stalled[:3] == [b"other", b"out", b"out"]
    assert 7 <= stalled.count(b"ping") <= 11 and stalled.index(b"ping") == 3
    assert [k for k in stalled if k != b"ping"] == [b"other", b"out", b"out", b"out", b"out", b"other"]  # role ... [DONE]
    # Queued: the role chunk, pings while waiting for the slot, then the output.
    assert queued[0] == b"other" and queued[1] == b"ping" and queued.count(b"ping") >= 5


async def test_non_streaming_faults(mock, session):
    server, url = await mock(ttft_ms=5, itl_ms=2, cut_fraction=0.25, error_event_fraction=0.25, stall_fraction=0.25, stall_s=0.2)
    t_send = time.perf_counter_ns()
    replies = await asyncio.gather(*(post(session, url + COMPLETIONS, completions_body(stream=False)) for _ in range(4)))
    by_fault = {server.log[i].fault: replies[i] for i in range(4)}  # gathered in order: index i is the i-th sent
    assert set(by_fault) == {None, "cut", "error_event", "stall"}
    assert by_fault["cut"].error is not None and len(by_fault["cut"].raw) > 0
    assert by_fault["error_event"].status == 500
    assert json.loads(by_fault["stall"].raw)["usage"]["completion_tokens"] == 8
    assert (by_fault["stall"].reads[-1][0] - t_send) / MS >= 200 + 5 + 14
    assert json.loads(by_fault[None].raw)["choices"][0]["finish_reason"] == "length"


async def test_zero_output_tokens_sends_only_the_finish_chunk(mock, session):
    server, url = await mock(ttft_ms=20, itl_ms=1, output_tokens=0)
    reply = await post(session, url + CHAT, chat_body(stream_options={"include_usage": True}))
    role, finish = reply.chunks()
    assert finish["choices"][0]["delta"] == {"content": ""} and finish["choices"][0]["finish_reason"] == "length"
    assert finish["usage"]["completion_tokens"] == 0
    assert server.log[0].package_sent_ns == [] and server.log[0].finished_ns is not None


async def test_all_faults_together_hit_their_exact_counts(mock, session):
    server, url = await mock(ttft_ms=0, itl_ms=0, http_error_fraction=0.1, bad_body_fraction=0.1,
                             cut_fraction=0.1, error_event_fraction=0.1, stall_fraction=0.1, stall_s=0.01)  # fmt: skip
    await _fire(session, url + CHAT, 100, chat_body(max_tokens=2))
    assert Counter(e.fault for e in server.log) == {**{k: 10 for k in FAULT_KINDS}, None: 50}


# ---------------------------------------------------------------------------- capacity, disconnects, metrics


async def test_capacity_queues_fifo_and_waiting_counts_into_ttft(mock, session):
    server, url = await mock(ttft_ms=50, itl_ms=10, capacity=2)
    replies = await asyncio.gather(*(post(session, url + CHAT, chat_body(max_tokens=5)) for _ in range(5)))
    assert all(r.data()[-1] == b"[DONE]" for r in replies)
    log = sorted(server.log, key=lambda e: e.admitted_ns)
    first_done = sorted(e.finished_ns for e in log[:2])
    for entry in log[:2]:  # admitted at once
        assert entry.admitted_ns - entry.received_ns < 10 * MS
    for entry in log[2:]:  # the last 3 start only after one of the first finished (90 ms of work each)
        assert entry.admitted_ns >= first_done[0] and entry.admitted_ns - entry.received_ns > 20 * MS
        # ttft counts from admission, so the wait adds to the ttft the client sees.
        assert 50 <= (entry.package_sent_ns[0] - entry.admitted_ns) / MS < 80
    # FIFO: admitted in arrival order.
    assert [e.index for e in log] == sorted(e.index for e in log)


async def test_client_disconnect_cancels_generation_and_frees_the_slot(mock, session):
    server, url = await mock(ttft_ms=10, itl_ms=20, capacity=1)
    async with session.post(url + CHAT, json=chat_body(max_tokens=500), timeout=aiohttp.ClientTimeout(total=10)) as resp:
        async for line in resp.content:
            if b'"content":" ' in line:
                break
        resp.close()  # drop the connection mid-stream
    t_dropped = time.perf_counter_ns()
    reply = await post(session, url + CHAT, chat_body(max_tokens=2))
    assert reply.data()[-1] == b"[DONE]"
    first, second = server.log
    assert first.client_disconnected and first.finished_ns is None and first.completion_tokens < 50
    assert (second.admitted_ns - t_dropped) / MS < 200  # not after the 10 s the first would have run
    metrics = _parse_metrics(server.metrics_text())
    assert metrics["vllm:num_requests_running"] == 0 and metrics["vllm:num_requests_waiting"] == 0


async def test_disconnect_while_queued_leaves_the_queue(mock, session):
    server, url = await mock(ttft_ms=10, itl_ms=10, capacity=1, output_tokens=20)
    long = asyncio.create_task(post(session, url + CHAT, chat_body()))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(post(session, url + CHAT, chat_body()))
    await asyncio.sleep(0.05)
    assert _parse_metrics(server.metrics_text())["vllm:num_requests_waiting"] == 1
    queued.cancel()
    await asyncio.gather(queued, return_exceptions=True)
    await asyncio.sleep(0.05)
    assert _parse_metrics(server.metrics_text())["vllm:num_requests_waiting"] == 0
    assert (await long).data()[-1] == b"[DONE]"
    third = await post(session, url + CHAT, chat_body())
    assert third.data()[-1] == b"[DONE]" and server.log[1].admitted_ns is None and server.log[1].client_disconnected


def _parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {name: value}, checking every sample has HELP/TYPE and a model label."""
    values, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif line and not line.startswith("#"):
            m = re.fullmatch(r'([a-z_:]+)\{(.*)\} (\S+)', line)
            assert m, line
            assert 'model_name="mock"' in m.group(2) and m.group(1) in typed
            values[m.group(1)] = float(m.group(3))
    return values


async def test_metrics_parse_and_change_while_requests_run(mock, session):
    server, url = await mock(ttft_ms=20, itl_ms=10, capacity=2, output_tokens=20)

    async def scrape() -> dict[str, float]:
        async with session.get(url + "/metrics") as resp:
            assert resp.status == 200 and resp.content_type == "text/plain"
            return _parse_metrics(await resp.text())

    idle = await scrape()
    assert set(idle) == {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
                         "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total"}  # fmt: skip
    assert all(v == 0 for v in idle.values())
    tasks = [asyncio.create_task(post(session, url + CHAT, chat_body())) for _ in range(3)]
    await asyncio.sleep(0.1)
    busy = await scrape()
    assert busy["vllm:num_requests_running"] == 2 and busy["vllm:num_requests_waiting"] == 1
    assert 0 < busy["vllm:gpu_cache_usage_perc"] < 1 and busy["vllm:generation_tokens_total"] > 0
    assert busy["vllm:prompt_tokens_total"] == 2 * 5
    await asyncio.gather(*tasks)
    done = await scrape()
    assert done["vllm:num_requests_running"] == 0 and done["vllm:gpu_cache_usage_perc"] == 0
    assert done["vllm:generation_tokens_total"] == 60 and done["vllm:request_success_total"] == 3
    assert done["vllm:prompt_tokens_total"] == 15


# ---------------------------------------------------------------------------- shapes


async def test_chat_stream_chunks_look_like_openai(mock, session):
    server, url = await mock(ttft_ms=1, itl_ms=1)
    reply = await post(session, url + CHAT, chat_body(max_tokens=3, model="my-model"))
    assert reply.status == 200 and reply.content_type == "text/event-stream"
    chunks = reply.chunks()
    assert len(chunks) == 4  # role + 3 output packages, the last one being the finish chunk
    for c in chunks:
        assert c["object"] == "chat.completion.chunk" and c["model"] == "my-model"
        assert c["id"] == chunks[0]["id"] and c["id"].startswith("chatcmpl-") and isinstance(c["created"], int)
        (choice,) = c["choices"]
        assert choice["index"] == 0 and choice["logprobs"] is None and "delta" in choice
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "length"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert len(text.split()) >= 2 and text.startswith(" ")


async def test_completions_stream_chunks_look_like_openai(mock, session):
    _, url = await mock(ttft_ms=1, itl_ms=1)
    chunks = (await post(session, url + COMPLETIONS, completions_body(max_tokens=3))).chunks()
    assert len(chunks) == 3
    for c in chunks:
        assert c["object"] == "text_completion" and c["id"].startswith("cmpl-")
        assert set(c["choices"][0]) >= {"index", "text", "logprobs", "finish_reason"} and "delta" not in c["choices"][0]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_max_completion_tokens_and_fixed_output_tokens(mock, session):
    server, url = await mock(ttft_ms=1, itl_ms=0)
    await post(session, url + CHAT, {**chat_body(max_tokens=9), "max_completion_tokens": 4})
    await post(session, url + COMPLETIONS, {"prompt": "x"})
    assert [e.completion_tokens for e in server.log] == [4, 128]
    server, url = await mock(ttft_ms=1, itl_ms=0, output_tokens=6)
    await post(session, url + COMPLETIONS, completions_body(max_tokens=50))
    assert server.log[0].completion_tokens == 6


async def test_non_streaming_json_with_usage(mock, session):
    server, url = await mock(ttft_ms=30, itl_ms=5, reasoning_tokens=2)
    t_send = time.perf_counter_ns()
    reply = await post(session, url + CHAT, chat_body(stream=False, max_tokens=6))
    assert reply.status == 200 and reply.content_type == "application/json"
    body = json.loads(reply.raw)
    assert (reply.reads[0][0] - t_send) / MS >= 30 + 5 * 5 - 1  # answered when the last token was due
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "length"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and len(message["reasoning_content"].split()) >= 1 and message["content"]
    assert body["usage"]["prompt_tokens"] == 5 and body["usage"]["completion_tokens"] == 6
    reply = await post(session, url + COMPLETIONS, completions_body(stream=False, max_tokens=3))
    body = json.loads(reply.raw)
    assert body["object"] == "text_completion" and body["choices"][0]["text"]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}  # "one two three"
    assert [e.package_tokens for e in server.log] == [[6], [3]]


async def test_prompt_tokens_count_words_of_all_chat_messages(mock, session):
    server, url = await mock(ttft_ms=0, itl_ms=0)
    messages = [{"role": "system", "content": "be  brief"}, {"role": "user", "content": [{"type": "text", "text": "a b c"}]}]
    body = json.loads((await post(session, url + CHAT, {"messages": messages, "max_tokens": 1})).raw)
    assert body["usage"]["prompt_tokens"] == 5
    body = json.loads((await post(session, url + COMPLETIONS, {"prompt": [1, 2, 3, 4], "max_tokens": 1})).raw)
    assert body["usage"]["prompt_tokens"] == 4


async def test_models_health_and_bad_requests(mock, session):
    server, url = await mock()
    async with session.get(url + "/v1/models") as resp:
        assert resp.status == 200 and (await resp.json())["data"][0]["id"] == "mock"
    async with session.get(url + "/health") as resp:
        assert resp.status == 200
    for body in ({"prompt": "x", "max_tokens": 0}, {"max_tokens": 3}):
        async with session.post(url + COMPLETIONS, json=body) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 400
    async with session.post(url + CHAT, data=b"{not json") as resp:
        assert resp.status == 400
    assert server.log == []  # invalid requests take no arrival index


# ---------------------------------------------------------------------------- thread, CLI, config


def test_mock_in_thread_serves_synchronous_callers():
    with MockInThread(MockConfig(ttft_ms=5, itl_ms=1, output_tokens=3)) as mock:
        assert mock.base_url.startswith("http://127.0.0.1:")
        req = urllib.request.Request(mock.base_url + COMPLETIONS, data=json.dumps(completions_body(stream=False)).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.loads(resp.read())["usage"]["completion_tokens"] == 3
        assert len(mock.server.log) == 1
        url = mock.base_url
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/health", timeout=2)


def test_mock_in_thread_port_in_use_is_a_target_error():
    with MockInThread(MockConfig()) as first:
        port = int(first.base_url.rsplit(":", 1)[1])
        with pytest.raises(TargetError, match="cannot listen"):
            with MockInThread(MockConfig(), port=port):
                pass


@pytest.mark.parametrize(
    "argv",
    [["--ttft-ms", "abc"], ["--usage", "sometimes"], ["--unknown"], ["--capacity", "1.5"]],
)
def test_main_usage_errors_are_one_line_config_errors(argv):
    with pytest.raises(ConfigError) as exc:
        main(argv)
    assert "\n" not in str(exc.value) and str(exc.value).endswith("; see 'perfbench mock --help'")


def test_cli_usage_error_is_one_line_exit_2():
    assert_one_line_usage_error("mock", "--ttft-ms", "abc", expect="--ttft-ms: invalid float value")


@pytest.mark.parametrize(
    "argv",
    [["--cut-rate", "1.5"], ["--ttft-ms", "-1"], ["--capacity", "0"], ["--cut-rate", "0.6", "--stall-rate", "0.6"],
     ["--tokens-per-package", "0"], ["--port", "70000"]],
)  # fmt: skip
def test_main_bad_values_raise_config_error(argv):
    with pytest.raises(ConfigError):
        main(argv)


@pytest.mark.parametrize(
    "kwargs",
    [{"itl_ms": float("nan")}, {"output_tokens": -1}, {"usage": "first"}, {"http_error_fraction": -0.1},
     {"bad_body_fraction": 0.5, "error_event_fraction": 0.51}, {"capacity": 0}, {"reasoning_tokens": 1.5}, {"stall_s": -2}],
)  # fmt: skip
def test_config_validation(kwargs):
    with pytest.raises(ConfigError):
        MockConfig(**kwargs)


def test_main_serves_until_ctrl_c():
    """`perfbench mock` in a real process: one line with the URL, serves, Ctrl-C exits 0."""
    with mock_process("--ttft-ms", "1", "--output-tokens", "2") as mock:
        with urllib.request.urlopen(mock.base_url + "/health", timeout=10) as resp:
            assert resp.status == 200
        assert mock.stop() == 0
        assert mock.process.stdout.read() == "" and "Traceback" not in mock.stderr()


# ---------------------------------------------------------------------------- load


async def test_keeps_exact_time_with_many_streams(mock, session):
    """64 concurrent streams at 5 ms ITL: the server stays punctual while serving them all."""
    server, url = await mock(ttft_ms=20, itl_ms=5, output_tokens=40)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as many:
        replies = await asyncio.gather(*(post(many, url + COMPLETIONS, completions_body()) for _ in range(64)))
    assert all(r.data()[-1] == b"[DONE]" for r in replies)
    lateness_ms = sorted((s - d) / MS for e in server.log for s, d in zip(e.package_sent_ns, deadlines_ns(e, 20, 5)))
    assert len(lateness_ms) == 64 * 40 and lateness_ms[0] >= 0
    assert lateness_ms[len(lateness_ms) // 2] < 5 and lateness_ms[int(len(lateness_ms) * 0.99)] < 25
