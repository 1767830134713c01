"""The transports (perfbench/engine/transport.py): the lean HTTP/1.1 client against raw servers on
127.0.0.1 that write exact bytes, aiohttp beside it where both must behave alike, the choice between
them, and the two compared on the mock server (tests/test_hostile.py compares them on every hostile
server there).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest

from perfbench.apis import get_adapter
from perfbench.commands.main import main
from perfbench.core.errors import ConfigError
from perfbench.engine import lean_http, transport_factory
from perfbench.engine.answers import ReadStream
from perfbench.engine.engine import Engine
from perfbench.engine.plan import PreparedRequest, StepPlan, Target
from perfbench.engine.transport_factory import make_transport
from perfbench.results import records as R
from perfbench.servers.mock import MockConfig, MockInThread, MockServer
from perfbench.workload.prompts import Prompt
from tests.differential import TRANSPORTS, assert_same_records
from tests.test_hostile import DONE, ROLE, content, usage_chunk
from tests.tls_certs import make_certificate

PATH = "/v1/chat/completions"
SSE = "Content-Type: text/event-stream\r\n"
STREAM = ROLE + content("a") + content("b") + content("c") + usage_chunk({"prompt_tokens": 3, "completion_tokens": 3}) + DONE


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def with_length(body: bytes, head: str = SSE) -> bytes:
    return f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


# ------------------------------------------------------------------------------ a raw server

@dataclass
class Seen:
    """What a raw server saw: connections opened, and each request (connection number, its bytes)."""

    connections: int = 0
    requests: list[tuple[int, bytes]] = field(default_factory=list)

    def header(self, request: int, name: str) -> str | None:
        head = self.requests[request][1].split(b"\r\n\r\n")[0].decode()
        for line in head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


# answer(writer, number of the request on the server, 0-based) -> False to close the connection after it
Answer = Callable[[asyncio.StreamWriter, int], Awaitable[Any]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        return head + await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return None


@asynccontextmanager
async def raw_server(answer: Answer, *, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[str, Seen]]:
    """A server writing exactly what ``answer`` writes, to each request in turn; yields (endpoint URL, Seen)."""
    seen = Seen()
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        seen.connections += 1
        number = seen.connections
        try:
            while (request := await _read_request(reader)) is not None:
                seen.requests.append((number, request))
                if await answer(writer, len(seen.requests) - 1) is False:
                    break
        except (ConnectionError, ssl.SSLError):
            pass
        except asyncio.CancelledError:  # the test is over (ended here, not left cancelled: asyncio would log it)
            pass
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(handle, host, 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"{'https' if tls else 'http'}://{shown}:{port}{PATH}", seen
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def run(url: str, kind: str = "lean", *, number: int = 1, concurrency: int = 1, timeout_s: float = 5,
              pause_s: float = 0, target: dict[str, Any] | None = None) -> list[R.RequestRecord]:
    """``number`` requests one after another (``pause_s`` between them), or ``concurrency`` at a time, through one transport."""
    records: list[R.RequestRecord] = []
    goal = Target(url, get_adapter("openai-chat"), {}, **(target or {}))
    async with make_transport(goal, timeout_s=timeout_s, connect_timeout_s=2, max_connections=max(concurrency, 1), kind=kind) as http:
        engine = Engine(http, goal, [PreparedRequest(b'{"x": 1}', 5)], records.append)
        steps = [number] if not pause_s else [1] * number
        for step, count in enumerate(steps):
            if step:
                await asyncio.sleep(pause_s)
            await engine.run_step(StepPlan(step=step, concurrency=concurrency, number=count, duration_s=None))
    return records


def assert_streamed(record: R.RequestRecord, packages: int = 3) -> None:
    assert record.status == R.OK and record.http_status == 200, record.error
    assert len(record.package_times_ns) == packages and record.output_tokens == packages


# ------------------------------------------------------------------------------ bodies and framing

@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_chunked_body_whose_chunks_split_lines_and_frames(kind):
    # Chunk payloads cut inside SSE lines; the chunk framing itself cut across writes; 20 ms between writes.
    ends = [len(ROLE) + len(content("a")) * k for k in (1, 2, 3)]  # where packages a, b and c end
    cuts = [0, 9, len(ROLE) - 1, len(ROLE) + 30, ends[0] + 5, ends[1] + 5, len(STREAM) - 3, len(STREAM)]
    pieces = [STREAM[a:b] for a, b in zip(cuts, cuts[1:])]

    async def answer(writer, n):
        writer.write(f"HTTP/1.1 200 OK\r\n{SSE}Transfer-Encoding: chunked\r\n\r\n".encode())
        for piece in pieces:
            frame = chunked(piece)
            for part in (frame[:1], frame[1:5], frame[5:]):
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.02)
        writer.write(b"0\r\n\r\n")

    async with raw_server(answer) as (url, seen):
        records = await run(url, kind, number=2)
    for record in records:
        assert_streamed(record)
        gaps_ms = [(b - a) / 1e6 for a, b in zip(record.package_times_ns, record.package_times_ns[1:])]
        assert all(g >= 15 for g in gaps_ms), gaps_ms  # each package completed by its own later write
    assert seen.connections == 1  # the chunked body ended cleanly: the connection was kept


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_content_length_body(kind):
    async def answer(writer, n):
        writer.write(with_length(STREAM))

    async with raw_server(answer) as (url, seen):
        records = await run(url, kind, number=3)
    for record in records:
        assert_streamed(record)
    assert seen.connections == 1 and len(seen.requests) == 3


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_body_that_ends_with_the_connection(kind):
    async def answer(writer, n):
        writer.write(f"HTTP/1.1 200 OK\r\n{SSE}\r\n".encode() + ROLE + content("a"))
        await asyncio.sleep(0.02)
        writer.write(content("b") + content("c") + DONE)
        return False  # no length, not chunked: the close ends it

    async with raw_server(answer) as (url, seen):
        records = await run(url, kind, number=2)
    for record in records:
        assert_streamed(record)
    assert seen.connections == 2  # never reused


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_interim_answers_are_skipped(kind):
    async def answer(writer, n):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0.01)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" + with_length(STREAM))

    async with raw_server(answer) as (url, seen):
        records = await run(url, kind, number=2)
    for record in records:
        assert_streamed(record)
    assert seen.connections == 1


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_204_has_no_body_and_keeps_the_connection(kind):
    async def answer(writer, n):
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n" if n == 0 else with_length(STREAM))

    async with raw_server(answer) as (url, seen):
        first, second = await run(url, kind, number=2)
    assert (first.status, first.http_status) == (R.NO_OUTPUT, 204)
    assert_streamed(second)
    assert seen.connections == 1


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_connection_close_sends_the_next_request_on_a_new_connection(kind):
    async def answer(writer, n):
        writer.write(with_length(STREAM, SSE + "Connection: close\r\n"))  # and the server keeps it open: the client must not reuse it

    async with raw_server(answer) as (url, seen):
        records = await run(url, kind, number=3)
    for record in records:
        assert_streamed(record)
    assert seen.connections == 3 and [conn for conn, _ in seen.requests] == [1, 2, 3]


async def test_an_http_1_0_answer_is_not_reused():
    async def answer(writer, n):
        writer.write(with_length(STREAM).replace(b"HTTP/1.1", b"HTTP/1.0", 1).replace(b"\r\n\r\n", b"\r\nConnection: keep-alive\r\n\r\n", 1))

    async with raw_server(answer) as (url, seen):
        records = await run(url, number=2)
    for record in records:
        assert_streamed(record)
    assert seen.connections == 2


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_error_answer_keeps_its_words_and_its_status(kind):
    body = json.dumps({"error": {"message": "slow down"}}).encode()

    async def answer(writer, n):
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async with raw_server(answer) as (url, seen):
        records = await run(url, kind, number=2)
    assert [(r.status, r.http_status, r.error) for r in records] == [("http_429", 429, "HTTP 429: slow down")] * 2


# ------------------------------------------------------------------------------ closed connections and retries

async def test_a_pooled_connection_the_server_closed_while_idle_is_not_used_again():
    async def answer(writer, n):
        writer.write(with_length(STREAM))
        await writer.drain()
        await asyncio.sleep(0.05)
        return False  # closed 50 ms after answering: idle in the client's pool by then

    async with raw_server(answer) as (url, seen):
        records = await run(url, number=3, pause_s=0.2)
    for record in records:
        assert_streamed(record)
    assert seen.connections == 3 and len(seen.requests) == 3


async def test_a_pooled_connection_closed_as_the_request_arrives_is_retried_on_a_new_one():
    async def answer(writer, n):
        if n == 1:
            return False  # the second request, on the kept connection: closed unanswered, not a byte sent
        writer.write(with_length(STREAM))

    async with raw_server(answer) as (url, seen):
        records = await run(url, number=2)
    for record in records:
        assert_streamed(record)
    assert [conn for conn, _ in seen.requests] == [1, 1, 2]  # the second request went again, on a new connection


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_new_connection_closed_before_answering_is_a_cut_request_not_retried(kind):
    async def answer(writer, n):
        return False

    async with raw_server(answer) as (url, seen):
        [record] = await run(url, kind)
    assert record.status == R.CUT_STREAM and record.http_status is None
    assert record.error.startswith("the server closed the connection before answering")
    assert len(seen.requests) == 1


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_server_closing_mid_body_cuts_the_request_and_it_is_never_retried(kind):
    async def answer(writer, n):
        if n == 0:
            writer.write(with_length(STREAM))
            return
        writer.write(with_length(STREAM)[: -len(DONE) - 10])  # on the kept connection: half an answer, then the close
        await writer.drain()
        return False

    async with raw_server(answer) as (url, seen):
        first, second = await run(url, kind, number=2)
    assert_streamed(first)
    assert second.status == R.CUT_STREAM and second.http_status == 200
    assert second.error.startswith("the server closed the connection while streaming")
    assert len(seen.requests) == 2


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_byte_then_silence_times_out(kind):
    async def answer(writer, n):
        writer.write(b"H" if n == 0 else f"HTTP/1.1 200 OK\r\n{SSE}Transfer-Encoding: chunked\r\n\r\n".encode() + chunked(ROLE + content("a")))
        await asyncio.sleep(5)

    async with raw_server(answer) as (url, seen):
        started = time.monotonic()
        [before] = await run(url, kind, timeout_s=0.4)
        [streaming] = await run(url, kind, timeout_s=0.4)
        elapsed_s = time.monotonic() - started
    assert (before.status, before.http_status, before.error) == (R.TIMEOUT, None, "timed out before the server answered")
    assert (streaming.status, streaming.http_status, streaming.error) == (R.TIMEOUT, 200, "timed out while streaming (--timeout)")
    assert 0.8 <= elapsed_s < 3


async def test_a_refused_connection_is_a_connect_error():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [record] = await run(f"http://127.0.0.1:{port}{PATH}")
    assert record.status == R.CONNECT_ERROR and record.error.startswith("cannot connect: ")


async def test_a_cancelled_request_closes_its_connection():
    async def answer(writer, n):
        writer.write(f"HTTP/1.1 200 OK\r\n{SSE}Transfer-Encoding: chunked\r\n\r\n".encode() + chunked(ROLE))
        await asyncio.sleep(5)  # then silence: nothing from the server would close the connection

    async with raw_server(answer) as (url, seen):
        target = Target(url, get_adapter("openai-chat"), {})
        async with make_transport(target, timeout_s=5, connect_timeout_s=2, max_connections=1) as http:
            task = asyncio.ensure_future(http.exchange(PreparedRequest(b"{}", 1), ReadStream()))
            await asyncio.sleep(0.1)
            [conn] = http._open  # type: ignore[attr-defined]
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.05)
            assert conn.closed and conn.transport.is_closing()
            assert not http._open and not http._idle  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ what is sent

async def test_each_request_is_one_write_of_the_targets_head_and_its_body():
    writes: list[bytes] = []

    async def answer(writer, n):
        writer.write(with_length(STREAM))

    async with raw_server(answer) as (url, seen):
        target = Target(url, get_adapter("openai-chat"), {"X-Team": "infra"})
        request = PreparedRequest(b'{"prompt": "hi"}', 1)
        async with make_transport(target, timeout_s=5, connect_timeout_s=2, max_connections=1) as http:
            await http.preconnect(1)
            [conn] = http._idle  # type: ignore[attr-defined]
            real = conn.transport

            class Spy:
                def __getattr__(self, name: str) -> Any:
                    return getattr(real, name)

                def write(self, data: bytes) -> None:
                    writes.append(data)
                    real.write(data)

            conn.transport = Spy()
            for _ in range(3):
                status, _, failure = await http.exchange(request, ReadStream())
                assert (status, failure) == (200, None)
    assert len(writes) == 3 and writes[0] == writes[1] == writes[2]  # one write each
    assert seen.connections == 1 and [r for _, r in seen.requests] == [writes[0]] * 3
    head = writes[0].split(b"\r\n\r\n")[0].decode()
    assert head.startswith(f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:") and writes[0].endswith(b'\r\n\r\n{"prompt": "hi"}')
    assert {"Content-Length: 16", "X-Team: infra", "Accept-Encoding: identity"} <= set(head.split("\r\n"))


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_url_credentials_are_sent_as_basic_auth(kind):
    async def answer(writer, n):
        writer.write(with_length(STREAM))

    async with raw_server(answer) as (url, seen):
        [record] = await run(url.replace("://", "://user:p%40ss@"), kind)
        assert_streamed(record)
    assert seen.header(0, "Authorization") == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert "@" not in seen.header(0, "Host")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no ::1")
@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_ipv6_literal(kind):
    async def answer(writer, n):
        writer.write(with_length(STREAM))

    async with raw_server(answer, host="::1") as (url, seen):
        assert url.startswith("http://[::1]:")
        [record] = await run(url, kind)
    assert_streamed(record)
    assert seen.header(0, "Host") == url.split("/")[2]


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_tls_is_verified_against_ca_cert_refused_without_it_and_skipped_with_insecure(kind, tmp_path):
    certificate = make_certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certificate.cert, certificate.key)

    async def answer(writer, n):
        writer.write(with_length(STREAM))

    async with raw_server(answer, tls=tls) as (url, seen):
        [trusted] = await run(url, kind, target={"ca_cert": str(certificate.cert)})
        [refused] = await run(url, kind)
        [insecure] = await run(url, kind, target={"insecure": True})
    assert_streamed(trusted)
    assert_streamed(insecure)
    assert refused.status == R.CONNECT_ERROR and "CERTIFICATE_VERIFY_FAILED" in refused.error
    assert len(seen.requests) == 2  # the refused one never sent its request


# ------------------------------------------------------------------------------ the stamp

async def test_each_read_is_stamped_when_its_bytes_arrive():
    """A server in another thread writes two packages 50 ms apart, stamping each write: the client's
    stamps are 50 ms apart and the first within a few ms of the server's write."""
    written_ns: list[int] = []
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def answer(writer, n):
        writer.write(f"HTTP/1.1 200 OK\r\n{SSE}Transfer-Encoding: chunked\r\n\r\n".encode() + chunked(ROLE))
        await writer.drain()
        for text in ("a", "b"):
            await asyncio.sleep(0.05)
            writer.write(chunked(content(text)))
            await writer.drain()
            written_ns.append(time.perf_counter_ns())
        writer.write(chunked(DONE) + b"0\r\n\r\n")

    @contextmanager
    def server_in_thread() -> Iterator[str]:
        context = raw_server(answer)
        url, _ = asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(10)
        try:
            yield url
        finally:
            asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop).result(10)

    try:
        with server_in_thread() as url:
            [record] = await run(url)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert record.status == R.OK and len(record.package_times_ns) == 2
    first, second = record.package_times_ns
    assert 45 <= (second - first) / 1e6 <= 60
    assert -1 <= (first - written_ns[0]) / 1e6 < 5, (first - written_ns[0]) / 1e6


