"""The load engine: sends streaming requests on schedule and stamps every SSE package.

Network only: no statistics, no files. One step is run by ``run_step``; each finished request
becomes an immutable ``RequestRecord`` handed to ``sink`` at once (so an interrupted run keeps it).

Timing rules (DESIGN.md): one clock, ``perf_counter_ns``. A request's t0 is its *scheduled* time —
the absolute deadline (open loop) or the moment its slot freed (closed loop) — and the lag until it
actually left is kept as ``sent_ns - scheduled_ns`` (queue time). A package is stamped when the
read that completes it returns: the read loop only stamps each read and keeps its bytes, and the
events are split and interpreted once the stream has ended, so no parsing delays a stamp.

A failed request never raises out of here: it is a record with a reason.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import aiohttp

from perfbench.results import records as R
from perfbench.engine.answers import DECODERS, AnswerReader, Exchange, ReadStream, error_text, is_event_stream, is_json, one_line, too_large
from perfbench.engine.event_loop import gather_or_cancel
from perfbench.engine.finisher import Finisher
from perfbench.engine.live import LiveCounters
from perfbench.engine.plan import PreparedRequest, StepPlan, Target
from perfbench.results.records import RequestRecord
from perfbench.workload.tokens import Tokenizer

if TYPE_CHECKING:
    from perfbench.engine.session_loops import SessionLoops
    from perfbench.workload.sessions import SessionWorkload

_ERROR_BODY_BYTES = 2000  # how much of an error answer to read for the record's error text
MAX_LINE_BYTES = 8 * 2**20  # one SSE line (an event's data) longer than this cuts the request
# What one kept read costs beyond its bytes (the bytes object, its stamp, two list slots): a server
# trickling one byte per read must hit the bound as surely as one sending megabytes.
_READ_OVERHEAD_BYTES = 100
MAX_PRECONNECT = 4096  # connections opened ahead of a step, at most
UNCAPPED = 1_000_000  # the concurrency of an open-loop step without a cap: more slots than any run can fill


RecordSink = Callable[[RequestRecord], None]


def make_session(max_connections: int, timeout_s: float, connect_timeout_s: float) -> aiohttp.ClientSession:
    """A pooled session: keep-alive connections are reused across requests and steps."""
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
    # identity: a compressing server buffers what it streams; one that compresses anyway is decoded after the stream.
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, read_bufsize=2**16,
        headers={"Accept-Encoding": "identity"},
    )


class Engine:
    """Sends one step's requests through a shared session and emits a record per request."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        target: Target,
        requests: Sequence[PreparedRequest],
        sink: RecordSink,
        *,
        tokenizer: Tokenizer | None = None,
        counters: LiveCounters | None = None,
        sessions: SessionWorkload | None = None,
    ) -> None:
        if not requests and sessions is None:
            raise ValueError("no requests to send")
        self._session = session
        self._target = target
        self._requests = requests
        self._sink = sink
        self._answers = AnswerReader(target, tokenizer)
        self.counters = counters or LiveCounters()
        self._finisher = Finisher(self._finish)
        self._sessions: SessionLoops | None = None
        if sessions is not None:
            from perfbench.engine import session_loops  # it builds on this module's types

            self._sessions = session_loops.SessionLoops(sessions, self._counted_exchange, self._answers, self._finisher.put)

    async def run_step(self, plan: StepPlan) -> int:
        """Prepare the step (connections, warm-up), then run it; return how many requests it scheduled.

        Returns when every request of the step has a record (handed to ``sink``), also when cancelled.
        """
        await self.prepare(plan)
        return await self.run_load(plan)

    async def prepare(self, plan: StepPlan) -> None:
        """What comes before the step's clock: its connections and its warm-up requests."""
        try:
            if plan.preconnect:
                await self.preconnect(min(plan.preconnect, MAX_PRECONNECT))
            if plan.warmup and self._sessions is not None:
                self.counters.start_step(plan.step, self._sessions.turns_ahead(plan.warmup))
                await self._sessions.closed_loop(plan, plan.warmup, None, warmup=True, start_ns=time.perf_counter_ns())
                await self._finisher.drain()
            elif plan.warmup:
                self.counters.start_step(plan.step, plan.warmup)
                await self._closed_loop(plan, plan.warmup, None, warmup=True, start_ns=time.perf_counter_ns(),
                                        first_index=plan.warmup_first_index, stride=1, request_base=0)
                await self._finisher.drain()
        finally:
            self._finisher.finish_all()  # Ctrl-C: every request that ended still becomes a record

    async def run_load(self, plan: StepPlan) -> int:
        """The step itself, from ``plan.start_ns`` (waited for) or now; returns the requests it scheduled."""
        offsets = plan.arrival_offsets_s()  # computed before the clock starts: the first arrival is due at once
        try:
            start_ns = time.perf_counter_ns()
            if plan.start_ns is not None:
                if plan.start_ns > start_ns:
                    await asyncio.sleep((plan.start_ns - start_ns) / 1e9)
                start_ns = plan.start_ns
            if self._sessions is not None:
                return await self._run_sessions(plan, start_ns, offsets)
            if offsets is not None:
                indexes = plan.arrival_indexes(len(offsets))
                self.counters.start_step(plan.step, len(indexes), concurrency=plan.concurrency, rate_req_s=plan.rate_req_s)
                await self._open_loop(plan, start_ns, indexes, offsets)
                await self._finisher.drain()
                return len(indexes)
            self.counters.start_step(plan.step, plan.number, concurrency=plan.concurrency, rate_req_s=plan.rate_req_s)
            claimed = await self._closed_loop(plan, plan.number, plan.duration_s, warmup=False, start_ns=start_ns,
                                              first_index=plan.first_index, stride=plan.index_stride,
                                              request_base=plan.request_base)
            await self._finisher.drain()
            return claimed
        finally:
            self._finisher.finish_all()  # Ctrl-C: every request that ended still becomes a record

    async def preconnect(self, connections: int) -> None:
        """Open up to ``connections`` keep-alive connections to the target, so no step's clock pays for TCP setup.

        Each is opened by a bodiless GET of the endpoint (servers answer 405 or 404 at once and keep
        the connection); whatever happens is ignored: the step's own requests will say it.
        """
        limit = self._session.connector.limit if self._session.connector is not None else 0
        count = min(connections, limit) if limit else connections
        timeout = aiohttp.ClientTimeout(total=10)

        async def one() -> None:
            try:
                async with self._session.get(self._target.url, headers=self._target.headers, timeout=timeout, allow_redirects=False) as response:
                    await response.content.read(_ERROR_BODY_BYTES)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
                pass

        await asyncio.gather(*(one() for _ in range(count)))

    def _request(self, number: int) -> PreparedRequest:
        """The run's request ``number``: prompts cycle through the prepared requests."""
        return self._requests[number % len(self._requests)]

    async def _closed_loop(self, plan: StepPlan, number: int | None, duration_s: float | None, *, warmup: bool,
                           start_ns: int, first_index: int, stride: int, request_base: int) -> int:
        stop_ns = start_ns + int(duration_s * 1e9) if duration_s is not None else None
        claimed = 0

        async def worker() -> None:
            nonlocal claimed
            due_ns = start_ns  # every slot is free at the start
            while True:
                if number is not None and claimed >= number:
                    return
                if stop_ns is not None and due_ns >= stop_ns:
                    return
                index = first_index + claimed * stride
                claimed += 1
                request = self._request(request_base + index)
                due_ns = await self._send(plan.step, index, warmup, due_ns, request)  # the slot freed then

        workers = plan.concurrency if number is None else min(plan.concurrency, number)
        await gather_or_cancel([worker() for _ in range(workers)])
        return claimed

    async def _open_loop(self, plan: StepPlan, start_ns: int, indexes: range, offsets_s: Sequence[float]) -> None:
        slots = asyncio.Semaphore(plan.concurrency)
        tasks: list[asyncio.Task[Any]] = []

        async def capped(index: int, due_ns: int, request: PreparedRequest) -> None:
            async with slots:  # waiting here is client lag: it shows in queue time
                await self._send(plan.step, index, False, due_ns, request)

        try:
            for index in indexes:
                due_ns = start_ns + int(offsets_s[index] * 1e9)
                delay_ns = due_ns - time.perf_counter_ns()
                if delay_ns > 0:
                    await asyncio.sleep(delay_ns / 1e9)
                tasks.append(asyncio.ensure_future(capped(index, due_ns, self._request(plan.request_base + index))))
            await gather_or_cancel(tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _send(self, step: int, index: int, warmup: bool, scheduled_ns: int, request: PreparedRequest) -> int:
        """Send one request and read its answer; return when it ended. Its record is built later, off this path."""
        exchange = await self._counted_exchange(step, index, warmup, scheduled_ns, request)
        self._finisher.put(exchange)
        return exchange.end_ns

    async def _counted_exchange(self, step: int, index: int, warmup: bool, scheduled_ns: int, request: PreparedRequest) -> Exchange:
        counters = self.counters
        counters.sent += 1
        counters.in_flight += 1
        try:
            return await self._exchange(step, index, warmup, scheduled_ns, request)
        finally:
            counters.in_flight -= 1

    def _finish(self, ended: Exchange | RequestRecord) -> None:
        """An ended request's record: built, counted, handed to the sink (by the finisher, between reads)."""
        record = ended if isinstance(ended, RequestRecord) else self._answers.record(ended)
        self.counters.count(record)
        self._sink(record)

    # ------------------------------------------------------------------ multi-turn sessions

    async def _run_sessions(self, plan: StepPlan, start_ns: int, offsets: Sequence[float] | None) -> int:
        """The step's sessions (closed loop: ``concurrency`` in flight; open loop: one arriving at each
        offset); returns the requests (turns) they sent."""
        assert self._sessions is not None
        count = len(offsets) if offsets is not None else plan.number
        expected = self._sessions.turns_ahead(count) if count is not None else None
        self.counters.start_step(plan.step, expected, concurrency=plan.concurrency, rate_req_s=plan.rate_req_s)
        if offsets is not None:
            sent = await self._sessions.open_loop(plan, start_ns, offsets)
        else:
            sent = await self._sessions.closed_loop(plan, plan.number, plan.duration_s, warmup=False, start_ns=start_ns)
        await self._finisher.drain()
        return sent

    async def preflight(self, request: PreparedRequest) -> RequestRecord:
        """Send ``request`` once, outside every step and counter, and return its record (not sunk)."""
        now_ns = time.perf_counter_ns()
        return self._answers.record(await self._exchange(-1, 0, True, now_ns, request))

    async def _exchange(self, step: int, index: int, warmup: bool, scheduled_ns: int, request: PreparedRequest) -> Exchange:
        """One request, start to end, as read: bytes and stamps; nothing is parsed here."""
        stream = ReadStream()
        http_status: int | None = None
        failure: tuple[str, str] | None = None
        sent_ns = time.perf_counter_ns()
        try:
            async with self._session.post(
                self._target.url, data=request.body, headers=self._target.headers, allow_redirects=False
            ) as response:
                http_status = response.status
                if response.status >= 300:
                    body = await response.content.read(_ERROR_BODY_BYTES)
                    failure = (R.http_reason(response.status), f"HTTP {response.status}: {error_text(body, response.headers)}")
                else:
                    content_type = response.headers.get("Content-Type", "")
                    stream.whole_body = is_json(content_type)
                    stream.encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
                    if not stream.whole_body and not is_event_stream(content_type):
                        body = await response.content.read(_ERROR_BODY_BYTES)
                        failure = (R.BAD_RESPONSE, f"neither an SSE stream nor JSON (Content-Type {content_type!r}): {one_line(body)}")
                    elif stream.encoding not in DECODERS and stream.encoding != "identity":
                        failure = (R.BAD_RESPONSE, f"Content-Encoding {stream.encoding!r} is not supported (perfbench asks for identity)")
                    else:
                        failure = await self._read_stream(response, stream)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            failure = (R.TIMEOUT, _timeout_message(exc, http_status))
        except aiohttp.ClientConnectorError as exc:
            failure = (R.CONNECT_ERROR, f"cannot connect: {exc.os_error or exc}")
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # Connected, then closed: before the headers or inside the body, the request was cut, the server is there.
            when = "while streaming" if http_status is not None else "before answering"
            failure = (R.CUT_STREAM, f"the server closed the connection {when}: {one_line(str(exc).encode()) or type(exc).__name__}")
        except aiohttp.ClientError as exc:
            failure = (R.BAD_RESPONSE, f"{type(exc).__name__}: {one_line(str(exc).encode())}")
        except (ValueError, UnicodeError, OSError, RuntimeError) as exc:  # odd headers or framing aiohttp did not wrap
            failure = (R.BAD_RESPONSE, f"unreadable answer ({type(exc).__name__}: {one_line(str(exc).encode())})")
        end_ns = time.perf_counter_ns()
        return Exchange(step, index, warmup, scheduled_ns, sent_ns, end_ns, http_status, failure, stream, request)

    async def _read_stream(self, response: aiohttp.ClientResponse, stream: ReadStream) -> tuple[str, str] | None:
        """The hot path: stamp each read and keep its bytes, within the response and line bounds."""
        chunks, read_ns = stream.chunks, stream.read_ns
        append_chunk, append_ns, clock = chunks.append, read_ns.append, time.perf_counter_ns
        budget = self._target.max_response_bytes
        line_limit = budget if stream.whole_body else min(MAX_LINE_BYTES, budget)  # a JSON body needs no line ends
        line_bytes = 0  # bytes since the last line end
        async for chunk in response.content.iter_any():
            append_ns(clock())
            append_chunk(chunk)
            budget -= len(chunk) + _READ_OVERHEAD_BYTES
            end = chunk.rfind(b"\n")
            if end < 0:
                end = chunk.rfind(b"\r")
            line_bytes = line_bytes + len(chunk) if end < 0 else len(chunk) - end - 1
            if budget < 0 or line_bytes > line_limit:
                return too_large(self._target.max_response_bytes, line_limit, budget < 0)
        return None


def _timeout_message(exc: BaseException, http_status: int | None) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect timeout"
    if http_status is None:
        return "timed out before the server answered"
    return "timed out while streaming (--timeout)"
