"""The terminal: a live progress line while requests run, and the summary tables at the end.

Tables are built from the same STEP dicts that summary.json holds, so screen and files agree.
Every value in them that is not a number formatted here (the URL, the model, a step's label, a
finish reason, a server's error text) is shown through ``data_text``: never markup, no control
character.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from perfbench.analysis.verdict import FAIL, PASS, WARN, Verdict
from perfbench.core.numbers import format_number
from perfbench.core.printable import printable
from perfbench.engine.engine import UNCAPPED
from perfbench.engine.live import LiveCounters
from perfbench.metrics import CLIENT_FIX, DISTRIBUTIONS, METRICS, METRICS_BY_KEY, RATE, Metric, client_bound_reasons
from perfbench.report.shown import data_text
from perfbench.results.runfiles import step_label


def _stat(step: Mapping[str, Any], key: str, stat: str = "mean") -> str:
    stats = step.get(key) or {}
    return format_number(stats.get(stat))


_COUNTS: tuple[tuple[str, str], ...] = (
    ("Time taken (s)", "duration_s"), ("Concurrency (limit)", "concurrency"), ("Rate (req/s)", "rate_req_s"),
    ("Expected requests", "requests_expected"), ("Completed requests", "requests_completed"),
    ("Succeeded requests", "requests_succeeded"), ("Failed requests", "requests_failed"),
)  # fmt: skip
# The headline statistics shown per step beside the rates; the percentile table shows every distribution.
_HEADLINE_STATS: tuple[tuple[str, str], ...] = (
    ("latency_ms", "mean"), ("ttft_ms", "mean"), ("ttft_ms", "p99"), ("tpot_ms", "mean"), ("itl_ms", "mean"),
    ("itl_ms", "p99"), ("inter_package_ms", "mean"), ("queue_ms", "mean"), ("packages_per_request", "mean"),
    ("time_per_package_ms", "mean"), ("input_tokens_per_request", "mean"), ("output_tokens_per_request", "mean"),
)  # fmt: skip


def _title(metric: Metric, stat: str | None = None) -> str:
    """``TTFT p99 (ms)``, ``Output throughput (tok/s)``, ``Input tokens per request``: names and units from the registry."""
    name = metric.label if stat in (None, "mean") or metric.unit in ("tokens", "packages") else f"{metric.label} {stat}"
    if metric.unit in ("tokens", "packages"):
        return name if metric.key == "packages_per_request" else f"{name} per request"
    return f"{name} {stat} ({metric.unit})" if stat == "mean" else f"{name} ({metric.unit})"


def _overview_rows() -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = [(label, lambda s, k=key: format_number(s.get(k))) for label, key in _COUNTS]
    for metric in METRICS:
        if metric.kind == RATE:
            rows.append((_title(metric), lambda s, k=metric.key: format_number(s.get(k))))
    for key, stat in _HEADLINE_STATS:
        rows.append((_title(METRICS_BY_KEY[key], stat), lambda s, k=key, st=stat: _stat(s, k, st)))
    rows.append(("Token counts from", lambda s: ", ".join(s.get("token_sources") or {}) or "-"))
    rows.append(("Answers ended by", lambda s: ", ".join(f"{k} {v}" for k, v in (s.get("finish_reasons") or {}).items()) or "-"))
    rows.append(("Client", lambda s: "-" if not s.get("client") else "CLIENT-BOUND" if client_bound_reasons(s) else "ok"))
    rows.append(("Event-loop lag p99 (ms)", lambda s: _stat(s.get("client") or {}, "loop_lag_ms", "p99")))
    rows.append(("Client CPU (of a core)", lambda s: _share((s.get("client") or {}).get("cpu_utilization"))))
    return rows


def _share(value: Any) -> str:
    return "-" if value is None else f"{value:.0%}"


_STATS = ("mean", "std", "min", "p50", "p90", "p95", "p99", "max")


def _natural_width(console: Console, table: Table) -> int:
    return Measurement.get(console, console.options.update(width=100_000), table).maximum  # unclamped: what it needs


def fitted_overview_tables(console: Console, steps: Sequence[Mapping[str, Any]], *, title: Callable[[int, str], str]) -> list[Table]:
    """The overview, as many tables as it takes for their columns to fit the console (a ladder of
    8 steps at 80 columns: a few steps per table). ``title(width, suffix)`` gives a title of at
    most ``width`` characters ending in ``suffix``, so it never wraps."""
    tables: list[Table] = []
    start = 0
    while start < len(steps):
        size = len(steps) - start
        while size > 1 and _natural_width(console, overview_table(steps[start:start + size], title="")) > console.width:
            size -= 1
        part = steps[start:start + size]
        suffix = "" if len(steps) == size else f" (steps {start + 1}-{start + size} of {len(steps)})"
        table = overview_table(part, title=title(console.width, suffix))
        table.min_width = min(len(str(table.title)), console.width)  # a title wider than its table would wrap
        tables.append(table)
        start += size
    return tables


def shorten(text: str, width: int) -> str:
    """``text`` within ``width`` characters, its middle elided (a long URL never wraps a title)."""
    if len(text) <= width or width < 9:
        return text
    keep = width - 1
    return text[: keep - keep // 3] + "…" + text[len(text) - keep // 3 :]


def overview_table(steps: Sequence[Mapping[str, Any]], *, title: str) -> Table:
    table = Table(title=data_text(title), title_justify="left", header_style="bold")
    table.add_column("Metric")
    for step in steps:
        table.add_column(data_text(step_label(step)), justify="right")
    for label, show in _overview_rows():
        cells = [show(s) for s in steps]
        if any(cell != "-" for cell in cells):  # a metric no step has (TTFT of embeddings) is not shown
            table.add_row(label, *map(data_text, cells))  # e.g. a server's finish reasons
    return table


# Statistics dropped first when the percentile table is too wide for the console (the last goes first).
_STATS_BY_PRIORITY = ("p50", "p99", "mean", "max", "p90", "min", "p95", "std")


def percentile_table(step: Mapping[str, Any], *, title: str, stats: Sequence[str] = _STATS) -> Table:
    table = Table(title=data_text(title), title_justify="left", header_style="bold")
    table.add_column("Metric")
    table.add_column("count", justify="right")
    for stat in stats:
        table.add_column(stat, justify="right")
    for metric in DISTRIBUTIONS:
        values = step.get(metric.key) or {}
        if values.get("count"):  # what applies: an embeddings run has no TTFT, ITL, TPOT rows
            label = metric.label if metric.unit in ("tokens", "packages") else metric.title
            table.add_row(label, format_number(values.get("count")), *(format_number(values.get(s)) for s in stats))
    return table


def fitted_percentile_table(console: Console, step: Mapping[str, Any], *, title: str) -> Table:
    """The percentile table with as many statistics as fit the console, never a cut number."""
    for keep in range(len(_STATS_BY_PRIORITY), 2, -1):
        stats = [s for s in _STATS if s in _STATS_BY_PRIORITY[:keep]]
        table = percentile_table(step, title=shorten(title, console.width), stats=stats)
        if _natural_width(console, table) <= console.width:
            return table
    return table


def failures_table(steps: Sequence[Mapping[str, Any]]) -> Table | None:
    """Each failure reason: its count per step and a sample of what went wrong (the first error text seen)."""
    reasons = sorted({r for s in steps for r in (s.get("failure_reasons") or {})})
    if not reasons:
        return None
    table = Table(title="Failed requests by reason", title_justify="left", header_style="bold red")
    table.add_column("Reason")
    for step in steps:
        table.add_column(data_text(step_label(step)), justify="right")
    table.add_column("Sample error", overflow="fold")
    for reason in reasons:
        sample = next((s["failure_examples"][reason] for s in steps if (s.get("failure_examples") or {}).get(reason)), None)
        # data_text: the server's words are shown as text, never read as rich markup or acted on by the terminal.
        table.add_row(data_text(reason), *(format_number((s.get("failure_reasons") or {}).get(reason, 0)) for s in steps), data_text(sample or "-"))
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
                data_text(step_label(step)), data_text(result["name"]), f"{result['limit_ms']:g}", format_number(result["value_ms"]),
                Text("pass", style="green") if ok else Text("FAIL", style="bold red"),
            )
    return table


def turns_table(step: Mapping[str, Any], *, title: str) -> Table | None:
    """A multi-turn step's numbers by turn: requests, TTFT p50/p99, latency p50, mean prompt tokens."""
    turns = step.get("by_turn") or ()
    if not turns:
        return None
    table = Table(title=data_text(title), title_justify="left", header_style="bold")
    for name in ("Turn", "ok / done", "TTFT p50", "TTFT p99", "Latency p50", "Input tokens"):
        table.add_column(name, justify="right")
    for turn in turns:
        table.add_row(
            str(turn["turn"]), f"{turn['requests_succeeded']} / {turn['requests_completed']}",
            format_number(turn["ttft_ms"].get("p50")), format_number(turn["ttft_ms"].get("p99")), format_number(turn["latency_ms"].get("p50")),
            format_number(turn["input_tokens_per_request"].get("mean")),
        )
    return table


