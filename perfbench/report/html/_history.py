"""The history trend: the headline metrics of earlier runs of the same identity, and this run's.

The rows are handed in (the finish stage and ``perfbench report`` read them from the run store);
this module only draws them, so the page stays a function of the inputs it was given."""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence

from perfbench.report.html._markup import e, figure, num, table
from perfbench.report.verdict import headline_numbers
from perfbench.results.runfiles import step_label, step_metric

MAX_TREND_STEPS = 4  # steps of this run followed over the history (a line each); the first ones
MAX_TABLE_RUNS = 8  # newest runs in the table under the chart (the chart shows them all)


class HistoryRun(Protocol):
    """An earlier run as the trend needs it; the run store's RunInfo is one."""

    run_id: str
    started_at: str
    summary: Mapping[str, Any]  # its summary.json
    tags: Mapping[str, str]


def _when(started_at: str) -> str:
    """``2024-05-01T02:00:00Z`` -> ``05-01 02:00``: short enough for an axis, enough to tell nights apart."""
    return started_at[5:16].replace("T", " ") if len(started_at) >= 16 else started_at


def _step_of(summary: Mapping[str, Any], label: str) -> Mapping[str, Any] | None:
    return next((s for s in summary.get("steps") or [] if step_label(s) == label), None)


def history_section(history: Sequence[HistoryRun], summary: Mapping[str, Any], title: str) -> str:
    """The trend chart and a table of the newest runs; empty without earlier runs."""
    if not history:
        return ""
    from perfbench.report.plots import TrendLine, TrendPanel, png_bytes, trend_figure

    runs = sorted(history, key=lambda r: r.started_at)
    summaries = [r.summary for r in runs] + [summary]
    labels = [_when(r.started_at) for r in runs] + ["this run"]
    steps = [step_label(s) for s in (summary.get("steps") or [])][:MAX_TREND_STEPS]
    panels: dict[str, list[Any]] = {}
    for headline in headline_numbers():
        for label in steps:
            values = []
            for run_summary in summaries:
                step = _step_of(run_summary, label)
                values.append(None if step is None else step_metric(step, headline.spec))
            panels.setdefault(headline.metric.key, [headline.metric, []])[1].append(TrendLine(label, headline.stat, values))
    drawn = trend_figure(labels, [TrendPanel(metric, lines) for metric, lines in panels.values()], title)
    parts = [f'<section id="history"><h2>History</h2><p class="muted">{len(runs)} earlier run(s) of the same identity '
             "(target, model, API, workload, load shape) in the run store, oldest first; this run is ringed.</p>"]
    if drawn is not None:
        more = f" The first {len(steps)} steps are followed." if len(summary.get("steps") or []) > len(steps) else ""
        parts.append(figure(png_bytes(drawn), "history trend", "Headline metrics per run; p50 solid, p99 dashed." + more))
    if steps:
        parts.append(_table(runs[-(MAX_TABLE_RUNS - 1):], summary, steps[0]))
    return "".join(parts) + "</section>"


def _table(runs: Sequence[HistoryRun], summary: Mapping[str, Any], label: str) -> str:
    """Headline values of one step, a column per run (the newest earlier ones, then this run)."""
    columns = [(f"{e(_when(r.started_at))}<br><span class=\"muted\">{e(r.run_id[-6:])}</span>", r.summary, r.tags)
               for r in runs]
    columns.append(("this run", summary, summary.get("tags") or {}))
    rows = []
    for headline in headline_numbers():
        values = [step_metric(s, headline.spec) if (s := _step_of(run_summary, label)) else None
                  for _, run_summary, _ in columns]
        if any(v is not None for v in values):
            rows.append([e(f"{headline.name} ({headline.metric.unit})"), *(num(v) for v in values)])
    rows.append(["tags", *(e(", ".join(f"{k}={v}" for k, v in tags.items())) for _, _, tags in columns)])
    return (f"<h3>{e(label)}, newest {len(columns)} runs</h3>"
            + table(["metric", *(header for header, _, _ in columns)], rows, [False] + [True] * len(columns),
                    attrs=' id="history-table" class="fit"'))