def test_the_stamp_is_taken_before_the_parser_runs_and_kept_by_every_piece_of_the_read(monkeypatch):
    """Straight into the protocol: one read holding the headers and two chunks of body, one holding a third.
    Every piece of a read gets the stamp taken as that read came in, before any parsing."""
    ticks = iter(range(1000, 100000, 1000))
    monkeypatch.setattr(lean_http, "_clock", lambda: next(ticks))
    target = Target(f"http://127.0.0.1:9{PATH}", get_adapter("openai-chat"), {})
    pool = lean_http.LeanTransport(target, timeout_s=5, connect_timeout_s=1)
    conn = lean_http._Connection(pool)
    loop = asyncio.new_event_loop()
    try:
        waiter = loop.create_future()
        stream = ReadStream()
        conn.begin(stream, waiter, pooled=False)
        conn.data_received(f"HTTP/1.1 200 OK\r\n{SSE}Transfer-Encoding: chunked\r\n\r\n".encode() + chunked(ROLE) + chunked(content("a")))
        conn.data_received(chunked(content("b")) + b"0\r\n\r\n")
        assert waiter.done() and waiter.result() is None
    finally:
        loop.close()
    assert stream.chunks == [ROLE, content("a"), content("b")]
    assert stream.read_ns == [1000, 1000, 2000]


