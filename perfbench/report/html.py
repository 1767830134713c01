"""report.html: one self-contained page about a run, readable offline and safe to open.

Built from the run directory alone (summary.json, requests.jsonl, telemetry.jsonl, plots/*.png).
Nothing is fetched: the style is inline, images are ``data:`` URIs, there is no script. Every
piece of text that came from the user or the server (prompts, errors, tags, model names,
config values) goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from perfbench.compare import Comparison, compare_runs, resolve_base
from perfbench.cliutil import OneLineArgumentParser
from perfbench.errors import ConfigError, PerfbenchError
from perfbench.metrics import DISTRIBUTIONS, METRICS, RATE
from perfbench.runfiles import (
    COMPARISON_FILE, TELEMETRY_FILE, iter_request_lines, read_comparison, read_summary, read_telemetry, step_label,
)
from perfbench.telemetry.sampler import server_series, summarize_telemetry

log = logging.getLogger(__name__)

_SAMPLE_ERRORS = 3  # distinct error messages shown per failure reason and step

_CSS = """
:root { --fg:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f7f8fa; --accent:#2563eb;
        --bad:#b91c1c; --bad-bg:#fde8e8; --good:#047857; --good-bg:#def7ec; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width:1200px; margin:0 auto; padding:24px 32px 48px; }
header { background:#111827; color:#f9fafb; padding:20px 32px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header .meta { color:#cbd2d9; font-size:13px; }
h2 { font-size:17px; margin:32px 0 10px; padding-bottom:6px; border-bottom:1px solid var(--line); }
h3 { font-size:14px; margin:18px 0 8px; color:var(--muted); }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:4px 20px 16px; margin-top:20px; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; font-size:13px; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#f0f2f5; font-weight:600; white-space:nowrap; }
tbody tr:nth-child(even) { background:#fafbfc; }
td.num, th.num { text-align:right; white-space:nowrap; }
.scroll { overflow-x:auto; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; }
.badge.bad { background:var(--bad-bg); color:var(--bad); }
.badge.good { background:var(--good-bg); color:var(--good); }
.badge.sim { background:#fef3c7; color:#92400e; }
.worse { color:var(--bad); font-weight:600; } .better { color:var(--good); font-weight:600; }
.muted { color:var(--muted); }
.banner { padding:12px 16px; border-radius:8px; margin-top:20px; font-weight:600; }
.banner.bad { background:var(--bad-bg); color:var(--bad); } .banner.good { background:var(--good-bg); color:var(--good); }
.banner.warn { background:#fef3c7; color:#92400e; }
pre { background:#f3f4f6; padding:12px; border-radius:6px; overflow-x:auto; font-size:12px; }
code, pre { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
figure { margin:16px 0; } figure img { max-width:100%; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:12px; margin-top:4px; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; margin:8px 0; }
dt { color:var(--muted); } dd { margin:0; word-break:break-all; }
footer { color:var(--muted); font-size:12px; margin-top:32px; text-align:center; }
"""


def _e(value: Any) -> str:
    """Escaped text of any value (None shows as a dash)."""
    return "-" if value is None else html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 2) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return _e(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _stat(step: Mapping[str, Any], name: str, stat: str) -> Any:
    value = step.get(name)
    return value.get(stat) if isinstance(value, Mapping) else None


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] | None = None) -> str:
    """A table from already-escaped cells."""
    numeric = numeric or [False] * len(headers)
    head = "".join(f'<th class="num">{h}</th>' if n else f"<th>{h}</th>" for h, n in zip(headers, numeric))
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if n else f"<td>{c}</td>" for c, n in zip(row, numeric)) + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _summary_section(summary: Mapping[str, Any]) -> str:
    steps = summary.get("steps") or []
    # What applies: metrics no step has (an embeddings run's TTFT, ITL, output throughput) get no column.
    rates = [m for m in METRICS if m.kind == RATE and any(s.get(m.key) is not None for s in steps)]
    shown = [m for m in DISTRIBUTIONS if m.compared and any((s.get(m.key) or {}).get("count") for s in steps)]
    headers = ["step", "ok / failed", "duration s", *(_e(f"{m.label} {m.unit}") for m in rates)]
    for m in shown:
        headers += [_e(f"{m.label} p50 {m.unit}"), _e(f"{m.label} p99 {m.unit}")]
    headers.append("Queue p99 ms")
    rows = []
    for step in steps:
        row = [
            _e(step_label(step)),
            f"{_e(step.get('requests_succeeded'))} / {_e(step.get('requests_failed'))}",
            _num(step.get("duration_s")),
            *(_num(step.get(m.key), 1) for m in rates),
        ]
        for m in shown:
            row += [_num(_stat(step, m.key, "p50")), _num(_stat(step, m.key, "p99"))]
        row.append(_num(_stat(step, "queue_ms", "p99")))
        rows.append(row)
    parts = ['<section><h2>Summary</h2>', _table(headers, rows, [False, True] + [True] * (len(headers) - 2))]
    search = summary.get("search")
    if isinstance(search, Mapping):
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in search.items())
        parts.append(f"<h3>Search</h3><dl>{items}</dl>")
    parts.append(
        '<p class="muted">All times in ms from each request\'s scheduled send time; TTFT counts the first '
        "package carrying output; TPOT excludes the first token; ITL is per token between packages; the inter-package gap "
        "is the plain gap between packages (what vLLM, EvalScope and AIPerf report as ITL).</p></section>"
    )
    return "".join(parts)


@dataclass
class _RequestFacts:
    """What the page needs from requests.jsonl, gathered in one streaming pass (no list of lines)."""

    samples: dict[tuple[int, str], list[str]] = field(default_factory=dict)  # {(step, reason): distinct error texts}
    output_tokens: int = 0  # output tokens of succeeded requests, for the telemetry's per-token figures


def _request_facts(run_dir: Path, summary: Mapping[str, Any]) -> _RequestFacts:
    """Error samples per step and reason (the summary's first one first) and the succeeded
    requests' output tokens; requests.jsonl is read only when failures or telemetry need it."""
    facts = _RequestFacts()
    for index, step in enumerate(summary.get("steps") or []):
        for reason, text in (step.get("failure_examples") or {}).items():
            if text:
                facts.samples[(index, str(reason))] = [str(text)]
    has_failures = any(step.get("failure_reasons") for step in summary.get("steps") or [])
    if not has_failures and not (run_dir / TELEMETRY_FILE).exists():
        return facts
    for line in iter_request_lines(run_dir):
        status = line.get("status")
        if status == "ok":
            facts.output_tokens += int(line.get("output_tokens") or 0)
        elif status and not line.get("warmup") and line.get("error"):
            errors = facts.samples.setdefault((int(line.get("step", 0)), str(status)), [])
            message = str(line["error"])
            if message not in errors and len(errors) < _SAMPLE_ERRORS:
                errors.append(message)
    return facts


def _failures_section(summary: Mapping[str, Any], samples: Mapping[tuple[int, str], Sequence[str]]) -> str:
    rows = []
    for index, step in enumerate(summary.get("steps") or []):
        for reason, count in sorted((step.get("failure_reasons") or {}).items()):
            examples = "<br>".join(f"<code>{_e(m)}</code>" for m in samples.get((index, str(reason)), []))
            rows.append([_e(step_label(step)), _e(reason), _e(count), examples or '<span class="muted">-</span>'])
    if not rows:
        return '<section><h2>Failures</h2><p><span class="badge good">none</span> every request succeeded.</p></section>'
    return (
        "<section><h2>Failures</h2>"
        + _table(["step", "reason", "count", "sample errors"], rows, [False, False, True, False])
        + "</section>"
    )


def _plots_section(run_dir: Path) -> str:
    pngs = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").is_dir() else []
    if not pngs:
        return '<section><h2>Plots</h2><p class="muted">No plots in this run directory.</p></section>'
    figures = []
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        figures.append(
            f'<figure><img alt="{_e(png.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(png.name)}</figcaption></figure>"
        )
    return "<section><h2>Plots</h2>" + "".join(figures) + "</section>"


def _telemetry_section(run_dir: Path, output_tokens: int) -> str:
    samples = read_telemetry(run_dir)
    if not samples:
        return '<section><h2>Telemetry</h2><p class="muted">No telemetry was recorded for this run.</p></section>'

    t = summarize_telemetry(samples, output_tokens)
    parts = ["<section><h2>Telemetry</h2>"]
    if t["gpu_count"]:
        rows = [
            ("GPUs", f"{_e(t['gpu_count'])} × {_e(t['gpu_name'])} (driver {_e(t['gpu_driver'])})"),
            ("energy", f"{_num(t['energy_j'], 1)} J ({_e(t['energy_source'])})"),
            ("energy per output token", f"{_num(t['j_per_output_token'], 4)} J"),
            ("output tokens per joule", _num(t["output_tokens_per_j"], 3)),
            ("mean GPU utilisation", f"{_num(t['gpu_util_mean_pct'], 1)} %"),
            ("mean power", f"{_num(t['gpu_power_mean_w'], 1)} W"),
            ("peak memory", f"{_num(t['gpu_mem_peak_mib'], 0)} of {_num(t['gpu_mem_total_mib'], 0)} MiB"),
        ]
        parts.append("<h3>GPU</h3><dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>")
    else:
        parts.append('<p class="muted">No GPU samples (no NVIDIA GPU, or nvidia-ml-py not installed).</p>')
    if t["server_scrapes"]:
        rows = [[_e(k), _num(v["mean"]), _num(v["max"]), _num(v["last"])] for k, v in t["server_metrics"].items()]
        series = {k for s in samples if s.get("source") == "prometheus" for k in server_series(s)}
        parts.append(f"<h3>Server /metrics ({_e(t['server_scrapes'])} scrapes, {len(series)} series)</h3>")
        if rows:
            parts.append(_table(["series", "mean", "max", "last"], rows, [False, True, True, True]))
    else:
        parts.append('<p class="muted">No server metrics were scraped.</p>')
    return "".join(parts) + "</section>"


def _environment_section(summary: Mapping[str, Any]) -> str:
    target = summary.get("target") or {}
    env = summary.get("environment") or {}
    items = [
        ("target", target.get("url")), ("API", target.get("api")), ("model", target.get("model")),
        ("simulated", target.get("simulated")), ("perfbench", summary.get("perfbench_version")),
        ("started (UTC)", summary.get("started_at")),
    ] + [(k, v) for k, v in env.items()] + [(f"tag {k}", v) for k, v in (summary.get("tags") or {}).items()]
    listing = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    config = json.dumps(summary.get("config") or {}, indent=2, sort_keys=True, default=str)
    return (
        f"<section><h2>Environment</h2><dl>{listing}</dl>"
        f"<h3>Configuration</h3><pre>{_e(config)}</pre></section>"
    )


def _comparison_section(comparison: Comparison) -> str:
    rows = []
    for row in comparison.rows:
        css = ""
        if row.significant and row.worse is not None:
            css = "worse" if row.worse else "better"
        change = "-" if row.change_pct is None else f'<span class="{css}">{row.change_pct:+.1f}%</span>'
        ci = "-" if row.ci_low_pct is None else f"{row.ci_low_pct:+.1f} … {row.ci_high_pct:+.1f}%"
        limit = f"{row.threshold.max_change_pct:+g}%" if row.threshold else ""
        verdict = '<span class="badge bad">regressed</span>' if row.regressed else ("ok" if row.threshold else "")
        rows.append([_e(row.step), _e(row.metric), _num(row.base), _num(row.new), change, ci, limit, verdict])
    banner = (
        f'<div class="banner bad">Regression against the baseline: '
        f"{sum(r.regressed for r in comparison.rows)} check(s) failed.</div>"
        if comparison.regressed
        else '<div class="banner good">No regression against the baseline.</div>'
    )
    unmatched = "".join(f'<p class="muted">Step only in the {_e(s)}; not compared.</p>' for s in comparison.unmatched_steps)
    if comparison.mismatch:  # compared with --allow-mismatch: the verdict is not like for like
        banner += ('<div class="banner warn" id="mismatch">Not like for like: the runs differ in '
                   + "; ".join(_e(d) for d in comparison.mismatch) + " (compared with --allow-mismatch).</div>")
    return (
        f"<section><h2>Comparison with the baseline</h2>{banner}"
        f'<p class="muted">Baseline: <code>{_e(comparison.base_dir)}</code>. A check fails when the change is past '
        f"its limit and its {comparison.confidence:.0%} confidence interval (bootstrap over requests) excludes 0.</p>"
        + _table(["step", "metric", "base", "new", "change", "CI", "limit", "verdict"], rows,
                 [False, False, True, True, True, True, True, False])
        + unmatched + "</section>"
    )


def _saved_comparison(run_dir: Path) -> Comparison | None:
    """``run_dir/comparison.json`` as a Comparison; None when absent or unreadable (the report is shown without it)."""
    path = Path(run_dir) / COMPARISON_FILE
    try:
        saved = read_comparison(path)
        return None if saved is None else Comparison.from_dict(saved)
    except (ConfigError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s is unreadable (%s); the report is written without the comparison", path, exc)
        return None


def write_html_report(
    run_dir: Path, *, baseline_dir: Path | None = None, comparison: Comparison | None = None
) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    ``comparison`` is shown as given; without one, the run folder's own comparison.json (written
    when the run was checked against its baseline) is shown, so a rebuilt report keeps its verdict.
    This only renders: no comparison is computed here.
    """
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    facts = _request_facts(run_dir, summary)
    if comparison is None:
        comparison = _saved_comparison(run_dir)
    target = summary.get("target") or {}
    simulated = ' <span class="badge sim">simulated</span>' if target.get("simulated") else ""
    title = f"perfbench: {target.get('model') or 'run'} — {summary.get('started_at') or ''}"
    banner = ""
    if comparison is not None:
        banner = '<span class="badge bad">regressed</span>' if comparison.regressed else '<span class="badge good">no regression</span>'
    body = [
        f"<header><h1>{_e(target.get('model') or 'perfbench run')}{simulated} {banner}</h1>",
        f'<div class="meta">{_e(target.get("url"))} · {_e(target.get("api"))} · started {_e(summary.get("started_at"))}'
        f" · perfbench {_e(summary.get('perfbench_version'))}</div></header><main>",
    ]
    if comparison is not None:
        body.append(_comparison_section(comparison))
    body += [
        _summary_section(summary),
        _plots_section(run_dir),
        _failures_section(summary, facts.samples),
        _telemetry_section(run_dir, facts.output_tokens),
        _environment_section(summary),
        f"<footer>Generated by perfbench from {_e(run_dir.name)}; rebuild with "
        f"<code>perfbench report {_e(run_dir)}</code>.</footer></main>",
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # no script may run and nothing may load from elsewhere, even if escaping ever failed
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>" + "".join(body) + "</body></html>\n"
    )
    path = run_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def main(argv: list[str]) -> int:
    """``perfbench report DIR [--baseline DIR|RUN_ID|last|tag:K=V] [--store PATH]``: plots, then report.html."""
    parser = OneLineArgumentParser(prog="perfbench report", description="Rebuild a run's plots and report.html.")
    parser.add_argument("run_dir", type=Path, help="the run directory")
    parser.add_argument("--baseline", metavar="DIR|RUN_ID", help="compare with this run (a directory, a run id, "
                        "'last' or 'tag:KEY=VALUE')")
    parser.add_argument("--store", type=Path, metavar="PATH", help="run store for run ids (default: user data dir)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="with --baseline: compare although the runs' identities differ, saying so")
    try:
        args = parser.parse_args(argv)
        read_summary(args.run_dir)  # a clear error before plotting anything
        baseline = None
        if args.baseline:
            baseline = resolve_base(args.baseline, args.store, new_dir=args.run_dir)
        try:
            from perfbench.report.plots import write_plots
        except ImportError:
            log.info("perfbench.report.plots not available; report without new plots")
        else:
            write_plots(args.run_dir)
        comparison = None
        if baseline is not None:
            comparison = compare_runs(Path(baseline), args.run_dir, allow_mismatch=args.allow_mismatch)
        path = write_html_report(args.run_dir, baseline_dir=baseline, comparison=comparison)
    except PerfbenchError as exc:
        print(f"perfbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"report: {path}")
    return 0
