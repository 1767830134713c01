"""Open files: a run holds one descriptor per connection, so the limit is checked before it starts.

With too few, most requests would fail with "Too many open files" and the numbers would measure
perfbench, not the server. As load tools commonly do, the soft RLIMIT_NOFILE is raised to the
hard limit when that is enough; when even the hard limit is too low, the run is refused with a
one-line message naming the fix.
"""

from __future__ import annotations

import logging
import os

from perfbench.core.errors import ConfigError

logger = logging.getLogger(__name__)

OPEN_FILES_MARGIN = 100  # beyond the connections: output files, logs, the mock's listener, telemetry, Python itself

try:
    import resource
except ImportError:  # not a POSIX system: no limit to check or raise
    resource = None  # type: ignore[assignment]


def open_files_limit() -> tuple[int, int] | None:
    """(soft, hard) RLIMIT_NOFILE, ``resource.RLIM_INFINITY`` for unlimited; None where unknown."""
    if resource is None:
        return None
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def ensure_open_files(needed: int, *, what: str | None) -> None:
    """Make room for ``needed`` open files, raising the soft limit up to the hard one if need be.

    ``what`` names the load that needs them ("--concurrency 2000"): when the hard limit is too
    low, ConfigError says so and names the fix. With ``what`` None (the need is only an upper
    bound, e.g. an open-loop step without a cap) the limit is raised as far as it goes, silently.
    """
    limits = open_files_limit()
    if limits is None:
        return
    soft, hard = limits
    infinity = resource.RLIM_INFINITY
    if soft == infinity or soft >= needed:
        return
    hard_is_enough = hard == infinity or hard >= needed
    if hard_is_enough or what is None:
        # The hard limit first (what load tools do); an unlimited one may be refused (macOS), then just enough.
        for new_soft in (hard, needed) if hard_is_enough else (hard,):
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            except (ValueError, OSError):
                continue
            logger.debug("raised the open-files limit from %d to %s (hard %s)", soft, new_soft, hard)
            break
        new_soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if new_soft == infinity or new_soft >= needed or what is None:
            return
    suggestion = 1 << (needed - 1).bit_length()  # the next power of two: 2100 -> 4096
    hard_text = "unlimited" if hard == infinity else str(hard)
    raise ConfigError(
        f"{what} needs about {needed} open files but the limit is {soft} (hard {hard_text}); "
        f"raise it with `ulimit -n {suggestion}` or lower {what.split()[0]}"
    )


def available_workers() -> int:
    """``--workers auto``: the cores this process may use, less one for the parent (which writes every record)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(1, cores - 1)