# ------------------------------------------------------------------------------ connections ahead of the clock

async def test_preconnect_opens_connections_that_the_requests_then_use():
    async def answer(writer, n):
        writer.write(with_length(STREAM))

    async with raw_server(answer) as (url, seen):
        target = Target(url, get_adapter("openai-chat"), {})
        records: list[R.RequestRecord] = []
        async with make_transport(target, timeout_s=5, connect_timeout_s=2, max_connections=4) as http:
            engine = Engine(http, target, [PreparedRequest(b"{}", 5)], records.append)
            await engine.preconnect(4)
            await asyncio.sleep(0.05)
            assert (seen.connections, seen.requests) == (4, [])
            await engine.run_step(StepPlan(step=0, concurrency=4, number=12, duration_s=None))
    assert len(records) == 12 and all(r.ok for r in records)
    assert seen.connections == 4


# ------------------------------------------------------------------------------ which transport

@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def _chosen(url: str) -> str:
    async with make_transport(Target(url, get_adapter("openai-chat"), {}), timeout_s=5, connect_timeout_s=1, max_connections=1) as transport:
        return transport.name


async def test_an_environment_proxy_that_applies_to_the_target_chooses_aiohttp(no_proxy_env):
    env = no_proxy_env
    assert await _chosen("http://127.0.0.1:8000/v1") == "lean"
    env.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert await _chosen("http://127.0.0.1:8000/v1") == "lean"  # an https proxy does not apply to http
    assert await _chosen("https://gpu-box:8443/v1") == "aiohttp"
    env.setenv("http_proxy", "http://127.0.0.1:3128")
    assert await _chosen("http://gpu-box:8000/v1") == "aiohttp"
    env.setenv("NO_PROXY", "gpu-box,127.0.0.1")
    assert await _chosen("http://gpu-box:8000/v1") == "lean"
    assert await _chosen("https://gpu-box:8443/v1") == "lean"
    env.delenv("NO_PROXY")
    env.delenv("http_proxy")
    env.delenv("HTTPS_PROXY")
    env.setenv("ALL_PROXY", "http://127.0.0.1:3128")
    assert await _chosen("http://gpu-box:8000/v1") == "aiohttp"
    env.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ConfigError, match="not an http\\(s\\) proxy.*NO_PROXY=gpu-box"):
        await _chosen("http://gpu-box:8000/v1")


