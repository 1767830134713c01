"""The engine against real aiohttp servers on 127.0.0.1 writing hand-made SSE bytes.

Each handler sends exactly the bytes a real server would (or a broken one), with real delays,
so these tests check stamping, the meaning of each chunk and every failure reason.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket

import pytest
from aiohttp import web

from perfbench.results import records as R
from perfbench.apis import get_adapter
from perfbench.engine.answers import split_tokens
from perfbench.engine.engine import Engine
from perfbench.engine.transport_factory import make_transport
from perfbench.engine.plan import PreparedRequest, StepPlan, Target
from perfbench.servers.mock import MockConfig, MockInThread
from perfbench.workload.prompts import Prompt


def chunk(delta: dict | None = None, *, finish: str | None = None, usage: dict | None = None, text: str | None = None, choices=True) -> bytes:
    obj: dict = {"id": "x", "object": "chat.completion.chunk", "model": "m"}
    if choices:
        choice: dict = {"index": 0, "finish_reason": finish}
        if text is not None:
            choice["text"] = text
        else:
            choice["delta"] = delta or {}
        obj["choices"] = [choice]
    else:
        obj["choices"] = []
    if usage is not None:
        obj["usage"] = usage
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
ROLE = chunk({"role": "assistant", "content": ""})


def content(text: str) -> bytes:
    return chunk({"content": text})


def stream_app(parts: list[tuple[float, bytes]], *, status: int = 200, content_type: str = "text/event-stream", cut: bool = False) -> web.Application:
    """A server answering every POST with ``parts`` (delay in s before each write), optionally cutting the connection."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
        await response.prepare(request)
        for delay, data in parts:
            if delay:
                await asyncio.sleep(delay)
            await response.write(data)
        if cut:
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    app.router.add_post("/v1/completions", handler)
    return app


async def run_requests(url: str, *, api: str = "openai-chat", number: int = 1, concurrency: int = 1, timeout_s: float = 10, tokenizer=None):
    records: list[R.RequestRecord] = []
    target = Target(url, get_adapter(api), {})
    async with make_transport(target, timeout_s=timeout_s, connect_timeout_s=2, max_connections=concurrency) as transport:
        engine = Engine(transport, target, [PreparedRequest(b"{}", 7)], records.append, tokenizer=tokenizer)
        await engine.run_step(StepPlan(step=0, concurrency=concurrency, number=number, duration_s=None))
    return records


async def serve(aiohttp_server, app: web.Application, path: str = "/v1/chat/completions") -> str:
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url(path))


async def test_role_chunk_is_not_the_first_token(aiohttp_server):
    # role at once, first content 100 ms later, then 2 more tokens 20 ms apart
    url = await serve(aiohttp_server, stream_app([(0, ROLE), (0.1, content("a")), (0.02, content("b")), (0.02, content("c")),
                                                  (0, chunk(finish="stop", usage={"prompt_tokens": 7, "completion_tokens": 3})), (0, DONE)]))
    [rec] = await run_requests(url)
    assert rec.status == R.OK and rec.http_status == 200
    ttft_ms = (rec.package_times_ns[0] - rec.scheduled_ns) / 1e6
    assert 95 <= ttft_ms < 300
    assert len(rec.package_times_ns) == 3
    gaps_ms = [(b - a) / 1e6 for a, b in zip(rec.package_times_ns, rec.package_times_ns[1:])]
    assert all(15 <= g < 200 for g in gaps_ms)
    assert (rec.output_tokens, rec.input_tokens, rec.token_source) == (3, 7, R.TOKENS_FROM_USAGE)
    assert rec.package_tokens == (1, 1, 1)


async def test_usage_in_separate_chunk_and_no_done(aiohttp_server):
    url = await serve(aiohttp_server, stream_app([(0, content("x")), (0, content("y")), (0, chunk(finish="length")),
                                                  (0, chunk(choices=False, usage={"prompt_tokens": 11, "completion_tokens": 2}))]))
    [rec] = await run_requests(url)
    assert rec.status == R.OK
    assert (rec.output_tokens, rec.input_tokens) == (2, 11)


async def test_several_tokens_per_package_share_the_usage_count(aiohttp_server):
    # 3 packages of equal text, usage says 6 tokens -> 2 per package
    url = await serve(aiohttp_server, stream_app([(0, content(" ab cd")), (0.01, content(" ef gh")), (0.01, content(" ij kl")),
                                                  (0, chunk(finish="length", usage={"prompt_tokens": 1, "completion_tokens": 6})), (0, DONE)]))
    [rec] = await run_requests(url)
    assert rec.package_tokens == (2, 2, 2) and rec.output_tokens == 6


