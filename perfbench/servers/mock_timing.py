"""The mock's clock and capacity: which package is due when, sleeping to a deadline, the FIFO slots.

Deadlines are absolute (perf_counter_ns): package ``p`` of a plan is due at ``base + round(itl *
tokens after the first package)``, so rounding never accumulates; a stall shifts the second half.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

perf_ns = time.perf_counter_ns


def package_plan(reasoning_tokens: int, n_tokens: int, tokens_per_package: int) -> list[int]:
    """Tokens per output package; reasoning and content never share a package."""
    k = tokens_per_package
    plan: list[int] = []
    for part in (reasoning_tokens, n_tokens - reasoning_tokens):
        full, rest = divmod(part, k)
        plan += [k] * full
        if rest:
            plan.append(rest)
    return plan


def package_deadlines(base_ns: int, itl_ns: float, plan: list[int], stall_ns: int = 0) -> list[int]:
    """Absolute due time of each output package (the finish package alone when there are none).

    ``base_ns`` is when the first is due (admitted + ttft); ``stall_ns`` delays package
    ``len(plan) // 2`` and all after it.
    """
    deadlines = []
    tokens_after_first = 0
    for p, tokens in enumerate(plan):
        if p:
            tokens_after_first += tokens
        deadlines.append(base_ns + round(itl_ns * tokens_after_first))
    if not deadlines:
        deadlines.append(base_ns)
    if stall_ns:
        half = len(plan) // 2
        deadlines[half:] = [d + stall_ns for d in deadlines[half:]]
    return deadlines


def next_tick(tick_ns: int, period_ns: int, now_ns: int) -> int:
    """The first tick of the grid ``tick + m*period`` that is after ``now``."""
    if now_ns < tick_ns:
        return tick_ns
    return tick_ns + ((now_ns - tick_ns) // period_ns + 1) * period_ns


async def sleep_until_ns(due_ns: int) -> None:
    """Sleep until the absolute time ``due_ns`` (never wakes before it)."""
    while (left_ns := due_ns - perf_ns()) > 0:
        await asyncio.sleep(left_ns / 1e9)



class Slots:
    """At most ``capacity`` holders at once; the rest wait in FIFO order (None: no limit)."""

    __slots__ = ("_capacity", "_held", "_waiters")

    def __init__(self, capacity: int | None) -> None:
        self._capacity = capacity
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def request(self) -> asyncio.Future[None] | None:
        """None: the slot is held now. Else a future that completes when the slot is handed over."""
        if self._capacity is None or (self._held < self._capacity and not self._waiters):
            self._held += 1
            return None
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def release(self) -> None:
        # Hand the slot straight to the first live waiter, so a newcomer cannot overtake it.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held -= 1

    def abandon(self, waiter: asyncio.Future[None]) -> None:
        """A waiter gave up (client gone): drop it, or pass on the slot it was just handed."""
        if waiter.done() and not waiter.cancelled():
            self.release()
        else:
            waiter.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
