"""The argument parser every perfbench subcommand shares: usage errors as one line (exit 2)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn

from perfbench.core.errors import ConfigError


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