def client_warning(steps: Sequence[Mapping[str, Any]]) -> Text | None:
    """The warning for steps in which the client, not the server, was the limit: how many, the fix, and
    each step's reasons (DESIGN.md, "The client checks itself"); None when the client kept up."""
    bound = [(step_label(s), reasons) for s in steps if (reasons := client_bound_reasons(s)) is not None]
    if not bound:
        return None
    which = "the step" if len(steps) == 1 else f"{len(bound)} of {len(steps)} steps"
    lines = [f"Client-bound: in {which} the client, not the server, was the limit, so the numbers show the "
             f"client's ceiling; {CLIENT_FIX}."]
    lines += [f"  {label}: {'; '.join(reasons)}" for label, reasons in bound]
    return Text("\n".join(lines), style="yellow")


def search_line(search: Mapping[str, Any]) -> Text:
    """The max-load search's answer in one line: the highest passing load, the knee, and why it stopped
    where that makes the answer a lower bound (the client could not drive more, or the server saturated)."""
    line = Text.assemble(("Max-load search", "bold"), data_text(f" ({search['dimension']}): highest passing load "),
                         (_load(search.get("max_passing")), "bold"), f", knee {_load(search.get('knee'))}")
    reason = search.get("stop_reason")
    if reason == "client_bound":
        loads = [p.get("load") for p in search.get("probes") or () if isinstance(p, Mapping) and p.get("client_bound")]
        where = f" at {min(loads):g}" if loads else ""
        line.append(f"; stopped: the client, not the server, was the limit{where} (client-bound), so this is a lower "
                    f"bound of the server's limit; {CLIENT_FIX}", style="yellow")
    elif reason == "saturated":
        line.append("; stopped: the server saturated (a lower bound)")
    return line


