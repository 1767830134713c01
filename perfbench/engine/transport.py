"""The engine's HTTP transport: the interface, and what both implementations share.

Two implementations: the lean HTTP/1.1 client (perfbench/engine/lean_http.py: an asyncio Protocol
with the httptools parser, request bytes built once, every read stamped in ``data_received``), and
aiohttp (perfbench/engine/aiohttp_transport.py) for what the lean one cannot do;
perfbench/engine/transport_factory.py chooses. Both fill the same ``ReadStream`` (each read's bytes
and stamp) and end a request with the same failures (reasons in perfbench/results/records.py),
built by the helpers below, so a record does not depend on which transport ran.

A transport never raises out of ``exchange`` (but ``CancelledError``): whatever a server does is a
failure tuple, ``(reason, one-line text)``.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Optional, Tuple

from perfbench.core.version import __version__
from perfbench.engine.answers import DECODERS, ReadStream, error_text, is_event_stream, is_json, one_line, too_large
from perfbench.engine.plan import PreparedRequest, Target
from perfbench.results import records as R

Failure = Tuple[str, str]  # (reason, one-line text)
ExchangeResult = Tuple[Optional[int], int, Optional[Failure]]  # (HTTP status or None, sent_ns, failure or None)

LEAN, AIOHTTP = "lean", "aiohttp"
ERROR_BODY_BYTES = 2000  # how much of an error answer to read for the record's error text
MAX_LINE_BYTES = 8 * 2**20  # one SSE line (an event's data) longer than this cuts the request
# What one kept read costs beyond its bytes (the bytes object, its stamp, two list slots): a server
# trickling one byte per read must hit the bound as surely as one sending megabytes.
READ_OVERHEAD_BYTES = 100
PRECONNECT_TIMEOUT_S = 10.0  # a connection opened ahead of a step gets this long, at most
# Sent with every request unless the target's headers say otherwise. identity: a compressing server
# buffers what it streams; one that compresses anyway is decoded after the stream (answers.py).
DEFAULT_HEADERS = {"Accept-Encoding": "identity", "User-Agent": f"perfbench/{__version__}"}


class HttpTransport(abc.ABC):
    """Sends prepared requests to one target and reads their answers: bytes and a stamp per read."""

    name: ClassVar[str]  # "lean" or "aiohttp": summary.json environment.transport
    target: Target
    reason: str | None = None  # why this transport was chosen, when it is not the default

    @abc.abstractmethod
    async def exchange(self, request: PreparedRequest, stream: ReadStream) -> ExchangeResult:
        """Send ``request`` and read its answer's body into ``stream``, within the run's timeouts.

        Returns (the HTTP status, or None when none arrived; ``perf_counter_ns`` when the send
        began; the failure, or None). Never raises but ``CancelledError`` (the connection is closed then).
        """

    @abc.abstractmethod
    async def preconnect(self, connections: int) -> None:
        """Have up to ``connections`` keep-alive connections open to the target; failures are ignored
        (the step's own requests will say them)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close every connection."""

    async def __aenter__(self) -> "HttpTransport":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def request_headers(target: Target) -> dict[str, str]:
    """What every request to ``target`` carries: the defaults, overridden by the target's own headers."""
    given = {name.lower() for name in target.headers}
    headers = {name: value for name, value in DEFAULT_HEADERS.items() if name.lower() not in given}
    headers.update(target.headers)
    return headers


# ---------------------------------------------------------------------------- what an answer is

STREAM, ERROR_BODY, NOT_SSE, REFUSED = range(4)  # what to do with an answer's body, once its headers are in


def answer_mode(status: int, content_type: str, encoding: str, stream: ReadStream) -> tuple[int, Failure | None]:
    """How to read the body of an answer with these headers: stream it (STREAM), read a little of it
    for the failure's text (ERROR_BODY: status 300 and up; NOT_SSE: neither SSE nor JSON), or not at
    all (REFUSED, with its failure: an encoding perfbench cannot decode)."""
    if status >= 300:
        return ERROR_BODY, None
    stream.whole_body = is_json(content_type)
    stream.encoding = encoding
    if not stream.whole_body and not is_event_stream(content_type):
        return NOT_SSE, None
    if encoding not in DECODERS and encoding != "identity":
        return REFUSED, (R.BAD_RESPONSE, f"Content-Encoding {encoding!r} is not supported (perfbench asks for identity)")
    return STREAM, None


def body_failure(mode: int, status: int, content_type: str, location: str | None, body: bytes) -> Failure:
    """The failure of an ERROR_BODY or NOT_SSE answer, from the first bytes of its body."""
    if mode == ERROR_BODY:
        return (R.http_reason(status), f"HTTP {status}: {error_text(body, location)}")
    return (R.BAD_RESPONSE, f"neither an SSE stream nor JSON (Content-Type {content_type!r}): {one_line(body)}")


def content_encoding(value: str | None) -> str:
    return (value or "identity").strip().lower()


class ReadBounds:
    """The memory bounds of one streamed body: ``--max-response-bytes`` in all (each read costing
    READ_OVERHEAD_BYTES more), and MAX_LINE_BYTES without a line end (an SSE stream's)."""

    __slots__ = ("max_bytes", "budget", "line_limit", "line_bytes")

    def __init__(self, max_response_bytes: int, whole_body: bool) -> None:
        self.max_bytes = self.budget = max_response_bytes
        self.line_limit = max_response_bytes if whole_body else min(MAX_LINE_BYTES, max_response_bytes)  # a JSON body needs no line ends
        self.line_bytes = 0  # bytes since the last line end

    def exceeded(self, chunk: bytes) -> bool:
        """Count one kept read; True once the body is past a bound."""
        self.budget -= len(chunk) + READ_OVERHEAD_BYTES
        end = chunk.rfind(b"\n")
        if end < 0:
            end = chunk.rfind(b"\r")
        self.line_bytes = self.line_bytes + len(chunk) if end < 0 else len(chunk) - end - 1
        return self.budget < 0 or self.line_bytes > self.line_limit

    def failure(self) -> Failure:
        return too_large(self.max_bytes, self.line_limit, self.budget < 0)


# ---------------------------------------------------------------------------- how a request failed

CONNECT_TIMEOUT: Failure = (R.TIMEOUT, "connect timeout")


def timeout_failure(http_status: int | None) -> Failure:
    """The total timeout (--timeout) expired: before the answer's headers or while streaming its body."""
    if http_status is None:
        return (R.TIMEOUT, "timed out before the server answered")
    return (R.TIMEOUT, "timed out while streaming (--timeout)")


def connect_failure(error: object) -> Failure:
    return (R.CONNECT_ERROR, f"cannot connect: {error}")


def cut_failure(http_status: int | None, detail: str) -> Failure:
    """Connected, then closed: before the headers or inside the body, the request was cut, the server is there."""
    when = "while streaming" if http_status is not None else "before answering"
    return (R.CUT_STREAM, f"the server closed the connection {when}: {detail}")


def unreadable(exc: BaseException) -> Failure:
    """Odd headers or framing."""
    return (R.BAD_RESPONSE, f"unreadable answer ({type(exc).__name__}: {one_line(str(exc).encode())})")

