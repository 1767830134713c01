"""The client measuring itself during a step: how late a periodic timer runs on the event loop (the
time every stamp may be late by), and the process's CPU seconds over the step's wall time.

It costs one timer callback per tick (a clock read and an append: about a microsecond, 100 times
a second) and two clock reads per step. Nothing here computes a statistic: the samples go out
raw, in a ``ClientReading``, and perfbench.metrics judges them.
"""

from __future__ import annotations

import asyncio
import time
from array import array

from perfbench.results.client_reading import ClientReading

LAG_TICK_NS = 10_000_000  # the timer's period: 100 lag samples a second


class ClientMeter:
    """Measures this process from ``start`` to ``stop``; ``start`` on the running event loop.

    Each tick is scheduled ``tick_ns`` after the previous one ran; its lag is how much later than
    that it ran (never below 0: a loop whose clock is coarser than ours may run a timer a little
    early). With ``tick_ns`` None only CPU and wall time are taken.
    """

    def __init__(self, *, tick_ns: int | None = LAG_TICK_NS, worker: int | None = None) -> None:
        self._tick_ns = tick_ns
        self._worker = worker
        self._lag_ns = array("q")
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due_ns = 0
        self._start_ns: int | None = None
        self._start_cpu_ns = 0

    def start(self) -> None:
        self._lag_ns = array("q")
        self._start_ns = time.perf_counter_ns()
        self._start_cpu_ns = time.process_time_ns()
        if self._tick_ns is not None:
            self._loop = asyncio.get_running_loop()
            self._schedule(self._start_ns)

    def _schedule(self, now_ns: int) -> None:
        assert self._loop is not None and self._tick_ns is not None
        self._due_ns = now_ns + self._tick_ns
        self._handle = self._loop.call_later(self._tick_ns / 1e9, self._tick)

    def _tick(self) -> None:
        now_ns = time.perf_counter_ns()
        late_ns = now_ns - self._due_ns
        self._lag_ns.append(late_ns if late_ns > 0 else 0)
        self._schedule(now_ns)

    def stop(self) -> ClientReading | None:
        """The reading from ``start`` to now; None when it never started. The timer stops."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._start_ns is None:
            return None
        wall_ns = time.perf_counter_ns() - self._start_ns
        cpu_ns = time.process_time_ns() - self._start_cpu_ns
        reading = ClientReading(cpu_s=cpu_ns / 1e9, wall_s=wall_ns / 1e9, loop_lag_ns=self._lag_ns, worker=self._worker)
        self._start_ns = None
        return reading
