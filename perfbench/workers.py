"""Past one process: a step's schedule split into slices that share one start time, each slice
run by its own engine in a worker process, records streamed back to the parent in batches.

``split_step`` is the pure part: closed loop, the concurrency (and a request count) is divided
and each slice takes a contiguous range of indexes (a duration-bound one takes every n-th);
open loop, every slice computes the whole schedule and sends every n-th arrival, so the merged
arrivals are exactly the requested process. A request's prompt follows from its index, as in
one process.

``WorkerPool`` runs steps through worker processes with the engine's interface (``run_step``).
Each worker opens its connections and sends its warm-up share first; then the parent gives all
of them one start time a little ahead. On one machine every process reads the same monotonic
clock (``perf_counter_ns``), so records merge by concatenation. A worker that dies is reported:
its records so far are kept, its unfinished requests become records failed as ``worker_lost``,
and the run goes on with the others.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import queue
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from perfbench import event_loop
from perfbench.engine import Engine, LiveCounters, PreparedRequest, StepPlan, Target, make_session
from perfbench.errors import TargetError
from perfbench.records import RequestRecord
from perfbench.schedule import arrival_offsets_s

logger = logging.getLogger(__name__)

WORKER_LOST = "worker_lost"  # a failure reason: the worker process sending the request died
START_AHEAD_NS = 20_000_000  # the shared start is this far ahead of the moment every slice was ready
BATCH_RECORDS = 512  # records per message, at most
BATCH_WAIT_S = 0.02  # a record waits at most this long for its batch (the live display stays current)
STOP_WAIT_S = 15.0  # after a stop, how long workers get to hand over the records of what ended
EXIT_WAIT_S = 5.0


def _divide(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` in whole shares proportional to ``weights`` (largest remainder), adding up to ``total``."""
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    shares = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: shares[i] - exact[i])[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _ranges(counts: Sequence[int]) -> list[int]:
    """The first index of each of consecutive ranges of ``counts``."""
    firsts, first = [], 0
    for count in counts:
        firsts.append(first)
        first += count
    return firsts


def split_step(plan: StepPlan, slices: int) -> list[StepPlan]:
    """``plan`` as at most ``slices`` slices that together send what it sends (fewer when its concurrency is lower)."""
    count = max(1, min(slices, plan.concurrency))
    concurrency = _divide(plan.concurrency, [1] * count)
    warmup = _divide(plan.warmup, concurrency)
    warmup_first = _ranges(warmup)
    preconnect = [max(1, p) if plan.preconnect else 0 for p in _divide(plan.preconnect, concurrency)]
    if plan.rate_req_s is not None:
        return [
            replace(plan, concurrency=concurrency[i], warmup=warmup[i], warmup_first_index=warmup_first[i],
                    preconnect=preconnect[i], arrival_slice=i, arrival_slices=count)
            for i in range(count)
        ]
    if plan.number is None:  # bounded by duration: no count to divide, so the indexes interleave
        return [
            replace(plan, concurrency=concurrency[i], warmup=warmup[i], warmup_first_index=warmup_first[i],
                    preconnect=preconnect[i], first_index=i, index_stride=count)
            for i in range(count)
        ]
    number = _divide(plan.number, concurrency)
    first = _ranges(number)
    return [
        replace(plan, concurrency=concurrency[i], number=number[i], first_index=first[i], warmup=warmup[i],
                warmup_first_index=warmup_first[i], preconnect=preconnect[i])
        for i in range(count)
        if number[i] or warmup[i]
    ]


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs to build its engine (sent once, when it starts)."""

    target: Target
    requests: Sequence[PreparedRequest]
    tokenizer: Any  # a perfbench.tokens.Tokenizer, or None
    max_connections: int
    timeout_s: float
    connect_timeout_s: float


# --- the worker process ---------------------------------------------------------------------


def worker_main(conn: Any, setup: WorkerSetup) -> None:
    """A worker process's body: serve the parent's commands until it says exit or goes away."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the parent stops us, keeping every record (a terminal's Ctrl-C reaches us too)
    from perfbench.servers.lifetime import set_parent_death_signal

    set_parent_death_signal(signal.SIGKILL)  # a SIGKILLed parent: nobody is left to read our records
    event_loop.run(_serve(conn, setup))


class _Outbox:
    """Sends records in batches, and replies after the records before them, from a thread of its own."""

    def __init__(self, conn: Any, counters: LiveCounters) -> None:
        self._conn = conn
        self._counters = counters
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="perfbench-outbox", daemon=True)
        self._thread.start()

    def record(self, record: RequestRecord) -> None:
        self._queue.put(record)

    def reply(self, kind: str, value: Any) -> None:
        self._queue.put((kind, value))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        batch: list[RequestRecord] = []
        while True:
            try:
                item = self._queue.get(timeout=BATCH_WAIT_S)
            except queue.Empty:
                item = ...
            if isinstance(item, RequestRecord):
                batch.append(item)
                if len(batch) < BATCH_RECORDS:
                    continue
            if batch or item is ...:
                self._send(("records", (batch, self._counters.sent, self._counters.in_flight)))
                batch = []
            if item is None:
                return
            if isinstance(item, tuple):
                self._send(item)

    def _send(self, message: Any) -> None:
        try:
            self._conn.send(message)
        except (OSError, EOFError):
            pass  # the parent is gone; the command reader ends the process


