"""The history trend: the headline metrics over earlier runs of the same identity and this one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from perfbench import metrics
from perfbench.report.plots._drawing import PCT_STYLES, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLUMNS = 3
_MAX_TICKS = 12  # run labels shown under an axis; past it every k-th


@dataclass(frozen=True)
class TrendLine:
    step: str  # the step's label, "c=4"
    stat: str | None  # "p50", "p99"; None for a rate
    values: Sequence[float | None]  # one per run, oldest first, this run last; None: the run has no such value


@dataclass(frozen=True)
class TrendPanel:
    metric: metrics.Metric
    lines: Sequence[TrendLine]


def trend_figure(run_labels: Sequence[str], panels: Sequence[TrendPanel], title: str) -> Figure | None:
    """One panel per metric, one line per (step, statistic), runs along x with this run (the last)
    ringed. None without a panel that has a value."""
    panels = [p for p in panels if any(v is not None for line in p.lines for v in line.values)]
    if not panels or not run_labels:
        return None
    from matplotlib import colormaps

    rows = math.ceil(len(panels) / _COLUMNS)
    columns = min(_COLUMNS, len(panels))
    figure, axes = new_figure(rows, columns, 4.4 * columns, 3.0 * rows + 0.6, f"History — {title}")
    colors = colormaps["tab10"]
    steps = list(dict.fromkeys(line.step for p in panels for line in p.lines))
    x = list(range(len(run_labels)))
    stride = max(1, math.ceil(len(run_labels) / _MAX_TICKS))
    for ax, panel in zip(axes.flat, panels):
        for line in panel.lines:
            points = [(i, v) for i, v in zip(x, line.values) if v is not None]
            if not points:
                continue
            style, marker = PCT_STYLES.get(line.stat or "", ("-", "o"))
            color = colors(steps.index(line.step) % 10)
            label = " ".join(filter(None, [line.step if len(steps) > 1 else "", line.stat])) or None
            ax.plot([i for i, _ in points], [v for _, v in points], linestyle=style, marker=marker, markersize=4,
                    color=color, label=label)
            if points[-1][0] == x[-1]:  # this run: ringed, so today's point stands out
                ax.plot(points[-1][0], points[-1][1], marker="o", markersize=10, markerfacecolor="none",
                        markeredgecolor="#111827", linestyle="none")
        ax.set_title(panel.metric.title, fontsize=10)
        ax.set_xticks(x[::stride], [run_labels[i] for i in x[::stride]], fontsize=7)
        ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_ylim(bottom=0)
        if any(line.stat for line in panel.lines) or len(steps) > 1:
            ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return figure
