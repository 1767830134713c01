"""The metric registry: one declaration per metric (key, label, unit, kind, how it is computed,
which direction is worse, its default regression threshold), read by the summaries, compare,
the terminal, report.html, plots, JUnit and the history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np

from perfbench.metrics._per_request import (
    Columns, inter_package_samples, itl_samples, latency_column, queue_column, time_per_package_column, tpot_column,
    ttft_column,
)
from perfbench.metrics._stats import STATISTICS
from perfbench.results.records import RequestRecord

# What a step's duration means, recorded in summary.json beside the numbers it divides.
DURATIONS = {
    "duration_s": "first scheduled send to last request finished (warm-up excluded); divides every *_tok_s and *_req_s",
    "wire_duration_s": "first request sent to the last answer's last byte: the server's view; divides output_throughput_wire_tok_s",
}

DISTRIBUTION = "distribution"  # per-request (or pooled) values: a statistics object per step
RATE = "rate"  # one value per step


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric, declared once; summaries, compare, the terminal, report.html, plots, JUnit and the history read it."""

    key: str  # its key in a STEP of summary.json
    label: str  # its human name
    unit: str  # "ms", "tokens", "packages", "req/s", "tok/s", "requests"
    kind: str  # DISTRIBUTION or RATE
    description: str  # what it is, in one line (the README's table says the same)
    higher_is_better: bool = False
    thresholds: tuple[tuple[str, float], ...] = ()  # default regression checks: (statistic, or "" for a rate; max change %)
    compared: bool = False  # perfbench compare shows it (with a bootstrap CI)
    column: Callable[[Columns], np.ndarray] | None = None  # a per-request metric: one value per record (NaN: none)
    samples: Callable[[Columns], tuple[np.ndarray, np.ndarray]] | None = None  # a pooled one: (values, owner record)

    @property
    def slo_name(self) -> str | None:
        """Its name in ``--slo`` (``ttft``) when an SLO may limit it (``SLO_METRICS``), else None."""
        return next((name for name, (key, _) in _SLOS.items() if key == self.key), None)

    @property
    def title(self) -> str:
        """``TTFT (ms)``: its label with its unit, as an axis or a column shows it."""
        return f"{self.label} ({self.unit})"

    def sample_values(self, c: Columns) -> tuple[np.ndarray, np.ndarray]:
        """The metric's values over ``c`` and the record each belongs to (a per-request column without its NaN)."""
        if self.column is not None:
            return _column_samples(self.column)(c)
        assert self.samples is not None
        return self.samples(c)

    def threshold_specs(self) -> list[tuple[str, float]]:
        """``(metric, max change %)`` for each default check: ``("ttft_ms.p99", 10.0)``."""
        return [(f"{self.key}.{stat}" if stat else self.key, pct) for stat, pct in self.thresholds]


def _column_samples(values: Callable[[Columns], np.ndarray]) -> Callable[[Columns], tuple[np.ndarray, np.ndarray]]:
    """Samples of a per-request column: its values where defined, each owned by its own record."""

    def samples(c: Columns) -> tuple[np.ndarray, np.ndarray]:
        column = values(c)
        keep = ~np.isnan(column)
        return column[keep], np.flatnonzero(keep)

    return samples


_P50_P99 = (("p50", 10.0), ("p99", 10.0))
_FALL_5 = (("", -5.0),)

