"""The page's sections below the top, each from the run's own files: the SLO table, the search's
probes, every step's numbers, the failures, the plots, the telemetry and the environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from perfbench.core.errors import ConfigError
from perfbench.metrics import DISTRIBUTIONS, METRICS, RATE, client_bound_reasons
from perfbench.report.html._markup import badge, e, figure, num, state_of, table
from perfbench.report.verdict import format_load, ordered_steps, search_sentence, slo_name
from perfbench.results.runfiles import read_telemetry, step_label
from perfbench.metrics.slo import parse_slos
from perfbench.telemetry.sampler import server_series, summarize_telemetry


def _per_request_limits(summary: Mapping[str, Any]) -> dict[str, float]:
    """The run's per-request SLOs (``ttft=500``): they make goodput, not a step's pass or fail."""
    text = (summary.get("config") or {}).get("slo_text")
    if not isinstance(text, str) or not text:
        return {}
    try:
        return dict(parse_slos(text).per_request_ms)
    except ConfigError:  # a summary from another version: the table still shows the step limits
        return {}


def slo_section(summary: Mapping[str, Any]) -> str:
    """Each step limit of each step: the limit, the step's value and pass or fail; and goodput under the
    per-request limits. Empty when the run had no SLOs."""
    steps = ordered_steps(summary)
    rows = []
    for step in steps:
        for result in step.get("slo_results") or ():
            state = state_of(result.get("passed"))
            value = result.get("value_ms")
            rows.append([e(step_label(step)), e(slo_name(str(result.get("name")))), e(f"{result.get('limit_ms'):g}"),
                         "no value" if value is None else num(value), badge(state)])
    per_request = _per_request_limits(summary)
    if not rows and not per_request:
        return ""
    parts = ['<section id="slo"><h2>SLOs per step</h2>']
    if rows:
        parts.append(table(["step", "SLO", "limit ms", "measured ms", "result"], rows,
                           [False, False, True, True, False], attrs=' id="slo-table" class="fit"'))
    if per_request:
        limits = ", ".join(f"{slo_name(k).split()[0]} ≤ {v:g} ms" for k, v in per_request.items())
        good = []
        for step in steps:
            goodput, throughput = step.get("goodput_req_s"), step.get("request_throughput_req_s")
            share = f" ({goodput / throughput:.0%} of succeeded requests)" if goodput is not None and throughput else ""
            good.append([e(step_label(step)), num(goodput) + e(share)])
        parts.append(f"<h3>Per-request limits: {e(limits)}</h3>"
                     + table(["step", "goodput req/s (requests meeting every limit)"], good, [False, True], attrs=' class="fit"'))
    return "".join(parts) + "</section>"


def search_section(search: Mapping[str, Any]) -> str:
    """The search's answer in a sentence, and each probe in the order it ran (a client-bound one says so:
    it measured the client, not the server)."""
    dimension = str(search.get("dimension") or "concurrency")
    probes = [p for p in search.get("probes") or [] if isinstance(p, Mapping)]
    rows = [[num(i + 1), e(format_load(dimension, p.get("load"))),
             badge("warn", "client-bound") if p.get("client_bound") else badge(state_of(p.get("passed")))]
            for i, p in enumerate(probes)]
    return (f'<section id="search"><h2>Max-load search</h2><p id="search-sentence">{e(search_sentence(search))}</p>'
            + (table(["probe", "load", "SLOs"], rows, [True, False, False], attrs=' class="fit"') if rows else "") + "</section>")


def _client_rows(steps: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """How the client itself did in each step (DESIGN.md, "The client checks itself"); no rows for an older summary."""
    if not any(isinstance(s.get("client"), Mapping) for s in steps):
        return []
    clients = [s.get("client") if isinstance(s.get("client"), Mapping) else {} for s in steps]

    def verdict(step: Mapping[str, Any], client: Mapping[str, Any]) -> str:
        if not client:
            return "-"
        return badge("warn", "client-bound") if client_bound_reasons(step) is not None else badge("pass", "ok")

    def share(value: Any) -> str:
        return e(f"{value:.0%}") if isinstance(value, (int, float)) else "-"

    return [
        ["client", *(verdict(s, c) for s, c in zip(steps, clients))],
        ["event-loop lag p99 (ms)", *(num((c.get("loop_lag_ms") or {}).get("p99")) for c in clients)],
        ["client CPU, busiest process (of a core)", *(share(c.get("cpu_utilization")) for c in clients)],
        ["packages in the same read as the previous", *(share(c.get("same_read_share")) for c in clients)],
    ]


def steps_section(summary: Mapping[str, Any]) -> str:
    """Every metric of every step, a column per step (as the terminal shows it), so a ladder stays readable."""
    steps = ordered_steps(summary)
    rows = [
        ["requests ok / failed", *(f"{e(s.get('requests_succeeded'))} / {e(s.get('requests_failed'))}" for s in steps)],
        ["duration (s)", *(num(s.get("duration_s")) for s in steps)],
    ]
    for metric in METRICS:  # what applies: metrics no step has (an embeddings run's TTFT) get no row
        if metric.kind == RATE and any(s.get(metric.key) is not None for s in steps):
            rows.append([e(metric.title), *(num(s.get(metric.key)) for s in steps)])
    for metric in DISTRIBUTIONS:
        if not any((s.get(metric.key) or {}).get("count") for s in steps):
            continue
        for stat in ("p50", "p90", "p99") if metric.unit == "ms" else ("mean",):
            rows.append([e(f"{metric.label} {stat} ({metric.unit})"), *(num((s.get(metric.key) or {}).get(stat)) for s in steps)])
    rows += _client_rows(steps)
    return (
        '<section id="steps"><h2>Every step</h2>'
        + table(["metric", *(e(step_label(s)) for s in steps)], rows, [False] + [True] * len(steps), attrs=' class="fit"')
        + '<p class="muted">All times in ms from each request\'s scheduled send time; TTFT counts the first '
        "package carrying output; TPOT excludes the first token; ITL is per token between packages; the inter-package gap "
        "is the plain gap between packages (what vLLM, EvalScope and AIPerf report as ITL).</p></section>"
    )


def turns_section(summary: Mapping[str, Any]) -> str:
    """A multi-turn run's steps by turn index: requests, TTFT, latency and prompt tokens as the history grows."""
    steps = [s for s in ordered_steps(summary) if s.get("by_turn")]
    if not steps:
        return ""
    parts = ['<section id="turns"><h2>By turn</h2><p class="muted">Each turn of a session is sent with the whole '
             "history before it, the server's own answers included, so its prompt grows turn by turn.</p>"]
    for step in steps:
        rows = [[e(t["turn"]), f"{e(t['requests_succeeded'])} / {e(t['requests_completed'])}",
                 num(t["ttft_ms"].get("p50")), num(t["ttft_ms"].get("p99")), num(t["latency_ms"].get("p50")),
                 num(t["input_tokens_per_request"].get("mean"))] for t in step["by_turn"]]
        if len(steps) > 1:
            parts.append(f"<h3>{e(step_label(step))}</h3>")
        parts.append(table(["turn", "ok / done", "TTFT p50 (ms)", "TTFT p99 (ms)", "latency p50 (ms)", "input tokens (mean)"],
                           rows, [True] * 6, attrs=' class="fit"'))
    return "".join(parts) + "</section>"


