"""A run's verdict as plain data: passed or failed, and why, in sentences; its headline numbers,
its search result and its failure reasons. report.html renders these; nothing here writes markup
(every string is plain text, escaped by whoever renders it) or reads a file.

The checks follow the run's own exit code where it has one (DESIGN.md): a step that missed its
SLOs, a regression against the baseline and a run in which every request failed each fail it.
Two more fail the page although the run exits 0, because a limit the user gave was missed: a
ladder stopped by ``--max-failure-rate``, and a max-load search in which even the first load
missed the SLOs. Some failed requests, an interrupted run and a comparison that is not like for
like are warnings: the numbers stand, but a reader must know.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from perfbench.compare import Comparison, MetricComparison
from perfbench.core.numbers import format_number
from perfbench.metrics import METRICS, RATE, SLO_METRICS, Metric, metric_of
from perfbench.results.runfiles import step_label

PASS, WARN, FAIL = "pass", "warn", "fail"  # a check's state, worst last
_TOP_REASONS = 5  # failure reasons named in the alarm; the failures section lists them all


@dataclass(frozen=True, slots=True)
class Check:
    """One thing the run was held to, and how it went."""

    name: str  # what was checked: "SLOs", "Regression", "Requests", ...
    state: str  # PASS, WARN or FAIL
    text: str  # one sentence saying how it went
    details: tuple[str, ...] = ()  # one line per step, metric or reason behind the sentence


@dataclass(frozen=True, slots=True)
class Verdict:
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()  # what a reader should know that is no check (nothing was limited)

    @property
    def state(self) -> str:
        states = {check.state for check in self.checks}
        return FAIL if FAIL in states else WARN if WARN in states else PASS

    @property
    def passed(self) -> bool:
        return self.state != FAIL

    @property
    def word(self) -> str:
        return "PASSED" if self.passed else "FAILED"


@dataclass(frozen=True, slots=True)
class Headline:
    """One headline number: a rate, or one statistic of a distribution."""

    metric: Metric
    stat: str | None  # "p50", "p99"; None for a rate

    @property
    def spec(self) -> str:
        """Its name in summary.json and comparison.json: ``ttft_ms.p99``, ``output_throughput_tok_s``."""
        return self.metric.key if self.stat is None else f"{self.metric.key}.{self.stat}"

    @property
    def name(self) -> str:
        return self.metric.label if self.stat is None else f"{self.metric.label} {self.stat}"


def headline_numbers() -> tuple[Headline, ...]:
    """The numbers a run is judged by: each metric the regression check guards by default, at the
    statistics it guards (the registry's thresholds), so the page's headline and the check agree."""
    return tuple(
        Headline(metric, None if metric.kind == RATE else stat)
        for metric in METRICS
        for stat, _ in metric.thresholds
    )


def ordered_steps(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The steps as a reader compares them: a search's probes by load (they ran out of order while
    bisecting), a ladder as it ran."""
    steps = list(summary.get("steps") or [])
    if not isinstance(summary.get("search"), Mapping):
        return steps

    def load(step: Mapping[str, Any]) -> float:
        value = step.get("rate_req_s") if step.get("rate_req_s") is not None else step.get("concurrency")
        return float(value) if isinstance(value, (int, float)) else 0.0

    return sorted(steps, key=load)


def format_load(dimension: str, load: float | None) -> str:
    """A search's load in words: ``concurrency 8``, ``12.5 req/s``."""
    if load is None:
        return "-"
    return f"concurrency {load:g}" if dimension == "concurrency" else f"{load:g} req/s"


def slo_name(name: str) -> str:
    """``ttft_p99`` as a person reads it: ``TTFT p99`` (names from the registry)."""
    metric, _, stat = name.partition("_")
    known = SLO_METRICS.get(metric)
    return f"{known.label} {stat}" if known else name


def metric_name(spec: str) -> tuple[str, str]:
    """A comparison row's metric (``ttft_ms.p99``) as (human name, unit): (``TTFT p99``, ``ms``)."""
    metric = metric_of(spec)
    if metric is None:
        return spec, ""
    _, _, stat = spec.partition(".")
    return (f"{metric.label} {stat}" if stat else metric.label), metric.unit


def describe_change(row: MetricComparison, confidence: float) -> str:
    """``c=4 TTFT p99: 12.1 ms -> 25.3 ms, +109.1 % (95 % CI +80.2 to +130.0 %), limit +10 %``."""
    name, unit = metric_name(row.metric)
    text = f"{row.step} {name}: {format_number(row.base, unit)} → {format_number(row.new, unit)}"
    if row.change_pct is not None:
        text += f", {row.change_pct:+.1f} %"
    if row.ci_low_pct is not None and row.ci_high_pct is not None:
        text += f" ({confidence:.0%} CI {row.ci_low_pct:+.1f} to {row.ci_high_pct:+.1f} %)"
    if row.threshold is not None:
        text += f", limit {row.threshold.max_change_pct:+g} %"
    return text


def search_sentence(search: Mapping[str, Any], *, subject: bool = True) -> str:
    """The max-load search's answer in words: the highest load that met the SLOs, why the search
    stopped, and the knee (the terminal prints the same facts: dimension, max_passing, knee).
    Without ``subject`` it starts "Searched over concurrency ...", for a line already named "Max-load search"."""
    dimension = str(search.get("dimension") or "concurrency")
    best, knee = search.get("max_passing"), search.get("knee")
    probes = search.get("probes") or []
    loads = [p.get("load") for p in probes if isinstance(p, Mapping) and isinstance(p.get("load"), (int, float))]
    reason = search.get("stop_reason")
    unit = "" if dimension == "concurrency" else " req/s"
    tried = f" ({len(loads)} probes from {min(loads):g} to {max(loads):g}{unit})" if loads else ""
    lead = "Max-load search over " if subject else "Searched over "
    if best is None:
        first = format_load(dimension, loads[0]) if loads else "the first load"
        return f"{lead}{dimension}{tried}: even {first} missed the SLOs, so no load passed."
    text = f"{lead}{dimension}{tried}: the highest load that met the SLOs is {format_load(dimension, best)}"
    if reason == "max_load":
        text += ", the search's maximum: the true limit may be higher"
    elif reason == "saturated":
        text += "; the server saturated there (more load bought little throughput while latency climbed), so it is a lower bound"
    elif reason == "bisected" and isinstance(search.get("precision"), (int, float)):
        text += f", found to within {search['precision']:.0%}"
    text += ". "
    if knee is None:
        return text + ("No knee was found in the probes (one needs throughput to level off while latency "
                       "climbs at a higher load).")
    return text + f"The knee, where throughput stops rising while latency climbs, is at {format_load(dimension, knee)}."


@dataclass(frozen=True, slots=True)
class FailureReason:
    reason: str  # the short stable name: http_500, timeout, ...
    count: int  # over every step
    steps: tuple[str, ...]  # the steps it happened in
    sample: str | None  # one error text the server or client gave for it


def failure_reasons(summary: Mapping[str, Any], samples: Mapping[str, str] | None = None) -> list[FailureReason]:
    """Every failure reason over the run, most frequent first, each with one sample error: the summary's
    first one, else ``samples`` (gathered from requests.jsonl for a summary written before it kept them)."""
    counts: Counter[str] = Counter()
    steps: dict[str, list[str]] = {}
    found: dict[str, str] = {}
    for step in summary.get("steps") or []:
        for reason, count in (step.get("failure_reasons") or {}).items():
            counts[str(reason)] += int(count)
            steps.setdefault(str(reason), []).append(step_label(step))
        for reason, text in (step.get("failure_examples") or {}).items():
            if text:
                found.setdefault(str(reason), str(text))
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [FailureReason(r, n, tuple(dict.fromkeys(steps[r])), found.get(r) or (samples or {}).get(r)) for r, n in ordered]


def _slo_check(steps: Sequence[Mapping[str, Any]]) -> Check | None:
    judged = [s for s in steps if s.get("slo_results")]
    if not judged:
        return None
    missed = [s for s in judged if s.get("slo_passed") is False]
    if not missed:
        limits = dict.fromkeys(f"{slo_name(r['name'])} ≤ {r['limit_ms']:g} ms" for s in judged for r in s["slo_results"])
        return Check("SLOs", PASS, f"Every step met its SLOs ({', '.join(limits)}).")
    details = []
    for step in missed:
        for result in step["slo_results"]:
            if not result.get("passed"):
                value = result.get("value_ms")
                measured = "no value (no request succeeded)" if value is None else format_number(value, "ms")
                details.append(f"{step_label(step)}: {slo_name(result['name'])} {measured}, limit {result['limit_ms']:g} ms")
    return Check("SLOs", FAIL, f"{len(missed)} of {len(judged)} steps missed their SLOs.", tuple(details))


def _search_check(search: Mapping[str, Any]) -> Check:
    state = FAIL if search.get("max_passing") is None else PASS
    return Check("Max-load search", state, search_sentence(search, subject=False))


def _requests_check(summary: Mapping[str, Any]) -> Check:
    steps = summary.get("steps") or []
    ok = sum(int(s.get("requests_succeeded") or 0) for s in steps)
    failed = sum(int(s.get("requests_failed") or 0) for s in steps)
    reasons = tuple(f"{r.reason} × {r.count:,}" for r in failure_reasons(summary)[:_TOP_REASONS])
    if summary.get("stopped_early"):  # --max-failure-rate stopped the ladder: a limit the user gave was missed
        return Check("Requests", FAIL, f"The run stopped early: {summary['stopped_early']}.", reasons)
    if ok + failed == 0:
        return Check("Requests", WARN, "No request finished.")
    if ok == 0:
        return Check("Requests", FAIL, f"Every request failed ({failed:,} of {failed:,}).", reasons)
    if failed:
        share = failed / (ok + failed)
        return Check("Requests", WARN, f"{failed:,} of {ok + failed:,} requests failed ({share:.1%}); "
                     "the latency numbers cover the ones that succeeded.", reasons)
    return Check("Requests", PASS, f"All {ok:,} requests succeeded.")


def _comparison_checks(comparison: Comparison) -> list[Check]:
    checked = [row for row in comparison.rows if row.threshold is not None and not row.unchecked]
    # Worst first: a reader who looks at the first lines sees the largest changes.
    regressed = sorted((row for row in checked if row.regressed), key=lambda row: -abs(row.change_pct or 0.0))
    unmatched = tuple(f"step only in the {step}: not compared" for step in comparison.unmatched_steps)
    unchecked = [row for row in comparison.rows if row.unchecked]
    if unchecked:
        unmatched += (f"{len(unchecked)} percentile check(s) not made, too few samples behind them "
                      f"(e.g. {unchecked[0].step} {unchecked[0].metric}: {unchecked[0].unchecked})",)
    if regressed:
        check = Check("Regression", FAIL,
                      f"{len(regressed)} of {len(checked)} regression checks failed against the baseline.",
                      tuple(describe_change(row, comparison.confidence) for row in regressed) + unmatched)
    else:
        check = Check("Regression", PASS, f"No regression against the baseline ({len(checked)} checks within their limits).",
                      unmatched)
    checks = [check]
    if comparison.mismatch:
        checks.append(Check("Like for like", WARN, "The runs compared differ in " + "; ".join(comparison.mismatch)
                            + " (compared with --allow-mismatch): a change may come from that, not from the server."))
    return checks


def judge(summary: Mapping[str, Any], comparison: Comparison | None = None) -> Verdict:
    """The run's verdict from its summary.json and, when it was checked against a baseline, the comparison."""
    steps = summary.get("steps") or []
    checks: list[Check] = []
    search = summary.get("search")
    if isinstance(search, Mapping):
        checks.append(_search_check(search))  # a search's failing probes are its method, not a failure
    else:
        slo = _slo_check(steps)
        if slo is not None:
            checks.append(slo)
    if comparison is not None:
        checks += _comparison_checks(comparison)
    checks.append(_requests_check(summary))
    if summary.get("interrupted"):
        checks.append(Check("Interrupted", WARN, "The run was interrupted: the numbers cover the requests that finished."))
    notes = ()
    limited = comparison is not None or isinstance(search, Mapping) or any(s.get("slo_results") for s in steps)
    if not limited and all(check.state != FAIL for check in checks):  # a failed run has a louder problem
        notes = ("No step SLO and no baseline were given, so only the requests' success was checked; "
                 "add --slo ttft_p99=MS or --baseline last to hold the run to limits.",)
    return Verdict(tuple(checks), notes)

