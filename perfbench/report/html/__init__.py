"""report.html: one self-contained page about a run, readable offline and safe to open.

Built from the run directory (summary.json, requests.jsonl, telemetry.jsonl, comparison.json,
plots/*.png) and what the caller hands in: a comparison made now, and the earlier runs of the same
identity for the history trend (the caller reads the store; this package only renders). Nothing
is fetched: the style is inline, images are ``data:`` URIs, there is no script. Every piece of
text that came from the user or the server (prompts, errors, tags, model names, config values)
goes through ``html.escape``.

Top to bottom: the verdict (``perfbench.analysis.verdict``) and the alarm when requests failed, the
headline numbers, the SLOs per step, the search, the baseline comparison, the history, every
step's numbers, the plots, the failures, the telemetry and the environment.

Modules: ``_markup`` (style, escaping, tables, images), ``_top`` (verdict, alarm, headline),
``_sections`` (the run's own sections), ``_comparison`` (base against new), ``_history`` (the trend).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from perfbench.compare import Comparison
from perfbench.core.errors import ConfigError
from perfbench.report.html._comparison import comparison_section
from perfbench.report.html._history import HistoryRun, history_section
from perfbench.report.html._markup import e, page
from perfbench.report.html._sections import (
    environment_section, failures_section, plots_section, search_section, slo_section, steps_section, telemetry_section,
    turns_section,
)
from perfbench.report.html._top import alarm_section, headline_section, verdict_section
from perfbench.report.plots import literal_text, run_title
from perfbench.report.verdict import Verdict, failure_reasons, judge, ordered_steps, saved_verdict
from perfbench.results.runfiles import COMPARISON_FILE, TELEMETRY_FILE, iter_request_lines, read_comparison, read_summary

__all__ = ["HistoryRun", "write_html_report"]

log = logging.getLogger(__name__)

_SAMPLE_ERRORS = 3  # distinct error messages shown per failure reason and step


@dataclass
class _RequestFacts:
    """What the page needs from requests.jsonl, gathered in one streaming pass (no list of lines)."""

    samples: dict[tuple[int, str], list[str]] = field(default_factory=dict)  # {(step, reason): distinct error texts}
    output_tokens: int = 0  # output tokens of succeeded requests, for the telemetry's per-token figures

    def first_samples(self) -> dict[str, str]:
        """{reason: its first error text in any step}, for the alarm."""
        first: dict[str, str] = {}
        for (_, reason), texts in sorted(self.samples.items()):
            if texts:
                first.setdefault(reason, texts[0])
        return first


def _request_facts(run_dir: Path, summary: Mapping[str, Any]) -> _RequestFacts:
    """Error samples per step and reason (the summary's first one first) and the succeeded
    requests' output tokens; requests.jsonl is read only when failures or telemetry need it."""
    facts = _RequestFacts()
    for index, step in enumerate(summary.get("steps") or []):
        for reason, text in (step.get("failure_examples") or {}).items():
            if text:
                facts.samples[(index, str(reason))] = [str(text)]
    has_failures = any(step.get("failure_reasons") for step in summary.get("steps") or [])
    if not has_failures and not (run_dir / TELEMETRY_FILE).exists():
        return facts
    for line in iter_request_lines(run_dir):
        status = line.get("status")
        if status == "ok":
            facts.output_tokens += int(line.get("output_tokens") or 0)
        elif status and not line.get("warmup") and line.get("error"):
            errors = facts.samples.setdefault((int(line.get("step", 0)), str(status)), [])
            message = str(line["error"])
            if message not in errors and len(errors) < _SAMPLE_ERRORS:
                errors.append(message)
    return facts


def _saved_comparison(run_dir: Path) -> Comparison | None:
    """``run_dir/comparison.json`` as a Comparison; None when absent or unreadable (the report is shown without it)."""
    path = Path(run_dir) / COMPARISON_FILE
    try:
        saved = read_comparison(path)
        return None if saved is None else Comparison.from_dict(saved)
    except (ConfigError, ValueError, TypeError, KeyError) as exc:
        log.warning("%s is unreadable (%s); the report is written without the comparison", path, exc)
        return None


@literal_text  # its figures (baseline, history) draw data as written
def write_html_report(
    run_dir: Path, *, comparison: Comparison | None = None, history: Sequence[HistoryRun] = (),
    verdict: Verdict | None = None,
) -> Path:
    """Write ``run_dir/report.html`` and return its path.

    ``comparison`` is shown as given; without one, the run folder's own comparison.json (written
    when the run was checked against its baseline) is shown, so a rebuilt report keeps its verdict.
    ``history``: earlier runs of the same identity, for the trend (no section without them).
    ``verdict``: the run's (perfbench.analysis.verdict), shown as given; without one, the verdict
    summary.json holds, unless a new ``comparison`` was handed in (then the run is judged anew
    against it, as summary.json's verdict was not); a summary without a verdict is judged here.
    This only renders: no comparison is computed and no store is opened here.
    """
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    facts = _request_facts(run_dir, summary)
    if verdict is None and comparison is None:
        verdict = saved_verdict(summary)
    if comparison is None:
        comparison = _saved_comparison(run_dir)
    steps = summary.get("steps") or []
    if verdict is None:
        verdict = judge(summary, comparison)
    target = summary.get("target") or {}
    title = run_title(summary, run_dir)  # the figures' titles, as the run's own plots name it
    simulated = ' <span class="badge sim">simulated</span>' if target.get("simulated") else ""
    failed = sum(int(s.get("requests_failed") or 0) for s in steps)
    completed = failed + sum(int(s.get("requests_succeeded") or 0) for s in steps)
    search = summary.get("search")
    body = [
        f"<header><h1>{e(target.get('model') or 'perfbench run')}{simulated}</h1>",
        f'<div class="meta">{e(target.get("url"))} · {e(target.get("api"))} · started {e(summary.get("started_at"))}'
        f" · perfbench {e(summary.get('perfbench_version'))}</div></header><main>",
        verdict_section(verdict),
        alarm_section(failure_reasons(summary, facts.first_samples()), failed, completed),
        headline_section(ordered_steps(summary), comparison),
        slo_section(summary),
        search_section(search) if isinstance(search, Mapping) else "",
        comparison_section(comparison, run_dir, title) if comparison is not None else "",
        history_section(history, summary, title),
        steps_section(summary),
        turns_section(summary),
        plots_section(run_dir),
        failures_section(summary, facts.samples),
        telemetry_section(run_dir, facts.output_tokens),
        environment_section(summary),
        f"<footer>Generated by perfbench from {e(run_dir.name)}; rebuild with "
        f"<code>perfbench report {e(run_dir)}</code>.</footer></main>",
    ]
    page_title = f"{verdict.word}: perfbench {target.get('model') or 'run'} — {summary.get('started_at') or ''}"
    path = run_dir / "report.html"
    path.write_text(page(page_title, "".join(body)), encoding="utf-8")
    return path
