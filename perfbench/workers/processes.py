"""Workers as local processes (``--workers N``): one pipe each, commands down, messages up.

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

from perfbench import event_loop
from perfbench.workers.body import BATCH_WAIT_S, WorkerBody, WorkerSetup
from perfbench.workers.pool import Deliver

EXIT_WAIT_S = 5.0


def worker_main(conn: Any, setup: WorkerSetup) -> None:
    """A worker process's body: serve the parent's commands until it says exit or goes away."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the parent stops us, keeping every record (a terminal's Ctrl-C reaches us too)
    from perfbench.servers.lifetime import set_parent_death_signal

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


async def _serve(conn: Any, setup: WorkerSetup) -> None:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def readable() -> None:
        try:
            commands.put_nowait(conn.recv())
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            commands.put_nowait(("exit", None))

    body = WorkerBody(setup)
    pump = threading.Thread(target=_pump, args=(body, conn), name="perfbench-outbox", daemon=True)
    pump.start()
    try:
        await body.open()
        loop.add_reader(conn.fileno(), readable)
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
            loop.add_reader(parent_end.fileno(), self._readable, number, deliver)
            self._reading.add(number)
            infos.append({"worker": number, "transport": "process", "host": platform.node(), "pid": process.pid,
                          "clock_offset_ns": 0})
        return infos

    def _readable(self, number: int, deliver: Deliver) -> None:
        try:
            kind, value = self._conns[number].recv()
        except (EOFError, OSError):
            self._stop_reading(number)
            process = self._processes[number]
            process.join(1.0)
            deliver(number, "lost", f"it exited with code {process.exitcode}")
            return
        deliver(number, kind, value)

    def _stop_reading(self, number: int) -> None:
        if number in self._reading:
            self._reading.discard(number)
            asyncio.get_running_loop().remove_reader(self._conns[number].fileno())

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
                self._stop_reading(number)  # its end of the pipe closing now is no death
        deadline = time.monotonic() + EXIT_WAIT_S
        for process, conn in zip(self._processes, self._conns):
            await asyncio.to_thread(process.join, max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 1.0)
            conn.close()
