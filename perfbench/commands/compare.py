"""``perfbench compare BASE NEW``: the command line and the side-by-side table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from perfbench.core.cliutil import OneLineArgumentParser, check_writable_file
from perfbench.compare._bootstrap import CONFIDENCE
from perfbench.compare._model import Comparison, format_value
from perfbench.compare._runs import compare_runs
from perfbench.compare._thresholds import DEFAULT_THRESHOLDS, parse_thresholds
from perfbench.core.errors import ConfigError, PerfbenchError
from perfbench.results.runfiles import write_comparison


def render_comparison(comparison: Comparison, console: Any) -> None:
    """Print the side-by-side table: values, % change (coloured) with its CI, verdict.

    Red: significantly worse; green: significantly better; plain: within noise.
    """
    from rich.table import Table

    title = f"perfbench compare ({comparison.confidence:.0%} CI, bootstrap by request)"
    if comparison.client_bound:  # a change in such a step may be the client's, not the server's
        title += f" — CLIENT-BOUND steps: {', '.join(comparison.client_bound)}"
    table = Table(
        title=title,
        caption=f"base: {comparison.base_dir}\nnew:  {comparison.new_dir}",
    )
    for header, justify in (
        ("step", "left"), ("metric", "left"), ("base", "right"), ("new", "right"),
        ("change", "right"), ("CI", "right"), ("limit", "right"), ("verdict", "left"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in comparison.rows:
        style = ""
        if row.significant and row.worse is not None:
            style = "red" if row.worse else "green"
        change = "-" if row.change_pct is None else f"[{style}]{row.change_pct:+.1f}%[/]" if style else f"{row.change_pct:+.1f}%"
        ci = "-" if row.ci_low_pct is None else f"{row.ci_low_pct:+.1f} .. {row.ci_high_pct:+.1f}%"
        limit = f"{row.threshold.max_change_pct:+g}%" if row.threshold else ""
        if row.regressed:
            verdict = "[bold red]REGRESSED[/]"
        elif row.unchecked:
            verdict = "[yellow]too few samples[/]"
        elif row.threshold is None:
            verdict = ""
        elif row.change_pct is None:
            verdict = "[yellow]no data[/]"
        else:
            verdict = "ok" if not (row.significant and row.worse) else "ok (within limit)"
        table.add_row(row.step, row.metric, format_value(row.base), format_value(row.new), change, ci, limit, verdict)
    console.print(table)
    if comparison.mismatch:
        from rich.markup import escape

        differ = escape("; ".join(comparison.mismatch))  # values are the user's (--extra-body), never markup
        console.print(f"[bold yellow]Not like for like (--allow-mismatch): the runs differ in {differ}[/]", highlight=False)
    for step in comparison.unmatched_steps:
        console.print(f"[yellow]step only in the {step}; not compared[/]")
    unchecked = [row for row in comparison.rows if row.unchecked]
    if unchecked:
        console.print(f"[yellow]{len(unchecked)} check(s) not made, too few samples behind the percentile "
                      f"(e.g. {unchecked[0].step} {unchecked[0].metric}: {unchecked[0].unchecked})[/]", highlight=False)
    regressed = [row for row in comparison.rows if row.regressed]
    if regressed:
        console.print(f"[bold red]{len(regressed)} regression(s):[/]")
        for row in regressed:
            console.print(f"  {row.describe()}", markup=False, highlight=False)
    else:
        console.print("[green]no regression[/]")


def main(argv: list[str]) -> int:
    """``perfbench compare BASE NEW [--threshold ...] [--junit FILE] [--json FILE]``.

    Returns 1 on regression, 0 otherwise, 2 on bad usage.
    """
    from rich.console import Console

    parser = OneLineArgumentParser(
        prog="perfbench compare",
        description="Compare two runs; exit 1 when a metric regressed past its threshold "
        "(point change past the limit AND its confidence interval excluding 0).",
    )
    parser.add_argument("base", help="baseline: a run directory, a run id from the store, 'last' or 'tag:KEY=VALUE'")
    parser.add_argument("new", type=Path, help="the new run directory")
    parser.add_argument(
        "--threshold", default=None, metavar="METRIC=±PCT%,...",
        help="limits replacing the defaults, e.g. ttft_ms.p99=+10%%,output_throughput_tok_s=-5%% "
        "(default: p50/p99 of ttft/tpot/itl/latency +10%%, output and request throughput -5%%)",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write the checks as JUnit XML")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the comparison as JSON")
    parser.add_argument("--store", type=Path, metavar="PATH", help="run store for run ids (default: user data dir)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="compare runs whose identities (target, model, API, simulated, workload, load) differ, saying so")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--confidence", type=float, default=CONFIDENCE, help=f"CI level (default {CONFIDENCE})")
    console = Console()
    try:
        args = parser.parse_args(argv)
        if not 0 <= args.seed < 2**63:  # numpy's generators take no negative seed
            raise ConfigError(f"--seed {args.seed} is out of range; use an integer from 0 to 2**63-1")
        if not 0.5 <= args.confidence < 1.0:
            raise ConfigError(f"--confidence {args.confidence} out of range; give a level in [0.5, 1), e.g. 0.99")
        thresholds = parse_thresholds(args.threshold) if args.threshold is not None else DEFAULT_THRESHOLDS
        for path, flag in ((args.junit, "--junit"), (args.json, "--json")):
            if path is not None:  # before the comparison: a bad output path is a usage error, not a traceback after it
                check_writable_file(path, flag)
        base_dir = resolve_base(args.base, args.store, new_dir=args.new)
        comparison = compare_runs(base_dir, args.new, thresholds, seed=args.seed, confidence=args.confidence,
                                  allow_mismatch=args.allow_mismatch)
    except PerfbenchError as exc:
        Console(stderr=True).print(f"perfbench: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    render_comparison(comparison, console)
    if args.junit:
        from perfbench.report.junit import write_junit

        write_junit(args.junit, comparison=comparison)
    if args.json:
        write_comparison(args.json, comparison.to_dict())
    return 1 if comparison.regressed else 0


def resolve_base(spec: str, store_path: Path | None, *, new_dir: Path | None = None) -> Path:
    """A directory as is (no store touched); anything else is looked up in the run store.

    With ``new_dir``, ``last`` and ``tag:`` pick only runs of its identity, and never ``new_dir`` itself.
    """
    if Path(spec).is_dir():
        return Path(spec)
    from perfbench.results.identity import run_identity
    from perfbench.results.runfiles import read_summary
    from perfbench.results.store import RunStore, check_baseline_spec, default_store_path, resolve_baseline

    check_baseline_spec(spec)  # a mistyped directory: say so before opening (or creating) a store
    with RunStore(store_path or default_store_path()) as store:
        identity = run_identity(read_summary(new_dir)) if new_dir is not None else None
        return resolve_baseline(spec, store, identity=identity, exclude_dir=new_dir)
