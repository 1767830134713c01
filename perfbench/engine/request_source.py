"""Where the engine gets request ``k`` of a run: ``RequestSource.get(k)``, a body already encoded.

Two kinds:
- ``CycledRequests``: a fixed list of encoded requests, request ``k`` being ``k % len`` (a prompts
  file, a dataset, a trace: every body made before the run).
- ``BuiltAhead``: request ``k`` made by a function of ``k`` (synthetic prompts, which never
  repeat), so no list holds the whole run. The engine says which numbers a phase will ask for
  (``expect``, before the phase's clock: as many bodies as the window holds are built then), and
  while the phase runs ``keep_ahead`` builds the next ones on the loop in pieces of at most
  BUILD_PIECE_NS, between sends and reads, whenever fewer than half the window are left. The send
  path only takes a body out of the window; one not built in time (the client is behind) is built
  there and then, and the lag shows as queue time.

Memory: the window holds at most WINDOW_BODIES bodies and WINDOW_BYTES of them.
Sources are handed to worker processes and Ray actors by pickling: a ``BuiltAhead`` travels without
its window, and each worker builds only the numbers its slice sends.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Protocol, Sequence

from perfbench.engine.plan import PreparedRequest

WINDOW_BODIES = 2048  # bodies built ahead of need, at most
WINDOW_BYTES = 32 * 2**20  # ... and their bytes, at most (long prompts, images)
BUILD_PIECE_NS = 500_000  # the loop builds for at most this long (or one body) before it lets others run


class RequestSource(Protocol):
    """The run's requests by number (0-based, warm-up first, then each step's in turn)."""

    def get(self, number: int) -> PreparedRequest:
        """Request ``number``, encoded."""

    def expect(self, numbers: range) -> None:
        """The numbers the next phase asks for, in about that order (a long or endless range for a
        duration-bound step); called before the phase's clock, so building there costs it nothing."""

    async def keep_ahead(self) -> None:
        """Runs beside a phase on its loop: keeps the next bodies built; returns when none are left to build."""


class CycledRequests:
    """A fixed list of encoded requests; request ``k`` is ``requests[k % len(requests)]``."""

    def __init__(self, requests: Sequence[PreparedRequest]) -> None:
        if not requests:
            raise ValueError("no requests to send")
        self.requests = requests

    def get(self, number: int) -> PreparedRequest:
        return self.requests[number % len(self.requests)]

    def expect(self, numbers: range) -> None:
        pass  # all built before the run

    async def keep_ahead(self) -> None:
        pass


def as_source(requests: RequestSource | Sequence[PreparedRequest]) -> RequestSource:
    """A source as it is, a list of requests as the source cycling through them."""
    if isinstance(requests, (list, tuple)):
        return CycledRequests(requests)
    return requests  # type: ignore[return-value]


class BuiltAhead:
    """Request ``k`` is ``build(k)``, built ahead of need within a bounded window (module docstring).

    ``build`` must be a pure function of ``k`` (and picklable, to reach worker processes).
    """

    def __init__(self, build: Callable[[int], PreparedRequest], *, window_bodies: int = WINDOW_BODIES,
                 window_bytes: int = WINDOW_BYTES) -> None:
        self.build = build
        self.window_bodies = window_bodies
        self.window_bytes = window_bytes
        self._ready: dict[int, PreparedRequest] = {}  # built, not yet taken
        self._bytes = 0  # body bytes in _ready
        self._lane: range = range(0)  # the numbers the current phase asks for
        self._next = 0  # position in _lane of the next number to build
        self._wake: asyncio.Event | None = None  # set by get() when the window runs low

    def __getstate__(self) -> dict[str, Any]:
        return {"build": self.build, "window_bodies": self.window_bodies, "window_bytes": self.window_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["build"], window_bodies=state["window_bodies"], window_bytes=state["window_bytes"])  # type: ignore[misc]

    @property
    def ready(self) -> int:
        """Bodies built and not yet taken."""
        return len(self._ready)

    def get(self, number: int) -> PreparedRequest:
        request = self._ready.pop(number, None)
        if request is not None:
            self._bytes -= len(request.body)
        else:
            request = self.build(number)  # not built in time: built here, and the client's lag shows as queue time
            if number in self._lane and (at := self._lane.index(number)) >= self._next:
                self._next = at + 1  # the builder goes on after it
        if self._wake is not None and len(self._ready) <= self.window_bodies // 2:
            self._wake.set()
        return request

    def expect(self, numbers: range) -> None:
        # Bodies already built for these numbers stay (a duration-bound step continues where the last one stopped).
        kept = {n: r for n, r in self._ready.items() if n in numbers}
        self._ready, self._bytes = kept, sum(len(r.body) for r in kept.values())
        self._lane, self._next = numbers, 0
        self._skip_built()
        self._fill(None)

    async def keep_ahead(self) -> None:
        self._wake = wake = asyncio.Event()
        try:
            while self._next < len(self._lane):
                if self._full():
                    wake.clear()
                    await wake.wait()
                    continue
                self._fill(time.perf_counter_ns() + BUILD_PIECE_NS)
                await asyncio.sleep(0)  # the loop's other work (sends, reads) goes first
        finally:
            self._wake = None

    def _full(self) -> bool:
        return len(self._ready) >= self.window_bodies or self._bytes >= self.window_bytes

    def _skip_built(self) -> None:
        while self._next < len(self._lane) and self._lane[self._next] in self._ready:
            self._next += 1

    def _fill(self, until_ns: int | None) -> None:
        """Build the lane's next bodies until the window is full, the lane ends, or ``until_ns`` passed (one at least)."""
        lane, ready = self._lane, self._ready
        while self._next < len(lane) and not self._full():
            number = lane[self._next]
            self._next += 1
            request = self.build(number)
            ready[number] = request
            self._bytes += len(request.body)
            self._skip_built()
            if until_ns is not None and time.perf_counter_ns() >= until_ns:
                return
