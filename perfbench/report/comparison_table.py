"""The side-by-side table of a comparison on the terminal (``perfbench compare`` and a run's ``--baseline``).

The runs' folders, step labels, metric names and differences come from their files: each is shown
through ``data_text`` (never markup, no control character)."""

from __future__ import annotations

from typing import Any

from perfbench.compare._model import Comparison
from perfbench.core.numbers import format_number
from perfbench.report.shown import data_text


def render_comparison(comparison: Comparison, console: Any) -> None:
    """Print the side-by-side table: values, % change (coloured) with its CI, verdict.

    Red: significantly worse; green: significantly better; plain: within noise.
    """
    from rich.table import Table
    from rich.text import Text

    title = f"perfbench compare ({comparison.confidence:.0%} CI, bootstrap by request)"
    if comparison.client_bound:  # a change in such a step may be the client's, not the server's
        title += f" — CLIENT-BOUND steps: {', '.join(comparison.client_bound)}"
    table = Table(
        title=title,
        caption=Text("\n").join([data_text(f"base: {comparison.base_dir}"), data_text(f"new:  {comparison.new_dir}")]),
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
        table.add_row(data_text(row.step), data_text(row.metric), format_number(row.base), format_number(row.new), change, ci, limit, verdict)
    console.print(table)
    if comparison.mismatch:  # values are the user's (--extra-body)
        console.print(data_text(f"Not like for like (--allow-mismatch): the runs differ in {'; '.join(comparison.mismatch)}", "bold yellow"))
    for step in comparison.unmatched_steps:
        console.print(data_text(f"step only in the {step}; not compared", "yellow"))
    unchecked = [row for row in comparison.rows if row.unchecked]
    if unchecked:
        console.print(data_text(f"{len(unchecked)} check(s) not made, too few samples behind the percentile "
                                f"(e.g. {unchecked[0].step} {unchecked[0].metric}: {unchecked[0].unchecked})", "yellow"))
    regressed = [row for row in comparison.rows if row.regressed]
    if regressed:
        console.print(f"[bold red]{len(regressed)} regression(s):[/]")
        for row in regressed:
            console.print(data_text(f"  {row.describe()}"))
    else:
        console.print("[green]no regression[/]")
