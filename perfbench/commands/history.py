"""`perfbench history`: list recorded runs (by tag and identity), or show one metric's trend (table and PNG);
`perfbench history tag|untag|rm RUN`: manage them."""

from __future__ import annotations

import re
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from perfbench.core.cliutil import OneLineArgumentParser, print_error
from perfbench.core.errors import ConfigError, PerfbenchError
from perfbench.core.numbers import format_number
from perfbench.core.printable import printable
from perfbench.results.identity import RunIdentity, run_identity
from perfbench.results.store import parse_tags
from perfbench.metrics import DISTRIBUTIONS, METRICS, RATE, STATISTICS, metric_of
from perfbench.core.redact import redact_url
from perfbench.results.runfiles import read_summary, step_label
from perfbench.results.store import RunInfo, RunStore, default_store_path

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
    from perfbench.report.plots import literal_text

    literal_text(_plot_trend)(trend, metric, path)  # the store's dates are drawn as written, never as mathtext


def _plot_trend(trend: Sequence[tuple[RunInfo, float | None]], metric: str, path: Path) -> None:
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


_MANAGE = ("tag", "untag", "rm")  # `perfbench history tag RUN K=V...`, `untag RUN K...`, `rm RUN`


def _store_argument(parser: OneLineArgumentParser) -> None:
    parser.add_argument("--store", type=Path, metavar="PATH", help="run store (default: %(default)s)",
                        default=default_store_path())


@contextmanager
def _existing_store(path: Path) -> Iterator[RunStore]:
    """The store at ``path``; ConfigError when there is none (listing must not create one) or it is damaged."""
    try:
        store_exists = path.exists()
    except OSError as exc:  # e.g. a name over 255 bytes
        raise ConfigError(f"--store {path}: {exc.strerror or exc}; pass another --store PATH") from None
    if not store_exists:
        raise ConfigError(f"no run store at {path}; record a run first or pass --store PATH")
    store = RunStore(path)
    try:
        yield store
    except sqlite3.Error as exc:  # damage that the checks on opening did not see
        raise ConfigError(f"{path} is not a perfbench run store ({exc}); pass another --store PATH") from None
    finally:
        store.close()


def _identity_filter(store: RunStore, identity: str | None, like: str | None) -> RunIdentity | str | None:
    """``--identity HASH`` (a prefix will do) or the identity of ``--like RUN`` (a run directory or id)."""
    if identity and like:
        raise ConfigError("give --identity HASH or --like RUN, not both")
    if identity:
        if not re.fullmatch(r"[0-9a-f]{1,64}", identity):
            raise ConfigError(f"--identity {identity!r} is not an identity hash; copy one from the identity column of `perfbench history`")
        return identity
    if like:
        summary = read_summary(Path(like)) if Path(like).is_dir() else store.get(like).summary
        return run_identity(summary)
    return None


def _find(store: RunStore, spec: str) -> RunInfo:
    """A run named by its directory or its id (or a unique prefix); ConfigError when none."""
    if not Path(spec).is_dir():
        return store.get(spec)
    info = store.get_by_dir(Path(spec))
    if info is None:
        raise ConfigError(f"run directory {spec} is not in the run store ({store.path}); "
                          "pass a recorded run's id or directory (see `perfbench history`)")
    return info


def _manage(command: str, argv: list[str]) -> int:
    """``perfbench history tag RUN K=V...``, ``untag RUN K...``, ``rm RUN``: change the store, never a run folder."""
    parser = OneLineArgumentParser(prog=f"perfbench history {command}", description={
        "tag": "Set tags on a recorded run, e.g. promote it to the baseline: tag RUN check=pass.",
        "untag": "Take tags off a recorded run.",
        "rm": "Forget a run in the store; its folder is kept.",
    }[command])
    parser.add_argument("run", metavar="RUN", help="a run id (or a unique prefix) or a recorded run directory")
    if command != "rm":
        parser.add_argument("items", nargs="+", metavar="KEY=VALUE" if command == "tag" else "KEY")
    _store_argument(parser)
    args = parser.parse_args(argv)
    with _existing_store(args.store) as store:
        run_id = _find(store, args.run).run_id
        if command == "tag":
            info = store.add_tags(run_id, parse_tags(args.items))
        elif command == "untag":
            info = store.remove_tags(run_id, [item.partition("=")[0] for item in args.items])  # K=V names its key too
        else:
            info = store.remove(run_id)
            print(printable(f"removed {info.run_id} from {args.store}; its folder {info.run_dir} is kept"))
            return 0
    print(printable(f"{info.run_id}: {_tags(info) or 'no tags'}"))  # tags are the user's, kept in the store
    return 0


