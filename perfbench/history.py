"""`perfbench history`: list recorded runs, or show one metric's trend (table and PNG)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

from perfbench.cliutil import OneLineArgumentParser
from perfbench.errors import ConfigError, PerfbenchError
from perfbench.option_values import parse_tags
from perfbench.metrics import DISTRIBUTIONS, METRICS, RATE, STATISTICS, metric_of
from perfbench.redact import redact_url
from perfbench.runfiles import step_label
from perfbench.store import RunInfo, RunStore, default_store_path

_STEP_COUNTS = ("duration_s", "requests_succeeded", "requests_failed")  # step facts a trend can follow, besides the metrics


def check_metric(metric: str) -> str:
    """The metric name if a STEP of summary.json has it; ConfigError listing the choices."""
    if metric_of(metric) is not None or metric in _STEP_COUNTS:
        return metric
    scalars = [m.key for m in METRICS if m.kind == RATE] + list(_STEP_COUNTS)
    raise ConfigError(
        f"unknown metric {metric!r}; use DISTRIBUTION.STAT ({', '.join(m.key for m in DISTRIBUTIONS)} with "
        f"{'|'.join(STATISTICS)}) or one of {', '.join(scalars)}"
    )


def _tags(info: RunInfo) -> str:
    return ", ".join(f"{k}={v}" for k, v in info.tags.items())


def _steps(info: RunInfo) -> str:
    return ", ".join(step_label(s) for s in info.summary.get("steps") or [])


def plot_trend(trend: Sequence[tuple[RunInfo, float | None]], metric: str, path: Path) -> None:
    """A PNG of the metric over the runs, one point per run, labelled by start date."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(info, value) for info, value in trend if value is not None]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=110)
    try:
        ax.plot(range(len(points)), [v for _, v in points], marker="o", color="#2563eb")
        ax.set_xticks(range(len(points)), [info.started_at[:16].replace("T", "\n") for info, _ in points], fontsize=7)
        ax.set_ylabel(metric)
        ax.set_title(f"perfbench history: {metric}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)


def main(argv: list[str]) -> int:
    """``perfbench history [--store PATH] [--tag k=v] [--metric M] [--concurrency N] [--plot FILE] [--limit N]``."""
    from rich.console import Console
    from rich.table import Table

    parser = OneLineArgumentParser(prog="perfbench history", description="List recorded runs or a metric's trend.")
    parser.add_argument("--store", type=Path, metavar="PATH", help="run store (default: %(default)s)",
                        default=default_store_path())
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="only runs with this tag")
    parser.add_argument("--metric", metavar="METRIC", help="show this metric's trend, e.g. ttft_ms.p99")
    parser.add_argument("--concurrency", type=int, metavar="N", help="trend of the step with this concurrency "
                        "(default: each run's first step)")
    parser.add_argument("--plot", type=Path, metavar="FILE", help="with --metric: also write the trend as a PNG")
    parser.add_argument("--limit", type=int, default=50, metavar="N", help="newest N runs (default %(default)s)")
    console = Console()
    try:
        args = parser.parse_args(argv)
        if args.limit < 1:
            raise ConfigError(f"--limit {args.limit} is not positive; give a number of runs >= 1")
        if args.plot and not args.metric:
            raise ConfigError("--plot needs --metric; e.g. --metric ttft_ms.p99 --plot trend.png")
        tag = parse_tags(args.tag)
        metric = check_metric(args.metric) if args.metric else None
        if args.concurrency is not None and args.concurrency < 1:
            raise ConfigError(f"--concurrency {args.concurrency} is not positive; give a step's concurrency >= 1")
        try:
            store_exists = args.store.exists()
        except OSError as exc:  # e.g. a name over 255 bytes
            raise ConfigError(f"--store {args.store}: {exc.strerror or exc}; pass another --store PATH") from None
        if not store_exists:
            raise ConfigError(f"no run store at {args.store}; record a run first or pass --store PATH")
        with RunStore(args.store) as store:
            if metric is None:
                runs = store.list_runs(tag=tag, limit=args.limit)
                table = Table(title=f"perfbench runs ({args.store})")
                table.add_column("run id", no_wrap=True, min_width=23)  # ids are copied into --baseline
                for column in ("started (UTC)", "model", "target", "steps", "GPU", "version", "tags"):
                    table.add_column(column)
                for info in runs:
                    # redact_url: a run stored before URLs were redacted must not show its password here either
                    target = "simulated" if info.simulated else redact_url(info.target_url or "")
                    table.add_row(info.run_id, info.started_at, info.model or "", target, _steps(info),
                                  info.gpu_name or "", info.perfbench_version or "", _tags(info))
            else:
                trend = store.metric_trend(metric, tag=tag, concurrency=args.concurrency)[-args.limit :]
                step = f"concurrency {args.concurrency}" if args.concurrency else "first step"
                table = Table(title=f"{metric} ({step})")
                table.add_column("run id", no_wrap=True, min_width=23)
                for column in ("started (UTC)", "model", metric, "change", "tags"):
                    table.add_column(column, justify="right" if column in (metric, "change") else "left")
                previous = None
                for info, value in trend:
                    change = ""
                    if value is not None and previous:
                        change = f"{(value / previous - 1) * 100:+.1f}%"
                    table.add_row(info.run_id, info.started_at, info.model or "",
                                  "-" if value is None else f"{value:,.2f}", change, _tags(info))
                    previous = value if value is not None else previous
                if args.plot:
                    plot_trend(trend, metric, args.plot)
    except sqlite3.Error as exc:  # damage that the checks on opening did not see
        exc = ConfigError(f"{args.store} is not a perfbench run store ({exc}); pass another --store PATH")
        Console(stderr=True).print(f"perfbench: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except PerfbenchError as exc:
        Console(stderr=True).print(f"perfbench: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    console.print(table)
    if args.plot:
        console.print(f"trend plot: {args.plot}", markup=False, highlight=False)
    return 0