async def test_reasoning_and_tool_call_deltas_are_output(aiohttp_server):
    parts = [(0, ROLE), (0.05, chunk({"reasoning_content": "think"})),
             (0.01, chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]})),
             (0.01, content("done")), (0, DONE)]
    url = await serve(aiohttp_server, stream_app(parts))
    [rec] = await run_requests(url)
    assert rec.status == R.OK and len(rec.package_times_ns) == 3
    assert (rec.package_times_ns[0] - rec.scheduled_ns) / 1e6 >= 45
    assert rec.token_source == R.TOKENS_FROM_PACKAGES and rec.output_tokens == 3


async def test_split_reads_crlf_comments_and_batched_events(aiohttp_server):
    a, b, c = content("a"), content("b"), content("c")
    crlf = b.replace(b"\n", b"\r\n")
    parts = [(0, b": keep-alive\n\n"), (0, a[:9]), (0.02, a[9:] + crlf[:-2]), (0.02, crlf[-2:] + b": ping\r\n\r\n" + c + DONE)]
    url = await serve(aiohttp_server, stream_app(parts))
    [rec] = await run_requests(url)
    assert rec.status == R.OK and len(rec.package_times_ns) == 3
    # "a" completes in the second read; "b" (its blank line) and "c" in the third: same stamp
    assert rec.package_times_ns[1] == rec.package_times_ns[2]
    assert rec.package_times_ns[1] - rec.package_times_ns[0] >= 15e6


async def test_completions_api_text(aiohttp_server):
    parts = [(0, chunk(text="Hello")), (0.01, chunk(text=" world")), (0, chunk(text="", finish="length")), (0, DONE)]
    url = await serve(aiohttp_server, stream_app(parts), "/v1/completions")
    [rec] = await run_requests(url, api="openai-completions")
    assert rec.status == R.OK and len(rec.package_times_ns) == 2


async def test_http_error_is_counted_with_its_message(aiohttp_server):
    body = json.dumps({"error": {"message": "model overloaded", "code": 503}}).encode()
    url = await serve(aiohttp_server, stream_app([(0, body)], status=503, content_type="application/json"))
    [rec] = await run_requests(url)
    assert rec.status == "http_503" == R.http_reason(503) and rec.http_status == 503
    assert "model overloaded" in rec.error and "\n" not in rec.error


async def test_error_event_inside_the_stream(aiohttp_server):
    err = b'data: {"error": {"message": "CUDA out of memory", "type": "InternalError", "code": 500}}\n\n'
    url = await serve(aiohttp_server, stream_app([(0, content("a")), (0, err), (0, DONE)]))
    [rec] = await run_requests(url)
    assert rec.status == R.ERROR_EVENT and "CUDA out of memory" in rec.error


async def test_cut_stream(aiohttp_server):
    url = await serve(aiohttp_server, stream_app([(0, content("a")), (0.01, content("b"))], cut=True))
    [rec] = await run_requests(url)
    assert rec.status == R.CUT_STREAM, rec.error


async def test_timeout_while_streaming(aiohttp_server):
    url = await serve(aiohttp_server, stream_app([(0, content("a")), (5, content("b"))]))
    [rec] = await run_requests(url, timeout_s=0.3)
    assert rec.status == R.TIMEOUT
    assert 0.25 <= (rec.end_ns - rec.sent_ns) / 1e9 < 2


async def test_a_body_neither_sse_nor_json_is_a_bad_response(aiohttp_server):
    url = await serve(aiohttp_server, stream_app([(0, b"<html>502</html>")], content_type="text/html"))
    [rec] = await run_requests(url)
    assert rec.status == R.BAD_RESPONSE and "neither an SSE stream nor JSON" in rec.error and "502" in rec.error


async def test_a_whole_json_answer_is_one_package_at_its_last_byte(aiohttp_server):
    body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": "all at once"}}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).encode()
    url = await serve(aiohttp_server, stream_app([(0, body[:20]), (0.05, body[20:])], content_type="application/json"))
    [rec] = await run_requests(url)
    assert rec.ok and rec.output_tokens == 4 and len(rec.package_times_ns) == 1
    assert (rec.package_times_ns[0] - rec.scheduled_ns) / 1e6 >= 45  # stamped when the body was complete


async def test_a_json_answer_without_output_is_no_output(aiohttp_server):
    url = await serve(aiohttp_server, stream_app([(0, b'{"choices": []}')], content_type="application/json"))
    [rec] = await run_requests(url)
    assert rec.status == R.NO_OUTPUT


async def test_zero_token_answer(aiohttp_server):
    url = await serve(aiohttp_server, stream_app([(0, ROLE), (0, chunk(finish="stop", usage={"prompt_tokens": 3, "completion_tokens": 0})), (0, DONE)]))
    [rec] = await run_requests(url)
    assert rec.status == R.NO_OUTPUT


