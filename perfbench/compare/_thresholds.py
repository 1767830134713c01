"""Regression thresholds: which metrics compare checks by default, and ``--threshold`` text parsed into limits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from perfbench.core.errors import ConfigError
from perfbench.metrics import DISTRIBUTION, METRICS, RATE, metric_of


# What compare shows, from the metric registry: the compared distributions at these statistics, and the compared rates.
DISTRIBUTIONS = tuple(m.key for m in METRICS if m.compared and m.kind == DISTRIBUTION)
STATISTICS = ("mean", "p50", "p90", "p95", "p99")
THROUGHPUTS = tuple(m.key for m in METRICS if m.compared and m.kind == RATE)


@dataclass(frozen=True, slots=True)
class Threshold:
    """How far a metric may move before it counts as a regression."""

    metric: str  # "ttft_ms.p99" (distribution.statistic) or a throughput name
    max_change_pct: float  # signed: +10 = may rise 10 %, -5 = may fall 5 %


def _known_metric(metric: str) -> bool:
    if metric in THROUGHPUTS:
        return True
    name, _, stat = metric.partition(".")
    return name in DISTRIBUTIONS and stat in STATISTICS


def higher_is_better(metric: str) -> bool:
    """Whether ``metric`` (a threshold's spec, ``ttft_ms.p99``) improves by rising, as throughputs do."""
    known = metric_of(metric)
    return known is not None and known.higher_is_better


_THRESHOLD_RE = re.compile(r"^\s*([a-z_]+(?:\.[a-z0-9]+)?)\s*=\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*$")


def parse_thresholds(text: str) -> tuple[Threshold, ...]:
    """Parse ``"ttft_ms.p99=+10%,output_throughput_tok_s=-5%"``.

    An unsigned limit takes the bad direction of its metric (latencies may rise,
    throughputs may fall), so ``ttft_ms.p99=10%`` means ``+10%``.
    """
    thresholds: dict[str, Threshold] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        match = _THRESHOLD_RE.match(part)
        if not match:
            raise ConfigError(
                f"bad threshold {part.strip()!r}; write METRIC=+PCT% or METRIC=-PCT%, "
                "e.g. ttft_ms.p99=+10%,output_throughput_tok_s=-5%"
            )
        metric, sign, number = match.groups()
        if not _known_metric(metric):
            known = ", ".join([f"{d}.{{{'|'.join(STATISTICS)}}}" for d in DISTRIBUTIONS] + list(THROUGHPUTS))
            raise ConfigError(f"unknown threshold metric {metric!r}; use one of {known}")
        value = float(number)
        if sign == "-" or (not sign and higher_is_better(metric)):
            value = -value
        thresholds[metric] = Threshold(metric, value)
    if not thresholds:
        raise ConfigError("empty --threshold; give e.g. ttft_ms.p99=+10%")
    return tuple(thresholds.values())


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = tuple(Threshold(spec, pct) for m in METRICS for spec, pct in m.threshold_specs())
