"""The earlier runs a report's history trend shows: those of the run's identity recorded before it.

Read here from the run store by the callers that own one (the finish stage, ``perfbench report``),
then handed to ``write_html_report``, which never opens the store itself."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from perfbench.core.errors import ConfigError
from perfbench.results.identity import run_identity
from perfbench.results.store import RunInfo, RunStore

log = logging.getLogger(__name__)

MAX_EARLIER_RUNS = 30  # a month of nightly runs: enough to see a drift, few enough to read each point


def earlier_runs(store: RunStore, summary: Mapping[str, Any], run_dir: Path, limit: int = MAX_EARLIER_RUNS) -> list[RunInfo]:
    """The newest ``limit`` runs of this run's identity that started before it, oldest first; never
    the run itself (it may be recorded already, when a report is rebuilt), never a later run."""
    this_dir = Path(run_dir).resolve()
    # The store lists newest first; a rebuilt old report skips the runs after it, so ask for all.
    runs = store.list_runs(identity=run_identity(summary), limit=1_000_000)
    earlier = [r for r in runs if r.run_dir != this_dir and _before(r.summary, summary)]
    return earlier[:limit][::-1]


def _before(other: Mapping[str, Any], summary: Mapping[str, Any]) -> bool:
    """``other`` started before ``summary``'s run: by the start's Unix time (started_at has whole
    seconds only, and two short runs can start in the same second), else by started_at."""
    a, b = other.get("run_start_unix_s"), summary.get("run_start_unix_s")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a < b
    started = str(summary.get("started_at") or "")
    return not started or str(other.get("started_at") or "") < started


def earlier_runs_at(store_path: Path, summary: Mapping[str, Any], run_dir: Path) -> list[RunInfo]:
    """``earlier_runs`` from the store at ``store_path``; none when there is no store there (one is
    never created for a report) or it cannot be read: a trend is a convenience, never a failure."""
    try:
        if not Path(store_path).is_file():
            return []
        with RunStore(Path(store_path)) as store:
            return earlier_runs(store, summary, run_dir)
    except (ConfigError, OSError) as exc:
        log.warning("no history trend in the report: %s", exc)
        return []
