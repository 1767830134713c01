"""Workers as local processes (``--workers N``): one pipe each, commands down, messages up.

Each end of a pipe is read by a thread of its own that blocks in ``recv`` and hands whole messages
to the event loop. Not ``loop.add_reader``: uvloop makes a watched descriptor non-blocking, and a
``Connection`` then fails half-way through a large batch (BlockingIOError), on either side.

On one machine every process reads the same monotonic clock (``perf_counter_ns`` is
CLOCK_MONOTONIC, system-wide), so records need no shift and the shared start is used as it is.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import platform
import signal
import threading
import time
from typing import Any

from perfbench.engine import event_loop
from perfbench.workers.body import BATCH_WAIT_S, WorkerBody, WorkerSetup
from perfbench.workers.pool import Deliver

EXIT_WAIT_S = 5.0


def worker_main(conn: Any, setup: WorkerSetup) -> None:
    """A worker process's body: serve the parent's commands until it says exit or goes away."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the parent stops us, keeping every record (a terminal's Ctrl-C reaches us too)
    from perfbench.core.lifetime import set_parent_death_signal

    set_parent_death_signal(signal.SIGKILL)  # a SIGKILLed parent: nobody is left to read our records
    event_loop.run(_serve(conn, setup))


def _pump(body: WorkerBody, conn: Any) -> None:
    """The outbox's thread: batches go up the pipe without waiting for the worker's event loop."""
    while not body.outbox.closed:
        for message in body.outbox.take(BATCH_WAIT_S):
            try:
                conn.send(message)
            except (OSError, EOFError):
                pass  # the parent is gone; the command reader ends the process


def _read_messages(conn: Any, loop: asyncio.AbstractEventLoop, handle: Any, ended: Any) -> None:
    """A pipe reader's thread: each whole message to ``handle`` on the loop, then ``ended()`` at EOF."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = None
        try:
            loop.call_soon_threadsafe(ended if message is None else handle, *(() if message is None else (message,)))
        except RuntimeError:  # the loop has closed: nobody is left to tell
            return
        if message is None:
            return


async def _serve(conn: Any, setup: WorkerSetup) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    body = WorkerBody(setup)
    pump = threading.Thread(target=_pump, args=(body, conn), name="perfbench-outbox", daemon=True)
    pump.start()
    try:
        await body.open()
        threading.Thread(
            target=_read_messages, args=(conn, loop, commands.put_nowait, lambda: commands.put_nowait(("exit", None))),
            name="perfbench-commands", daemon=True,
        ).start()
        while True:
            kind, value = await commands.get()
            if kind == "exit":
                break
            body.command(kind, value)
    finally:
        await body.close()
        pump.join()


class ProcessTransport:
    """``count`` worker processes on this machine (spawned: the parent has threads, no fork)."""

    def __init__(self, count: int, setup: WorkerSetup) -> None:
        self._count = count
        self._setup = setup.for_workers(count)
        self._processes: list[Any] = []
        self._conns: list[Any] = []
        self._reading: set[int] = set()

    async def open(self, deliver: Deliver) -> list[dict[str, Any]]:
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        infos = []
        for number in range(self._count):
            parent_end, child_end = context.Pipe(duplex=True)
            process = context.Process(target=worker_main, args=(child_end, self._setup), name=f"perfbench-worker-{number}", daemon=True)
            process.start()
            child_end.close()  # its end lives in the child only: the child's death is EOF here
            self._processes.append(process)
            self._conns.append(parent_end)
            self._reading.add(number)
            threading.Thread(
                target=_read_messages, name=f"perfbench-worker-{number}-reader", daemon=True,
                args=(parent_end, loop, lambda message, n=number: deliver(n, *message), lambda n=number: self._ended(n, deliver)),
            ).start()
            infos.append({"worker": number, "transport": "process", "host": platform.node(), "pid": process.pid,
                          "clock_offset_ns": 0})
        return infos

    def _ended(self, number: int, deliver: Deliver) -> None:
        """The worker's end of the pipe closed: a death, unless we told it to exit."""
        if number not in self._reading:
            return
        self._reading.discard(number)
        process = self._processes[number]
        process.join(1.0)
        deliver(number, "lost", f"it exited with code {process.exitcode}")

    def send(self, number: int, command: str, value: Any) -> None:
        try:
            self._conns[number].send((command, value))
        except (OSError, EOFError):
            pass  # it died: its reader says so

    def kill(self, number: int) -> None:
        self._processes[number].kill()

    def describe(self, number: int) -> str:
        return f"worker process {number} (pid {self._processes[number].pid})"

    async def close(self) -> None:
        for number in range(len(self._processes)):
            if number in self._reading:
                self.send(number, "exit", None)
                self._reading.discard(number)  # its end of the pipe closing now is no death
        deadline = time.monotonic() + EXIT_WAIT_S
        for process, conn in zip(self._processes, self._conns):
            await asyncio.to_thread(process.join, max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 1.0)
            conn.close()