async def test_without_httptools_aiohttp_does_the_job(no_proxy_env):
    no_proxy_env.setattr(transport_factory, "httptools_available", lambda: False)
    assert await _chosen("http://127.0.0.1:8000/v1") == "aiohttp"


@contextmanager
def relay_in_thread(to_port: int) -> Iterator[tuple[int, list[bytes]]]:
    """A forward HTTP proxy as plain as can be: each connection relayed to ``to_port``; yields (its port,
    the first bytes of each connection it relayed)."""
    first_bytes: list[bytes] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", to_port)
        data = await reader.read(65536)
        first_bytes.append(data)
        upstream_writer.write(data)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(asyncio.start_server(relay, "127.0.0.1", 0), loop).result(10)
    try:
        yield server.sockets[0].getsockname()[1], first_bytes
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_a_run_through_an_environment_proxy_uses_it_and_says_so(no_proxy_env, tmp_path):
    with MockInThread(MockConfig(ttft_ms=1, itl_ms=1)) as mock:
        argv = ["--url", f"{mock.base_url}/v1/chat/completions", "-n", "4", "--max-tokens", "4",
                "--no-plots", "--no-live", "--no-telemetry"]
        assert main([*argv, "--output-dir", str(tmp_path / "direct")]) == 0
        port = int(mock.base_url.rsplit(":", 1)[1])
        with relay_in_thread(port) as (proxy_port, relayed):
            no_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
            assert main([*argv, "--output-dir", str(tmp_path / "proxied")]) == 0
    direct = json.loads((tmp_path / "direct" / "summary.json").read_text())
    proxied = json.loads((tmp_path / "proxied" / "summary.json").read_text())
    assert direct["environment"]["transport"] == "lean" and "transport_reason" not in direct["environment"]
    assert proxied["environment"]["transport"] == "aiohttp"
    assert f"127.0.0.1:{proxy_port}" in proxied["environment"]["transport_reason"]
    assert proxied["steps"][0]["requests_succeeded"] == 4
    # The requests went through the proxy: absolute-form request lines, as a client speaks to a proxy.
    assert relayed and all(data.startswith(b"POST http://127.0.0.1:") for data in relayed)