METRICS: tuple[Metric, ...] = (
    Metric("latency_ms", "Latency", "ms", DISTRIBUTION, "t_last - t0 (a non-streamed answer: its last byte - t0)",
           thresholds=_P50_P99, compared=True, column=latency_column),
    Metric("ttft_ms", "TTFT", "ms", DISTRIBUTION, "t_first - t0: time to the first output package",
           thresholds=_P50_P99, compared=True, column=ttft_column),
    Metric("tpot_ms", "TPOT", "ms", DISTRIBUTION, "(t_last - t_first) / (n_out - 1) per request",
           thresholds=_P50_P99, compared=True, column=tpot_column),
    Metric("itl_ms", "ITL", "ms", DISTRIBUTION, "gaps between output packages shared over their tokens, pooled",
           thresholds=_P50_P99, compared=True, samples=itl_samples),
    Metric("inter_package_ms", "Inter-package gap", "ms", DISTRIBUTION,
           "plain gaps between output packages, pooled (vLLM's, EvalScope's and AIPerf's 'ITL')", compared=True,
           samples=inter_package_samples),
    Metric("queue_ms", "Queue", "ms", DISTRIBUTION, "actual send - t0: the client's own lag", column=queue_column),
    Metric("time_per_package_ms", "Time per package", "ms", DISTRIBUTION, "(t_last - t_first) / (n_pkg - 1) per request",
           column=time_per_package_column),
    Metric("packages_per_request", "Packages per request", "packages", DISTRIBUTION, "output-carrying packages per request",
           column=lambda c: c.n_pkg.astype(np.float64)),
    Metric("input_tokens_per_request", "Input tokens", "tokens", DISTRIBUTION, "prompt tokens per request",
           column=lambda c: c.input_tokens),
    Metric("output_tokens_per_request", "Output tokens", "tokens", DISTRIBUTION, "generated tokens per request",
           column=lambda c: c.output_tokens),
    Metric("request_throughput_req_s", "Request throughput", "req/s", RATE, "succeeded requests / duration",
           higher_is_better=True, thresholds=_FALL_5, compared=True),
    Metric("output_throughput_tok_s", "Output throughput", "tok/s", RATE, "output tokens of succeeded requests / duration",
           higher_is_better=True, thresholds=_FALL_5, compared=True),
    Metric("output_throughput_wire_tok_s", "Output throughput on the wire", "tok/s", RATE,
           "output tokens of succeeded requests / (first byte sent to last byte received)", higher_is_better=True),
    Metric("input_throughput_tok_s", "Input throughput", "tok/s", RATE, "input tokens of succeeded requests / duration",
           higher_is_better=True),
    Metric("total_throughput_tok_s", "Total throughput", "tok/s", RATE, "(input + output) tokens of succeeded requests / duration",
           higher_is_better=True, compared=True),
    Metric("goodput_req_s", "Goodput", "req/s", RATE, "succeeded requests meeting every per-request SLO / duration",
           higher_is_better=True),
    Metric("concurrency_achieved", "Concurrency achieved", "requests", RATE, "time-average of requests in flight",
           higher_is_better=True),
)  # fmt: skip
METRICS_BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}
DISTRIBUTIONS: tuple[Metric, ...] = tuple(m for m in METRICS if m.kind == DISTRIBUTION)

# The metrics an SLO may limit, declared once, in a request's order (its first token, each token,
# the whole answer): {its name in --slo: (the metric's key, whether a request without a value for it
# meets a per-request limit on it)}. A request has no TPOT below 2 output tokens and no ITL below 2
# token-carrying packages, and meets such a limit; without TTFT or latency it had no output and misses it.
_SLOS: dict[str, tuple[str, bool]] = {
    "ttft": ("ttft_ms", False), "tpot": ("tpot_ms", True), "itl": ("itl_ms", True), "latency": ("latency_ms", False),
}
SLO_METRICS: dict[str, Metric] = {name: METRICS_BY_KEY[key] for name, (key, _) in _SLOS.items()}  # "ttft" -> TTFT
SLO_MET_WITHOUT_VALUE: frozenset[str] = frozenset(name for name, (_, met) in _SLOS.items() if met)  # {"tpot", "itl"}


def metric_of(spec: str) -> Metric | None:
    """The metric a spec names: a rate (``output_throughput_tok_s``) or a distribution's statistic (``ttft_ms.p99``)."""
    key, _, stat = spec.partition(".")
    metric = METRICS_BY_KEY.get(key)
    if metric is None or (metric.kind == DISTRIBUTION) != bool(stat) or (stat and stat not in STATISTICS):
        return None
    return metric


def request_samples(records: Sequence[RequestRecord]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every distribution's samples over ``records`` (succeeded ones, in order), each with the index of
    its record in ``records``: the values a step's statistics are made of, for a bootstrap by request."""
    kept = [i for i, r in enumerate(records) if r.ok and not r.warmup]
    c = Columns.of([records[i] for i in kept])
    where = np.asarray(kept, dtype=np.int64)
    out = {}
    for metric in DISTRIBUTIONS:
        values, owners = metric.sample_values(c)
        out[metric.key] = (values, where[owners] if len(owners) else owners)
    return out