def _list(argv: list[str]) -> tuple[Any, str | None]:
    """The table of runs, or of one metric's trend (and the PNG's path, when one was asked for).

    Every title and cell is the store's data (a model name, a tag, a URL): shown through
    ``data_text``, never read as markup, control characters escaped."""
    from rich.table import Table

    from perfbench.report.shown import data_text

    parser = OneLineArgumentParser(prog="perfbench history", description="List recorded runs or a metric's trend; "
                                   "manage them with `perfbench history tag|untag|rm RUN ...`.")
    _store_argument(parser)
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="only runs with this tag")
    parser.add_argument("--identity", metavar="HASH", help="only runs of this identity (its hash, or the start of it)")
    parser.add_argument("--like", metavar="RUN", help="only runs of the identity of RUN (a run directory or id)")
    parser.add_argument("--metric", metavar="METRIC", help="show this metric's trend, e.g. ttft_ms.p99")
    parser.add_argument("--concurrency", type=int, metavar="N", help="trend of the step with this concurrency "
                        "(default: each run's first step)")
    parser.add_argument("--plot", type=Path, metavar="FILE", help="with --metric: also write the trend as a PNG")
    parser.add_argument("--limit", type=int, default=50, metavar="N", help="newest N runs (default %(default)s)")
    args = parser.parse_args(argv)
    if args.limit < 1:
        raise ConfigError(f"--limit {args.limit} is not positive; give a number of runs >= 1")
    if args.plot and not args.metric:
        raise ConfigError("--plot needs --metric; e.g. --metric ttft_ms.p99 --plot trend.png")
    tag = parse_tags(args.tag)
    metric = check_metric(args.metric) if args.metric else None
    if args.concurrency is not None and args.concurrency < 1:
        raise ConfigError(f"--concurrency {args.concurrency} is not positive; give a step's concurrency >= 1")
    with _existing_store(args.store) as store:
        identity = _identity_filter(store, args.identity, args.like)
        of = ""
        if identity is not None:
            of = f", identity {identity.describe() if isinstance(identity, RunIdentity) else identity}"
        if metric is None:
            runs = store.list_runs(tag=tag, limit=args.limit, identity=identity)
            table = Table(title=data_text(f"perfbench runs ({args.store}{of})"))
            table.add_column("run id", no_wrap=True, min_width=23)  # ids are copied into --baseline
            table.add_column("identity", no_wrap=True)  # hashes are copied into --identity
            for column in ("started (UTC)", "model", "target", "steps", "GPU", "version", "tags"):
                table.add_column(column)
            for info in runs:
                # redact_url: a run stored before URLs were redacted must not show its password here either
                target = "simulated" if info.simulated else redact_url(info.target_url or "")
                cells = (info.run_id, info.identity.hash, info.started_at, info.model or "", target, _steps(info),
                         info.gpu_name or "", info.perfbench_version or "", _tags(info))
                table.add_row(*map(data_text, cells))
            return table, None
        trend = store.metric_trend(metric, tag=tag, concurrency=args.concurrency, identity=identity)[-args.limit :]
    step = f"concurrency {args.concurrency}" if args.concurrency else "first step"
    table = Table(title=data_text(f"{metric} ({step}{of})"))
    table.add_column("run id", no_wrap=True, min_width=23)
    for column in ("started (UTC)", "model", metric, "change", "tags"):
        table.add_column(column, justify="right" if column in (metric, "change") else "left")
    previous = None
    for info, value in trend:
        change = ""
        if value is not None and previous:
            change = f"{(value / previous - 1) * 100:+.1f}%"
        table.add_row(data_text(info.run_id), data_text(info.started_at), data_text(info.model or ""),
                      format_number(value), change, data_text(_tags(info)))
        previous = value if value is not None else previous
    if args.plot:
        plot_trend(trend, metric, args.plot)
        return table, f"trend plot: {args.plot}"
    return table, None


# Columns given up first when the runs table is wider than the terminal (the ids people copy stay).
_DROPPED_FIRST = ("version", "GPU", "started (UTC)", "steps", "target", "tags", "model")


def _fitted(console: Any, table: Any) -> tuple[Any, list[str]]:
    """``table`` without the columns of _DROPPED_FIRST, in order, until it fits the console; and what went."""
    from rich.measure import Measurement
    from rich.table import Table

    def width(t: Any) -> int:
        return Measurement.get(console, console.options.update(width=100_000), t).maximum

    dropped: list[str] = []
    columns = list(table.columns)
    for header in _DROPPED_FIRST:
        if width(table) <= console.width:
            break
        if header not in [c.header for c in columns]:
            continue
        dropped.append(header)
        columns = [c for c in columns if c.header != header]
        narrower = Table(title=table.title)
        for column in columns:
            narrower.add_column(column.header, justify=column.justify, no_wrap=column.no_wrap, min_width=column.min_width)
        for row in zip(*(list(column.cells) for column in columns)):
            narrower.add_row(*row)
        table = narrower
    return table, dropped


def main(argv: list[str]) -> int:
    """``perfbench history [--store PATH] [--tag k=v] [--identity HASH|--like RUN] [--metric M] [--concurrency N]
    [--plot FILE] [--limit N]``, or ``perfbench history tag|untag|rm RUN ...``."""
    from rich.console import Console

    try:
        if argv and argv[0] in _MANAGE:
            return _manage(argv[0], list(argv[1:]))
        table, note = _list(list(argv))
    except PerfbenchError as exc:
        print_error(str(exc))
        return exc.exit_code
    console = Console()
    table, dropped = _fitted(console, table)
    console.print(table)
    if dropped:
        console.print(f"(not shown at {console.width} columns: {', '.join(dropped)}; a wider terminal shows them)",
                      markup=False, highlight=False, style="dim")
    if note:
        console.print(printable(note), markup=False, emoji=False, highlight=False)
    return 0
