"""``perfbench report DIR``: rebuild a run's plots and report.html, with its baseline comparison and
history trend. The comparison (``--baseline``) and the history (the run store) are gathered here
and handed to the page builder, which only renders."""

from __future__ import annotations

from pathlib import Path

from perfbench.core.cliutil import OneLineArgumentParser, print_error
from perfbench.core.errors import PerfbenchError
from perfbench.core.printable import printable
from perfbench.results.runfiles import read_summary


def main(argv: list[str]) -> int:
    """``perfbench report DIR [--baseline DIR|RUN_ID|last|tag:K=V] [--store PATH] [--allow-mismatch]``."""
    parser = OneLineArgumentParser(prog="perfbench report", description="Rebuild a run's plots and report.html.")
    parser.add_argument("run_dir", type=Path, help="the run directory")
    parser.add_argument("--baseline", metavar="DIR|RUN_ID", help="compare with this run (a directory, a run id, "
                        "'last' or 'tag:KEY=VALUE'); without it, the run's own comparison.json is shown")
    parser.add_argument("--store", type=Path, metavar="PATH", help="run store for run ids and the history trend "
                        "(default: user data dir)")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="with --baseline: compare although the runs' identities differ, saying so")
    try:
        args = parser.parse_args(argv)
        from perfbench.compare import compare_runs, resolve_base
        from perfbench.report.earlier_runs import earlier_runs_at
        from perfbench.report.html import write_html_report
        from perfbench.report.plots import write_plots
        from perfbench.results.store import default_store_path

        summary = read_summary(args.run_dir)  # a clear error before plotting anything
        comparison = None
        if args.baseline:
            baseline = resolve_base(args.baseline, args.store, new_dir=args.run_dir)
            comparison = compare_runs(Path(baseline), args.run_dir, allow_mismatch=args.allow_mismatch)
        write_plots(args.run_dir)
        history = earlier_runs_at(args.store or default_store_path(), summary, args.run_dir)
        path = write_html_report(args.run_dir, comparison=comparison, history=history)
    except PerfbenchError as exc:
        print_error(str(exc))
        return exc.exit_code
    print(f"report: {printable(str(path))}")
    return 0
