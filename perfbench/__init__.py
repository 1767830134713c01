"""perfbench: a load tester for LLM inference servers with exact streaming metrics.

``perfbench.run(...)`` and ``perfbench.load_run(DIR)`` are the Python API (perfbench/benchmark/api.py);
they are imported on first use, so ``import perfbench`` (and the CLI's start) stays light.
"""

from __future__ import annotations

from typing import Any

from perfbench.core.version import __version__
__all__ = ["__version__", "run", "load_run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "load_run"):
        from perfbench.benchmark import api

        return getattr(api, name)
    raise AttributeError(f"module 'perfbench' has no attribute {name!r}")
