"""What every figure shares: its frame, colours, marker budget, metric names (from the registry) and step shading."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

import numpy as np

from perfbench import metrics
from perfbench.report.plots._inputs import Requests, Step

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


SLO_COLOR = "#d62728"
KNEE_COLOR = "#ff7f0e"
PCT_STYLES = {"p50": ("-", "o"), "p90": (":", "^"), "p99": ("--", "s")}
_MAX_CDF_POINTS = 5_000  # points of a CDF line: its steps at evenly spaced ranks, min and max included
_Drawing = TypeVar("_Drawing", bound=Callable[..., Any])


def literal_text(draw: _Drawing) -> _Drawing:
    """``draw`` with every text it makes or saves taken as written: a ``$`` in a model name, a run's
    folder or a step label read from a file is no mathtext (a bad formula would raise while saving)."""

    @functools.wraps(draw)
    def drawn(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return drawn  # type: ignore[return-value]


_MAX_MARKERS = 100_000  # scatter/tick markers drawn per series; past it every k-th (a million markers look the same, cost seconds)


def new_figure(rows: int, cols: int, width: float, height: float, title: str, **kwargs: Any) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False, **kwargs)
    figure.suptitle(title, fontsize=11)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    return figure, axes


def registered(key: str) -> metrics.Metric:
    """A metric's declaration: plots take every name and unit they show from the registry."""
    return metrics.METRICS_BY_KEY[key]


def every_kth(count: int, limit: int = _MAX_MARKERS) -> int:
    """The stride that keeps at most ``limit`` of ``count`` markers."""
    return max(1, -(-count // limit))


def cdf_points(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of ``samples`` as (sorted values, share of samples <= each), at most
    _MAX_CDF_POINTS of them: the same curve from fewer points, ranks evenly spaced, ends kept."""
    values = np.sort(samples)
    share = np.arange(1, len(values) + 1) / max(1, len(values))
    if len(values) > _MAX_CDF_POINTS:
        ranks = np.unique(np.linspace(0, len(values) - 1, _MAX_CDF_POINTS).round().astype(np.int64))
        values, share = values[ranks], share[ranks]
    return values, share


def log_axis_if_wide(ax: Axes, lowest: float, highest: float) -> None:
    """A log x axis when the values span orders of magnitude, so every curve shows; plain numbers on it."""
    if lowest > 0 and highest / lowest > 50:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def shade_steps(axes: Iterable[Axes], requests: Requests, steps: list[Step]) -> None:
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
