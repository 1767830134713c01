"""The baseline comparison: base against new as overlaid distributions (TTFT, ITL, latency CDFs),
and every compared metric's change with its confidence interval."""

from __future__ import annotations

import logging
from pathlib import Path

from perfbench.compare import Comparison
from perfbench.core.errors import ConfigError
from perfbench.report.html._markup import badge, e, figure, num, table
from perfbench.report.verdict import metric_name
from perfbench.results.runfiles import read_summary, step_label

log = logging.getLogger(__name__)

MAX_OVERLAID_STEPS = 4  # rows of CDFs drawn; a longer ladder's other steps are in the table


def _distributions(comparison: Comparison, run_dir: Path, title: str) -> str:
    """The CDFs of base and new per matched step, drawn now from both runs' requests.jsonl; a note
    instead when the base run's folder is gone or damaged (its numbers stay in the table)."""
    from perfbench.report.plots import MatchedStep, baseline_figure, png_bytes, step_distributions

    base_dir = Path(comparison.base_dir)
    try:
        base_steps = read_summary(base_dir)["steps"]
        new_steps = read_summary(run_dir)["steps"]
        labels = list(dict.fromkeys(row.step for row in comparison.rows))
        base_index = {step_label(s): i for i, s in reversed(list(enumerate(base_steps)))}  # the first of a label
        new_index = {step_label(s): i for i, s in reversed(list(enumerate(new_steps)))}
        pairs = [(label, base_index[label], new_index[label]) for label in labels if label in base_index and label in new_index]
        if not pairs:
            return ""
        base, new = step_distributions(base_dir), step_distributions(run_dir)
    except ConfigError as exc:
        log.info("no distributions against the baseline: %s", exc)
        return f'<p class="muted">The baseline\'s requests could not be read ({e(exc)}): no distributions to overlay.</p>'
    shown = pairs[:MAX_OVERLAID_STEPS]
    matched = [MatchedStep(label, base.get(i, {}), new.get(j, {})) for label, i, j in shown]
    drawn = baseline_figure(matched, title)
    if drawn is None:
        return ""
    more = f" The first {len(shown)} of {len(pairs)} matched steps are drawn." if len(pairs) > len(shown) else ""
    return figure(png_bytes(drawn), "baseline distributions",
                  "Share of requests at or below each value (CDF), base dashed grey, this run solid blue; "
                  "a curve to the right is slower." + more)


def comparison_section(comparison: Comparison, run_dir: Path, title: str) -> str:
    rows = []
    for row in comparison.rows:
        css = ""
        if row.significant and row.worse is not None:
            css = "worse" if row.worse else "better"
        change = "-" if row.change_pct is None else f'<span class="{css}">{row.change_pct:+.1f} %</span>'
        ci = "-" if row.ci_low_pct is None else f"{row.ci_low_pct:+.1f} … {row.ci_high_pct:+.1f} %"
        limit = f"{row.threshold.max_change_pct:+g} %" if row.threshold else ""
        verdict = badge("fail", "regressed") if row.regressed else (badge("pass", "ok") if row.threshold else "")
        if row.unchecked:
            verdict = f'{badge("warn", "not checked")} <span class="muted">{e(row.unchecked)}</span>'
        name, unit = metric_name(row.metric)
        metric = f'{e(name)}{f" ({e(unit)})" if unit else ""} <span class="muted"><code>{e(row.metric)}</code></span>'
        rows.append([e(row.step), metric, num(row.base), num(row.new), change, ci, limit, verdict])
    regressed = sum(r.regressed for r in comparison.rows)
    banner = (
        f'<div class="banner bad">Regression against the baseline: {regressed} check(s) failed.</div>'
        if comparison.regressed
        else '<div class="banner good">No regression against the baseline.</div>'
    )
    unmatched = "".join(f'<p class="muted">Step only in the {e(s)}; not compared.</p>' for s in comparison.unmatched_steps)
    if comparison.mismatch:  # compared with --allow-mismatch: the verdict is not like for like
        banner += ('<div class="banner warn" id="mismatch">Not like for like: the runs differ in '
                   + "; ".join(e(d) for d in comparison.mismatch) + " (compared with --allow-mismatch).</div>")
    return (
        f'<section id="comparison"><h2>Comparison with the baseline</h2>{banner}'
        f'<p class="muted">Baseline: <code>{e(comparison.base_dir)}</code>. A check fails when the change is past '
        f"its limit and its {comparison.confidence:.0%} confidence interval (bootstrap over requests) excludes 0.</p>"
        + _distributions(comparison, run_dir, title)
        + table(["step", "metric", "base", "new", "change", f"{comparison.confidence:.0%} CI", "limit", "verdict"], rows,
                [False, False, True, True, True, True, True, False], attrs=' id="comparison-table"')
        + unmatched + "</section>"
    )
