"""The terminal: a live progress line while requests run, and the summary tables at the end.

Tables are built from the same STEP dicts that summary.json holds, so screen and files agree.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from perfbench.engine import LiveCounters
from perfbench.report.files import step_label


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _stat(step: Mapping[str, Any], key: str, stat: str = "mean", digits: int = 2) -> str:
    stats = step.get(key) or {}
    return _num(stats.get(stat), digits)


# (label, how to show it) in the EvalScope order users know, then the rest of DESIGN.md's metrics.
_OVERVIEW_ROWS: tuple[tuple[str, Any], ...] = (
    ("Time taken (s)", lambda s: _num(s["duration_s"])),
    ("Concurrency (limit)", lambda s: _num(s["concurrency"])),
    ("Rate (req/s)", lambda s: _num(s["rate_req_s"])),
    ("Concurrency achieved", lambda s: _num(s["concurrency_achieved"])),
    ("Expected requests", lambda s: _num(s["requests_expected"])),
    ("Completed requests", lambda s: _num(s["requests_completed"])),
    ("Succeeded requests", lambda s: _num(s["requests_succeeded"])),
    ("Failed requests", lambda s: _num(s["requests_failed"])),
    ("Request throughput (req/s)", lambda s: _num(s["request_throughput_req_s"], 3)),
    ("Goodput (req/s)", lambda s: _num(s["goodput_req_s"], 3)),
    ("Output throughput (tok/s)", lambda s: _num(s["output_throughput_tok_s"])),
    ("Input throughput (tok/s)", lambda s: _num(s.get("input_throughput_tok_s"))),
    ("Total throughput (tok/s)", lambda s: _num(s["total_throughput_tok_s"])),
    ("Latency mean (ms)", lambda s: _stat(s, "latency_ms")),
    ("TTFT mean (ms)", lambda s: _stat(s, "ttft_ms")),
    ("TTFT p99 (ms)", lambda s: _stat(s, "ttft_ms", "p99")),
    ("TPOT mean (ms)", lambda s: _stat(s, "tpot_ms")),
    ("ITL mean (ms)", lambda s: _stat(s, "itl_ms")),
    ("ITL p99 (ms)", lambda s: _stat(s, "itl_ms", "p99")),
    ("Queue mean (ms)", lambda s: _stat(s, "queue_ms")),
    ("Packages per request", lambda s: _stat(s, "packages_per_request")),
    ("Time per package (ms)", lambda s: _stat(s, "time_per_package_ms")),
    ("Input tokens per request", lambda s: _stat(s, "input_tokens_per_request")),
    ("Output tokens per request", lambda s: _stat(s, "output_tokens_per_request")),
    ("Token counts from", lambda s: ", ".join(s.get("token_sources") or {}) or "-"),
)

_PERCENTILE_ROWS = (
    ("TTFT (ms)", "ttft_ms"),
    ("ITL (ms)", "itl_ms"),
    ("TPOT (ms)", "tpot_ms"),
    ("Latency (ms)", "latency_ms"),
    ("Queue (ms)", "queue_ms"),
    ("Time per package (ms)", "time_per_package_ms"),
    ("Packages per request", "packages_per_request"),
    ("Input tokens", "input_tokens_per_request"),
    ("Output tokens", "output_tokens_per_request"),
)
_STATS = ("mean", "std", "min", "p50", "p90", "p95", "p99", "max")


def overview_table(steps: Sequence[Mapping[str, Any]], *, title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("Metric")
    for step in steps:
        table.add_column(step_label(step), justify="right")
    for label, show in _OVERVIEW_ROWS:
        table.add_row(label, *(show(s) for s in steps))
    return table


def percentile_table(step: Mapping[str, Any], *, title: str) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("Metric")
    table.add_column("count", justify="right")
    for stat in _STATS:
        table.add_column(stat, justify="right")
    for label, key in _PERCENTILE_ROWS:
        stats = step.get(key) or {}
        table.add_row(label, _num(stats.get("count")), *(_num(stats.get(s)) for s in _STATS))
    return table


def failures_table(steps: Sequence[Mapping[str, Any]]) -> Table | None:
    """Each failure reason: its count per step and a sample of what went wrong (the first error text seen)."""
    reasons = sorted({r for s in steps for r in (s.get("failure_reasons") or {})})
    if not reasons:
        return None
    table = Table(title="Failed requests by reason", title_justify="left", header_style="bold red")
    table.add_column("Reason")
    for step in steps:
        table.add_column(step_label(step), justify="right")
    table.add_column("Sample error", overflow="fold")
    for reason in reasons:
        sample = next((s["failure_examples"][reason] for s in steps if (s.get("failure_examples") or {}).get(reason)), None)
        # Text: the server's words are shown as they are, never read as rich markup.
        table.add_row(reason, *(_num((s.get("failure_reasons") or {}).get(reason, 0)) for s in steps), Text(sample or "-"))
    return table


def slo_table(steps: Sequence[Mapping[str, Any]]) -> Table | None:
    if not any(s.get("slo_results") for s in steps):
        return None
    table = Table(title="SLO checks", title_justify="left", header_style="bold")
    table.add_column("Step")
    table.add_column("Check")
    table.add_column("Limit (ms)", justify="right")
    table.add_column("Value (ms)", justify="right")
    table.add_column("Result")
    for step in steps:
        for result in step.get("slo_results") or ():
            ok = result["passed"]
            table.add_row(
                step_label(step), result["name"], _num(result["limit_ms"]), _num(result["value_ms"]),
                Text("pass", style="green") if ok else Text("FAIL", style="bold red"),
            )
    return table


def render_summary(console: Console, summary: Mapping[str, Any]) -> None:
    """Print the summary tables of a summary.json dict."""
    steps = summary["steps"]
    target = summary["target"]
    label = "SIMULATED (built-in mock server)" if target.get("simulated") else target.get("url")
    title = f"perfbench — {label} — {target.get('api')}" + (f" — model {target['model']}" if target.get("model") else "")
    if summary.get("interrupted"):
        title += " — INTERRUPTED (finished requests only)"
    if not steps:
        console.print(Text("No request finished; nothing to summarise.", style="yellow"))
        return
    console.print(overview_table(steps, title=title))
    for step in steps:
        name = "Percentiles" + (f" ({step_label(step)})" if len(steps) > 1 else "")
        console.print(percentile_table(step, title=name))
    for table in (failures_table(steps), slo_table(steps)):
        if table is not None:
            console.print(table)
    if any("packages" in (s.get("token_sources") or {}) for s in steps):
        console.print(
            "[yellow]The server sent no token usage and no --tokenizer was given: each output package was counted "
            "as one token, and TPOT, ITL and token throughput assume that. Pass --tokenizer PATH for real counts.[/]"
        )
    search = summary.get("search")
    if search:
        console.print(
            f"[bold]Max-load search[/] ({search['dimension']}): highest passing load "
            f"[bold]{_num(search.get('max_passing'))}[/], knee {_num(search.get('knee'))}"
        )


class LiveDisplay:
    """A progress line refreshed 4 times a second from the engine's counters (no per-package work)."""

    def __init__(self, console: Console, counters: LiveCounters, *, steps: int, enabled: bool) -> None:
        self._console = console
        self._counters = counters
        self._steps = steps
        self._enabled = enabled and console.is_terminal
        self._live: Live | None = None
        self._step_started = time.perf_counter()
        self._step_tokens_at_start = 0

    def _render(self) -> Group:
        c = self._counters
        elapsed = max(time.perf_counter() - self._step_started, 1e-9)
        expected = f"/{c.step_expected}" if c.step_expected is not None else ""
        ttft = f"{c.ttft_ms_sum / c.ttft_count:,.1f} ms" if c.ttft_count else "-"
        tok_s = (c.output_tokens - self._step_tokens_at_start) / elapsed
        line = Text.assemble(
            (f"step {c.step + 1}/{self._steps}  ", "bold"),
            f"done {c.step_done}{expected}  ",
            ("failed " + str(c.failed), "red" if c.failed else ""),
            f"  in flight {c.in_flight}  TTFT avg {ttft}  output {tok_s:,.0f} tok/s  {elapsed:,.1f} s",
        )
        return Group(line)

    @property
    def active(self) -> bool:
        return self._live is not None

    def step_started(self) -> None:
        self._step_started = time.perf_counter()
        self._step_tokens_at_start = self._counters.output_tokens

    def __enter__(self) -> "LiveDisplay":
        if self._enabled:
            self._live = Live(get_renderable=self._render, console=self._console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
