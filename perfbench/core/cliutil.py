"""What every perfbench subcommand shares on the command line: the argument parser (usage errors as
one line, exit 2), and standard streams that a closed pipe does not break (``perfbench ... | head``)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path
from typing import Any, Iterator, NoReturn, TextIO

from perfbench.core.errors import ConfigError
from perfbench.core.printable import printable


def print_error(message: str) -> None:
    """``perfbench: error: <message>`` on stderr: how every command says, in one line, what stopped it
    (a message names the fix; the caller has masked any secret in it). Control characters a message
    quotes (a server's words, a file's) are shown escaped, never acted on by the terminal."""
    print(f"perfbench: error: {printable(message)}", file=sys.stderr)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise ConfigError instead of printing usage text and exiting.

    The top-level CLI prints a ConfigError as ``perfbench: error: ...`` and exits 2, so bad
    usage of any subcommand reads like any other bad input: one line naming the fix.
    """

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see '{self.prog} --help'")


def check_writable_file(path: Path, flag: str) -> None:
    """ConfigError unless ``path`` can be written: not a folder, and its nearest existing parent a writable folder."""
    parent = path.parent
    try:
        if path.is_dir():
            raise ConfigError(f"{flag} {path} is a folder; give a file name")
        while not parent.exists():
            parent = parent.parent
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}; choose another path") from None
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {parent} is not writable; choose another path")


class _PipeSafeStream:
    """A standard stream that a closed pipe does not break: once the reader has gone (``| head``),
    a write or flush that hits EPIPE is dropped, and so is every later one, so the run goes on to
    write its files and exits with its own code instead of dying on a print."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def _gone(self) -> None:
        self.reader_gone = True
        # What the stream still buffers would hit EPIPE again when the interpreter flushes it at exit
        # ("Exception ignored ... BrokenPipeError", exit 120): its descriptor now leads to /dev/null.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self._stream.fileno())
            finally:
                os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding...: the stream's own
        return getattr(self._stream, name)


@contextlib.contextmanager
def closed_pipes_ignored() -> Iterator[None]:
    """Within: stdout and stderr whose reader may go away (``perfbench ... | head``, DESIGN.md: "a
    closed stdout is not an error") without costing the run its files or its exit code."""
    saved = sys.stdout, sys.stderr
    safe = _PipeSafeStream(sys.stdout), _PipeSafeStream(sys.stderr)
    sys.stdout, sys.stderr = safe  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in safe:  # what print() still buffers goes now, while a closed pipe is harmless
            stream.flush()
        sys.stdout, sys.stderr = saved