async def _serve(conn: Any, setup: WorkerSetup) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def readable() -> None:
        try:
            commands.put_nowait(conn.recv())
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            commands.put_nowait(("exit", None))

    async with make_session(setup.max_connections, setup.timeout_s, setup.connect_timeout_s) as session:
        counters = LiveCounters()
        outbox = _Outbox(conn, counters)
        engine = Engine(session, setup.target, setup.requests, outbox.record, tokenizer=setup.tokenizer, counters=counters)
        loop.add_reader(conn.fileno(), readable)
        current: asyncio.Task[None] | None = None

        async def phase(work: Any, reply: str) -> None:
            try:
                value = await work
            except asyncio.CancelledError:
                value = None  # stopped: the records of what ended were handed over already
            except Exception as exc:  # noqa: BLE001 - told to the parent, which counts this worker lost
                outbox.reply("error", f"{type(exc).__name__}: {exc}")
                return
            outbox.reply(reply, value)

        try:
            while True:
                kind, value = await commands.get()
                if kind == "prepare":
                    current = asyncio.ensure_future(phase(engine.prepare(value), "ready"))
                elif kind == "start":
                    current = asyncio.ensure_future(phase(engine.run_load(value), "done"))
                elif kind == "stop" and current is not None:
                    current.cancel()
                elif kind == "exit":
                    break
        finally:
            if current is not None and not current.done():
                current.cancel()
                await asyncio.gather(current, return_exceptions=True)
            outbox.close()


# --- the parent -------------------------------------------------------------------------------


@dataclass
class _Worker:
    number: int  # 0-based, for messages
    process: Any
    conn: Any
    alive: bool = True
    sent: int = 0  # as last reported
    in_flight: int = 0
    plan: StepPlan | None = None  # the slice it is working on
    warmup_phase: bool = False
    seen: set[tuple[bool, int]] = field(default_factory=set)  # (warm-up, index) of its records this step
    waiting: asyncio.Future[Any] | None = None
    lost_step_requests: int = 0  # a dead worker: its requests of the step it died in (records or lost)

    def send(self, message: tuple[str, Any]) -> None:
        try:
            self.conn.send(message)
        except (OSError, EOFError):
            pass  # it died: its reader says so


