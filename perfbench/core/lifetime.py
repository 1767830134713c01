"""A local server dies with the perfbench that started it, even when that perfbench is SIGKILLed.

Two mechanisms, so that one failing is not an orphaned server holding a GPU and a port:

- Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``): the kernel sends SIGTERM to the child
  when its parent dies. It fires when the parent *thread* that forked the child ends, so the child
  must be started from a thread that lives as long as the server should (the thread inside
  ``start_local_server``'s ``with`` block does). It survives ``exec``, so the vLLM launcher gets it
  through ``die_with_parent_preexec`` (run between fork and exec).
- A pipe, for perfbench's own servers (``perfbench serve --parent-pid PID``): the parent holds the
  write end of the child's stdin and never writes; EOF means the parent is gone. This works on
  any POSIX system, and also when the parent died before the child could arm the signal.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_DEATH_SIGNAL = signal.SIGTERM  # lets the server (vLLM) stop its own workers; SIGKILL would orphan them
_EXIT_GRACE_S = 10.0  # after SIGTERM to itself, a server that is still alive exits hard


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up once, before any fork (a lookup after fork may take a lock)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def set_parent_death_signal(sig: int = PARENT_DEATH_SIGNAL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; False where unsupported."""
    return _prctl is not None and _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def die_with_parent_preexec() -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets the parent-death signal before it execs.

    The child also exits at once when the parent died between the fork and the prctl (the
    signal would then never come).
    """
    parent_pid = os.getpid()

    def preexec() -> None:
        if set_parent_death_signal() and os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def exit_with_parent(parent_pid: int, *, parent_death_signal: bool = True) -> None:
    """Call early in a server child: stop this process when ``parent_pid`` is gone.

    Arms the parent-death signal (unless ``parent_death_signal`` is False) and starts a daemon
    thread that waits for EOF on stdin, which must be a pipe whose write end only the parent holds.
    """
    if parent_death_signal:
        set_parent_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        _parent_gone(parent_pid)
        return
    threading.Thread(target=_watch_stdin, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _watch_stdin(parent_pid: int) -> None:
    try:
        while os.read(sys.stdin.fileno(), 4096):
            pass  # the parent never writes; anything read is ignored
    except (OSError, ValueError):
        pass  # stdin closed or unreadable: the parent cannot be watched any more, treat it as gone
    _parent_gone(parent_pid)


def _parent_gone(parent_pid: int) -> None:
    """Stop like a SIGTERM from the parent would; exit hard if that does not end the process."""
    logger.warning("perfbench (pid %d) is gone; stopping this server", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(_EXIT_GRACE_S)
    os._exit(1)
