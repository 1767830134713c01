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

report.html draws two more in memory, from inputs it is given rather than the run's own files:
``baseline_figure`` (TTFT, ITL and latency CDFs of base against new, per matched step) and
``trend_figure`` (the headline metrics over earlier runs of the same identity); ``png_bytes`` turns
either into the bytes it embeds.

``perfbench plot DIR`` runs ``main``. matplotlib is imported inside the functions (it costs
~0.3 s) and only its object API is used (``Figure``, Agg by file type), never pyplot's global state.

Modules: ``_inputs`` (what the figures draw, read from the run's files), ``_drawing`` (what every
figure shares), ``_across_steps`` (capacity, percentiles), ``_requests`` (latency CDF, timeline),
``_telemetry`` (telemetry.jsonl and its figure), ``_baseline`` (base against new), ``_history`` (the trend).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from perfbench.core.cliutil import OneLineArgumentParser, print_error
from perfbench.core.errors import PerfbenchError
from perfbench.core.printable import printable
from perfbench.report.plots._across_steps import capacity_figure, percentiles_figure
from perfbench.report.plots._drawing import literal_text
from perfbench.report.plots._baseline import BASELINE_METRICS, MatchedStep, baseline_figure, step_distributions
from perfbench.report.plots._history import TrendLine, TrendPanel, trend_figure
from perfbench.report.plots._inputs import knee_of, read_requests, read_slos, read_steps, run_title
from perfbench.report.plots._requests import cdf_figure, timeline_figure
from perfbench.report.plots._telemetry import telemetry_figure, telemetry_series
from perfbench.results.runfiles import read_summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PLOTS_DIR = "plots"
_DPI = 110


__all__ = [
    "BASELINE_METRICS", "MatchedStep", "TrendLine", "TrendPanel", "baseline_figure", "main", "png_bytes", "run_title",
    "literal_text", "step_distributions", "trend_figure", "write_plots",
]  # fmt: skip


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes, at the plots' resolution (for a ``data:`` URI: no file written)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


@literal_text
def write_plots(run_dir: Path) -> list[Path]:
    """Write the run's plots into ``run_dir/plots/``; returns the files written.

    Raises:
        ConfigError: ``run_dir`` has no readable summary.json, or a damaged requests.jsonl.
    """
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    requests = read_requests(run_dir)
    steps = read_steps(summary)
    out_dir = run_dir / PLOTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    title = run_title(summary, run_dir)
    step_limits, per_request_ms = read_slos(summary)

    figures: list[tuple[str, Figure | None]] = []
    if len(steps) >= 2:
        knee, knee_source = knee_of(summary, steps)
        max_passing = (summary.get("search") or {}).get("max_passing")
        figures.append(("capacity.png", capacity_figure(steps, step_limits, knee, knee_source, max_passing, title)))
    if steps:
        figures.append(("percentiles.png", percentiles_figure(steps, step_limits, title)))
    if requests.measured.any():
        figures.append(("latency_cdf.png", cdf_figure(requests, steps, step_limits, per_request_ms, title)))
    if len(requests.step):
        figures.append(("timeline.png", timeline_figure(requests, steps, title)))
    telemetry = telemetry_series(run_dir)
    if telemetry:
        figures.append(("telemetry.png", telemetry_figure(telemetry, requests, steps, title)))

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
        print_error(str(exc))
        return exc.exit_code
    for path in written:
        print(printable(str(path)))
    if not written:
        print(f"{printable(str(args.run_dir))}: nothing to plot (no steps, no requests)")
    return 0