class WorkerPool:
    """Runs steps through ``count`` worker processes; use as ``async with`` (starts and stops them)."""

    def __init__(self, count: int, setup: WorkerSetup, sink: Callable[[RequestRecord], None], counters: LiveCounters) -> None:
        self._count = count
        self._setup = setup
        self._sink = sink
        self.counters = counters
        self._workers: list[_Worker] = []

    async def __aenter__(self) -> "WorkerPool":
        context = multiprocessing.get_context("spawn")  # no fork: the parent has threads (display, telemetry)
        loop = asyncio.get_running_loop()
        for number in range(self._count):
            parent_end, child_end = context.Pipe(duplex=True)
            process = context.Process(target=worker_main, args=(child_end, self._setup), name=f"perfbench-worker-{number}", daemon=True)
            process.start()
            child_end.close()  # its end lives in the child only: the child's death is EOF here
            worker = _Worker(number, process, parent_end)
            self._workers.append(worker)
            loop.add_reader(parent_end.fileno(), self._readable, worker)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        loop = asyncio.get_running_loop()
        for worker in self._workers:
            if worker.alive:
                worker.send(("exit", None))
                worker.alive = False  # its end of the pipe closing now is no death
                loop.remove_reader(worker.conn.fileno())
        deadline = time.monotonic() + EXIT_WAIT_S
        for worker in self._workers:
            await asyncio.to_thread(worker.process.join, max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join, 1.0)
            worker.conn.close()

    @property
    def live_workers(self) -> int:
        return sum(worker.alive for worker in self._workers)

    async def run_step(self, plan: StepPlan) -> int:
        """Run ``plan`` split over the live workers; return how many requests it scheduled (as ``Engine.run_step``)."""
        live = [worker for worker in self._workers if worker.alive]
        if not live:
            raise TargetError("every worker process died; see the lost requests in requests.jsonl")
        slices = split_step(plan, len(live))
        pairs = list(zip(live, slices))
        self.counters.start_step(plan.step, plan.number)
        try:
            for worker, part in pairs:
                worker.plan, worker.warmup_phase, worker.seen = part, True, set()
            await self._phase(pairs, "prepare", lambda part: part)
            start_ns = time.perf_counter_ns() + START_AHEAD_NS
            for worker, _ in pairs:
                worker.warmup_phase = False
            self.counters.start_step(plan.step, plan.number)
            counts = await self._phase(pairs, "start", lambda part: replace(part, start_ns=start_ns))
        except asyncio.CancelledError:
            await self._stop([worker for worker, _ in pairs])
            raise
        return sum(counts)

    async def _phase(self, pairs: list[tuple[_Worker, StepPlan]], command: str, plan_of: Callable[[StepPlan], StepPlan]) -> list[Any]:
        loop = asyncio.get_running_loop()
        waits = []
        for worker, part in pairs:
            worker.waiting = loop.create_future()
            waits.append(worker.waiting)
            if worker.alive:
                worker.send((command, plan_of(part)))
            else:
                self._lost(worker, "it had died before")
        # Shielded: a cancelled step (Ctrl-C) must still wait for the workers' last records in _stop.
        return list(await asyncio.gather(*(asyncio.shield(wait) for wait in waits)))

    async def _stop(self, workers: list[_Worker]) -> None:
        """Ctrl-C, SIGTERM, a full disk: every worker stops, and hands over the records of what ended."""
        waits = [w.waiting for w in workers if w.alive and w.waiting is not None and not w.waiting.done()]
        for worker in workers:
            if worker.alive:
                worker.send(("stop", None))
        if waits:
            await asyncio.wait(waits, timeout=STOP_WAIT_S)

    def _readable(self, worker: _Worker) -> None:
        try:
            kind, value = worker.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            worker.process.join(1.0)
            self._lost(worker, f"it exited with code {worker.process.exitcode}")
            return
        if kind == "records":
            records, worker.sent, worker.in_flight = value
            for record in records:
                worker.seen.add((record.warmup, record.index))
                self.counters.count(record)
                self._sink(record)
            self.counters.sent = sum(w.sent for w in self._workers)
            self.counters.in_flight = sum(w.in_flight for w in self._workers if w.alive)
        elif kind == "error":
            worker.process.kill()  # a bug of ours in one worker costs its requests, not the run
            self._lost(worker, f"it failed ({value})")
        elif worker.waiting is not None and not worker.waiting.done():
            worker.waiting.set_result(value if value is not None else 0)

    def _lost(self, worker: _Worker, why: str) -> None:
        """A dead worker: its unfinished requests of this step become failed records; its wait ends
        with the step's requests it had (as ``run_load`` would have returned)."""
        if worker.alive:
            worker.alive = False
            unfinished = self._unfinished(worker)
            now_ns = time.perf_counter_ns()
            error = f"worker process {worker.number} (pid {worker.process.pid}) ended before this request finished: {why}"
            for warmup, index in unfinished:
                record = RequestRecord(
                    step=worker.plan.step if worker.plan else 0, index=index, warmup=warmup, status=WORKER_LOST,
                    http_status=None, error=error, scheduled_ns=now_ns, sent_ns=now_ns, end_ns=now_ns,
                    package_times_ns=(), package_tokens=(), input_tokens=None, output_tokens=None, token_source=None,
                )
                self.counters.count(record)
                self._sink(record)
            worker.lost_step_requests = sum(1 for warmup, _ in worker.seen | set(unfinished) if not warmup)
            logger.warning("worker process %d died (%s); %d unfinished requests counted as %s",
                           worker.number, why, len(unfinished), WORKER_LOST)
            self.counters.in_flight = sum(w.in_flight for w in self._workers if w.alive)
        if worker.waiting is not None and not worker.waiting.done():
            if worker.warmup_phase:
                worker.waiting.set_result(None)  # its step requests are counted when the step's load is awaited
            else:
                worker.waiting.set_result(worker.lost_step_requests)
                worker.lost_step_requests = 0

    @staticmethod
    def _unfinished(worker: _Worker) -> list[tuple[bool, int]]:
        """The (warm-up, index) pairs of the worker's slice that have no record yet."""
        plan = worker.plan
        if plan is None:
            return []
        if worker.warmup_phase:
            wanted = [(True, plan.warmup_first_index + k) for k in range(plan.warmup)]
            main: list[tuple[bool, int]] = []
            if plan.number is not None and plan.rate_req_s is None:
                main = [(False, plan.first_index + k) for k in range(plan.number)]
            elif plan.rate_req_s is not None:
                main = [(False, i) for i in _slice_indexes(plan)]
            wanted += main
        elif plan.rate_req_s is not None:
            wanted = [(False, i) for i in _slice_indexes(plan)]
        elif plan.number is not None:
            wanted = [(False, plan.first_index + k * plan.index_stride) for k in range(plan.number)]
        else:  # bounded by duration: those it had in flight when last heard from
            seen = [index for warmup, index in worker.seen if not warmup]
            after = max(seen) + plan.index_stride if seen else plan.first_index
            wanted = [(False, after + k * plan.index_stride) for k in range(worker.in_flight)]
        return [pair for pair in wanted if pair not in worker.seen]


def _slice_indexes(plan: StepPlan) -> range:
    """The arrival indexes an open-loop slice sends."""
    offsets = arrival_offsets_s(
        rate_req_s=plan.rate_req_s or 1.0, count=plan.number,
        duration_s=None if plan.number is not None else plan.duration_s,
        arrivals=plan.arrivals, burstiness=plan.burstiness, ramp_up_s=plan.ramp_up_s, seed=plan.seed,
    )
    return range(plan.arrival_slice, len(offsets), plan.arrival_slices)
