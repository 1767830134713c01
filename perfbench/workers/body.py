"""What runs inside a worker, whatever carries its commands (a pipe, Ray actor calls): its engine,
the phase it is in, and the outbox its records leave by, in batches.

The protocol both transports speak: commands ``prepare`` (a slice: connections, warm-up) ->
reply ``ready``; ``start`` (the slice with its shared start) -> ``client`` (the worker's own
ClientReading of the slice, when it started) then reply ``done`` (the requests it scheduled);
``stop`` (cancel the phase; its replies still come); an exception inside a phase -> ``error``.
Records go out as ``records`` messages, ``(records, sent, in_flight)``, and a reply always leaves after the records that came before it, so the parent holds every record of a phase
once its reply is in.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

from perfbench.engine.engine import Engine
from perfbench.engine.plan import PreparedRequest
from perfbench.engine.request_source import RequestSource
from perfbench.engine.live import LiveCounters
from perfbench.engine.transport import HttpTransport
from perfbench.engine.transport_factory import make_transport
from perfbench.results.records import RequestRecord

log = logging.getLogger(__name__)

BATCH_RECORDS = 512  # records per message, at most
BATCH_WAIT_S = 0.02  # a record waits at most this long for its batch (the live display stays current)

Message = tuple[str, Any]


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs to build its engine (sent once, when it starts)."""

    target: Any  # a perfbench.engine.plan.Target
    requests: RequestSource | Sequence[PreparedRequest]  # request k of the run, as in one process (a list cycles)
    tokenizer: Any  # a perfbench.workload.tokens.Tokenizer, or None
    max_connections: int  # the whole run's; each of ``count`` workers gets its share (for_workers)
    timeout_s: float
    connect_timeout_s: float

    def for_workers(self, count: int) -> "WorkerSetup":
        return replace(self, max_connections=max(1, math.ceil(self.max_connections / max(1, count))))


class Outbox:
    """Records and replies in the order they came, taken as batches by whichever thread sends them."""

    def __init__(self, counters: LiveCounters) -> None:
        self._counters = counters
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closed = False  # the end was taken: nothing more comes

    def record(self, record: RequestRecord) -> None:
        self._queue.put(record)

    def reply(self, kind: str, value: Any) -> None:
        self._queue.put((kind, value))

    def close(self) -> None:
        self._queue.put(None)

    def take(self, wait_s: float) -> list[Message]:
        """The next messages: one ``records`` message (the records that came within BATCH_WAIT_S of
        the first, at most BATCH_RECORDS, and the live counters), then the reply that ended the batch.

        Waits up to ``wait_s`` for a first record; with none, the message still carries the counters.
        """
        if self.closed:
            return []
        batch: list[RequestRecord] = []
        replies: list[Message] = []
        deadline = time.monotonic() + wait_s
        while len(batch) < BATCH_RECORDS:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if isinstance(item, RequestRecord):
                if not batch:
                    deadline = min(deadline, time.monotonic() + BATCH_WAIT_S)
                batch.append(item)
                continue
            if item is None:
                self.closed = True
            else:
                replies.append(item)
            break
        return [("records", (batch, self._counters.sent, self._counters.in_flight)), *replies]


class WorkerBody:
    """One worker's engine and its current phase; ``open`` and ``close`` on the loop that runs it."""

    def __init__(self, setup: WorkerSetup) -> None:
        self._setup = setup
        self.counters = LiveCounters()
        self.outbox = Outbox(self.counters)
        self._transport: HttpTransport | None = None
        self._engine: Engine | None = None
        self._current: asyncio.Task[None] | None = None

    async def open(self) -> None:
        setup = self._setup
        self._transport = make_transport(setup.target, timeout_s=setup.timeout_s, connect_timeout_s=setup.connect_timeout_s,
                                         max_connections=setup.max_connections)
        self._engine = Engine(self._transport, setup.target, setup.requests, self.outbox.record,
                              tokenizer=setup.tokenizer, counters=self.counters)

    def command(self, kind: str, value: Any) -> None:
        """``prepare`` / ``start`` a phase (its reply goes to the outbox), or ``stop`` the one running."""
        assert self._engine is not None, "open() first"
        if kind == "prepare":
            self._current = asyncio.ensure_future(self._phase(self._engine.prepare(value), "ready"))
        elif kind == "start":
            self._current = asyncio.ensure_future(self._phase(self._engine.run_load(value), "done"))
        elif kind == "stop" and self._current is not None:
            self._current.cancel()

    async def _phase(self, work: Any, reply: str) -> None:
        try:
            value = await work
        except asyncio.CancelledError:
            value = None  # stopped: the records of what ended were handed over already
        except Exception as exc:  # noqa: BLE001 - told to the parent, which counts this worker lost; the run goes on
            log.debug("worker phase failed", exc_info=True)
            self.outbox.reply("error", f"{type(exc).__name__}: {exc}")
            return
        if reply == "done" and self._engine is not None and self._engine.client_reading is not None:
            self.outbox.reply("client", self._engine.client_reading)  # before "done": the parent has it once the step ends
        self.outbox.reply(reply, value)

    async def close(self) -> None:
        """Cancel what runs, close the connections, and end the outbox (after its last records)."""
        if self._current is not None and not self._current.done():
            self._current.cancel()
            await asyncio.gather(self._current, return_exceptions=True)
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None
        self.outbox.close()
