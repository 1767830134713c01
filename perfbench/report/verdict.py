"""What report.html needs beside the run's verdict: its headline numbers and the steps in the order
a reader compares them. The verdict itself (its checks, their sentences, the failure reasons) is
``perfbench.analysis.verdict``'s, computed once for the exit code, the terminal, the page, JUnit and
the history; its names are re-exported here for the page's modules. Nothing here writes markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from perfbench.analysis.verdict import (
    FAIL, PASS, WARN, Check, FailureReason, Verdict, describe_change, failure_reasons, format_load, judge, metric_name,
    saved_verdict, search_sentence, slo_name,
)
from perfbench.metrics import METRICS, RATE, Metric

__all__ = [
    "FAIL", "PASS", "WARN", "Check", "FailureReason", "Headline", "Verdict", "describe_change", "failure_reasons",
    "format_load", "headline_numbers", "judge", "metric_name", "ordered_steps", "saved_verdict", "search_sentence", "slo_name",
]  # fmt: skip


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