def render_summary(console: Console, summary: Mapping[str, Any]) -> None:
    """Print the summary tables of a summary.json dict."""
    steps = summary["steps"]
    target = summary["target"]
    # printable before shortening: an escaped control character is wider than the character
    label = "SIMULATED (built-in mock server)" if target.get("simulated") else printable(str(target.get("url")))
    rest = printable(f" — {target.get('api')}" + (f" — model {target['model']}" if target.get("model") else ""))
    if summary.get("interrupted"):
        rest += " — INTERRUPTED (finished requests only)"

    def title(width: int, suffix: str) -> str:  # the URL gives way first: the API and the model stay readable
        head = "perfbench — "
        return head + shorten(label, max(12, width - len(head) - len(rest) - len(suffix))) + rest + suffix

    if not steps:
        console.print(Text("No request finished; nothing to summarise.", style="yellow"))
        return
    for table in fitted_overview_tables(console, steps, title=title):
        console.print(table)
    for step in steps:
        name = "Percentiles" + (f" ({step_label(step)})" if len(steps) > 1 else "")
        console.print(fitted_percentile_table(console, step, title=name))
        turns = turns_table(step, title="By turn, ms" + (f" ({step_label(step)})" if len(steps) > 1 else ""))
        if turns is not None:
            console.print(turns)
    for table in (failures_table(steps), slo_table(steps)):
        if table is not None:
            console.print(table)
    if any("packages" in (s.get("token_sources") or {}) for s in steps):
        console.print(
            "[yellow]The server sent no token usage and no --tokenizer was given: each output package was counted "
            "as one token, and TPOT, ITL and token throughput assume that. Pass --tokenizer PATH for real counts.[/]"
        )
    warning = client_warning(steps)
    if warning is not None:
        console.print(warning)
    repeated = prompts_repeated(summary)
    if repeated:
        console.print(f"[yellow]{repeated}[/]")
    search = summary.get("search")
    if search:
        console.print(search_line(search))


def prompts_repeated(summary: Mapping[str, Any]) -> str | None:
    """The warning for a run that sent some prompt more than once (its prompts file, dataset, trace or
    conversations were shorter than the run); None when none repeated."""
    workload = summary.get("workload") or {}
    if (workload.get("max_repeats") or 0) <= 1:
        return None
    source = workload.get("prompts_source") or "prompts"
    return (f"Prompts repeated: the run sent {workload['distinct_prompts']:,} distinct prompts ({source}), some "
            f"{workload['max_repeats']:,} times; a prefix-caching server answers a repeat from its cache. "
            "Give more prompts, or synthetic ones (--input-tokens), which never repeat.")


_MARKS = {PASS: ("ok", "green"), WARN: ("warn", "yellow"), FAIL: ("FAIL", "bold red")}
_DETAILS = 5  # lines under a check; report.html and the tables above list them all