def failures_section(summary: Mapping[str, Any], samples: Mapping[tuple[int, str], Sequence[str]]) -> str:
    """Every failure reason of every step with its count and up to a few distinct error texts."""
    rows = []
    for index, step in enumerate(summary.get("steps") or []):
        for reason, count in sorted((step.get("failure_reasons") or {}).items()):
            examples = "<br>".join(f"<code>{e(m)}</code>" for m in samples.get((index, str(reason)), []))
            rows.append([e(step_label(step)), e(reason), e(count), examples or '<span class="muted">-</span>'])
    if not rows:
        return '<section id="failures"><h2>Failures</h2><p><span class="badge good">none</span> every request succeeded.</p></section>'
    return (
        '<section id="failures"><h2>Failures</h2>'
        + table(["step", "reason", "count", "sample errors"], rows, [False, False, True, False])
        + "</section>"
    )


def plots_section(run_dir: Path) -> str:
    pngs = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").is_dir() else []
    if not pngs:
        return '<section id="plots"><h2>Plots</h2><p class="muted">No plots in this run directory.</p></section>'
    return ('<section id="plots"><h2>Plots</h2>'
            + "".join(figure(png.read_bytes(), png.stem, png.name) for png in pngs) + "</section>")


def telemetry_section(run_dir: Path, output_tokens: int) -> str:
    samples = read_telemetry(run_dir)
    if not samples:
        return '<section id="telemetry"><h2>Telemetry</h2><p class="muted">No telemetry was recorded for this run.</p></section>'

    t = summarize_telemetry(samples, output_tokens)
    parts = ['<section id="telemetry"><h2>Telemetry</h2>']
    if t["gpu_count"]:
        rows = [
            ("GPUs", f"{e(t['gpu_count'])} × {e(t['gpu_name'])} (driver {e(t['gpu_driver'])})"),
            ("energy", f"{num(t['energy_j'])} J ({e(t['energy_source'])})"),
            ("energy per output token", f"{num(t['j_per_output_token'])} J"),
            ("output tokens per joule", num(t["output_tokens_per_j"])),
            ("mean GPU utilisation", f"{num(t['gpu_util_mean_pct'])} %"),
            ("mean power", f"{num(t['gpu_power_mean_w'])} W"),
            ("peak memory", f"{num(t['gpu_mem_peak_mib'])} of {num(t['gpu_mem_total_mib'])} MiB"),
        ]
        parts.append("<h3>GPU</h3><dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>")
    else:
        parts.append('<p class="muted">No GPU samples (no NVIDIA GPU, or nvidia-ml-py not installed).</p>')
    if t["server_scrapes"]:
        rows = [[e(k), num(v["mean"]), num(v["max"]), num(v["last"])] for k, v in t["server_metrics"].items()]
        series = {k for s in samples if s.get("source") == "prometheus" for k in server_series(s)}
        parts.append(f"<h3>Server /metrics ({e(t['server_scrapes'])} scrapes, {len(series)} series)</h3>")
        if rows:
            parts.append(table(["series", "mean", "max", "last"], rows, [False, True, True, True]))
    else:
        parts.append('<p class="muted">No server metrics were scraped.</p>')
    return "".join(parts) + "</section>"


def environment_section(summary: Mapping[str, Any]) -> str:
    target = summary.get("target") or {}
    env = summary.get("environment") or {}
    identity = summary.get("identity") or {}
    items = [
        ("target", target.get("url")), ("API", target.get("api")), ("model", target.get("model")),
        ("simulated", target.get("simulated")), ("perfbench", summary.get("perfbench_version")),
        ("started (UTC)", summary.get("started_at")), ("identity", identity.get("hash")),
    ] + [(k, v) for k, v in env.items()] + [(f"tag {k}", v) for k, v in (summary.get("tags") or {}).items()]
    listing = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items)
    config = json.dumps(summary.get("config") or {}, indent=2, sort_keys=True, default=str)
    return (
        f'<section id="environment"><h2>Environment</h2><dl>{listing}</dl>'
        f"<h3>Configuration</h3><pre>{e(config)}</pre></section>"
    )

