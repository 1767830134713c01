"""Plots of a run directory, rebuilt from its files alone (summary.json, requests.jsonl, telemetry.jsonl).

``write_plots(run_dir)`` writes PNGs into ``run_dir/plots/``:

- ``capacity.png`` (two or more steps): TTFT, TPOT and latency (p50, p99) against output
  throughput, one point per step labelled with its load, SLO limits as lines, the knee marked
  (the search's, else ``find_knee`` over the steps) and steps that failed their SLOs crossed.
- ``percentiles.png``: TTFT and TPOT p50/p90/p99 per step, with the SLO limits.
- ``latency_cdf.png``: the distribution (CDF) of TTFT and latency per step.
- ``timeline.png``: requests in flight, output tok/s and each request's TTFT over the run,
  steps shaded.
- ``telemetry.png`` (when telemetry.jsonl exists): every sampled series over the run.

``perfbench plot DIR`` runs ``main``. matplotlib is imported inside the functions (it costs
~0.3 s) and only its object API is used (``Figure``, Agg by file type), never pyplot's global state.
"""

from __future__ import annotations

import logging
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from perfbench.cliutil import OneLineArgumentParser
from perfbench.errors import ConfigError, PerfbenchError
from perfbench import metrics
from perfbench.records import RequestRecord
from perfbench.runfiles import iter_record_chunks, read_summary, read_telemetry, step_label
from perfbench.search import find_knee

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PLOTS_DIR = "plots"
_DPI = 110
_SLO_COLOR = "#d62728"
_KNEE_COLOR = "#ff7f0e"
_PCT_STYLES = {"p50": ("-", "o"), "p90": (":", "^"), "p99": ("--", "s")}
_MAX_MARKERS = 100_000  # scatter/tick markers drawn per series; past it every k-th (a million markers look the same, cost seconds)
_MAX_CDF_POINTS = 5_000  # points of a CDF line: its steps at evenly spaced ranks, min and max included


@dataclass(frozen=True)
class _Step:
    """One summary.json step with what the plots need."""

    index: int  # position in summary.json (= records' step)
    label: str  # runfiles.step_label ("c=8", "rate=4/s cap=8"), "#3 " before it when a load repeats
    load: float  # concurrency or requests/s
    data: dict[str, Any]  # the STEP object

    def stat(self, metric: str, stat: str) -> float:
        value = (self.data.get(metric) or {}).get(stat)
        return math.nan if value is None else float(value)

    def value(self, key: str) -> float:
        value = self.data.get(key)
        return math.nan if value is None else float(value)


@dataclass(frozen=True)
class _Limit:
    """A step-limit SLO, e.g. ttft_p99 <= 500 ms."""

    metric: str  # "ttft", "tpot", "itl", "latency"
    stat: str  # "p99", "mean", ...
    limit_ms: float

    @property
    def label(self) -> str:
        return f"SLO {self.metric}_{self.stat} ≤ {self.limit_ms:g} ms"


def write_plots(run_dir: Path) -> list[Path]:
    """Write the run's plots into ``run_dir/plots/``; returns the files written.

    Raises:
        ConfigError: ``run_dir`` has no readable summary.json, or a damaged requests.jsonl.
    """
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    requests = _read_requests(run_dir)
    steps = _steps(summary)
    out_dir = run_dir / PLOTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    title = _title(summary, run_dir)
    step_limits, per_request_ms = _slos(summary)

    figures: list[tuple[str, Figure | None]] = []
    if len(steps) >= 2:
        knee, knee_source = _knee(summary, steps)
        max_passing = (summary.get("search") or {}).get("max_passing")
        figures.append(("capacity.png", _capacity_figure(steps, step_limits, knee, knee_source, max_passing, title)))
    if steps:
        figures.append(("percentiles.png", _percentiles_figure(steps, step_limits, title)))
    if requests.measured.any():
        figures.append(("latency_cdf.png", _cdf_figure(requests, steps, step_limits, per_request_ms, title)))
    if len(requests.step):
        figures.append(("timeline.png", _timeline_figure(requests, steps, title)))
    telemetry = _read_telemetry(run_dir)
    if telemetry:
        figures.append(("telemetry.png", _telemetry_figure(telemetry, requests, steps, title)))

    written = []
    for name, figure in figures:
        if figure is None:
            continue
        path = out_dir / name
        figure.savefig(path, dpi=_DPI)
        written.append(path)
        log.debug("wrote %s", path)
    return written


