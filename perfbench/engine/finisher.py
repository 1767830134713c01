"""Ended requests become records between the event loop's reads, never in the way of one."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from perfbench.engine.answers import Exchange
from perfbench.results.records import RequestRecord

# Ended requests waiting for their records, at most, and the answer bytes they hold: a closed-loop
# wave of 1,024 streams ending together stays queued (finished between reads, not in the way of the
# next wave's sends), while memory stays bounded however fast requests end.
MAX_FINISH_BACKLOG = 4096
MAX_FINISH_BACKLOG_BYTES = 64 * 2**20


class Finisher:
    """Turns ended requests into records between the loop's reads, never in the way of one.

    A wave of streams ending together would otherwise parse, interpret, serialise and write each
    one on the spot, delaying the reads (and stamps) of the streams still running, and the next
    closed-loop send. Here an ending request only queues its bytes; one task finishes them one at
    a time, yielding to the event loop after each, so pending reads are stamped first.
    """

    def __init__(self, finish: Callable[[Exchange | RequestRecord], None]) -> None:
        self._finish = finish
        self._queue: deque[Exchange | RequestRecord] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def put(self, ended: Exchange | RequestRecord) -> None:
        self._queue.append(ended)
        self._queued_bytes += _bytes_of(ended)
        # Requests can end faster than one a loop turn is finished (a zero-delay server): past a
        # bound, finish on the spot, so the backlog of unparsed answers (memory) never grows with the run.
        while len(self._queue) > MAX_FINISH_BACKLOG or self._queued_bytes > MAX_FINISH_BACKLOG_BYTES:
            self._finish_next()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            while self._queue:
                self._finish_next()
                await asyncio.sleep(0)  # let ready reads and sends run before the next one
            self._wake.clear()
            await self._wake.wait()

    async def drain(self) -> None:
        """Wait until every queued request has its record; a failure of the sink is raised here."""
        while self._queue and self._task is not None and not self._task.done():
            await asyncio.sleep(0)
        if self._task is not None and self._task.done() and not self._task.cancelled() and self._task.exception():
            raise self._task.exception()  # type: ignore[misc]
        self.finish_all()

    def finish_all(self) -> None:
        """Finish what is queued now, without yielding (a cancelled step, Ctrl-C), and stop the task."""
        while self._queue:
            self._finish_next()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _finish_next(self) -> None:
        ended = self._queue.popleft()
        self._queued_bytes -= _bytes_of(ended)
        self._finish(ended)


def _bytes_of(ended: Exchange | RequestRecord) -> int:
    """The answer bytes an ended request holds until its record is built."""
    return sum(map(len, ended.stream.chunks)) if isinstance(ended, Exchange) else 0
