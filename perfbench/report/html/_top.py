"""The top of the page, what a reader sees first: the verdict and why, the alarm when requests
failed, and the headline numbers of every step (with their change against the baseline)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from perfbench.compare import Comparison, MetricComparison
from perfbench.report.html._markup import badge, e, num, table
from perfbench.report.verdict import FAIL, WARN, FailureReason, Verdict, headline_numbers
from perfbench.results.runfiles import step_label, step_metric

MAX_DETAILS = 5  # lines under a check in the verdict box


def _why(verdict: Verdict) -> str:
    failed = [c.name for c in verdict.checks if c.state == FAIL]
    warned = [c.name for c in verdict.checks if c.state == WARN]
    if failed:
        text = "Failed on " + ", ".join(failed)
        return text + (f"; warnings on {', '.join(warned)}." if warned else ".")
    if warned:
        return "Passed, with warnings on " + ", ".join(warned) + "."
    return "Every check passed: " + ", ".join(c.name for c in verdict.checks) + "."


def verdict_section(verdict: Verdict) -> str:
    """PASSED or FAILED in words and colour, then each check with its sentence and details."""
    items = []
    for check in verdict.checks:
        details = "".join(f"<li>{e(d)}</li>" for d in check.details[:MAX_DETAILS])
        if len(check.details) > MAX_DETAILS:  # the verdict stays one screen; the sections below list them all
            details += f'<li class="muted">and {len(check.details) - MAX_DETAILS} more, in the sections below</li>'
        items.append(
            f'<li class="{check.state}" data-check="{e(check.name)}" data-kind="{e(check.kind)}">{badge(check.state)} '
            f"<b>{e(check.name)}</b>: {e(check.reason)}{f'<ul>{details}</ul>' if details else ''}</li>"
        )
    notes = "".join(f'<p class="muted">{e(n)}</p>' for n in verdict.notes)
    return (
        f'<section class="verdict {verdict.state}" id="verdict" data-verdict="{verdict.word}">'
        f'<p class="word">{verdict.word}</p><p class="why">{e(_why(verdict))}</p>'
        f'<ul class="checks">{"".join(items)}</ul>{notes}</section>'
    )


def alarm_section(reasons: Sequence[FailureReason], total_failed: int, total: int, top: int = 5) -> str:
    """The red box when requests failed: the most frequent reasons, each with one error text as sent."""
    if not reasons:
        return ""
    rows = [
        [f'<code class="nowrap">{e(r.reason)}</code>', num(r.count), e(", ".join(r.steps)),
         f"<code>{e(r.sample)}</code>" if r.sample else '<span class="muted">no error text</span>']
        for r in reasons[:top]
    ]
    more = len(reasons) - top
    rest = f'<p class="muted">{more} more reason(s) in the Failures section.</p>' if more > 0 else ""
    share = f" ({total_failed / total:.1%})" if total else ""
    return (
        f'<section class="alarm" id="alarm"><h2>{total_failed:,} of {total:,} requests failed{share}</h2>'
        + table(["reason", "count", "steps", "sample error"], rows, [False, True, False, False])
        + rest + "</section>"
    )


def _change(row: MetricComparison | None) -> str:
    """The change against the baseline under a headline value, coloured when the CI excludes 0."""
    if row is None or row.change_pct is None:
        return ""
    css = ""
    if row.significant and row.worse is not None:
        css = " worse" if row.worse else " better"
    if row.regressed:  # short, so a ladder of 8 steps still fits a laptop's width
        return f'<span class="change worse regressed" title="regressed">{row.change_pct:+.1f} % ✗</span>'
    return f'<span class="change{css}">{row.change_pct:+.1f} %</span>'


def headline_section(steps: Sequence[Mapping[str, Any]], comparison: Comparison | None) -> str:
    """The headline numbers (names and units from the metric registry), a column per step."""
    rows_by = {(row.step, row.metric): row for row in (comparison.rows if comparison else ())}
    rows = []
    for headline in headline_numbers():
        values = [step_metric(step, headline.spec) for step in steps]
        if all(v is None for v in values):  # what applies: an embeddings run has no TTFT
            continue
        cells = [num(v) + _change(rows_by.get((step_label(s), headline.spec))) for s, v in zip(steps, values)]
        rows.append([e(f"{headline.name} ({headline.metric.unit})"), *cells])
    if not rows:
        return ""
    note = ""
    if comparison is not None:
        note = ('<p class="muted">Under each value: its change against the baseline, in colour when its '
                f"{comparison.confidence:.0%} confidence interval excludes no change; ✗ marks a failed regression check.</p>")
    return (
        '<section id="headline"><h2>Headline numbers</h2>'
        + table(["metric", *(e(step_label(s)) for s in steps)], rows, [False] + [True] * len(steps), attrs=' class="fit"')
        + note + "</section>"
    )

