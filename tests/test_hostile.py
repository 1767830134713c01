"""Hostile servers: whatever bytes come back, each request becomes a record and the run goes on.

Every server here is a real aiohttp server on 127.0.0.1 writing the bytes a broken or malicious
server would; each is sent the same requests through both transports, whose records must agree. The property test at the end feeds arbitrary and mutated streams through the whole
interpretation path (SSE split, event interpretation, token shares, the record).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib

import pytest
from aiohttp import web
from hypothesis import given, settings, strategies as st

from perfbench.engine import transport as transport_module
from perfbench.results import records as R
from perfbench.apis import get_adapter
from perfbench.engine.answers import Exchange, ReadStream
from perfbench.engine.engine import Engine
from perfbench.engine.transport_factory import make_transport
from perfbench.engine.plan import PreparedRequest, StepPlan, Target
from perfbench.metrics import summarize_step
from tests.differential import TRANSPORTS, assert_same_records

ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
DONE = b"data: [DONE]\n\n"


def content(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}).encode() + b"\n\n"


def usage_chunk(usage: object) -> bytes:
    return b'data: {"choices":[],"usage":' + json.dumps(usage).encode() + b"}\n\n"


GOOD = ROLE + content("a") + content("b") + usage_chunk({"prompt_tokens": 3, "completion_tokens": 2}) + DONE

# Answers that must each fail their request with bad_response (and never raise).
HOSTILE_BODIES = {
    "usage count as a string": ROLE + content("a") + usage_chunk({"completion_tokens": "12"}) + DONE,
    "usage count as a list": ROLE + content("a") + usage_chunk({"completion_tokens": [1]}) + DONE,
    "usage count as an object": ROLE + content("a") + usage_chunk({"completion_tokens": {"n": 1}}) + DONE,
    "usage count NaN": ROLE + content("a") + b'data: {"choices":[],"usage":{"completion_tokens":NaN}}\n\n' + DONE,
    "usage count 1e30": ROLE + content("a") + b'data: {"choices":[],"usage":{"completion_tokens":1e30}}\n\n' + DONE,
    "usage count huge integer": ROLE + content("a") + usage_chunk({"completion_tokens": 10**30}) + DONE,
    "negative usage count": ROLE + content("a") + usage_chunk({"completion_tokens": -3}) + DONE,
    "fractional usage count": ROLE + content("a") + usage_chunk({"completion_tokens": 2.5}) + DONE,
    "usage as a string": ROLE + content("a") + b'data: {"choices":[],"usage":"lots"}\n\n' + DONE,
    "prompt tokens as a bool": ROLE + content("a") + usage_chunk({"prompt_tokens": True, "completion_tokens": 1}) + DONE,
    "text after [DONE]": ROLE + content("a") + DONE + content("smuggled"),
    "chunk without choices": ROLE + content("a") + b'data: {"id":"x","object":"chat.completion.chunk"}\n\n' + DONE,
    "choices not a list": ROLE + content("a") + b'data: {"choices":{"0":{"delta":{"content":"x"}}}}\n\n' + DONE,
    "choice not an object": ROLE + content("a") + b'data: {"choices":["x"]}\n\n' + DONE,
    "delta not an object": ROLE + content("a") + b'data: {"choices":[{"delta":"x"}]}\n\n' + DONE,
    "content not a string": ROLE + content("a") + b'data: {"choices":[{"delta":{"content":7}}]}\n\n' + DONE,
    "tool call arguments not a string": ROLE + b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":{}}}]}}]}\n\n' + DONE,
    "a non-JSON event among good ones": ROLE + content("a") + b"data: {oops\n\n" + content("b") + DONE,
}


SEEN = web.AppKey("seen", dict)


def app_answering(bodies: list[bytes], *, headers: dict[str, str] | None = None, compress: bool = False) -> web.Application:
    """A server answering request k with ``bodies[k % len(bodies)]``, one write per event."""
    seen = {"count": 0, "headers": []}

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        body = bodies[seen["count"] % len(bodies)]
        seen["count"] += 1
        seen["headers"].append(dict(request.headers))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **(headers or {})})
        if compress:
            response.enable_compression(web.ContentCoding.gzip)  # forced, whatever the client asked for
        await response.prepare(request)
        for event in body.split(b"\n\n"):
            if event:
                await response.write(event + b"\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app[SEEN] = seen
    app.router.add_post("/v1/chat/completions", handler)
    return app


async def run(url: str, number: int = 1, *, concurrency: int = 1, max_response_bytes: int | None = None, secrets=(), headers=None):
    """The step's records through the lean transport, after checking that aiohttp gives the same ones
    (tests/differential.py): every server here is also a differential test of the two transports."""
    target = Target(url, get_adapter("openai-chat"), headers or {}, secrets=secrets,
                    **({"max_response_bytes": max_response_bytes} if max_response_bytes else {}))
    runs = {}
    for kind in TRANSPORTS:
        records: list[R.RequestRecord] = []
        async with make_transport(target, timeout_s=10, connect_timeout_s=2, max_connections=concurrency, kind=kind) as http:
            engine = Engine(http, target, [PreparedRequest(b"{}", 5)], records.append)
            await engine.run_step(StepPlan(step=0, concurrency=concurrency, number=number, duration_s=None))
        runs[kind] = records
    assert_same_records(runs["lean"], runs["aiohttp"], by_index=concurrency == 1)
    return runs["lean"]


async def url_of(aiohttp_server, app: web.Application) -> str:
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/v1/chat/completions"))


async def test_every_hostile_answer_fails_its_request_and_the_step_goes_on(aiohttp_server):
    names = list(HOSTILE_BODIES)
    url = await url_of(aiohttp_server, app_answering([GOOD, *HOSTILE_BODIES.values()]))
    records = await run(url, number=3 * (len(names) + 1), concurrency=4)
    assert len(records) == 3 * (len(names) + 1)
    by_index = {r.index: r for r in records}
    for index, record in by_index.items():
        kind = index % (len(names) + 1)
        if kind == 0:
            assert record.ok and record.output_tokens == 2, record
        else:
            assert record.status == R.BAD_RESPONSE, (names[kind - 1], record)
            assert record.error and "\n" not in record.error
    summary = summarize_step(records, concurrency=4, rate_req_s=None, requests_expected=len(records))
    assert summary.requests_succeeded == 3 and summary.failure_reasons == {R.BAD_RESPONSE: 3 * len(names)}
    assert summary.output_tokens_per_request.max == 2  # no hostile count leaked into a statistic


@pytest.mark.parametrize("status", [401, 404, 429, 500, 503])
async def test_http_errors_name_their_status_and_keep_the_servers_words(aiohttp_server, status):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"nope {status}", "type": "x"}}, status=status)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    [record] = await run(await url_of(aiohttp_server, app))
    assert record.status == f"http_{status}" and record.http_status == status
    assert record.error == f"HTTP {status}: nope {status}"


async def test_a_redirect_is_not_followed(aiohttp_server):
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPFound("/elsewhere")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    [record] = await run(await url_of(aiohttp_server, app))
    assert record.status == "http_302" and "/elsewhere" in record.error


async def test_fastapi_validation_errors_show_their_messages(aiohttp_server):
    async def handler(request: web.Request) -> web.Response:
        detail = [{"loc": ["body", "min_tokens"], "msg": "Extra inputs are not permitted"}]
        return web.json_response({"detail": detail}, status=422)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    [record] = await run(await url_of(aiohttp_server, app))
    assert record.status == "http_422" and record.error == "HTTP 422: Extra inputs are not permitted"


async def test_a_gzipping_server_is_decoded_and_asked_for_identity(aiohttp_server):
    app = app_answering([GOOD], compress=True)
    records = await run(await url_of(aiohttp_server, app), number=3)
    assert [r.status for r in records] == [R.OK] * 3
    assert all(r.output_tokens == 2 and len(r.package_times_ns) == 2 for r in records)
    assert all(h.get("Accept-Encoding") == "identity" for h in app[SEEN]["headers"])


async def test_a_body_that_is_not_what_its_encoding_says_fails_with_a_reason(aiohttp_server):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"plainly not gzip", headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    [record] = await run(await url_of(aiohttp_server, app))
    assert record.status == R.BAD_RESPONSE and "gzip" in record.error


async def test_an_unknown_content_encoding_fails_with_a_reason(aiohttp_server):
    app = app_answering([GOOD], headers={"Content-Encoding": "br"})
    [record] = await run(await url_of(aiohttp_server, app))
    assert record.status == R.BAD_RESPONSE and "'br'" in record.error


async def test_a_gzip_bomb_is_cut_at_the_response_bound(aiohttp_server):
    bomb = gzip.compress(b"data: " + b"x" * (8 * 2**20))  # 8 MiB of one line, about 8 KiB on the wire

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    [record] = await run(await url_of(aiohttp_server, app), max_response_bytes=2**20)
    assert record.status == R.RESPONSE_TOO_LARGE


def endless_app(piece: bytes) -> web.Application:
    """A server writing ``piece`` as fast as it can until the client goes (bounded: at most 1 GiB)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(2**30 // len(piece)):
            try:
                await response.write(piece)
            except (ConnectionError, RuntimeError):
                break
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    return app


async def test_a_server_streaming_without_end_is_cut_at_max_response_bytes(aiohttp_server):
    url = await url_of(aiohttp_server, endless_app(content("token ") * 50))
    [record] = await asyncio.wait_for(run(url, max_response_bytes=2**20), 30)
    assert record.status == R.RESPONSE_TOO_LARGE and "--max-response-bytes" in record.error


async def test_a_line_that_never_ends_is_cut(aiohttp_server, monkeypatch):
    monkeypatch.setattr(transport_module, "MAX_LINE_BYTES", 2**16)
    url = await url_of(aiohttp_server, endless_app(b"data: " + b"x" * 4096))
    [record] = await asyncio.wait_for(run(url), 30)
    assert record.status == R.RESPONSE_TOO_LARGE and "one line" in record.error


async def test_a_server_closing_during_the_headers_is_a_cut_request_not_unreachable(aiohttp_server):
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(b"HTTP/1.1 200 OK\r\nContent-Ty")
        request.transport.abort()
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    [record] = await run(await url_of(aiohttp_server, app))
    assert record.status == R.CUT_STREAM and record.status != R.CONNECT_ERROR


async def test_endless_headers_fail_the_request(aiohttp_server):
    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.write(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 2**20)  # a header line of 1 MiB, no end
        await asyncio.sleep(3)
        return web.Response()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    [record] = await asyncio.wait_for(run(await url_of(aiohttp_server, app)), 20)
    assert record.status == R.BAD_RESPONSE and record.http_status is None


async def test_a_server_echoing_the_key_does_not_get_it_written(aiohttp_server):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": f"bad key: {request.headers['Authorization']}"}}, status=401)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    key = "sk-verysecret-123"
    [record] = await run(await url_of(aiohttp_server, app), headers={"Authorization": f"Bearer {key}"}, secrets=(key,))
    assert record.status == "http_401" and key not in record.error and "bad key: Bearer ***" in record.error


# --- the whole interpretation path, on arbitrary and mutated streams ---------------------------

_events = st.one_of(
    st.sampled_from([ROLE, content("a"), content("bc"), DONE, *HOSTILE_BODIES.values()]),
    st.builds(usage_chunk, st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens"]),
                                           st.one_of(st.integers(-5, 10**12), st.floats(allow_nan=True), st.text(max_size=3),
                                                     st.none(), st.booleans(), st.lists(st.integers(), max_size=2)))),
    st.binary(max_size=40),
)


