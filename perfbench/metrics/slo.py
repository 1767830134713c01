"""Service-level objectives: parse ``--slo`` text or a scenario's ``slo`` mapping into limits.

Two kinds of limit (DESIGN.md, "Command line"), all in milliseconds:

- a bare key (``ttft=500``, ``tpot=50``, ``itl=100``, ``latency=8000``) is a **per-request**
  limit: a succeeded request meeting all of them is "good", and goodput counts those;
- a key with a statistic (``ttft_p99=500``, ``latency_p90=8000``, ``itl_p99.9=80``,
  ``tpot_mean=40``) is a **step limit**: the step passes when that statistic of the step's
  distribution meets it.

Checking the limits against measurements is ``metrics.py``'s job; this module only parses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from perfbench.core.errors import ConfigError
from perfbench.metrics._registry import SLO_METRICS

METRICS = tuple(SLO_METRICS)  # the metrics an SLO may name: the registry's, "ttft", "tpot", "itl", "latency"


def _fix() -> str:
    names = list(SLO_METRICS)  # read when needed: the registry is the one list
    return f"use {', '.join(names[:-1])} or {names[-1]}, optionally with _p99/_mean"


@dataclass(frozen=True, slots=True)
class StepLimit:
    """A limit on one statistic of a step's distribution: ``stat(metric) <= limit_ms``."""

    metric: str  # its name in --slo, a key of perfbench.metrics.SLO_METRICS
    stat: str  # "mean" or "p<q>" with 0 < q <= 100, e.g. "p99", "p99.9"
    limit_ms: float  # the limit, in ms

    @property
    def name(self) -> str:
        """The key as written in ``--slo``, e.g. ``ttft_p99``."""
        return f"{self.metric}_{self.stat}"

    @property
    def percentile(self) -> float | None:
        """The percentile q of a ``p<q>`` stat, None for ``mean``."""
        return None if self.stat == "mean" else float(self.stat[1:])


@dataclass(frozen=True, slots=True)
class Slos:
    """All limits of a run. ``per_request_ms`` maps a metric's --slo name (SLO_METRICS) to its limit."""

    per_request_ms: Mapping[str, float]  # per-request limits, e.g. {"ttft": 500.0}
    step_limits: tuple[StepLimit, ...]  # step limits, in the order given

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], *, where: str = "slo") -> Slos:
        """Limits from a scenario file's mapping, e.g. ``{"ttft_p99": 500, "tpot": "50ms"}``.

        ``where`` names the source in error messages (e.g. ``"scenario.yaml: slo"``).
        """
        if not isinstance(mapping, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping of limits in ms, got {type(mapping).__name__}; "
                "write e.g. {ttft_p99: 500, tpot: 50}"
            )
        return _build([(str(key), value, f"{key}: {value}") for key, value in mapping.items()], where)

    def to_mapping(self) -> dict[str, float]:
        """The inverse of ``from_mapping`` (for echoing the config into summary.json)."""
        out = dict(self.per_request_ms)
        out.update((limit.name, limit.limit_ms) for limit in self.step_limits)
        return out

    def to_text(self) -> str:
        """The --slo text that parses back to these limits, one spelling however they were given."""
        return ",".join(f"{key}={limit_ms:g}" for key, limit_ms in self.to_mapping().items())


def split_name(name: str) -> tuple[str, str]:
    """A step limit's name as summary.json keeps it (``ttft_p99``) as (metric, statistic): (``ttft``, ``p99``);
    a per-request limit's (``ttft``) has no statistic (``""``)."""
    metric, _, stat = name.partition("_")
    return metric, stat


def parse_slos(text: str) -> Slos:
    """Parse ``--slo`` text: comma-separated ``key=value`` items, values in ms (``ms`` optional)."""
    items = [item.strip() for item in text.split(",")]
    items = [item for item in items if item]
    if not items:
        raise ConfigError("--slo: no limits given; write e.g. --slo ttft_p99=500,tpot=50 (values in ms)")
    parsed = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--slo: '{item}' is not key=value; write e.g. ttft_p99=500 (values in ms)")
        parsed.append((key.strip(), value.strip(), item))
    return _build(parsed, "--slo")


def _build(items: list[tuple[str, Any, str]], where: str) -> Slos:
    """Validate (key, value, item-as-written) triples into Slos; errors name the item."""
    per_request: dict[str, float] = {}
    step_limits: list[StepLimit] = []
    seen: set[str] = set()
    for key, value, item in items:
        metric, stat = _parse_key(key.strip().lower(), item, where)
        limit_ms = _parse_value(value, item, where)
        name = metric if stat is None else f"{metric}_{stat}"
        if name in seen:
            raise ConfigError(f"{where}: '{name}' is given twice; keep one limit per key")
        seen.add(name)
        if stat is None:
            per_request[metric] = limit_ms
        else:
            step_limits.append(StepLimit(metric, stat, limit_ms))
    return Slos(per_request_ms=per_request, step_limits=tuple(step_limits))


def _parse_key(key: str, item: str, where: str) -> tuple[str, str | None]:
    """``ttft`` -> ("ttft", None); ``ttft_p99`` -> ("ttft", "p99"); ``ttft_mean`` -> ("ttft", "mean")."""
    metric, stat = split_name(key)
    sep = "_" in key
    if metric not in SLO_METRICS:
        raise ConfigError(f"{where}: unknown metric '{metric}' in '{item}'; {_fix()}")
    if not sep:
        return metric, None
    if stat == "mean":
        return metric, stat
    if stat.startswith("p"):
        try:
            q = float(stat[1:])
        except ValueError:
            q = math.nan
        if 0 < q <= 100:
            return metric, f"p{q:.12g}"  # canonical: p99.90 -> p99.9, p050 -> p50
    raise ConfigError(
        f"{where}: unknown statistic '{stat}' in '{item}'; use _pNN with 0 < NN <= 100 (e.g. _p99, _p99.9) or _mean"
    )


def _parse_value(value: Any, item: str, where: str) -> float:
    """A positive, finite number of ms; a string may end in ``ms``."""
    if isinstance(value, bool):  # YAML `yes` is not a limit
        number = math.nan
    elif isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        text = text[:-2].strip() if text.endswith("ms") else text
        try:
            number = float(text)
        except ValueError:
            number = math.nan
    else:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ConfigError(
            f"{where}: bad limit in '{item}'; give a positive number of milliseconds, e.g. 500 or 500ms"
        )
    return number
