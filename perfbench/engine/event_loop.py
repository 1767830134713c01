"""The run's event loop: uvloop where it is installed (what the tools users compare with run on), else asyncio's.

uvloop's reads and writes cost less per package, which matters at hundreds of streams in flight.
``LOOP_NAME`` says which one ran; summary.json records it. ``sleep_until`` waits for a deadline
without ever returning before it (a loop's timers can fire early).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, Awaitable, Callable, Coroutine, Sequence, TypeVar

T = TypeVar("T")

try:
    import uvloop

    _new_loop: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    LOOP_NAME = f"uvloop {uvloop.__version__}"
except ImportError:  # e.g. Windows, or a minimal install: the plain asyncio loop is exact too, only slower
    _new_loop = None
    LOOP_NAME = "asyncio"


# How long another thread may hold the GIL before the loop's thread gets it back (CPython's
# default is 5 ms): the live display, telemetry and the workers' pipe readers run in threads, and
# every read the loop has not yet taken is stamped that much later.
GIL_SWITCH_INTERVAL_S = 0.0005


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the fastest loop available (same Ctrl-C handling: the main task is
    cancelled), with the GIL handed back to the loop's thread every ``GIL_SWITCH_INTERVAL_S``."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, GIL_SWITCH_INTERVAL_S))
    try:
        if _new_loop is None:
            return asyncio.run(main)
        if sys.version_info >= (3, 11):
            with asyncio.Runner(loop_factory=_new_loop) as runner:
                return runner.run(main)
        uvloop.install()
        return asyncio.run(main)
    finally:
        sys.setswitchinterval(interval)


async def gather_or_cancel(aws: Sequence[Any]) -> None:
    """Await all; if we are cancelled (Ctrl-C), cancel the rest and wait for them to finish."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.gather(*tasks)
    except BaseException:  # cleanup, then re-raised: hides nothing
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


YIELD_NS = 200_000  # the last part of a wait, spent yielding to the loop rather than on a timer


async def sleep_until(due_ns: int) -> None:
    """Return at or after ``due_ns`` (``perf_counter_ns``), never before.

    A loop's timers can fire early: uvloop's are whole milliseconds against a clock read once per
    loop turn (up to 0.5 ms early measured here), so after each sleep the clock is read again and
    the remainder waited; its last YIELD_NS are spent yielding (``sleep(0)``), so other callbacks
    still run and no busy loop lasts longer than that.
    """
    clock = time.perf_counter_ns
    while (left_ns := due_ns - clock()) > 0:
        await asyncio.sleep(left_ns / 1e9 if left_ns > YIELD_NS else 0)


Start = Callable[[Awaitable[Any]], None]  # starts one task of run_in_flight's


async def run_in_flight(dispatch: Callable[[Start], Awaitable[Any]]) -> None:
    """Run ``dispatch(start)``, which starts tasks with ``start(awaitable)`` as it goes; return once
    it and every task it started have ended.

    Only tasks still running are held (each is dropped when it ends), so a long open-loop step holds
    what is in flight, not every request it sent. Errors and cancellation as in ``gather_or_cancel``:
    the first error of any of them cancels the rest, waits for them and is raised; a cancelled
    caller (Ctrl-C) cancels them all and waits for them.
    """
    tasks: set[asyncio.Task[Any]] = set()
    ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()  # the first error, or None

    def settle(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        error = None if task.cancelled() else task.exception()  # retrieved even when another came first
        if ended.done():
            return
        if error is not None:
            ended.set_result(error)
        elif not tasks:  # the dispatcher is one of them: nothing is left to start either
            ended.set_result(None)

    def start(work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(settle)

    start(dispatch(start))
    try:
        failure = await ended
    finally:
        running = list(tasks)
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    if failure is not None:
        raise failure
