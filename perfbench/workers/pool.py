"""The parent's side of a worker pool, whatever the workers are (local processes, Ray actors):
the phases of a step, the shared start, the intake of records, the live counters, the lost
workers, the stop on Ctrl-C.

A ``Transport`` starts the workers, carries commands to them and hands every message they send
back to ``WorkerPool.deliver``, their records already on the parent's perf counter. Each worker
opens its connections and sends its warm-up share first; then the pool gives all of them one
start time a little ahead. A worker that dies is reported: its records so far are kept, its
unfinished requests become records failed as ``worker_lost``, and the run goes on with the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

from perfbench.engine.client_meter import ClientMeter
from perfbench.engine.plan import StepPlan
from perfbench.engine.live import LiveCounters
from perfbench.core.errors import TargetError
from perfbench.results.client_reading import ClientReading
from perfbench.results.records import WORKER_LOST, RequestRecord
from perfbench.workers.slicing import SeenIndexes, split_step, unfinished

logger = logging.getLogger(__name__)

START_AHEAD_NS = 20_000_000  # the shared start is this far ahead of the moment every slice was ready
STOP_WAIT_S = 15.0  # after a stop, how long workers get to hand over the records of what ended

Deliver = Callable[[int, str, Any], None]


class Transport(Protocol):
    """Starts ``count`` workers and carries the body's protocol (perfbench/workers/body.py) both ways.

    Besides the body's messages it delivers ``("lost", why)`` when a worker dies.
    """

    async def open(self, deliver: Deliver) -> list[dict[str, Any]]:
        """Start the workers; return one description each (summary.json's ``workers``)."""

    def send(self, number: int, command: str, value: Any) -> None:
        """Send a command; never raises for a dead worker (its loss is delivered)."""

    def kill(self, number: int) -> None: ...

    def describe(self, number: int) -> str:
        """The worker as an error text names it: ``worker process 0 (pid 123)``."""

    async def close(self) -> None:
        """Let every worker exit, kill those that do not, deliver nothing more."""


@dataclass
class _Worker:
    number: int  # 0-based, for messages
    info: dict[str, Any]  # its entry in summary.json's "workers"
    alive: bool = True
    sent: int = 0  # as last reported
    in_flight: int = 0
    plan: StepPlan | None = None  # the slice it is working on
    warmup_phase: bool = False
    seen: SeenIndexes = field(default_factory=SeenIndexes)  # (warm-up, index) of its records this step, as counts
    waiting: asyncio.Future[Any] | None = None
    lost_step_requests: int = 0  # a dead worker: its requests of the step it died in (records or lost)
    reading: ClientReading | None = None  # how it did in the step's load, as it measured itself


class WorkerPool:
    """Runs steps through a transport's workers with the engine's interface (``run_step``); use as ``async with``."""

    def __init__(self, transport: Transport, sink: Callable[[RequestRecord], None], counters: LiveCounters) -> None:
        self.transport = transport
        self._sink = sink
        self.counters = counters
        self._workers: list[_Worker] = []
        self.workers: list[dict[str, Any]] = []  # one description per worker, "lost" filled in when it dies
        self._own_reading: ClientReading | None = None  # this (the parent) process during the last step's load

    async def __aenter__(self) -> "WorkerPool":
        try:
            infos = await self.transport.open(self.deliver)
        except BaseException:  # cleanup, then re-raised: hides nothing
            await self.transport.close()
            raise
        for number, info in enumerate(infos):
            info.setdefault("lost", None)
            self._workers.append(_Worker(number, info))
        self.workers = infos
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for worker in self._workers:
            worker.alive = False  # from now on a worker going away is its exit, no death
        await self.transport.close()

    @property
    def live_workers(self) -> int:
        return sum(worker.alive for worker in self._workers)

    async def run_step(self, plan: StepPlan) -> int:
        """Run ``plan`` split over the live workers; return how many requests it scheduled (as ``Engine.run_step``)."""
        live = [worker for worker in self._workers if worker.alive]
        if not live:
            raise TargetError("every worker died; see the lost requests in requests.jsonl")
        pairs = list(zip(live, split_step(plan, len(live))))
        self.counters.start_step(plan.step, plan.number)
        self._own_reading = None
        for worker in self._workers:
            worker.reading = None  # a worker that died since it sent one has none for this step
        meter = ClientMeter(tick_ns=None)  # this process's CPU only: its loop stamps nothing, the workers' do
        try:
            for worker, part in pairs:
                worker.plan, worker.warmup_phase, worker.seen = part, True, SeenIndexes(part)
            await self._phase(pairs, "prepare", lambda part: part)
            start_ns = time.perf_counter_ns() + START_AHEAD_NS
            for worker, _ in pairs:
                worker.warmup_phase = False
            self.counters.start_step(plan.step, plan.number)
            meter.start()
            counts = await self._phase(pairs, "start", lambda part: replace(part, start_ns=start_ns))
        except asyncio.CancelledError:
            await self._stop([worker for worker, _ in pairs])
            raise
        finally:
            self._own_reading = meter.stop()
        return sum(counts)

    @property
    def client_readings(self) -> tuple[ClientReading, ...]:
        """How the client did in the last step's load: this process's reading and each worker's that sent one."""
        own = () if self._own_reading is None else (self._own_reading,)
        return own + tuple(replace(w.reading, worker=w.number) for w in self._workers if w.reading is not None)

    async def _phase(self, pairs: list[tuple[_Worker, StepPlan]], command: str, plan_of: Callable[[StepPlan], StepPlan]) -> list[Any]:
        loop = asyncio.get_running_loop()
        waits = []
        for worker, part in pairs:
            worker.waiting = loop.create_future()
            waits.append(worker.waiting)
            if worker.alive:
                self.transport.send(worker.number, command, plan_of(part))
            else:
                self._lost(worker, "it had died before")
        # Shielded: a cancelled step (Ctrl-C) must still wait for the workers' last records in _stop.
        return list(await asyncio.gather(*(asyncio.shield(wait) for wait in waits)))

    async def _stop(self, workers: list[_Worker]) -> None:
        """Ctrl-C, SIGTERM, a full disk: every worker stops, and hands over the records of what ended."""
        waits = [w.waiting for w in workers if w.alive and w.waiting is not None and not w.waiting.done()]
        for worker in workers:
            if worker.alive:
                self.transport.send(worker.number, "stop", None)
        if waits:
            await asyncio.wait(waits, timeout=STOP_WAIT_S)

    def deliver(self, number: int, kind: str, value: Any) -> None:
        """A message from worker ``number`` (the transport calls this on the pool's loop)."""
        worker = self._workers[number] if number < len(self._workers) else None
        if worker is None or not worker.alive:
            return  # a worker that was lost, or closed, or a message before the pool knew it: nothing is owed
        if kind == "records":
            records, worker.sent, worker.in_flight = value
            for record in records:
                worker.seen.add(record.warmup, record.index)
                self.counters.count(record)
                self._sink(record)
            self.counters.sent = sum(w.sent for w in self._workers)
            self.counters.in_flight = sum(w.in_flight for w in self._workers if w.alive)
        elif kind == "client":
            worker.reading = value
        elif kind == "lost":
            self._lost(worker, value)
        elif kind == "error":
            self.transport.kill(number)  # a bug of ours in one worker costs its requests, not the run
            self._lost(worker, f"it failed ({value})")
        elif worker.waiting is not None and not worker.waiting.done():
            worker.waiting.set_result(value if value is not None else 0)

    def _lost(self, worker: _Worker, why: str) -> None:
        """A dead worker: its unfinished requests of this step become failed records; its wait ends
        with the step's requests it had (as ``run_load`` would have returned)."""
        if worker.alive:
            worker.alive = False
            worker.info["lost"] = why
            missing = unfinished(worker.plan, worker.warmup_phase, worker.seen, worker.in_flight)
            now_ns = time.perf_counter_ns()
            error = f"{self.transport.describe(worker.number)} ended before this request finished: {why}"
            for warmup, index in missing:
                record = RequestRecord(
                    step=worker.plan.step if worker.plan else 0, index=index, warmup=warmup, status=WORKER_LOST,
                    http_status=None, error=error, scheduled_ns=now_ns, sent_ns=now_ns, end_ns=now_ns,
                    package_times_ns=(), package_tokens=(), input_tokens=None, output_tokens=None, token_source=None,
                )
                self.counters.count(record)
                self._sink(record)
            worker.lost_step_requests = worker.seen.step_records + sum(1 for warmup, _ in missing if not warmup)
            logger.warning("%s died (%s); %d unfinished requests counted as %s",
                           self.transport.describe(worker.number), why, len(missing), WORKER_LOST)
            self.counters.in_flight = sum(w.in_flight for w in self._workers if w.alive)
        if worker.waiting is not None and not worker.waiting.done():
            if worker.warmup_phase:
                worker.waiting.set_result(None)  # its step requests are counted when the step's load is awaited
            else:
                worker.waiting.set_result(worker.lost_step_requests)
                worker.lost_step_requests = 0
