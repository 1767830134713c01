"""The run's event loop: uvloop where it is installed (what the tools users compare with run on), else asyncio's.

uvloop's reads and writes cost less per package, which matters at hundreds of streams in flight.
``LOOP_NAME`` says which one ran; summary.json records it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Callable, Coroutine, Sequence, TypeVar

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
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