# ------------------------------------------------------------------------------ both transports, the same records

FAULTS = {"http_error_fraction": 0.1, "cut_fraction": 0.1, "error_event_fraction": 0.1, "stall_fraction": 0.1,
          "bad_body_fraction": 0.1, "stall_s": 2.0}


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "faults"])
@pytest.mark.parametrize("api", ["openai-chat", "openai-completions", "openai-responses", "openai-embeddings"])
async def test_both_transports_give_the_same_records_from_the_mock(api, faults):
    adapter = get_adapter(api)
    requests = [PreparedRequest(adapter.build_body([Prompt(" ".join(["w"] * (i + 1)), None, None)], model="m", max_tokens=12, extra={}),
                                None) for i in range(10)]
    concurrency = 1 if faults else 4  # faults go by arrival order: one at a time, the same requests get them
    runs = {}
    for kind in TRANSPORTS:
        server = MockServer(MockConfig(ttft_ms=5, itl_ms=2, **(FAULTS if faults else {})))
        base = await server.start()
        records: list[R.RequestRecord] = []
        target = Target(base + adapter.path, adapter, {})
        try:
            async with make_transport(target, timeout_s=1, connect_timeout_s=2, max_connections=concurrency, kind=kind) as http:
                engine = Engine(http, target, requests, records.append)
                await engine.run_step(StepPlan(step=0, concurrency=concurrency, number=len(requests), duration_s=None))
        finally:
            await server.stop()
        runs[kind] = records
    assert_same_records(runs["lean"], runs["aiohttp"])
    statuses = {r.status for r in runs["lean"]}
    assert statuses == {R.OK} if not faults else len(statuses) >= 3, statuses