@st.composite
def _streams(draw) -> list[bytes]:
    """A stream of events, then mutated: bytes flipped, cut, duplicated; split into arbitrary reads."""
    stream = bytearray(b"".join(draw(st.lists(_events, max_size=12))))
    for _ in range(draw(st.integers(0, 3))):
        if stream:
            at = draw(st.integers(0, len(stream) - 1))
            stream[at] = draw(st.integers(0, 255))
    if stream and draw(st.booleans()):
        del stream[draw(st.integers(0, len(stream) - 1)) :]
    data = bytes(stream)
    cuts = sorted(set(draw(st.lists(st.integers(0, max(len(data), 1)), max_size=6))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)]) if data[a:b]]


@settings(max_examples=400, deadline=None)
@given(
    chunks=_streams(),
    api=st.sampled_from(["openai-chat", "openai-completions", "openai-responses", "openai-embeddings"]),
    gzipped=st.booleans(),
    whole_body=st.booleans(),
)
def test_no_stream_raises_and_every_record_is_sane(chunks, api, gzipped, whole_body):
    engine = Engine(None, Target("http://127.0.0.1:9/", get_adapter(api), {}), [PreparedRequest(b"{}", 4)], lambda r: None)  # type: ignore[arg-type]
    if whole_body:  # the same bytes as one JSON answer, e.g. '{"choices": ...}' without the "data: " framing
        chunks = [c.replace(b"data: ", b"") for c in chunks]
    stream = ReadStream(chunks=list(chunks), read_ns=[1_000 + i for i in range(len(chunks))], whole_body=whole_body)
    if gzipped and chunks:
        packed = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        stream.chunks = [packed.compress(c) for c in chunks]
        stream.chunks[-1] += packed.flush()
        stream.encoding = "gzip"
    record = engine._answers.record(Exchange(0, 0, False, 0, 10, 20_000, 200, None, stream, PreparedRequest(b"{}", 4)))
    assert record.status == R.OK or record.error, record
    if record.ok and get_adapter(api).produces_output:
        assert record.package_times_ns and list(record.package_times_ns) == sorted(record.package_times_ns)
        assert isinstance(record.output_tokens, int) and 0 < record.output_tokens <= 10**9
        assert len(record.package_tokens) == len(record.package_times_ns) and sum(record.package_tokens) == record.output_tokens
        assert all(t >= 0 for t in record.package_tokens)
    for count in (record.input_tokens, record.output_tokens):
        assert count is None or (isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= 10**9)
    summarize_step([record], concurrency=1, rate_req_s=None, requests_expected=1)  # statistics never raise either


def test_a_usage_of_zero_beside_streamed_output_is_not_taken_as_the_count():
    """Found by the property test above: output arrived, the server's usage said 0 completion tokens."""
    engine = Engine(None, Target("http://127.0.0.1:9/", get_adapter("openai-chat"), {}), [PreparedRequest(b"{}", 4)], lambda r: None)  # type: ignore[arg-type]
    chunks = [b'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\ndata: {"choices":[],"usage":{"completion_tokens": 0}}\n\n']
    stream = ReadStream(chunks=chunks, read_ns=[1_000])
    record = engine._answers.record(Exchange(0, 0, False, 0, 10, 20_000, 200, None, stream, PreparedRequest(b"{}", 4)))
    assert record.ok and record.output_tokens == 1 and record.token_source == R.TOKENS_FROM_PACKAGES
