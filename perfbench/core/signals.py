"""Stopping a run early and cleanly: SIGTERM and SIGHUP act like Ctrl-C, and so does a failed write.

``asyncio.run`` turns the first Ctrl-C into a cancellation of the run's main task. SIGTERM
(``kill``, ``docker stop``, a CI timeout) and SIGHUP (a closed terminal or SSH session) would by
default kill the process at once: no summary, a local server left running. ``stop_on_signals``
makes them cancel the main task the same way, through a ``RunStopper``, which the run also uses
when it must stop for its own reasons (a record that cannot be written). ``hold_signals`` ignores
all three while the summary is written, so an impatient second signal does not cost it. Outside
the run's loop (starting a local server, writing reports), ``terminate_as_interrupt`` makes them
raise KeyboardInterrupt, so ``with`` blocks unwind (the server stops) and the CLI exits 130.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # asyncio is imported where it is used: `perfbench --help` must stay quick
    import asyncio

# By default these kill the process without cleanup (Windows has no SIGHUP).
TERMINATING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
STOP_SIGNALS = (signal.SIGINT, *TERMINATING_SIGNALS)
CTRL_C = "Ctrl-C"  # the reason of a SIGINT stop, as the user knows it


class RunStopper:
    """Cancels the run's main task once, for the first reason given; remembers that reason."""

    def __init__(self) -> None:
        self.reason: str | None = None  # "SIGTERM", "SIGHUP", "Ctrl-C" or a failure's message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None

    def attach(self) -> None:
        """Call first thing inside the run's main coroutine: that task is the one to cancel."""
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        if self.reason is not None and self._task is not None:  # a signal came before the loop ran
            self._task.cancel()

    def stop(self, reason: str) -> None:
        """Stop the run (idempotent: the first reason wins). Safe from a signal handler or the loop."""
        if self.reason is not None:
            return
        self.reason = reason
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not task.done():
            # call_soon_threadsafe also wakes a loop blocked in select() with a long timeout.
            loop.call_soon_threadsafe(task.cancel)

    def on_signal(self, signum: int, frame: Any) -> None:
        self.stop(signal.Signals(signum).name)


@contextmanager
def stop_on_signals(stopper: RunStopper) -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP call ``stopper`` instead of killing the process."""
    previous = _install({sig: stopper.on_signal for sig in TERMINATING_SIGNALS})
    try:
        yield
    finally:
        _install(previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP outside a run's loop: handled like Ctrl-C."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signal.Signals(signum).name)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise ``Terminated`` (a KeyboardInterrupt) instead of killing the process."""
    previous = _install({sig: _raise_terminated for sig in TERMINATING_SIGNALS})
    try:
        yield
    finally:
        _install(previous)


@contextmanager
def hold_signals() -> Iterator[None]:
    """Ignore Ctrl-C, SIGTERM and SIGHUP while inside (writing the summary must not be cut short)."""
    previous = _install({sig: signal.SIG_IGN for sig in STOP_SIGNALS})
    try:
        yield
    finally:
        _install(previous)


def _install(handlers: dict[signal.Signals, Any]) -> dict[signal.Signals, Any]:
    """Set each handler; returns the previous ones. Only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
