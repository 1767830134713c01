"""A run's finishing work, as a list of stages: each a function of the run directory, the config and what earlier stages found.

    prepare -> run steps (perfbench.benchmark.runner.execute) -> finish (here)

Stages, in order: the run's identity (into summary.json), the baseline comparison, the run's
verdict (perfbench.analysis.verdict: computed once, into summary.json and onto the terminal), JUnit,
plots and report.html, the run history (its ``check=`` tag), exports (requests.parquet, and each
``--export`` format). Each reads the run's files (never the engine); whether the run passed is the
verdict's alone: JUnit, report.html, the history tag and the exit code are derived from it. A
failing convenience (history, JUnit) never costs the run's other outputs. The CLI only calls
``finish_run`` and returns its exit code. To add a stage: write ``def _stage(ctx) -> None`` and put
it in ``STAGES`` where it belongs.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from perfbench.core.cliutil import print_error
from perfbench.core.errors import ConfigError
from perfbench.report.shown import data_text
from perfbench.results.runfiles import COMPARISON_FILE, OutputError, write_comparison, write_summary

if TYPE_CHECKING:  # the verdict (numpy, compare) is imported when a run finishes, not when the CLI starts
    from perfbench.analysis.verdict import Verdict


def open_store(config: Any) -> Any:
    """The run history store of ``--store`` (default in the user's data directory)."""
    from perfbench.results.store import RunStore, default_store_path

    return RunStore(Path(config.store) if config.store else default_store_path())


@dataclass
class FinishContext:
    """What the stages share: the run, and what earlier stages found."""

    config: Any  # the RunConfig
    outcome: Any  # the RunOutcome of perfbench.benchmark.runner.execute
    console: Any  # a rich Console
    baseline_dir: Path | None  # the resolved --baseline, if any
    identity: Any = None  # the run's perfbench.results.identity.RunIdentity, set by the first stage
    comparison: Any = None  # set by the comparison stage
    baseline_error: str | None = None  # why the baseline could not be compared with, set by the comparison stage
    verdict: Verdict | None = None  # the run's verdict, set by the verdict stage
    output_error: bool = False  # a file asked for (--junit) could not be written: exit 2 when the verdict passed
    files: list[str] = field(default_factory=lambda: ["summary.json", "summary.csv", "requests.jsonl"])

    @property
    def run_dir(self) -> Path:
        return self.outcome.run_dir

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.outcome.summary["steps"]


def _record_identity(ctx: FinishContext) -> None:
    from perfbench.results.identity import run_identity

    # Now, while the run's prompts file is as the run read it: its hash is the one part of the
    # identity that cannot be recomputed from summary.json later.
    ctx.identity = run_identity(ctx.outcome.summary)
    ctx.outcome.summary["identity"] = ctx.identity.to_dict()
    try:
        write_summary(ctx.run_dir, ctx.outcome.summary)
    except OutputError as exc:  # the summary without it is still whole (written aside, then renamed)
        ctx.console.print(data_text(f"summary.json keeps no identity ({exc}); comparisons recompute it from the config.", "yellow"))


def _compare_with_baseline(ctx: FinishContext) -> None:
    if ctx.baseline_dir is None:
        return
    from perfbench.report.comparison_table import render_comparison
    from perfbench.compare import DEFAULT_THRESHOLDS, compare_runs, parse_thresholds
    from perfbench.results.store import NoBaselineYet, is_store_lookup, resolve_baseline

    thresholds = parse_thresholds(ctx.config.thresholds) if ctx.config.thresholds else DEFAULT_THRESHOLDS
    try:
        if is_store_lookup(ctx.config.baseline):
            # Picked before the run from every identity (to refuse a bad spec early); now that this
            # run's identity is known, only a run like it may be its baseline.
            with open_store(ctx.config) as store:
                ctx.baseline_dir = resolve_baseline(ctx.config.baseline, store, identity=ctx.identity, exclude_dir=ctx.run_dir)
        ctx.comparison = compare_runs(ctx.baseline_dir, ctx.run_dir, thresholds, allow_mismatch=ctx.config.allow_mismatch)
    except NoBaselineYet as exc:  # the first run of this identity: it becomes the first baseline
        logging.getLogger(__name__).warning("%s; this run is not compared", exc)
        ctx.baseline_dir = None
        return
    except ConfigError as exc:  # e.g. another identity, no step in common: say so, but keep the run's report and history
        print_error(str(exc))
        ctx.baseline_error = str(exc)  # a failed check of the verdict (exit 2)
        ctx.baseline_dir = None
        return
    render_comparison(ctx.comparison, ctx.console)
    write_comparison(ctx.run_dir / COMPARISON_FILE, ctx.comparison.to_dict())


def _verdict(ctx: FinishContext) -> None:
    """The run's verdict, once, into summary.json beside the numbers it judges (the terminal shows it last)."""
    from perfbench.analysis.verdict import judge

    ctx.verdict = judge(ctx.outcome.summary, ctx.comparison, baseline_error=ctx.baseline_error)
    ctx.outcome.summary["verdict"] = ctx.verdict.to_dict()
    try:
        write_summary(ctx.run_dir, ctx.outcome.summary)
    except OutputError as exc:  # the summary without it is still whole (written aside, then renamed)
        ctx.console.print(f"[yellow]summary.json keeps no verdict ({exc}); report.html and the exit code still give it.[/]")


def _junit(ctx: FinishContext) -> None:
    if not ctx.config.junit:
        return
    from perfbench.report.junit import write_junit

    try:
        write_junit(Path(ctx.config.junit), comparison=ctx.comparison, steps=ctx.steps, verdict=ctx.verdict)
        ctx.console.print(data_text(f"JUnit: {ctx.config.junit}"))
    except OSError as exc:  # e.g. the disk went read-only during the run: keep the run's other outputs
        print_error(f"cannot write --junit {ctx.config.junit} ({exc.strerror or exc}); the run's files are kept, choose a writable path")
        ctx.output_error = True


def _reports(ctx: FinishContext) -> None:
    if not (ctx.config.plots and ctx.steps):
        return
    from perfbench.report.earlier_runs import earlier_runs_at
    from perfbench.report.html import write_html_report
    from perfbench.report.plots import write_plots
    from perfbench.results.store import default_store_path

    write_plots(ctx.run_dir)
    # The trend's earlier runs are read here (this run is recorded after, by _history): the page only renders.
    history = earlier_runs_at(Path(ctx.config.store) if ctx.config.store else default_store_path(), ctx.outcome.summary, ctx.run_dir)
    report = write_html_report(ctx.run_dir, comparison=ctx.comparison, history=history, verdict=ctx.verdict)
    ctx.console.print(data_text(f"Report: {report}"))


def _history(ctx: FinishContext) -> None:
    if ctx.outcome.interrupted or not ctx.steps:
        return
    tags = dict(ctx.config.tags)
    if ctx.config.baseline and ctx.verdict is not None:
        # "check=pass" marks a run whose verdict passed, its baseline met (or none there yet): `--baseline
        # tag:check=pass` is the last good run.
        tags["check"] = "pass" if ctx.verdict.passed else "fail"
    from perfbench.telemetry.gpu import local_gpu_info

    try:
        with open_store(ctx.config) as store:
            run_id = store.record_run(ctx.run_dir, tags, local_gpu_info)
        ctx.console.print(data_text(f"Recorded in the run history as {run_id}"))
    except (ConfigError, OSError, sqlite3.Error) as exc:  # the history is a convenience: never lose a finished run over it
        ctx.console.print(data_text(f"Could not record the run in the history ({exc}); use --store PATH.", "yellow"))


# requests.parquet is written by a child interpreter: pyarrow costs ~90 MB once loaded, which would
# otherwise sit on top of everything the run's process already holds (its peak memory).
_PARQUET_CHILD = """
import sys
from pathlib import Path
from perfbench.core.errors import PerfbenchError
from perfbench.report.tables import write_requests_parquet
try:
    sys.exit(0 if write_requests_parquet(Path(sys.argv[1])) else 3)
except PerfbenchError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def _exports(ctx: FinishContext) -> None:
    import subprocess

    if not ctx.steps:
        return
    done = subprocess.run([sys.executable, "-c", _PARQUET_CHILD, str(ctx.run_dir)], capture_output=True, text=True)
    if done.returncode == 0:
        ctx.files.append("requests.parquet")
    elif done.returncode == 2:  # e.g. the disk filled: one line, exit 2, the other files kept
        raise OutputError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "cannot write requests.parquet")
    elif done.returncode != 3:  # 3: no pyarrow, nothing to write
        ctx.console.print(data_text(f"requests.parquet not written: {(done.stderr.strip().splitlines() or ['?'])[-1]}", "yellow"))
    from perfbench.results.exports import exporter

    for name in ctx.config.export:
        ctx.files += [path.name for path in exporter(name)(ctx.run_dir, ctx.outcome.summary)]


STAGES: tuple[Callable[[FinishContext], None], ...] = (
    _record_identity, _compare_with_baseline, _verdict, _junit, _reports, _history, _exports,
)


def finish_run(config: Any, outcome: Any, console: Any, baseline_dir: Path | None) -> int:
    """Run every finishing stage; return the run's exit code (DESIGN.md: 0, 1, 2, 3 or 130), the verdict's."""
    from perfbench.analysis.verdict import EXIT_ALL_FAILED, every_request_failed, run_exit_code
    from perfbench.report.terminal import render_verdict

    ctx = FinishContext(config, outcome, console, baseline_dir)
    for stage in STAGES:
        stage(ctx)
    console.print(data_text(f"Files: {ctx.run_dir}/ ({', '.join(ctx.files)})"))
    if outcome.interrupted:
        console.print(data_text(f"Interrupted ({outcome.stopped_by or 'Ctrl-C'}): the summary covers the requests that finished.", "yellow"))
    assert ctx.verdict is not None
    render_verdict(console, ctx.verdict)
    code = run_exit_code(ctx.verdict, interrupted=outcome.interrupted, output_error=ctx.output_error)
    if code == EXIT_ALL_FAILED:  # the last line: after summary.json and the report are written
        print_error(every_request_failed(ctx.steps) or "every request failed")
    return code