def render_verdict(console: Console, verdict: Verdict) -> None:
    """The run's verdict (perfbench.analysis.verdict), as the exit code, report.html and JUnit give
    it: PASSED or FAILED, then each check with its reason and, under one that did not pass, why."""
    console.print(Text.assemble(("Verdict: ", "bold"), (verdict.word, "bold green" if verdict.passed else "bold red")))
    for check in verdict.checks:
        mark, style = _MARKS[check.state]
        # Text, not markup: a reason may quote a server's error or a user's model name.
        console.print(Text.assemble("  ", (f"{mark:<4}", style), f" {check.name}: {check.reason}"))
        if check.state != PASS:
            for detail in check.details[:_DETAILS]:
                console.print(Text(f"         {detail}"))
            if len(check.details) > _DETAILS:
                console.print(Text(f"         and {len(check.details) - _DETAILS} more", style="dim"))
    for note in verdict.notes:
        console.print(Text(note, style="dim"))


def _load(load: Any) -> str:
    """A load as the user gives one (``8``, ``12.5``): not a measurement."""
    return "-" if load is None else f"{load:g}"


class LiveDisplay:
    """A dashboard refreshed 4 times a second from the engine's counters (no per-package work):
    the step (or search probe) and its load, a progress bar with ETA, requests in flight, ok and
    failed with the top reason, running TTFT p50/p99 and ITL p99, output tok/s. Off by itself when
    the output is not a terminal."""

    def __init__(self, console: Console, counters: LiveCounters, *, steps: int, enabled: bool,
                 search: bool = False, duration_s: float | None = None) -> None:
        self._console = console
        self._counters = counters
        self._steps = steps
        self._search = search
        self._duration_s = duration_s
        self._enabled = enabled and console.is_terminal
        self._live: Live | None = None
        self._step_started = time.perf_counter()
        self._step_tokens_at_start = 0

    def _render(self) -> Group:
        c = self._counters
        elapsed = max(time.perf_counter() - self._step_started, 1e-9)
        load = dict(c.step_load)
        if load.get("concurrency") is not None and load["concurrency"] >= UNCAPPED:
            load["concurrency"] = None
        what = step_label(load) if load.get("concurrency") is not None or load.get("rate_req_s") is not None else ""
        head = f"search probe {c.step + 1}" if self._search else f"step {c.step + 1} of {self._steps}"
        head += f" ({what})" if what else ""
        if c.step_expected:
            fraction = min(1.0, c.step_done / c.step_expected)
            count = f"{c.step_done:,}/{c.step_expected:,}"
            eta = (elapsed / c.step_done) * (c.step_expected - c.step_done) if c.step_done else None
        elif self._duration_s:
            fraction = min(1.0, elapsed / self._duration_s)
            count = f"{c.step_done:,} done"
            eta = max(0.0, self._duration_s - elapsed)
        else:
            fraction, count, eta = 0.0, f"{c.step_done:,} done", None
        tail = f"  {count}  ETA {_duration(eta)}" if eta is not None else f"  {count}"
        bar_width = max(10, min(40, self._console.width - len(head) - len(tail) - 2))
        filled = int(round(fraction * bar_width))
        top = Text.assemble((head, "bold"), "  ", ("━" * filled, "green"), ("━" * (bar_width - filled), "grey37"), tail)
        reason = c.failure_reasons.most_common(1)
        failed = f"failed {c.failed:,}" + (f" ({reason[0][0]})" if reason else "")
        ttft = _percentiles(c.recent_ttft_ms, ("p50", 50), ("p99", 99))
        itl = _percentiles(c.recent_itl_ms, ("p99", 99))
        tok_s = (c.output_tokens - self._step_tokens_at_start) / elapsed
        counts = Text.assemble(f"in flight {c.in_flight:,}  ok {c.succeeded:,}  ", (failed, "red" if c.failed else ""))
        speed = Text(f"TTFT {ttft}  ITL {itl}  out {format_number(tok_s, 'tok/s')}")
        return Group(top, counts, speed)

    @property
    def active(self) -> bool:
        return self._live is not None

    def step_started(self) -> None:
        self._step_started = time.perf_counter()
        self._step_tokens_at_start = self._counters.output_tokens

    def __enter__(self) -> "LiveDisplay":
        if self._enabled:
            self._counters.track_recent = True  # only now does a request leave samples for the percentiles
            self._live = Live(get_renderable=self._render, console=self._console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _percentiles(values: Any, *wanted: tuple[str, float]) -> str:
    """``p50 52.1 / p99 60.3 ms`` from recent samples."""
    samples = values.copy()  # one C-level copy: the engine appends from another thread
    if not samples:
        return "-"
    import numpy as np

    points = np.percentile(samples, [q for _, q in wanted])
    return " / ".join(f"{name} {format_number(float(point))}" for (name, _), point in zip(wanted, points)) + " ms"