def main(argv: Sequence[str]) -> int:
    """``perfbench plot DIR``: rebuild the plots of a run directory and list them."""
    parser = OneLineArgumentParser(prog="perfbench plot", description="Rebuild the plots of a run directory.")
    parser.add_argument("run_dir", metavar="DIR", type=Path, help="a run directory (holds summary.json)")
    try:
        args = parser.parse_args(list(argv))
        written = write_plots(args.run_dir)
    except PerfbenchError as exc:
        print(f"perfbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    for path in written:
        print(path)
    if not written:
        print(f"{args.run_dir}: nothing to plot (no steps, no requests)")
    return 0


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class _Requests:
    """requests.jsonl as the numeric columns the plots draw: one entry per record (times in s
    since the run's start), and one per output package. Read chunk by chunk, so a run of a
    million requests never exists as record objects at once."""

    step: np.ndarray  # int64: the record's step
    warmup: np.ndarray  # bool
    ok: np.ndarray  # bool: status "ok"
    scheduled_s: np.ndarray  # float64: t0
    sent_s: np.ndarray  # float64
    end_s: np.ndarray  # float64
    ttft_ms: np.ndarray  # float64, NaN without output packages (metrics.py's definition)
    latency_ms: np.ndarray  # float64, NaN without output packages (metrics.py's definition)
    tokens: _TokenHistogram  # output tokens by package arrival

    @property
    def measured(self) -> np.ndarray:
        """Succeeded, non-warm-up records with output: the ones in the latency statistics."""
        return self.ok & ~self.warmup & ~np.isnan(self.ttft_ms)


def _read_requests(run_dir: Path) -> _Requests:
    """The run's records as ``_Requests`` columns (ConfigError for a damaged requests.jsonl)."""
    names = [f.name for f in _Requests.__dataclass_fields__.values() if f.name != "tokens"]
    dtypes = {"step": np.int64, "warmup": bool, "ok": bool}
    columns = {name: metrics.GrowingArray(dtypes.get(name, np.float64)) for name in names}
    tokens = _TokenHistogram()
    for chunk in iter_record_chunks(run_dir):
        n = len(chunk)
        values_ms = metrics.per_request_ms(chunk)
        columns["step"].extend(np.fromiter((r.step for r in chunk), dtype=np.int64, count=n))
        columns["warmup"].extend(np.fromiter((r.warmup for r in chunk), dtype=bool, count=n))
        columns["ok"].extend(np.fromiter((r.ok for r in chunk), dtype=bool, count=n))
        for name, attribute in (("scheduled_s", "scheduled_ns"), ("sent_s", "sent_ns"), ("end_s", "end_ns")):
            columns[name].extend(np.fromiter((getattr(r, attribute) for r in chunk), dtype=np.int64, count=n) / 1e9)
        columns["ttft_ms"].extend(values_ms["ttft_ms"])
        columns["latency_ms"].extend(values_ms["latency_ms"])
        tokens.add(*_package_tokens(chunk))
    return _Requests(**{name: column.values for name, column in columns.items()}, tokens=tokens)


_FINE_BIN_S = 0.01  # the narrowest timeline bin (_bin_s)
_MAX_FINE_BINS = 1_000_000  # past this many, the fine bins become 10x wider (a run of hours needs no 10 ms bins)


class _TokenHistogram:
    """Output tokens by arrival time, counted into fine bins as chunks are read, so the packages
    of a long run are never all held. A bin spans ``[k, k+1) * width_s`` since the run's start;
    ``width_s`` (10 ms, 10x wider whenever a run outgrows the bins) divides every width ``_bin_s``
    picks for the run, so the timeline's bins, aligned to multiples of their width, are sums of whole fine bins.
    """

    def __init__(self) -> None:
        self.width_s = _FINE_BIN_S
        self.tokens = np.zeros(0)  # tokens per fine bin

    def add(self, times_s: np.ndarray, tokens: np.ndarray) -> None:
        if not len(times_s):
            return
        index = np.maximum(np.floor(times_s / self.width_s), 0).astype(np.int64)  # none arrive before the start
        while int(index.max()) >= _MAX_FINE_BINS:
            self._coarsen()
            index //= 10
        counted = np.bincount(index, weights=tokens)
        if len(counted) > len(self.tokens):
            self.tokens = np.concatenate([self.tokens, np.zeros(len(counted) - len(self.tokens))])
        self.tokens[: len(counted)] += counted

    def _coarsen(self) -> None:
        padded = np.concatenate([self.tokens, np.zeros(-len(self.tokens) % 10)])
        self.tokens = padded.reshape(-1, 10).sum(axis=1)
        self.width_s *= 10

    def per_bin(self, edges: np.ndarray) -> np.ndarray:
        """Tokens in each bin between consecutive ``edges`` (each fine bin counted where its middle falls)."""
        middles = (np.arange(len(self.tokens)) + 0.5) * self.width_s
        counts, _ = np.histogram(middles, bins=edges, weights=self.tokens)
        return counts


def _every_kth(count: int, limit: int = _MAX_MARKERS) -> int:
    """The stride that keeps at most ``limit`` of ``count`` markers."""
    return max(1, -(-count // limit))


@dataclass(frozen=True)
class _Series:
    """One telemetry line to draw: which panel, its legend label, and the points."""

    panel: str  # panel title, e.g. "GPU utilization (%)"
    label: str  # legend entry, e.g. "GPU 0" or "running"
    times_s: np.ndarray  # seconds since the run's start
    values: np.ndarray


def _read_telemetry(run_dir: Path) -> list[_Series]:
    """The telemetry.jsonl series worth a panel (telemetry/sampler.py writes the file).

    A line is one sample at ``t_s``: ``source: "gpu"`` lines carry one GPU's fields (``gpu`` is
    its index), ``source: "prometheus"`` lines one scrape, a field per series. Drawn: GPU
    utilisation, power and memory used; server gauges of running/waiting requests and cache
    usage; the server's generated tokens as a rate. Other series stay in the file.
    """
    points: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for sample in read_telemetry(run_dir):
        for key, value in sample.items():
            if key in ("t_s", "source", "gpu") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            where = _telemetry_panel(str(sample.get("source")), key, sample.get("gpu"))
            if where is not None:
                times, values = points.setdefault(where, ([], []))
                times.append(float(sample["t_s"]))
                values.append(float(value))
    out = []
    for (panel, label), (times, values) in points.items():
        t, v = np.array(times), np.array(values)
        if panel.endswith(_PER_S):  # a counter: draw its rate; a drop is a reset, not a negative rate
            rates = np.diff(v) / np.where(np.diff(t) > 0, np.diff(t), np.nan)
            t, v = (t[1:] + t[:-1]) / 2, np.where(rates >= 0, rates, np.nan)
        if len(t) >= 2:
            out.append(_Series(panel, label, t, v))
    order = {panel: rank for rank, panel in enumerate(_PANEL_ORDER)}
    return sorted(out, key=lambda x: (order.get(x.panel, len(order)), x.panel, x.label))


_PER_S = "(1/s)"
_GPU_PANELS = {"util_pct": "GPU utilization (%)", "power_w": "GPU power (W)", "mem_used_mib": "GPU memory used (MiB)"}
_PANEL_ORDER = ("Server requests", "Server KV-cache usage (fraction)", "Server generated tokens " + _PER_S, *_GPU_PANELS.values())


def _telemetry_panel(source: str, key: str, gpu: Any) -> tuple[str, str] | None:
    """(panel, legend label) for a telemetry field, or None for fields not drawn."""
    if source == "gpu":
        panel = _GPU_PANELS.get(key)
        return None if panel is None else (panel, f"GPU {gpu}")
    if source != "prometheus":
        return None
    name, _, labels = key.partition("{")
    # One model per server: its label says nothing; any other label tells lines apart.
    rest = [pair for pair in labels.rstrip("}").split(",") if pair and not pair.startswith("model_name=")]
    suffix = f" {{{','.join(rest)}}}" if rest else ""
    short = name.split(":")[-1]
    if re.search(r"running|waiting|pending|swapped", short):
        state = re.search(r"running|waiting|pending|swapped", short)[0]  # type: ignore[index]
        return "Server requests", f"{state}{suffix}"
    if re.search(r"cache_usage|kv_cache", short):
        return "Server KV-cache usage (fraction)", f"{short}{suffix}"
    if re.fullmatch(r"generation_tokens(_total)?", short):
        return "Server generated tokens " + _PER_S, f"server output tok/s{suffix}"
    return None


def _steps(summary: dict[str, Any]) -> list[_Step]:
    steps = []
    for index, data in enumerate(summary["steps"]):
        rate = data.get("rate_req_s")
        load = float(rate) if rate is not None else float(data.get("concurrency") or 0)
        steps.append(_Step(index, step_label(data), load, data))
    labels = [s.label for s in steps]
    if len(set(labels)) < len(labels):  # repeated loads: tell them apart by step number
        steps = [_Step(s.index, f"#{s.index + 1} {s.label}", s.load, s.data) for s in steps]
    return steps


def _slos(summary: dict[str, Any]) -> tuple[list[_Limit], dict[str, float]]:
    """Step limits (from the steps' verdicts, else the config) and per-request limits (config)."""
    limits: dict[str, _Limit] = {}
    for step in summary["steps"]:
        for result in step.get("slo_results") or ():
            metric, _, stat = str(result.get("name", "")).partition("_")
            if stat and isinstance(result.get("limit_ms"), (int, float)):
                limits.setdefault(result["name"], _Limit(metric, stat, float(result["limit_ms"])))
    per_request: dict[str, float] = {}
    config = summary.get("config") or {}
    text = config.get("slo_text") or config.get("slo")
    if isinstance(text, str) and text:
        from perfbench.slo import parse_slos

        try:
            slos = parse_slos(text)
        except ConfigError:
            log.warning("summary.json config slo %r unreadable; plotting without it", text)
        else:
            per_request = dict(slos.per_request_ms)
            for limit in slos.step_limits:
                limits.setdefault(limit.name, _Limit(limit.metric, limit.stat, limit.limit_ms))
    return list(limits.values()), per_request


def _knee(summary: dict[str, Any], steps: list[_Step]) -> tuple[float | None, str]:
    search = summary.get("search")
    if isinstance(search, dict):
        return search.get("knee"), "search"
    knee = find_knee(
        [s.load for s in steps],
        [s.value("request_throughput_req_s") for s in steps],
        [s.stat("latency_ms", "p50") for s in steps],
    )
    return knee, "estimated"


def _title(summary: dict[str, Any], run_dir: Path) -> str:
    config = summary.get("config") or {}
    target = summary.get("target") or {}
    name = config.get("name") or run_dir.name
    model = target.get("model")
    parts = [str(name)]
    if model:
        parts.append(f"model {model}")
    if target.get("simulated"):
        parts.append("simulated (built-in mock)")
    return " · ".join(parts)


# ------------------------------------------------------------------ figures


def _new_figure(rows: int, cols: int, width: float, height: float, title: str, **kwargs: Any) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False, **kwargs)
    figure.suptitle(title, fontsize=11)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    return figure, axes


def _metric(key: str) -> metrics.Metric:
    """A metric's declaration: plots take every name and unit they show from the registry."""
    return metrics.METRICS_BY_KEY[key]


def _by_load(steps: Iterable[_Step]) -> list[_Step]:
    return sorted(steps, key=lambda s: (s.load, s.index))


def _capacity_figure(
    steps: list[_Step], limits: list[_Limit], knee: float | None, knee_source: str, max_passing: float | None, title: str
) -> Figure | None:
    """2x2: throughput vs load, latency vs throughput, TTFT and TPOT vs load."""
    ordered = _by_load(steps)
    use_tokens = any(not math.isnan(s.value("output_throughput_tok_s")) for s in ordered)
    thr = _metric("output_throughput_tok_s" if use_tokens else "request_throughput_req_s")
    thr_key, thr_label = thr.key, thr.title
    latency = _metric("latency_ms")
    throughput = np.array([s.value(thr_key) for s in ordered])
    if np.isnan(throughput).all():
        return None
    rate = any(s.data.get("rate_req_s") is not None for s in ordered)
    load_label = "Offered load (req/s)" if rate else "Concurrency (requests in flight)"
    load = np.array([s.load for s in ordered])
    failed = np.array([s.data.get("slo_passed") is False for s in ordered])
    knee_step = next((s for s in ordered if knee is not None and s.load == knee), None)
    figure, axes = _new_figure(2, 2, 13, 8.5, f"Capacity across steps — {title}")
    (thr_ax, curve_ax), (ttft_ax, tpot_ax) = axes

    thr_ax.plot(load, throughput, marker="o", color="#2ca02c", label=thr.label.lower())
    thr_ax.set_ylabel(thr_label)
    thr_ax.set_title("Throughput vs load")

    for stat, color in (("p50", "#1f77b4"), ("p99", "#9467bd")):
        values = np.array([s.stat(latency.key, stat) for s in ordered])
        line, marker = _PCT_STYLES[stat]
        curve_ax.plot(throughput, values, linestyle=line, marker=marker, color=color, markersize=5,
                      label=f"{latency.label.lower()} {stat}")  # fmt: skip
    _annotate_loads(curve_ax, throughput, [s.stat(latency.key, "p50") for s in ordered], [s.label for s in ordered])
    _limit_lines(curve_ax, limits, latency)
    if knee_step is not None:
        curve_ax.plot(knee_step.value(thr_key), knee_step.stat(latency.key, "p50"), "o", markersize=14, markerfacecolor="none",
                      markeredgecolor=_KNEE_COLOR, markeredgewidth=2, label=f"knee ({knee_source}): {knee_step.label}")  # fmt: skip
    curve_ax.set_xlabel(thr_label)
    curve_ax.set_ylabel(latency.title)
    curve_ax.set_title(f"{latency.label} vs throughput (each point a step)")

    for ax, metric in ((ttft_ax, _metric("ttft_ms")), (tpot_ax, _metric("tpot_ms"))):
        for stat, color in (("p50", "#1f77b4"), ("p99", "#9467bd")):
            values = np.array([s.stat(metric.key, stat) for s in ordered])
            line, marker = _PCT_STYLES[stat]
            ax.plot(load, values, linestyle=line, marker=marker, color=color, markersize=5, label=stat)
        _limit_lines(ax, limits, metric)
        ax.set_ylabel(metric.title)
        ax.set_title(f"{metric.label} vs load")

    for ax in (thr_ax, ttft_ax, tpot_ax):
        if failed.any():
            for s in (s for s, bad in zip(ordered, failed) if bad):
                ax.axvspan(*_cell(load, s.load), color=_SLO_COLOR, alpha=0.07, linewidth=0)
            ax.plot([], [], "s", color=_SLO_COLOR, alpha=0.25, label="step failed its SLOs")
        if knee_step is not None:
            ax.axvline(knee_step.load, color=_KNEE_COLOR, linewidth=1.5, label=f"knee ({knee_source}): {knee_step.label}")
        if max_passing is not None:
            ax.axvline(max_passing, color="#2ca02c", linestyle=":", linewidth=2, label=f"max passing load: {max_passing:g}")
        _load_axis(ax, load, load_label)
    for ax in (curve_ax, ttft_ax, tpot_ax):
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)  # headroom: flat lines do not sit on the frame
    if thr_ax.get_xscale() == "log" and np.nanmin(throughput) > 0:
        # log-log: linear scaling is a 45-degree line and saturation a flat one, whatever the scale
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        thr_ax.set_yscale("log")
        thr_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        thr_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        thr_ax.yaxis.set_minor_formatter(NullFormatter())
        thr_ax.set_ylim(np.nanmin(throughput) / 1.5, np.nanmax(throughput) * 1.5)
    else:
        thr_ax.set_ylim(0, thr_ax.get_ylim()[1] * 1.1)
    for ax in axes.flat:
        ax.legend(fontsize=8, loc="best")
    if np.nanmax(throughput) > 0:  # all zero when every request failed: matplotlib picks the span
        curve_ax.set_xlim(0, np.nanmax(throughput) * 1.15)  # room for the last point's label
    return figure


def _limit_lines(ax: Axes, limits: list[_Limit], metric: metrics.Metric) -> None:
    """The step limits on ``metric`` as horizontal lines."""
    for limit in limits:
        if limit.metric == metric.slo_name:
            ax.axhline(limit.limit_ms, color=_SLO_COLOR, linestyle="-.", linewidth=1.2, label=limit.label)


def _cell(loads: np.ndarray, load: float) -> tuple[float, float]:
    """The span around ``load`` halfway (geometrically on a log axis) to its neighbours."""
    others = np.unique(loads)
    i = int(np.searchsorted(others, load))
    log_axis = others[0] > 0 and others[-1] / others[0] >= 8
    mid = (lambda a, b: math.sqrt(a * b)) if log_axis else (lambda a, b: (a + b) / 2)
    lo = mid(others[i - 1], load) if i > 0 else (load / 1.2 if log_axis else load - 0.5)
    hi = mid(load, others[i + 1]) if i + 1 < len(others) else (load * 1.2 if log_axis else load + 0.5)
    return lo, hi


def _load_axis(ax: Axes, loads: np.ndarray, label: str) -> None:
    """Log scale when the loads span 8x or more (ladders double); ticks at the loads probed."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    distinct = np.unique(loads)
    if distinct[0] > 0 and distinct[-1] / distinct[0] >= 8:
        ax.set_xscale("log")
    if len(distinct) <= 12:
        ax.xaxis.set_major_locator(FixedLocator(distinct))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel(label)


def _annotate_loads(ax: Axes, x: np.ndarray, y: Sequence[float], labels: Sequence[str]) -> None:
    """Label points with their load, skipping a label that would sit on top of one already drawn."""
    points = [(xi, yi, label) for xi, yi, label in zip(x, y, labels) if not (math.isnan(xi) or math.isnan(yi))]
    if not points:
        return
    span_x = max(p[0] for p in points) or 1.0
    span_y = max(p[1] for p in points) or 1.0
    placed: list[tuple[float, float]] = []
    for xi, yi, label in points:
        if any(abs(xi - px) / span_x < 0.06 and abs(yi - py) / span_y < 0.06 for px, py in placed):
            continue
        placed.append((xi, yi))
        ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(4, -11), fontsize=7, color="#444444")


def _percentiles_figure(steps: list[_Step], limits: list[_Limit], title: str) -> Figure | None:
    ordered = _by_load(steps)
    ttft, tpot = _metric("ttft_ms"), _metric("tpot_ms")
    if all(math.isnan(s.stat(ttft.key, "p50")) for s in ordered):
        return None
    width = min(16.0, max(9.0, 1.1 * len(ordered) + 4))
    figure, axes = _new_figure(1, 2, width, 4.6, f"{ttft.label} and {tpot.label} percentiles per step — {title}")
    stats = ("p50", "p90", "p99")
    colors = ("#9ecae1", "#4292c6", "#08519c")
    positions = np.arange(len(ordered))
    bar_width = 0.8 / len(stats)
    for ax, metric in zip(axes[0], (ttft, tpot)):
        for i, (stat, color) in enumerate(zip(stats, colors)):
            values = [s.stat(metric.key, stat) for s in ordered]
            bars = ax.bar(positions + (i - 1) * bar_width, values, bar_width, color=color, label=stat)
            if len(ordered) <= 4:  # few bars: print their values
                ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
        _limit_lines(ax, limits, metric)
        ax.set_xticks(positions, [s.label for s in ordered], rotation=30 if len(ordered) > 6 else 0)
        ax.set_xlim(-0.5 - 0.5 / len(ordered) ** 0.5, len(ordered) - 0.5 + 0.5 / len(ordered) ** 0.5)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the legend above the bars
        ax.set_xlabel("Step (load)")
        ax.set_ylabel(metric.title)
        ax.set_title(f"{metric.label} percentiles")
        ax.legend(fontsize=8, loc="upper left", ncols=4)
        ax.grid(False, axis="x")
    return figure


def _cdf_figure(
    requests: _Requests, steps: list[_Step], step_limits: list[_Limit], per_request_ms: dict[str, float], title: str
) -> Figure:
    from matplotlib import colormaps

    labels = {s.index: s.label for s in steps}
    order = {s.index: rank for rank, s in enumerate(_by_load(steps))}
    measured = requests.measured
    in_steps = sorted({int(k) for k in np.unique(requests.step[measured])}, key=lambda k: order.get(k, k))
    cmap = colormaps["viridis"]
    figure, axes = _new_figure(1, 2, 12, 4.6, f"Distribution per step — {title}")
    panels = ((_metric("ttft_ms"), requests.ttft_ms), (_metric("latency_ms"), requests.latency_ms))
    for ax, (metric, column) in zip(axes[0], panels):
        lowest, highest = math.inf, 0.0
        for step in in_steps:
            values = np.sort(column[measured & (requests.step == step)])
            count = len(values)
            share = np.arange(1, count + 1) / count
            if len(values) > _MAX_CDF_POINTS:  # the same curve from fewer points: ranks evenly spaced, ends kept
                ranks = np.unique(np.linspace(0, len(values) - 1, _MAX_CDF_POINTS).round().astype(np.int64))
                values, share = values[ranks], share[ranks]
            color = cmap(order.get(step, 0) / max(1, len(in_steps) - 1) * 0.9)
            ax.step(values, share, where="post", color=color, label=f"{labels.get(step, step)} (n={count})")
            lowest, highest = min(lowest, float(values[0])), max(highest, float(values[-1]))
        slo_ms = per_request_ms.get(metric.slo_name or "")
        if slo_ms is not None:
            ax.axvline(slo_ms, color=_SLO_COLOR, linestyle="-.", label=f"SLO {metric.slo_name} ≤ {slo_ms:g} ms")
        for limit in step_limits:  # a percentile limit is a point the CDF must pass left of
            if limit.metric == metric.slo_name and limit.stat.startswith("p"):
                ax.plot(limit.limit_ms, float(limit.stat[1:]) / 100, marker="X", markersize=10, linestyle="none",
                        color=_SLO_COLOR, label=limit.label)  # fmt: skip
        if lowest > 0 and highest / lowest > 50:  # spans orders of magnitude: a log axis shows every step
            from matplotlib.ticker import FuncFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_xlabel(metric.title)
        ax.set_ylabel("Share of requests ≤ x")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{metric.label} CDF")
        ax.legend(fontsize=8, loc="lower right")
    return figure


def _bin_s(duration_s: float) -> float:
    """A round bin width giving 100 to 250 bins (at least 10 ms)."""
    target = max(duration_s / 250, 0.01)
    for exponent in range(-2, 5):
        for base in (1, 2, 5):
            width = base * 10.0**exponent
            if width >= target:
                return width
    return target  # runs of more than a day: bins of 1/250 of the run


def _timeline_figure(requests: _Requests, steps: list[_Step], title: str) -> Figure:
    sent_s, end_s = requests.sent_s, requests.end_s
    start_s = float(min(np.min(sent_s), np.min(requests.scheduled_s), 0.0))
    stop_s = float(np.max(end_s))
    figure, axes = _new_figure(3, 1, 12, 8, f"Timeline — {title}", sharex=True)
    in_flight_ax, tokens_ax, ttft_ax = axes[:, 0]

    # Requests in flight, time-averaged per bin (the exact count flickers between requests).
    width_s = _bin_s(stop_s - start_s)
    first_edge_s = math.floor(start_s / width_s) * width_s  # bins at multiples of their width: whole fine token bins
    edges = np.arange(first_edge_s, stop_s + width_s, width_s)
    if len(edges) < 2:
        edges = np.array([first_edge_s, first_edge_s + width_s])
    in_flight = np.diff(_busy_time_s(sent_s, end_s, edges)) / width_s
    in_flight_ax.stairs(in_flight, edges, color="#1f77b4", linewidth=1.5, label=f"in flight (mean per {width_s:g} s)")
    failed_end_s = end_s[~requests.ok]
    if len(failed_end_s):
        k = _every_kth(len(failed_end_s))
        shown = f", every {k}th shown" if k > 1 else ""
        in_flight_ax.plot(failed_end_s[::k], np.zeros(len(failed_end_s[::k])), "|", color=_SLO_COLOR,
                          markersize=12, label=f"failed request ({len(failed_end_s)}{shown})")  # fmt: skip
    in_flight_ax.set_ylabel("Requests in flight")
    in_flight_ax.set_ylim(bottom=0)
    in_flight_ax.legend(fontsize=8, loc="upper left")

    # Output tokens per second, from each package's arrival and token count.
    counts = requests.tokens.per_bin(edges)
    output = _metric("output_throughput_tok_s")
    tokens_ax.stairs(counts / width_s, edges, fill=True, color="#2ca02c", alpha=0.7,
                     label=f"{output.label.lower()} ({width_s:g} s bins)")  # fmt: skip
    tokens_ax.set_ylabel(output.title)
    tokens_ax.legend(fontsize=8, loc="upper left")

    # Each request's TTFT at its scheduled time: queueing shows as a rising cloud.
    with_output = requests.ok & ~np.isnan(requests.ttft_ms)
    k = _every_kth(int(with_output.sum()))
    shown = f", every {k}th shown" if k > 1 else ""
    ttft = _metric("ttft_ms")
    ttft_ax.scatter(requests.scheduled_s[with_output][::k], requests.ttft_ms[with_output][::k],
                    s=4, alpha=0.5, color="#9467bd", label=f"{ttft.label} of a request (at its scheduled time{shown})")  # fmt: skip
    ttft_ax.set_ylabel(ttft.title)
    ttft_ax.set_xlabel("Time since run start (s)")
    ttft_ax.set_ylim(bottom=0)
    ttft_ax.legend(fontsize=8, loc="upper left")

    _shade_steps(axes[:, 0], requests, steps)
    return figure


def _busy_time_s(start_s: np.ndarray, end_s: np.ndarray, at_s: np.ndarray) -> np.ndarray:
    """For each time t in ``at_s``: the summed time requests spent in flight before t.

    sum_i clip(t - start_i, 0, end_i - start_i) = sum_{start_i < t} (t - start_i) - sum_{end_i < t} (t - end_i),
    computed with sorted prefix sums; its difference over a bin is the bin's request-seconds.
    """

    def below(points: np.ndarray) -> np.ndarray:
        points = np.sort(points)
        prefix = np.concatenate([[0.0], np.cumsum(points)])
        count = np.searchsorted(points, at_s, side="left")
        return count * at_s - prefix[count]

    return below(start_s) - below(end_s)


def _package_tokens(records: Sequence[RequestRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Arrival (s) and output tokens of every package; without per-package counts, spread evenly."""
    times: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    for r in records:
        if not r.package_times_ns:
            continue
        times.append(np.asarray(r.package_times_ns, dtype=np.float64) / 1e9)
        if len(r.package_tokens) == len(r.package_times_ns):
            tokens.append(np.asarray(r.package_tokens, dtype=np.float64))
        else:
            total = r.output_tokens if r.output_tokens else len(r.package_times_ns)
            tokens.append(np.full(len(r.package_times_ns), total / len(r.package_times_ns)))
    if not times:
        return np.array([]), np.array([])
    return np.concatenate(times), np.concatenate(tokens)


def _shade_steps(axes: Iterable[Axes], requests: _Requests, steps: list[_Step]) -> None:
    """Shade each step's span (warm-up grey) and name it above the top panel."""
    spans: dict[Any, list[float]] = {}
    groups = [("warm-up", requests.warmup)] if requests.warmup.any() else []
    groups += [(int(step), ~requests.warmup & (requests.step == step)) for step in np.unique(requests.step[~requests.warmup])]
    for key, members in groups:
        spans[key] = [float(requests.scheduled_s[members].min()), float(requests.end_s[members].max())]
    labels = {s.index: s.label for s in steps}
    axes = list(axes)
    for number, (key, (lo, hi)) in enumerate(sorted(spans.items(), key=lambda item: item[1][0])):
        color = "#bbbbbb" if key == "warm-up" else ("#1f77b4" if number % 2 else "#ff7f0e")
        for ax in axes:
            ax.axvspan(lo, hi, color=color, alpha=0.08, linewidth=0)
        label = "warm-up" if key == "warm-up" else labels.get(key, f"step {key}")
        axes[0].annotate(label, ((lo + hi) / 2, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2),
                         textcoords="offset points", ha="center", va="bottom", fontsize=7, color="#444444")  # fmt: skip


def _telemetry_figure(series: list[_Series], requests: _Requests, steps: list[_Step], title: str) -> Figure:
    panels: dict[str, list[_Series]] = {}
    for line in series:
        panels.setdefault(line.panel, []).append(line)
    figure, axes = _new_figure(len(panels), 1, 12, 2.0 * len(panels) + 1.2, f"Telemetry — {title}", sharex=True)
    for ax, (panel, lines) in zip(axes[:, 0], panels.items()):
        for line in lines:
            ax.plot(line.times_s, line.values, linewidth=1.4, marker="." if len(line.times_s) < 40 else None, label=line.label)
        ax.set_ylabel(panel.replace(" (", "\n("), fontsize=9)
        top = max(float(np.nanmax(line.values)) if np.isfinite(line.values).any() else 0.0 for line in lines)
        ax.set_ylim(0, max(top * 1.15, 1e-9))  # headroom: a flat series does not sit on the frame
        ax.legend(fontsize=8, loc="upper left")
    axes[-1, 0].set_xlabel("Time since run start (s)")
    if len(requests.step):
        _shade_steps(axes[:, 0], requests, steps)
    return figure
