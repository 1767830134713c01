"""The run's verdict, computed once, as data: passed or failed, and one check per thing the run was
held to, each with its kind, its result and the reason in a sentence.

summary.json keeps it (``"verdict": {"passed", "checks": [{"kind", "passed", "reason", ...}], "notes"}``)
and everything that says whether a run passed reads it from there or from the same object: the exit
code (``Verdict.exit_code``), the terminal, report.html, JUnit and the run history's ``check=`` tag,
so none of them can disagree. Nothing here writes a file, prints or renders markup: every string is
plain text, escaped by whoever renders it.

The checks (``kind``: what fails it):

    slo            a step missed one of its step limits (``--slo ttft_p99=...``); not for a search
    search         a max-load search in which no load passed (even the first missed the SLOs)
    failure_rate   ``--max-failure-rate``: a step failed more of its requests than the limit
    regression     a metric regressed against the baseline
    baseline       the baseline could not be compared with (the runs differ); exit 2
    like_for_like  never fails: a warning when runs compared with ``--allow-mismatch`` differ
    requests       every request failed (exit 3); some failed is a warning
    client         never fails: a warning when the client, not the server, was the limit in a step
                   (DESIGN.md "The client checks itself": exit codes are unchanged)
    baseline_client  never fails: the same of the baseline's steps
    interrupted    never fails: a warning that the numbers cover what finished

The two cases that once were decided twice, decided here once (DESIGN.md "Exit codes": 1 when a
threshold or regression check failed):

- A ladder stopped by ``--max-failure-rate`` **fails** (exit 1, FAILED, a JUnit failure,
  ``check=fail``): the failure rate is a limit the user gave, and a step went past it; a nightly
  job must not stay green while its server fails a fifth of its requests.
- A max-load search in which **no load passed fails** (exit 1): its answer is "no load meets the
  SLOs", the SLOs are limits the user gave, and a capacity of none is the run's finding, not its
  method. A search that found a passing load passes, whatever its other probes did (failing
  probes are how it searches); one interrupted before it answered is a warning, and so is one
  stopped because the client, not the server, was the limit (nothing past it is known).

Exit code (``Verdict.exit_code``): 0 when the verdict passed; else 3 when every request failed, 2
when the baseline could not be compared, 1 for any other failed check. An interrupted run whose
verdict passed exits 130; a file that could not be written exits 2: those are the caller's, not
the verdict's (``run_exit_code``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from perfbench.compare import Comparison, MetricComparison
from perfbench.core.numbers import format_number
from perfbench.metrics import CLIENT_FIX, SLO_METRICS, client_bound_reasons, metric_of
from perfbench.metrics.slo import split_name
from perfbench.results.runfiles import step_label

PASS, WARN, FAIL = "pass", "warn", "fail"  # a check's state, worst last

# Each check's kind, as summary.json, JUnit and the code name it, and its name as a reader sees it.
CHECK_NAMES: Mapping[str, str] = {
    "slo": "SLOs",
    "search": "Max-load search",
    "failure_rate": "Failure-rate limit",
    "regression": "Regression",
    "baseline": "Baseline",
    "like_for_like": "Like for like",
    "requests": "Requests",
    "client": "Client",
    "baseline_client": "Baseline's client",
    "interrupted": "Interrupted",
}

EXIT_PASSED, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_ALL_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# A failed check's exit code (DESIGN.md), and which wins when several failed: the last in this order.
_EXIT_OF_KIND: Mapping[str, int] = {"baseline": EXIT_USAGE, "requests": EXIT_ALL_FAILED}
_EXIT_PRIORITY = (EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_ALL_FAILED)
_TOP_REASONS = 5  # failure reasons named in the requests check; the report's failures section lists them all


@dataclass(frozen=True, slots=True)
class Check:
    """One thing the run was held to, and how it went."""

    kind: str  # a key of CHECK_NAMES: "slo", "regression", "requests", ...
    state: str  # PASS, WARN (passed, but a reader must know) or FAIL
    reason: str  # one sentence saying how it went
    details: tuple[str, ...] = ()  # one line per step, metric or reason behind the sentence

    @property
    def passed(self) -> bool:
        return self.state != FAIL

    @property
    def name(self) -> str:
        """Its name as a reader sees it: ``SLOs``, ``Regression``."""
        return CHECK_NAMES.get(self.kind, self.kind)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "passed": self.passed, "reason": self.reason,
                "warning": self.state == WARN, "details": list(self.details)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Check:
        state = FAIL if not d["passed"] else WARN if d.get("warning") else PASS
        return cls(str(d["kind"]), state, str(d["reason"]), tuple(str(x) for x in d.get("details") or ()))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The run's verdict: its checks, failed when any check failed."""

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

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def check(self, kind: str) -> Check | None:
        """The check of ``kind``, None when the run was not held to it."""
        return next((check for check in self.checks if check.kind == kind), None)

    @property
    def exit_code(self) -> int:
        """0 passed; 3 every request failed; 2 the baseline could not be compared; 1 another check failed."""
        codes = [_EXIT_OF_KIND.get(check.kind, EXIT_CHECK_FAILED) for check in self.failed]
        return max(codes, key=_EXIT_PRIORITY.index) if codes else EXIT_PASSED

    def to_dict(self) -> dict[str, Any]:
        """summary.json's ``verdict``."""
        return {"passed": self.passed, "checks": [check.to_dict() for check in self.checks], "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        """Inverse of ``to_dict``; KeyError, TypeError or ValueError for something else."""
        if not isinstance(d, Mapping) or not isinstance(d.get("checks"), list):
            raise ValueError("not a verdict")
        verdict = cls(tuple(Check.from_dict(c) for c in d["checks"]), tuple(str(n) for n in d.get("notes") or ()))
        if verdict.passed != bool(d.get("passed")):
            raise ValueError("its checks and its 'passed' disagree")
        return verdict


def run_exit_code(verdict: Verdict, *, interrupted: bool = False, output_error: bool = False) -> int:
    """The run's exit code (DESIGN.md): the verdict's when it failed; else 2 when a file the run was
    asked for could not be written, 130 when the run was interrupted, 0."""
    if not verdict.passed:
        return verdict.exit_code
    if output_error:
        return EXIT_USAGE
    return EXIT_INTERRUPTED if interrupted else EXIT_PASSED


def saved_verdict(summary: Mapping[str, Any]) -> Verdict | None:
    """The verdict summary.json holds; None when it holds none (written before verdicts were kept) or a damaged one."""
    saved = summary.get("verdict")
    if saved is None:
        return None
    try:
        return Verdict.from_dict(saved)
    except (KeyError, TypeError, ValueError):
        return None


# --- words ---------------------------------------------------------------------------------------


def format_load(dimension: str, load: float | None) -> str:
    """A search's load in words: ``concurrency 8``, ``12.5 req/s``."""
    if load is None:
        return "-"
    return f"concurrency {load:g}" if dimension == "concurrency" else f"{load:g} req/s"


def slo_name(name: str) -> str:
    """``ttft_p99`` as a person reads it: ``TTFT p99`` (names from the registry)."""
    metric, stat = split_name(name)
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
    """``c=4 TTFT p99: 12.10 ms -> 25.30 ms, +109.1 % (95 % CI +80.2 to +130.0 %), limit +10 %``."""
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
    loads: list[float] = [p["load"] for p in probes if isinstance(p, Mapping) and isinstance(p.get("load"), (int, float))]
    reason = search.get("stop_reason")
    unit = "" if dimension == "concurrency" else " req/s"
    tried = f" ({len(loads)} probes from {min(loads):g} to {max(loads):g}{unit})" if loads else ""
    lead = "Max-load search over " if subject else "Searched over "
    bound = [p["load"] for p in probes if isinstance(p, Mapping) and p.get("client_bound") and isinstance(p.get("load"), (int, float))]
    if best is None:
        first = format_load(dimension, loads[0]) if loads else "the first load"
        if reason == "client_bound":
            return (f"{lead}{dimension}{tried}: even {first} was client-bound (the client, not the server, was the limit), "
                    f"so no load of the server was measured; {CLIENT_FIX}.")
        return f"{lead}{dimension}{tried}: even {first} missed the SLOs, so no load passed."
    text = f"{lead}{dimension}{tried}: the highest load that met the SLOs is {format_load(dimension, best)}"
    if reason == "client_bound":
        at = f" at {format_load(dimension, min(bound))}" if bound else ""
        text += (f"; the search stopped because the client, not the server, was the limit{at} (client-bound), "
                 f"so it is a lower bound of the server's limit ({CLIENT_FIX})")
    elif reason == "max_load":
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


def every_request_failed(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """When requests finished and not one of any step succeeded: the line saying why, naming the
    most common reason, its count and its first error text
    (``every request failed: http_404 (100): HTTP 404: no such model``); else None."""
    reasons = failure_reasons({"steps": steps})
    if not steps or any(step.get("requests_succeeded") for step in steps) or not reasons:
        return None  # one success is enough; nothing finished: nothing failed either
    worst = reasons[0]  # the most common; a tie: the first name
    sample = f": {' '.join(worst.sample.split())}" if worst.sample else ""
    return f"every request failed: {worst.reason} ({worst.count}){sample}"


# --- the checks ----------------------------------------------------------------------------------


def _slo_check(steps: Sequence[Mapping[str, Any]]) -> Check | None:
    judged = [s for s in steps if s.get("slo_results")]
    if not judged:
        return None
    missed = [s for s in judged if s.get("slo_passed") is False]
    if not missed:
        limits = dict.fromkeys(f"{slo_name(r['name'])} ≤ {r['limit_ms']:g} ms" for s in judged for r in s["slo_results"])
        return Check("slo", PASS, f"Every step met its SLOs ({', '.join(limits)}).")
    details = []
    for step in missed:
        for result in step["slo_results"]:
            if not result.get("passed"):
                value = result.get("value_ms")
                measured = "no value (no request succeeded)" if value is None else format_number(value, "ms")
                details.append(f"{step_label(step)}: {slo_name(result['name'])} {measured}, limit {result['limit_ms']:g} ms")
    return Check("slo", FAIL, f"{len(missed)} of {len(judged)} steps missed their SLOs.", tuple(details))


def _search_check(search: Any) -> Check:
    if not isinstance(search, Mapping):  # the run was a search, stopped before it answered
        return Check("search", WARN, "The search was interrupted before it found the highest load that met the SLOs.")
    if search.get("stop_reason") == "client_bound":  # the client's limit, not the server's: nothing failed, nothing is known past it
        return Check("search", WARN, search_sentence(search, subject=False))
    state = FAIL if search.get("max_passing") is None else PASS
    return Check("search", state, search_sentence(search, subject=False))


def _failure_rate_check(summary: Mapping[str, Any], limit: Any) -> Check:
    stopped = summary.get("stopped_early")
    if stopped:
        return Check("failure_rate", FAIL, f"The ladder stopped early: {stopped}.")
    share = f"{limit:.0%}" if isinstance(limit, (int, float)) else str(limit)
    return Check("failure_rate", PASS, f"No step failed more than {share} of its requests (--max-failure-rate).")


def _client_check(steps: Sequence[Mapping[str, Any]]) -> Check | None:
    """A warning when the client, not the server, was the limit in some step (its numbers show the
    client's ceiling); nothing when it kept up, or when no step was checked (an older summary)."""
    bound = [(step, reasons) for step in steps if (reasons := client_bound_reasons(step)) is not None]
    if not bound:
        return None
    which = "the step" if len(steps) == 1 else f"{len(bound)} of {len(steps)} steps"
    return Check("client", WARN, f"In {which} the client, not the server, was the limit (client-bound), so those "
                 f"numbers show the client's ceiling; {CLIENT_FIX}.",
                 tuple(f"{step_label(step)}: {'; '.join(reasons)}" for step, reasons in bound))


def _requests_check(summary: Mapping[str, Any]) -> Check:
    steps = summary.get("steps") or []
    ok = sum(int(s.get("requests_succeeded") or 0) for s in steps)
    failed = sum(int(s.get("requests_failed") or 0) for s in steps)
    reasons = tuple(f"{r.reason} × {r.count:,}" for r in failure_reasons(summary)[:_TOP_REASONS])
    if ok + failed == 0:
        return Check("requests", WARN, "No request finished.")
    if ok == 0:
        return Check("requests", FAIL, f"Every request failed ({failed:,} of {failed:,}).", reasons)
    if failed:
        share = failed / (ok + failed)
        return Check("requests", WARN, f"{failed:,} of {ok + failed:,} requests failed ({share:.1%}); "
                     "the latency numbers cover the ones that succeeded.", reasons)
    return Check("requests", PASS, f"All {ok:,} requests succeeded.")


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
        check = Check("regression", FAIL,
                      f"{len(regressed)} of {len(checked)} regression checks failed against the baseline.",
                      tuple(describe_change(row, comparison.confidence) for row in regressed) + unmatched)
    else:
        check = Check("regression", PASS, f"No regression against the baseline ({len(checked)} checks within their limits).",
                      unmatched)
    checks = [check]
    if comparison.base_client_bound:  # this run's own client-bound steps are the client check's
        checks.append(Check("baseline_client", WARN, "In the baseline the client, not the server, was the limit in "
                            + ", ".join(comparison.base_client_bound) + ": a change there may be the client's."))
    if comparison.mismatch:
        checks.append(Check("like_for_like", WARN, "The runs compared differ in " + "; ".join(comparison.mismatch)
                            + " (compared with --allow-mismatch): a change may come from that, not from the server."))
    return checks


def judge(summary: Mapping[str, Any], comparison: Comparison | None = None, *, baseline_error: str | None = None) -> Verdict:
    """The run's verdict from its summary.json and, when it was checked against a baseline, the
    comparison (or, when that comparison was refused, why)."""
    steps = summary.get("steps") or []
    config: Mapping[str, Any] = summary["config"] if isinstance(summary.get("config"), Mapping) else {}
    search = summary.get("search")
    checks: list[Check] = []
    if isinstance(search, Mapping) or config.get("search"):
        checks.append(_search_check(search))  # a search's failing probes are its method, not a failure
    else:
        slo = _slo_check(steps)
        if slo is not None:
            checks.append(slo)
    if summary.get("stopped_early") or config.get("max_failure_rate") is not None:
        checks.append(_failure_rate_check(summary, config.get("max_failure_rate")))
    if comparison is not None:
        checks += _comparison_checks(comparison)
    elif baseline_error:
        checks.append(Check("baseline", FAIL, f"Not compared with the baseline: {baseline_error}."))
    checks.append(_requests_check(summary))
    client = _client_check(steps)
    if client is not None:
        checks.append(client)
    if summary.get("interrupted"):
        checks.append(Check("interrupted", WARN, "The run was interrupted: the numbers cover the requests that finished."))
    notes: tuple[str, ...] = ()
    limited = comparison is not None or baseline_error or any(c.kind in ("search", "slo", "failure_rate") for c in checks)
    if not limited and all(check.passed for check in checks):  # a failed run has a louder problem
        notes = ("No step SLO and no baseline were given, so only the requests' success was checked; "
                 "add --slo ttft_p99=MS or --baseline last to hold the run to limits.",)
    return Verdict(tuple(checks), notes)
