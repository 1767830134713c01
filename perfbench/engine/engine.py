"""The load engine: sends streaming requests on schedule and stamps every SSE package.

Network only: no statistics, no files. One step is run by ``run_step``; each finished request
becomes an immutable ``RequestRecord`` handed to ``sink`` at once (so an interrupted run keeps it).

Timing rules (DESIGN.md): one clock, ``perf_counter_ns``. A request's t0 is its *scheduled* time —
the absolute deadline (open loop) or the moment its slot freed (closed loop) — and the lag until it
actually left is kept as ``sent_ns - scheduled_ns`` (queue time). A package is stamped when the
read that completes it arrives: the transport (perfbench/engine/transport.py) only stamps each read
and keeps its bytes, and the events are split and interpreted once the stream has ended (by the
finisher, between reads), so no parsing delays a stamp.

A failed request never raises out of here: it is a record with a reason. Each step's load also
measures the client itself (client_meter: how late a periodic timer runs on this loop, the
process's CPU time), raw, in ``client_reading``: perfbench.metrics judges it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Awaitable, Callable, Sequence, TypeVar

from perfbench.engine.answers import AnswerReader, Exchange, ReadStream
from perfbench.engine.client_meter import ClientMeter
from perfbench.results.client_reading import ClientReading
from perfbench.engine.event_loop import Start, gather_or_cancel, run_in_flight, sleep_until
from perfbench.engine.finisher import Finisher
from perfbench.engine.live import LiveCounters
from perfbench.engine.plan import PreparedRequest, StepPlan, Target
from perfbench.engine.request_source import RequestSource, as_source
from perfbench.engine.transport import HttpTransport
from perfbench.results.records import RequestRecord
from perfbench.workload.tokens import Tokenizer

if TYPE_CHECKING:
    from perfbench.engine.session_loops import SessionLoops
    from perfbench.workload.sessions import SessionWorkload

MAX_PRECONNECT = 4096  # connections opened ahead of a step, at most
UNCAPPED = 1_000_000  # the concurrency of an open-loop step without a cap: more slots than any run can fill
_ENDLESS = 2**62  # requests of a duration-bound step, as far as its range of request numbers goes

T = TypeVar("T")


RecordSink = Callable[[RequestRecord], None]


class Engine:
    """Sends one step's requests through a shared transport and emits a record per request."""

    def __init__(
        self,
        transport: HttpTransport,
        target: Target,
        requests: RequestSource | Sequence[PreparedRequest],
        sink: RecordSink,
        *,
        tokenizer: Tokenizer | None = None,
        counters: LiveCounters | None = None,
        sessions: SessionWorkload | None = None,
    ) -> None:
        self._transport = transport
        self._target = target
        self._requests = as_source(requests)  # request k of the run: get(k); a list cycles
        self._sink = sink
        self._answers = AnswerReader(target, tokenizer)
        self.counters = counters or LiveCounters()
        self.client_reading: ClientReading | None = None  # how this process did in the last step's load (client_meter)
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
        """What comes before the step's clock: its connections, its warm-up requests, its first bodies."""
        try:
            if plan.preconnect:
                await self.preconnect(min(plan.preconnect, MAX_PRECONNECT))
            if plan.warmup and self._sessions is not None:
                self.counters.start_step(plan.step, self._sessions.turns_ahead(plan.warmup))
                await self._sessions.closed_loop(plan, plan.warmup, None, warmup=True, start_ns=time.perf_counter_ns())
                await self._finisher.drain()
            elif plan.warmup:
                self.counters.start_step(plan.step, plan.warmup)
                self._requests.expect(range(plan.warmup_first_index, plan.warmup_first_index + plan.warmup))
                await self._feeding(self._closed_loop(plan, plan.warmup, None, warmup=True, start_ns=time.perf_counter_ns(),
                                                      first_index=plan.warmup_first_index, stride=1, request_base=0))
                await self._finisher.drain()
            if self._sessions is None:
                self._requests.expect(step_numbers(plan))  # the step's first bodies, built before its clock
        finally:
            self._finisher.finish_all()  # Ctrl-C: every request that ended still becomes a record

    async def run_load(self, plan: StepPlan) -> int:
        """The step itself, from ``plan.start_ns`` (waited for) or now; returns the requests it scheduled."""
        offsets = plan.arrival_offsets_s()  # computed before the clock starts: the first arrival is due at once
        meter = ClientMeter()
        self.client_reading = None
        try:
            start_ns = time.perf_counter_ns()
            if plan.start_ns is not None:
                await sleep_until(plan.start_ns)
                start_ns = plan.start_ns
            meter.start()
            if self._sessions is not None:
                return await self._run_sessions(plan, start_ns, offsets)
            if offsets is not None:
                indexes = plan.arrival_indexes(len(offsets))
                self.counters.start_step(plan.step, len(indexes), concurrency=plan.concurrency, rate_req_s=plan.rate_req_s)
                await self._feeding(self._open_loop(plan, start_ns, indexes, offsets))
                await self._finisher.drain()
                return len(indexes)
            self.counters.start_step(plan.step, plan.number, concurrency=plan.concurrency, rate_req_s=plan.rate_req_s)
            claimed = await self._feeding(self._closed_loop(
                plan, plan.number, plan.duration_s, warmup=False, start_ns=start_ns, first_index=plan.first_index,
                stride=plan.index_stride, request_base=plan.request_base))
            await self._finisher.drain()
            return claimed
        finally:
            self._finisher.finish_all()  # Ctrl-C: every request that ended still becomes a record
            self.client_reading = meter.stop()

    @property
    def client_readings(self) -> tuple[ClientReading, ...]:
        """How the client did in the last step's load: this process's reading (none before a step started)."""
        return () if self.client_reading is None else (self.client_reading,)

    async def preconnect(self, connections: int) -> None:
        """Open up to ``connections`` keep-alive connections to the target, so no step's clock pays for TCP setup."""
        await self._transport.preconnect(connections)

    async def _feeding(self, work: Awaitable[T]) -> T:
        """``work`` (a phase's loop), with the request source building the next bodies beside it."""
        feeder = asyncio.ensure_future(self._requests.keep_ahead())
        try:
            return await work
        finally:
            feeder.cancel()
            # A body that could not be built fails again where the phase takes it, and is raised there.
            await asyncio.gather(feeder, return_exceptions=True)

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
                request = self._requests.get(request_base + index)
                due_ns = await self._send(plan.step, index, warmup, due_ns, request)  # the slot freed then

        workers = plan.concurrency if number is None else min(plan.concurrency, number)
        await gather_or_cancel([worker() for _ in range(workers)])
        return claimed

    async def _open_loop(self, plan: StepPlan, start_ns: int, indexes: range, offsets_s: Sequence[float]) -> None:
        """A request due at each offset (an absolute deadline, never left before), at most
        ``plan.concurrency`` in flight. One waiting for a slot waits before its task exists (its wait
        is queue time), so the step holds only the requests in flight, however many it sends."""
        slots = asyncio.Semaphore(plan.concurrency)

        async def send(index: int, due_ns: int, request: PreparedRequest) -> None:
            try:
                await self._send(plan.step, index, False, due_ns, request)
            finally:
                slots.release()

        async def dispatch(start: Start) -> None:
            for index in indexes:
                due_ns = start_ns + int(offsets_s[index] * 1e9)
                await sleep_until(due_ns)
                await slots.acquire()  # the cap is reached: client lag, shown as queue time
                start(send(index, due_ns, self._requests.get(plan.request_base + index)))

        await run_in_flight(dispatch)

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
        http_status, sent_ns, failure = await self._transport.exchange(request, stream)
        end_ns = time.perf_counter_ns()
        return Exchange(step, index, warmup, scheduled_ns, sent_ns, end_ns, http_status, failure, stream, request)


def step_numbers(plan: StepPlan) -> range:
    """The run's request numbers a step (or a worker's slice of it) sends, in order: open loop, every
    ``arrival_slices``-th arrival; closed loop, ``first_index + k * index_stride``; each from
    ``request_base``. A duration-bound step's range goes on as far as it could."""
    base = plan.request_base
    if plan.offsets_s is not None or plan.rate_req_s is not None:
        count = len(plan.offsets_s) if plan.offsets_s is not None else plan.number
        return range(base + plan.arrival_slice, base + (count if count is not None else _ENDLESS), plan.arrival_slices)
    first = base + plan.first_index
    return range(first, first + (plan.number if plan.number is not None else _ENDLESS) * plan.index_stride, plan.index_stride)
