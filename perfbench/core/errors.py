"""The exception tree; the CLI maps each branch to an exit code.

    PerfbenchError
     ├── ConfigError   exit 2: bad flag, file, URL or scenario (message names the fix)
     └── TargetError   exit 3: the server cannot be reached, or a local server failed to start

A failed *request* is never an exception: it becomes a RequestRecord with a reason.
"""


class PerfbenchError(Exception):
    """Base of perfbench's own errors; the message is one line meant for the user."""

    exit_code = 1


class ConfigError(PerfbenchError):
    """Bad usage or configuration; the message says what is wrong and how to fix it."""

    exit_code = 2


class TargetError(PerfbenchError):
    """The target server is unreachable or a local server could not be started."""

    exit_code = 3


class BadValue(Exception):
    """A value is wrong; the message says what and how to fix it (the flag or key path is added by the caller)."""


def shown_text(text: str) -> str:
    """A user's text for an error line: escaped (no raw CR/LF), shortened."""
    return ascii(text[:80])