async def test_connection_refused_is_a_record_not_an_exception():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    records = await run_requests(f"http://127.0.0.1:{port}/v1/chat/completions", number=3, concurrency=2)
    assert [r.status for r in records] == [R.CONNECT_ERROR] * 3


async def test_failures_do_not_stop_the_step(aiohttp_server):
    calls = 0

    async def flaky(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls % 2:
            return web.json_response({"error": {"message": "busy"}}, status=500)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(content("ok") + DONE)
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", flaky)
    url = await serve(aiohttp_server, app)
    records = await run_requests(url, number=10, concurrency=3)
    assert len(records) == 10
    assert sorted(r.status for r in records).count(R.OK) == 5


async def test_closed_loop_t0_is_when_the_slot_freed(aiohttp_server):
    url = await serve(aiohttp_server, stream_app([(0.05, content("a")), (0, DONE)]))
    records = await run_requests(url, number=4, concurrency=1)
    records.sort(key=lambda r: r.index)
    for prev, nxt in zip(records, records[1:]):
        assert nxt.scheduled_ns == prev.end_ns
        assert 0 <= nxt.queue_ns < 20e6


async def test_output_tokens_from_tokenizer_without_usage(aiohttp_server):
    class WordCounter:
        def count(self, text: str) -> int:
            return len(text.split())

    url = await serve(aiohttp_server, stream_app([(0, content("one two")), (0, content(" three")), (0, DONE)]))
    [rec] = await run_requests(url, tokenizer=WordCounter())
    assert (rec.output_tokens, rec.token_source) == (3, R.TOKENS_FROM_TOKENIZER)
    assert sum(rec.package_tokens) == 3


@pytest.mark.parametrize(
    "total, packages, weights, expected",
    [
        (3, 3, None, (1, 1, 1)),
        (6, 3, None, (2, 2, 2)),
        (32, 11, None, (3,) * 10 + (2,)),  # 3 tokens a package, the last one carrying 2
        (2, 3, None, (1, 1, 0)),
        (7, 2, None, (4, 3)),
        (9, 3, [1, 5, 3], (1, 5, 3)),  # a tokenizer's own per-package counts, when they add up
        (12, 3, [1, 5, 3], (1, 7, 4)),  # scaled to the usage total: 9 spare by 0:4:2
    ],
)
def test_split_tokens(total, packages, weights, expected):
    assert split_tokens(total, packages, weights) == expected
    assert sum(expected) == total


async def test_events_of_unexpected_shape_are_a_failed_request(aiohttp_server):
    odd = b'data: {"choices": "nope"}\n\ndata: {"choices": [{"delta": "text"}]}\n\n'
    url = await serve(aiohttp_server, stream_app([(0, odd), (0, DONE)]))
    [rec] = await run_requests(url)
    assert rec.status in (R.BAD_RESPONSE, R.NO_OUTPUT) and rec.error


async def test_an_open_loop_step_holds_only_the_requests_in_flight():
    # 1,500 short requests due faster than a cap of 4 lets them go: the Task objects of this loop,
    # sampled during the step, stay near the cap (a step used to keep one per request to its end:
    # an hour at 1,000 req/s held 3.6 million of them).
    api = get_adapter("openai-chat")
    body = api.build_body([Prompt("one two", None, None)], model="m", max_tokens=1, extra={})
    records: list[R.RequestRecord] = []
    samples: list[int] = []
    loop = asyncio.get_running_loop()

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.1)
            gc.collect()
            samples.append(sum(1 for o in gc.get_objects() if isinstance(o, asyncio.Task) and o.get_loop() is loop))

    with MockInThread(MockConfig(ttft_ms=0, itl_ms=0, output_tokens=1)) as mock:
        target = Target(mock.base_url + api.path, api, {})
        async with make_transport(target, timeout_s=30, connect_timeout_s=5, max_connections=8) as transport:
            engine = Engine(transport, target, [PreparedRequest(body, 2)], records.append)
            sampler = asyncio.ensure_future(sample())
            try:
                await engine.run_step(StepPlan(step=0, concurrency=4, number=1500, duration_s=None, rate_req_s=3000))
            finally:
                sampler.cancel()
    assert len(records) == 1500 and all(r.ok for r in records)
    assert len(samples) >= 3, samples
    # Per request in flight (4): its task, the HTTP client's body writer, one that just ended (its
    # callbacks not yet run); and a few of the step's own (the test, the sampler, run_step, the
    # dispatcher, the finisher, the body builder).
    assert max(samples) <= 3 * 4 + 6, samples
