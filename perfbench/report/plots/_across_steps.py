"""The figures with one point (or bar) per step, from summary.json: capacity.png and percentiles.png."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from perfbench import metrics
from perfbench.report.plots._drawing import KNEE_COLOR, PCT_STYLES, SLO_COLOR, new_figure, registered
from perfbench.report.plots._inputs import Limit, Step, by_load

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def capacity_figure(
    steps: list[Step], limits: list[Limit], knee: float | None, knee_source: str, max_passing: float | None, title: str
) -> Figure | None:
    """2x2: throughput vs load, latency vs throughput, TTFT and TPOT vs load."""
    ordered = by_load(steps)
    use_tokens = any(not math.isnan(s.value("output_throughput_tok_s")) for s in ordered)
    thr = registered("output_throughput_tok_s" if use_tokens else "request_throughput_req_s")
    thr_key, thr_label = thr.key, thr.title
    latency = registered("latency_ms")
    throughput = np.array([s.value(thr_key) for s in ordered])
    if np.isnan(throughput).all():
        return None
    rate = any(s.data.get("rate_req_s") is not None for s in ordered)
    load_label = "Offered load (req/s)" if rate else "Concurrency (requests in flight)"
    load = np.array([s.load for s in ordered])
    failed = np.array([s.data.get("slo_passed") is False for s in ordered])
    knee_step = next((s for s in ordered if knee is not None and s.load == knee), None)
    figure, axes = new_figure(2, 2, 13, 8.5, f"Capacity across steps — {title}")
    (thr_ax, curve_ax), (ttft_ax, tpot_ax) = axes

    thr_ax.plot(load, throughput, marker="o", color="#2ca02c", label=thr.label.lower())
    thr_ax.set_ylabel(thr_label)
    thr_ax.set_title("Throughput vs load")

    for stat, color in (("p50", "#1f77b4"), ("p99", "#9467bd")):
        values = np.array([s.stat(latency.key, stat) for s in ordered])
        line, marker = PCT_STYLES[stat]
        curve_ax.plot(throughput, values, linestyle=line, marker=marker, color=color, markersize=5,
                      label=f"{latency.label.lower()} {stat}")  # fmt: skip
    _annotate_loads(curve_ax, throughput, [s.stat(latency.key, "p50") for s in ordered], [s.label for s in ordered])
    _limit_lines(curve_ax, limits, latency)
    if knee_step is not None:
        curve_ax.plot(knee_step.value(thr_key), knee_step.stat(latency.key, "p50"), "o", markersize=14, markerfacecolor="none",
                      markeredgecolor=KNEE_COLOR, markeredgewidth=2, label=f"knee ({knee_source}): {knee_step.label}")  # fmt: skip
    curve_ax.set_xlabel(thr_label)
    curve_ax.set_ylabel(latency.title)
    curve_ax.set_title(f"{latency.label} vs throughput (each point a step)")

    for ax, metric in ((ttft_ax, registered("ttft_ms")), (tpot_ax, registered("tpot_ms"))):
        for stat, color in (("p50", "#1f77b4"), ("p99", "#9467bd")):
            values = np.array([s.stat(metric.key, stat) for s in ordered])
            line, marker = PCT_STYLES[stat]
            ax.plot(load, values, linestyle=line, marker=marker, color=color, markersize=5, label=stat)
        _limit_lines(ax, limits, metric)
        ax.set_ylabel(metric.title)
        ax.set_title(f"{metric.label} vs load")

    for ax in (thr_ax, ttft_ax, tpot_ax):
        if failed.any():
            for s in (s for s, bad in zip(ordered, failed) if bad):
                ax.axvspan(*_cell(load, s.load), color=SLO_COLOR, alpha=0.07, linewidth=0)
            ax.plot([], [], "s", color=SLO_COLOR, alpha=0.25, label="step failed its SLOs")
        if knee_step is not None:
            ax.axvline(knee_step.load, color=KNEE_COLOR, linewidth=1.5, label=f"knee ({knee_source}): {knee_step.label}")
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


def _limit_lines(ax: Axes, limits: list[Limit], metric: metrics.Metric) -> None:
    """The step limits on ``metric`` as horizontal lines."""
    for limit in limits:
        if limit.metric == metric.slo_name:
            ax.axhline(limit.limit_ms, color=SLO_COLOR, linestyle="-.", linewidth=1.2, label=limit.label)


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


def percentiles_figure(steps: list[Step], limits: list[Limit], title: str) -> Figure | None:
    ordered = by_load(steps)
    ttft, tpot = registered("ttft_ms"), registered("tpot_ms")
    if all(math.isnan(s.stat(ttft.key, "p50")) for s in ordered):
        return None
    width = min(16.0, max(9.0, 1.1 * len(ordered) + 4))
    figure, axes = new_figure(1, 2, width, 4.6, f"{ttft.label} and {tpot.label} percentiles per step — {title}")
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
