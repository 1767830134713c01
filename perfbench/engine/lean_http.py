"""The lean HTTP/1.1 client: the engine's default transport (perfbench/engine/transport.py).

One ``asyncio.Protocol`` per connection, with the llhttp parser (``httptools``). A request's bytes
(the target's request line and headers, built once, then its length and its body, encoded before
the step) go out with one write. ``data_received`` takes the
stamp first, then feeds the parser; the body callbacks keep each piece of the body with the stamp
of the read that delivered it, so a package's time is when its bytes arrived, whatever parsing
follows. Nothing else happens per read: the events are split once the answer ended (answers.py).

Connections are kept alive in a pool (as many as requests were in flight at once; the most
recently used first). One is reused only after its answer ended cleanly and the server allows it
(HTTP/1.1 without ``Connection: close``). A pooled connection the server closed while it was idle
(closed before a byte of the answer arrived) is retried once, on a new connection; once a byte
arrived, never. Bodies: Content-Length, chunked, or up to the connection's close; 1xx answers
(100 Continue, 103 Early Hints) are skipped; 204 and 304 have none.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import httptools

from perfbench.engine import transport as T
from perfbench.engine.answers import ReadStream, one_line
from perfbench.engine.plan import PreparedRequest, Target
from perfbench.results import records as R

MAX_HEAD_BYTES = 64 * 2**10  # an answer's status line and headers (1xx answers included) longer than this fail it
_HEADERS = -2  # mode: waiting for the answer's (final) headers
_IGNORE = -1  # mode: the exchange ended; what still arrives is dropped
_STALE = ("stale", "")  # not a failure: a pooled connection had been closed; the request goes again on a new one
_clock = time.perf_counter_ns


class _Connection(asyncio.Protocol):
    """One keep-alive connection: stamps each read, feeds the parser, ends the exchange in flight."""

    def __init__(self, pool: LeanTransport) -> None:
        self._pool = pool
        self.transport: Any = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False  # lost, or closed by us: never used again
        self.reusable = False  # the last answer ended cleanly and the server allows another request
        # The exchange in flight.
        self._waiter: asyncio.Future[T.Failure | None] | None = None
        self._pooled = False  # the connection waited in the pool before this request: retried when found closed
        self.answered = False  # a byte of the answer arrived
        self.status: int | None = None
        self._mode = _IGNORE
        self._now_ns = 0  # the stamp of the read being parsed
        self._interim = False  # the answer being parsed is a 1xx
        self._head_bytes = 0  # bytes read while waiting for the answer's headers
        self._headers: dict[bytes, bytes] = {}
        self._keep_alive = False
        self._until_eof = False  # the body ends when the connection closes (no Content-Length, not chunked)
        self._bounds: T.ReadBounds | None = None
        self._append_chunk: Any = None
        self._append_ns: Any = None
        self._error_body = b""
        self._content_type = ""
        self._stream: Any = None  # the ReadStream of the exchange in flight

    def begin(self, stream: ReadStream, waiter: asyncio.Future[T.Failure | None], pooled: bool) -> None:
        self._waiter = waiter
        self._pooled = pooled
        self.answered = self.reusable = self._interim = False
        self.status = None
        self._mode = _HEADERS
        self._head_bytes = 0
        self._error_body = b""
        self._append_chunk, self._append_ns = stream.chunks.append, stream.read_ns.append
        self._stream = stream

    def finish(self) -> None:
        self._waiter = None
        self._stream = None
        self._append_chunk = self._append_ns = self._bounds = None

    def abort(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def time_out(self) -> None:
        self._end(T.timeout_failure(self.status))
        self.abort()

    # ---------------------------------------------------------------- asyncio's callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._now_ns = _clock()  # first: the stamp of every package these bytes complete
        self.answered = True
        if self._waiter is None:  # bytes nobody asked for (e.g. a 408 to an idle connection): not to be trusted again
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail((R.BAD_RESPONSE, f"the server switched protocols (HTTP {self.status})"))
        except httptools.HttpParserError as exc:  # odd framing, or a callback's error
            self._fail(T.unreadable(exc))
        mode = self._mode
        if mode > 0 and self._error_body:  # an error answer: its first bytes are its words (as aiohttp reads them)
            self._end(self._body_failure())
        elif mode == _HEADERS:  # still no headers: bounded, as the body is
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail((R.BAD_RESPONSE, f"unreadable answer (its headers ran past {MAX_HEAD_BYTES} bytes)"))

    def eof_received(self) -> bool:
        return False  # close: connection_lost says what the end meant

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.reusable = False
        self._pool.forget(self)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if not self.answered and self._pooled:
            waiter.set_result(_STALE)
        elif self._mode == T.STREAM and self._until_eof and exc is None:
            self._end(None)  # a body delimited by the connection's close has ended
        elif self._mode > 0:
            self._end(self._body_failure())
        else:
            detail = "connection closed" if exc is None else f"{type(exc).__name__}: {one_line(str(exc).encode())}"
            self._end(T.cut_failure(self.status, detail))

    # ---------------------------------------------------------------- the parser's callbacks

    def on_message_begin(self) -> None:
        if self._mode != _HEADERS:  # a second answer to one request: this connection is not to be trusted again
            self.abort()
        self._headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.setdefault(name.lower(), value)  # the first of repeated headers, as aiohttp's get()

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: the answer follows
            return
        if self._mode != _HEADERS:
            return
        self.status = status
        headers = self._headers
        self._content_type = headers.get(b"content-type", b"").decode("latin-1")
        encoding = headers.get(b"content-encoding")
        mode, failure = T.answer_mode(status, self._content_type, T.content_encoding(None if encoding is None else encoding.decode("latin-1")),
                                      self._stream)
        self._keep_alive = parser.should_keep_alive() and parser.get_http_version() == "1.1"
        self._until_eof = (b"content-length" not in headers and b"chunked" not in headers.get(b"transfer-encoding", b"").lower()
                           and status not in (204, 304))
        if failure is not None:
            self._end(failure)
            return
        if mode == T.STREAM:
            self._bounds = T.ReadBounds(self._pool.max_response_bytes, self._stream.whole_body)
        self._mode = mode

    def on_body(self, body: bytes) -> None:
        mode = self._mode
        if mode == T.STREAM:
            self._append_chunk(body)
            self._append_ns(self._now_ns)
            if self._bounds.exceeded(body):  # type: ignore[union-attr]
                self._fail(self._bounds.failure())  # type: ignore[union-attr]
        elif mode > 0 and len(self._error_body) < T.ERROR_BODY_BYTES:
            self._error_body += body[: T.ERROR_BODY_BYTES - len(self._error_body)]

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.reusable = self._keep_alive and not self.closed
        if self._mode == T.STREAM:
            self._end(None)
        elif self._mode > 0:
            self._end(self._body_failure())

    # ---------------------------------------------------------------- ends

    def _end(self, failure: T.Failure | None) -> None:
        self._mode = _IGNORE
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(failure)

    def _fail(self, failure: T.Failure) -> None:
        self._end(failure)
        self.abort()

    def _body_failure(self) -> T.Failure:
        location = self._headers.get(b"location")
        return T.body_failure(self._mode, self.status or 0, self._content_type,
                              None if location is None else location.decode("latin-1"), self._error_body)


class LeanTransport(T.HttpTransport):
    """HTTP/1.1 to one target over a pool of keep-alive connections (see the module docstring)."""

    name = T.LEAN

    def __init__(self, target: Target, *, timeout_s: float, connect_timeout_s: float, ssl_context: Any = None) -> None:
        parts = urlsplit(target.url)
        if parts.hostname is None:
            raise ValueError(f"no host in {target.url!r}")
        self.target = target
        self.max_response_bytes = target.max_response_bytes
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl_context
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._prefix = _request_prefix(parts, T.request_headers(target))
        self._idle: list[_Connection] = []  # most recently used last
        self._open: set[_Connection] = set()

    async def exchange(self, request: PreparedRequest, stream: ReadStream) -> T.ExchangeResult:
        sent_ns = _clock()
        body = request.body  # encoded before the step; the head before it is the target's, built once
        data = b"%s%d\r\n\r\n%s" % (self._prefix, len(body), body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        conn = self._take_idle()
        pooled = conn is not None
        while True:
            if conn is None:
                conn, failure = await self._connect(loop, deadline)
                if conn is None:
                    return None, sent_ns, failure
            result = await self._send(conn, loop, data, stream, deadline, pooled)
            if result is _STALE:  # closed while it waited in the pool, before a byte of the answer: once more, on a new one
                conn, pooled = None, False
                continue
            return conn.status, sent_ns, result

    async def _send(self, conn: _Connection, loop: asyncio.AbstractEventLoop, data: bytes, stream: ReadStream,
                    deadline: float, pooled: bool) -> T.Failure | None:
        waiter: asyncio.Future[T.Failure | None] = loop.create_future()
        conn.begin(stream, waiter, pooled)
        try:
            conn.transport.write(data)
        except (OSError, RuntimeError) as exc:  # the transport refused: as if closed before answering
            conn.connection_lost(exc)
        timer = loop.call_at(deadline, conn.time_out)
        try:
            result = await waiter
        except BaseException:  # cancelled (Ctrl-C, a stopped step): the connection goes with the request
            conn.abort()
            raise
        finally:
            timer.cancel()
            conn.finish()
        if conn.reusable and not conn.closed and not conn.transport.is_closing():
            self._idle.append(conn)
        elif not conn.closed:
            conn.abort()
        return result

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> tuple[_Connection | None, T.Failure | None]:
        remaining = deadline - loop.time()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self._host, self._port, ssl=self._ssl,
                                       server_hostname=self._host if self._ssl is not None else None),
                min(self._connect_timeout_s, remaining))
        except asyncio.TimeoutError:
            return None, T.CONNECT_TIMEOUT if self._connect_timeout_s < remaining else T.timeout_failure(None)
        except OSError as exc:  # refused, unreachable, no such host, a certificate refused
            return None, T.connect_failure(exc)
        self._open.add(conn)
        return conn, None

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn
        return None

    def forget(self, conn: _Connection) -> None:
        """``conn`` was lost (its connection_lost)."""
        self._open.discard(conn)

    async def preconnect(self, connections: int) -> None:
        wanted = connections - sum(1 for conn in self._idle if not conn.closed)
        if wanted <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + T.PRECONNECT_TIMEOUT_S
        for conn, _ in await asyncio.gather(*(self._connect(loop, deadline) for _ in range(wanted))):
            if conn is not None:
                self._idle.append(conn)

    async def aclose(self) -> None:
        idle = set(self._idle)
        self._idle.clear()
        for conn in list(self._open):
            if conn in idle:
                conn.closed = True
                conn.transport.close()
            else:
                conn.abort()
        self._open.clear()
        await asyncio.sleep(0)  # their connection_lost


def _request_prefix(parts: Any, headers: dict[str, str]) -> bytes:
    """The request's bytes up to its Content-Length value: the same for every request to the target.

    (The run's config refuses headers named Host, Content-Length, Transfer-Encoding or Connection,
    and an Authorization header beside URL credentials.)
    """
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = {"Host": parts.netloc.rpartition("@")[2]}
    if parts.username is not None:  # URL credentials: Basic auth, as aiohttp sends them
        credential = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        lines["Authorization"] = "Basic " + base64.b64encode(credential.encode()).decode()
    lines.update(headers)
    head = "".join(f"{name}: {value}\r\n" for name, value in lines.items())
    return f"POST {path} HTTP/1.1\r\n{head}Content-Length: ".encode()
