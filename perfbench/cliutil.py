"""The argument parser every perfbench subcommand shares: usage errors as one line (exit 2)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from perfbench.errors import ConfigError


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise ConfigError instead of printing usage text and exiting.

    The top-level CLI prints a ConfigError as ``perfbench: error: ...`` and exits 2, so bad
    usage of any subcommand reads like any other bad input: one line naming the fix.
    """

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see '{self.prog} --help'")
