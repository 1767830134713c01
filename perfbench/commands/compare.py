"""``perfbench compare BASE NEW``: the command line and the side-by-side table."""

from __future__ import annotations

from pathlib import Path

from perfbench.core.cliutil import OneLineArgumentParser, check_writable_file, print_error
from perfbench.compare._bootstrap import CONFIDENCE
from perfbench.compare._runs import compare_runs, resolve_base
from perfbench.compare._thresholds import DEFAULT_THRESHOLDS, parse_thresholds
from perfbench.core.errors import ConfigError, PerfbenchError
from perfbench.report.comparison_table import render_comparison
from perfbench.results.runfiles import write_comparison


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
        print_error(str(exc))
        return exc.exit_code
    render_comparison(comparison, console)
    if args.junit:
        from perfbench.report.junit import write_junit

        write_junit(args.junit, comparison=comparison)
    if args.json:
        write_comparison(args.json, comparison.to_dict())
    return 1 if comparison.regressed else 0


