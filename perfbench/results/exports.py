"""Exports of a finished run for other tools (``--export NAME``, repeatable). One entry per
format: the name and where its function lives, imported only when asked for. An exporter is
``(run_dir, summary) -> [paths written]``; it reads the run's files, never the engine.

To add one: write the function in its own module under perfbench/report/ and name it here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Mapping

EXPORTERS: Mapping[str, str] = {
    "vllm": "perfbench.report.vllm_export:export_vllm",  # vllm bench serve --save-result's JSON
}

Exporter = Callable[[Path, Mapping[str, Any]], list[Path]]


def exporter(name: str) -> Exporter:
    module, _, function = EXPORTERS[name].partition(":")
    return getattr(importlib.import_module(module), function)
