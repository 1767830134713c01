"""The figures of every request, from requests.jsonl: latency_cdf.png and timeline.png."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from perfbench.report.plots._drawing import (
    SLO_COLOR, cdf_points, every_kth, log_axis_if_wide, new_figure, registered, shade_steps,
)
from perfbench.report.plots._inputs import Limit, Requests, Step, by_load

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def cdf_figure(
    requests: Requests, steps: list[Step], step_limits: list[Limit], per_request_ms: dict[str, float], title: str
) -> Figure:
    from matplotlib import colormaps

    labels = {s.index: s.label for s in steps}
    order = {s.index: rank for rank, s in enumerate(by_load(steps))}
    measured = requests.measured
    in_steps = sorted({int(k) for k in np.unique(requests.step[measured])}, key=lambda k: order.get(k, k))
    cmap = colormaps["viridis"]
    figure, axes = new_figure(1, 2, 12, 4.6, f"Distribution per step — {title}")
    panels = ((registered("ttft_ms"), requests.ttft_ms), (registered("latency_ms"), requests.latency_ms))
    for ax, (metric, column) in zip(axes[0], panels):
        lowest, highest = math.inf, 0.0
        for step in in_steps:
            samples = column[measured & (requests.step == step)]
            values, share = cdf_points(samples)
            color = cmap(order.get(step, 0) / max(1, len(in_steps) - 1) * 0.9)
            ax.step(values, share, where="post", color=color, label=f"{labels.get(step, step)} (n={len(samples)})")
            lowest, highest = min(lowest, float(values[0])), max(highest, float(values[-1]))
        slo_ms = per_request_ms.get(metric.slo_name or "")
        if slo_ms is not None:
            ax.axvline(slo_ms, color=SLO_COLOR, linestyle="-.", label=f"SLO {metric.slo_name} ≤ {slo_ms:g} ms")
        for limit in step_limits:  # a percentile limit is a point the CDF must pass left of
            if limit.metric == metric.slo_name and limit.stat.startswith("p"):
                ax.plot(limit.limit_ms, float(limit.stat[1:]) / 100, marker="X", markersize=10, linestyle="none",
                        color=SLO_COLOR, label=limit.label)  # fmt: skip
        log_axis_if_wide(ax, lowest, highest)
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


def timeline_figure(requests: Requests, steps: list[Step], title: str) -> Figure:
    sent_s, end_s = requests.sent_s, requests.end_s
    start_s = float(min(np.min(sent_s), np.min(requests.scheduled_s), 0.0))
    stop_s = float(np.max(end_s))
    figure, axes = new_figure(3, 1, 12, 8, f"Timeline — {title}", sharex=True)
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
        k = every_kth(len(failed_end_s))
        shown = f", every {k}th shown" if k > 1 else ""
        in_flight_ax.plot(failed_end_s[::k], np.zeros(len(failed_end_s[::k])), "|", color=SLO_COLOR,
                          markersize=12, label=f"failed request ({len(failed_end_s)}{shown})")  # fmt: skip
    in_flight_ax.set_ylabel("Requests in flight")
    in_flight_ax.set_ylim(bottom=0)
    in_flight_ax.legend(fontsize=8, loc="upper left")

    # Output tokens per second, from each package's arrival and token count.
    counts = requests.tokens.per_bin(edges)
    output = registered("output_throughput_tok_s")
    tokens_ax.stairs(counts / width_s, edges, fill=True, color="#2ca02c", alpha=0.7,
                     label=f"{output.label.lower()} ({width_s:g} s bins)")  # fmt: skip
    tokens_ax.set_ylabel(output.title)
    tokens_ax.legend(fontsize=8, loc="upper left")

    # Each request's TTFT at its scheduled time: queueing shows as a rising cloud.
    with_output = requests.ok & ~np.isnan(requests.ttft_ms)
    k = every_kth(int(with_output.sum()))
    shown = f", every {k}th shown" if k > 1 else ""
    ttft = registered("ttft_ms")
    ttft_ax.scatter(requests.scheduled_s[with_output][::k], requests.ttft_ms[with_output][::k],
                    s=4, alpha=0.5, color="#9467bd", label=f"{ttft.label} of a request (at its scheduled time{shown})")  # fmt: skip
    ttft_ax.set_ylabel(ttft.title)
    ttft_ax.set_xlabel("Time since run start (s)")
    ttft_ax.set_ylim(bottom=0)
    ttft_ax.legend(fontsize=8, loc="upper left")

    shade_steps(axes[:, 0], requests, steps)
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
