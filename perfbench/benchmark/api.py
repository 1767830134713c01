"""perfbench from Python: ``perfbench.run(...)`` runs a benchmark with the same options as the
command line, ``perfbench.load_run(DIR)`` reads a finished run back as pandas DataFrames.

    import perfbench
    result = perfbench.run(url="http://127.0.0.1:8000/v1/chat/completions", model="m", concurrency=[1, 8], number=200)
    result.steps[-1].ttft_ms.p99          # typed: metrics.StepSummary and metrics.Stats
    run = perfbench.load_run(result.run_dir)
    run.requests.groupby("step").ttft_ms.median()

Keywords are the option table's names (perfbench/config/options.py: ``timeout_s``, ``input_tokens``,
``slo``...), with Python values (``concurrency=[1, 8]``, ``slo={"ttft_p99": 500}``,
``headers={"X-Team": "infra"}``); a scenario file is ``scenario=PATH``, under the keywords, as
flags are over it. Bad input raises ``perfbench.core.errors.ConfigError`` with the CLI's one-line message.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfbench.core.errors import ConfigError, PerfbenchError


@dataclass(frozen=True)
class RunResult:
    """A finished run: its summary (the parsed summary.json), typed steps, folder and exit code."""

    summary: dict[str, Any]  # summary.json as written
    steps: list[Any]  # one perfbench.metrics.StepSummary per step
    run_dir: Path
    exit_code: int  # as the CLI's: 0 ok, 1 a check failed, 3 every request failed, 130 interrupted
    interrupted: bool

    @property
    def search(self) -> dict[str, Any] | None:
        """A max-load search's result (dimension, max_passing, knee, precision), when the run was one."""
        return self.summary.get("search")


def run(*, scenario: str | Path | None = None, quiet: bool = True, **options: Any) -> RunResult:
    """Run a benchmark; ``options`` are the CLI's options by their table names (see the module docstring).

    ``quiet`` (default) prints nothing; ``quiet=False`` prints what the CLI prints (no live display
    unless ``live=True``). Exit-code conditions (a missed SLO, a regression) are in ``exit_code``;
    a run that cannot start raises PerfbenchError (ConfigError for bad input, TargetError for an
    unreachable target).
    """
    from rich.console import Console

    from perfbench.benchmark.run_benchmark import run_benchmark, with_demo_load
    from perfbench.config.run_config import config_from_settings
    from perfbench.metrics import StepSummary
    from perfbench.config.options import BY_DEST, COMMAND_LINE_ONLY

    for key in options:
        if key in COMMAND_LINE_ONLY:
            raise ConfigError(f"{key!r} is a command-line option; for a scenario pass scenario=PATH")
    settings: dict[str, Any] = {}
    if scenario is not None:
        from perfbench.config.scenario import load_scenario

        settings.update(load_scenario(scenario))
    settings.update({key: value for key, value in options.items() if value is not None})
    settings.setdefault("live", False)  # a notebook cell is no terminal
    unknown = [key for key in settings if key not in BY_DEST]
    if unknown:
        config_from_settings(settings)  # raises, naming the nearest option
    config = config_from_settings(with_demo_load(settings))
    console = Console(file=io.StringIO(), highlight=False) if quiet else Console(highlight=False)
    result = run_benchmark(config, console)
    summary = result.outcome.summary
    return RunResult(
        summary=summary,
        steps=[StepSummary.from_dict(step) for step in summary["steps"]],
        run_dir=result.outcome.run_dir,
        exit_code=result.exit_code,
        interrupted=result.outcome.interrupted,
    )


@dataclass(frozen=True)
class LoadedRun:
    """A run folder read back: summary.json, and its requests, steps and telemetry as DataFrames."""

    summary: dict[str, Any]
    steps: Any  # pandas.DataFrame: one row per step, statistics flattened (ttft_ms_p99 ...), as summary.csv
    requests: Any  # pandas.DataFrame: one row per request, requests.jsonl's fields
    telemetry: Any  # pandas.DataFrame of telemetry.jsonl's samples (empty when none were taken)


def load_run(run_dir: str | Path) -> LoadedRun:
    """Read a run folder (``runs/<time>-<name>/``) written by perfbench."""
    import pandas as pd

    from perfbench.report.tables import flatten_step
    from perfbench.results.runfiles import iter_request_line_chunks, read_summary, read_telemetry

    path = Path(run_dir)
    summary = read_summary(path)  # ConfigError naming the folder when it holds no run
    frames = [pd.DataFrame(chunk) for chunk in iter_request_line_chunks(path)]
    requests = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    steps = pd.DataFrame([flatten_step(step) for step in summary.get("steps") or []])
    return LoadedRun(summary=summary, steps=steps, requests=requests, telemetry=pd.DataFrame(read_telemetry(path)))


__all__ = ["run", "load_run", "RunResult", "LoadedRun", "PerfbenchError", "ConfigError"]
