"""The mock's OpenAI Responses API (POST /v1/responses): a real mock on 127.0.0.1, raw aiohttp reads.

Checks the event order and shapes, sequence numbers, that the deltas are the text, usage, the
deadlines against the mock's own log (generous bounds), every fault, pings, non-streaming bodies
and 400 answers to bad bodies.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.mock_client import MS, Reply, parse_metrics, post, mock, session  # noqa: F401 (fixtures)

RESPONSES = "/v1/responses"
OPENING = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
CLOSING = ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]


def body(stream: bool = True, max_output_tokens: int = 8, **extra: object) -> dict:
    return {"model": "m", "input": "say hello to the mock", "max_output_tokens": max_output_tokens, "stream": stream, **extra}


def deltas(reply: Reply, kind: str = "output_text") -> list[str]:
    return [data["delta"] for name, data in reply.events() if name == f"response.{kind}.delta"]


async def test_stream_events_in_order_numbered_and_the_deltas_are_the_text(mock, session):
    server, url = await mock(ttft_ms=5, itl_ms=1)
    reply = await post(session, url + RESPONSES, body(max_output_tokens=6))
    assert reply.status == 200 and reply.content_type.startswith("text/event-stream") and reply.error is None
    events = reply.events()
    names = [name for name, _ in events]
    assert names == OPENING + ["response.output_text.delta"] * 6 + CLOSING
    assert all(data["type"] == name for name, data in events)  # the JSON type is the event name
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert b"[DONE]" not in reply.raw
    created = events[0][1]["response"]
    assert created["status"] == "in_progress" and created["object"] == "response" and created["id"].startswith("resp_")
    item_id = events[2][1]["item"]["id"]
    assert item_id.startswith("msg_") and events[2][1]["item"]["type"] == "message"
    for name, data in events[4:10]:
        assert data["item_id"] == item_id and data["output_index"] == 0 and data["content_index"] == 0
        assert data["logprobs"] == []
    text = "".join(deltas(reply))
    assert len(text.split()) == 6  # one word per token
    assert events[10][1]["text"] == text and events[11][1]["part"]["text"] == text
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed" and completed["id"] == created["id"]
    (message,) = completed["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["type"] == "output_text" and message["content"][0]["text"] == text
    (entry,) = server.log
    assert completed["usage"] == {
        "input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 11,
    }  # fmt: skip
    assert entry.api == "responses" and entry.stream and entry.prompt_tokens == 5
    assert entry.package_tokens == [1] * 6 and entry.completion_tokens == 6 and entry.finished_ns is not None


async def test_reasoning_tokens_come_first_in_their_own_item(mock, session):
    server, url = await mock(ttft_ms=1, itl_ms=1, reasoning_tokens=3, tokens_per_package=2)
    reply = await post(session, url + RESPONSES, body(max_output_tokens=7))
    events = reply.events()
    names = [name for name, _ in events]
    reasoning = ["response.output_item.added", "response.content_part.added"] + ["response.reasoning_text.delta"] * 2 + [
        "response.reasoning_text.done", "response.content_part.done", "response.output_item.done"]  # fmt: skip
    message = ["response.output_item.added", "response.content_part.added"] + ["response.output_text.delta"] * 2
    assert names == OPENING[:2] + reasoning + message + CLOSING
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    (entry,) = server.log
    assert entry.package_tokens == [2, 1, 2, 2]  # reasoning and content never share a package
    thought, said = "".join(deltas(reply, "reasoning_text")), "".join(deltas(reply))
    assert len(thought.split()) == 3 and len(said.split()) == 4
    assert {data["output_index"] for name, data in events if name == "response.output_text.delta"} == {1}
    completed = events[-1][1]["response"]
    assert [item["type"] for item in completed["output"]] == ["reasoning", "message"]
    assert completed["output"][0]["content"][0]["text"] == thought and completed["output"][1]["content"][0]["text"] == said
    assert completed["usage"]["output_tokens"] == 7 and completed["usage"]["output_tokens_details"]["reasoning_tokens"] == 3


async def test_deadlines_are_the_chat_deadlines(mock, session):
    server, url = await mock(ttft_ms=40, itl_ms=5, tokens_per_package=2)
    t_send_ns = time.perf_counter_ns()
    reply = await post(session, url + RESPONSES, body(max_output_tokens=40))
    (entry,) = server.log
    assert entry.package_tokens == [2] * 20
    # Package p is due at admitted + 40 ms + 5 ms * (tokens after the first package) = 40 + 10 p ms.
    due_ns = [entry.admitted_ns + 40 * MS + 10 * MS * p for p in range(20)]
    lateness_ms = [(sent - due) / MS for sent, due in zip(entry.package_sent_ns, due_ns)]
    assert min(lateness_ms) >= 0 and max(lateness_ms) < 80
    # The client: the preamble at once, the first delta ~40 ms after sending, the last ~230 ms.
    assert (reply.arrival_ns(b"response.in_progress") - t_send_ns) / MS < 30
    assert 40 <= (reply.arrival_ns(b"response.output_text.delta") - t_send_ns) / MS < 120
    assert 230 <= (reply.arrival_ns(b"response.completed") - t_send_ns) / MS < 400


async def test_preamble_goes_out_while_queued_and_the_wait_counts(mock, session):
    server, url = await mock(ttft_ms=5, itl_ms=20, capacity=1)
    t0 = time.perf_counter_ns()
    first, second = await asyncio.gather(*(post(session, url + RESPONSES, body(max_output_tokens=5)) for _ in range(2)))
    late = second if second.arrival_ns(b"output_text.delta") > first.arrival_ns(b"output_text.delta") else first
    early = first if late is second else second
    # The queued request had its created event at once, and its first delta only after the other finished.
    assert (late.arrival_ns(b"response.created") - t0) / MS < 50
    assert late.arrival_ns(b"output_text.delta") >= early.arrival_ns(b"response.completed")
    assert server.log[1].admitted_ns >= server.log[0].finished_ns


async def test_http_error_and_bad_body(mock, session):
    server, url = await mock(http_error_fraction=0.5, bad_body_fraction=0.5)
    replies = [await post(session, url + RESPONSES, body()) for _ in range(2)]
    by_status = {r.status: r for r in replies}
    assert by_status[500].json()["error"]["code"] == 500 and by_status[500].json()["error"]["message"]
    assert by_status[200].content_type.startswith("text/html") and b"<html>" in by_status[200].raw
    assert sorted(e.fault for e in server.log) == ["bad_body", "http_error"]


async def test_cut_aborts_halfway(mock, session):
    server, url = await mock(ttft_ms=0, itl_ms=1, cut_fraction=1)
    reply = await post(session, url + RESPONSES, body(max_output_tokens=6))
    assert reply.error is not None  # the transport broke: an incomplete chunked body
    assert len(deltas(reply)) == 3 and b"response.completed" not in reply.raw
    (entry,) = server.log
    assert entry.package_tokens == [1, 1, 1] and entry.finished_ns is None


async def test_error_event_halfway_then_the_stream_ends(mock, session):
    server, url = await mock(ttft_ms=0, itl_ms=1, error_event_fraction=1)
    reply = await post(session, url + RESPONSES, body(max_output_tokens=4))
    assert reply.error is None
    events = reply.events()
    assert [name for name, _ in events] == OPENING + ["response.output_text.delta"] * 2 + ["error"]
    error = events[-1][1]
    assert error["type"] == "error" and error["code"] == "server_error" and error["message"] == "mock: injected error event"
    assert error["sequence_number"] == len(events) - 1
    assert server.log[0].completion_tokens == 2 and server.log[0].finished_ns is not None


async def test_stall_pauses_halfway_with_pings(mock, session):
    server, url = await mock(ttft_ms=5, itl_ms=2, stall_fraction=1, stall_s=0.3, ping_interval_ms=50)
    reply = await post(session, url + RESPONSES, body(max_output_tokens=6))
    assert [name for name, _ in reply.events()][-1] == "response.completed"
    assert reply.raw.count(b": ping") >= 4  # pings keep the stalled stream alive
    (entry,) = server.log
    gaps_ms = [(b - a) / MS for a, b in zip(entry.package_sent_ns, entry.package_sent_ns[1:])]
    assert gaps_ms[2] == pytest.approx(302, abs=30)  # between package 3 and 4: itl + stall
    assert max(gaps_ms[:2] + gaps_ms[3:]) < 30


async def test_crlf_line_endings(mock, session):
    _, url = await mock(ttft_ms=0, itl_ms=0, crlf=True)
    reply = await post(session, url + RESPONSES, body(max_output_tokens=2))
    assert b"\n" not in reply.raw.replace(b"\r\n", b"")
    assert [name for name, _ in reply.events()][-1] == "response.completed"


async def test_non_streaming_body_at_the_last_deadline(mock, session):
    server, url = await mock(ttft_ms=30, itl_ms=5)
    messages = [{"role": "user", "content": [{"type": "input_text", "text": "one two"}, {"type": "input_text", "text": " three"}]}]
    reply = await post(session, url + RESPONSES, body(stream=False, max_output_tokens=5, input=messages, instructions="be brief"))
    assert reply.status == 200 and reply.content_type.startswith("application/json")
    answer = reply.json()
    assert answer["object"] == "response" and answer["status"] == "completed" and answer["model"] == "m"
    (message,) = answer["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert len(message["content"][0]["text"].split()) == 5 and message["content"][0]["type"] == "output_text"
    assert answer["usage"]["input_tokens"] == 5 and answer["usage"]["output_tokens"] == 5  # be brief + one two three
    (entry,) = server.log
    assert not entry.stream and entry.package_tokens == [5]
    assert entry.finished_ns - entry.admitted_ns >= (30 + 4 * 5) * MS  # when the last package would have gone


async def test_non_streaming_faults(mock, session):
    server, url = await mock(ttft_ms=10, itl_ms=10, cut_fraction=0.5, error_event_fraction=0.5)
    replies = [await post(session, url + RESPONSES, body(stream=False, max_output_tokens=4)) for _ in range(2)]
    cut, error = (replies[0], replies[1]) if server.log[0].fault == "cut" else (replies[1], replies[0])
    assert cut.error is not None  # half the body, then the connection was aborted
    assert error.status == 500 and error.json()["error"]["code"] == 500
    erred = next(e for e in server.log if e.fault == "error_event")
    assert erred.finished_ns - erred.admitted_ns >= 30 * MS  # at the halfway package: 10 + 2 * 10 ms


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "m"},  # no input
        {"model": "m", "input": ""},
        {"model": "m", "input": []},
        {"model": "m", "input": [{"content": "no role"}]},
        {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": 3}]}]},
        {"model": "m", "input": "x", "max_output_tokens": 0},
        {"model": "m", "input": "x", "max_output_tokens": "8"},
        {"model": "m", "input": "x", "instructions": ["no"]},
    ],
)
async def test_bad_bodies_are_400_openai_errors(mock, session, bad):
    server, url = await mock()
    reply = await post(session, url + RESPONSES, bad)
    assert reply.status == 400
    error = reply.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error" and error["message"]
    assert server.log == []  # invalid requests take no arrival index


async def test_not_json_is_400(mock, session):
    _, url = await mock()
    reply = await post(session, url + RESPONSES, b"{not json")
    assert reply.status == 400 and "not JSON" in reply.json()["error"]["message"]


async def test_metrics_count_responses(mock, session):
    _, url = await mock(ttft_ms=0, itl_ms=0)
    await post(session, url + RESPONSES, body(max_output_tokens=3))
    await post(session, url + RESPONSES, body(stream=False, max_output_tokens=2))
    async with session.get(url + "/metrics") as resp:
        metrics = parse_metrics(await resp.text())
    assert metrics["vllm:request_success_total"] == 2
    assert metrics["vllm:generation_tokens_total"] == 5 and metrics["vllm:prompt_tokens_total"] == 10
