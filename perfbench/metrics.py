"""Request records -> statistics: every metric of DESIGN.md defined once, as a numpy function.

Notation (fields of ``RequestRecord``): ``t0`` = ``scheduled_ns`` (the clock starts at the due
time, so client lag is inside every latency and shown apart as ``queue_ms``); ``t_first`` /
``t_last`` = first / last of ``package_times_ns`` (arrivals of output-carrying packages);
``n_pkg`` = number of those packages; ``n_out`` = ``output_tokens``; ``package_tokens[j]`` =
tokens package j carries (when missing or of the wrong length: 1 per package).

Per-request metrics are computed column-wise over many records at once (``_Columns``); the
public one-record functions (``ttft_ms`` ...) run the same code on a single record, so each
formula exists once. A metric that does not apply has no value: ``None`` in Python, NaN inside
arrays, and never 0 (``np.mean(x or 0)`` would report 0 ms for "no data").

A step's statistics (``summarize_step``) use succeeded, non-warm-up records only; failed records
count in ``requests_failed`` / ``failure_reasons``; warm-up records count nowhere. A long run
feeds its records in chunks to a ``StepAccumulator``, which keeps numeric columns, never the
record objects; ``summarize_step`` is that accumulator fed one chunk, so both give one answer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from itertools import chain, repeat
from typing import Any, Callable

import numpy as np

from perfbench.records import RequestRecord
from perfbench.slo import Slos, StepLimit

_NS_PER_MS = 1e6
_NS_PER_S = 1e9
_PERCENTILES = (50.0, 90.0, 95.0, 99.0)


# --- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    """Summary of one distribution (DESIGN.md's statistics object); None where count is 0."""

    count: int  # number of values
    mean: float | None  # arithmetic mean
    std: float | None  # population standard deviation (ddof=0)
    min: float | None  # smallest value
    p50: float | None  # percentiles: linear interpolation between closest ranks
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None  # largest value

    def to_dict(self) -> dict[str, Any]:
        """``{count, mean, std, min, p50, p90, p95, p99, max}``, JSON-ready."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stats:
        """Inverse of ``to_dict``."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


def describe(values: Iterable[float | None] | np.ndarray) -> Stats:
    """Count, mean, std, min, p50/p90/p95/p99, max of ``values``; NaN and None mean "no value".

    Percentiles use linear interpolation between closest ranks (numpy's default, the same as
    vLLM and AIPerf report), kept at full precision. ``std`` is the *population* standard
    deviation (ddof=0), as numpy computes it by default.
    """
    array = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return Stats(0, None, None, None, None, None, None, None, None)
    low, high = float(array.min()), float(array.max())
    # Rounding can put the mean of equal values one ulp outside [min, max]; the true mean is inside.
    mean = min(max(float(array.mean()), low), high)
    p50, p90, p95, p99 = (float(p) for p in np.percentile(array, _PERCENTILES))
    return Stats(int(array.size), mean, float(array.std()), low, p50, p90, p95, p99, high)


# --- per-request metrics (column-wise) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Columns:
    """Records as columns; packages of all records flattened, record by record."""

    scheduled_ns: np.ndarray  # int64, t0 per record
    sent_ns: np.ndarray  # int64 per record
    end_ns: np.ndarray  # int64 per record
    ok: np.ndarray  # bool per record: succeeded
    n_pkg: np.ndarray  # int64 per record
    first_ns: np.ndarray  # int64 per record, t_first (0 where n_pkg == 0)
    last_ns: np.ndarray  # int64 per record, t_last (0 where n_pkg == 0)
    input_tokens: np.ndarray  # float64 per record, NaN when unknown
    output_tokens: np.ndarray  # float64 per record, NaN when unknown
    pkg_ns: np.ndarray  # int64 per package: arrival
    pkg_tokens: np.ndarray  # int64 per package: tokens carried
    pkg_start: np.ndarray  # int64 per record: index of its first package in pkg_ns

    @classmethod
    def of(cls, records: Sequence[RequestRecord]) -> _Columns:
        n = len(records)

        def ints(values: Iterable[int], count: int = n) -> np.ndarray:
            return np.fromiter(values, dtype=np.int64, count=count)

        def counts(values: Iterable[int | None]) -> np.ndarray:
            return np.fromiter((math.nan if v is None else v for v in values), dtype=np.float64, count=n)

        n_pkg = ints(len(r.package_times_ns) for r in records)
        total = int(n_pkg.sum())
        pkg_ns = ints(chain.from_iterable(r.package_times_ns for r in records), total)
        # Token counts missing or not one per package: 1 token per package.
        pkg_tokens = ints(
            chain.from_iterable(
                r.package_tokens if len(r.package_tokens) == k else repeat(1, k)
                for r, k in zip(records, n_pkg.tolist())
            ),
            total,
        )
        pkg_stop = np.cumsum(n_pkg)
        pkg_start = pkg_stop - n_pkg
        has = n_pkg > 0
        first_ns = np.zeros(n, dtype=np.int64)
        last_ns = np.zeros(n, dtype=np.int64)
        first_ns[has] = pkg_ns[pkg_start[has]]
        last_ns[has] = pkg_ns[pkg_stop[has] - 1]
        return cls(
            scheduled_ns=ints(r.scheduled_ns for r in records),
            sent_ns=ints(r.sent_ns for r in records),
            end_ns=ints(r.end_ns for r in records),
            ok=np.fromiter((r.ok for r in records), dtype=bool, count=n),
            n_pkg=n_pkg,
            first_ns=first_ns,
            last_ns=last_ns,
            input_tokens=counts(r.input_tokens for r in records),
            output_tokens=counts(r.output_tokens for r in records),
            pkg_ns=pkg_ns,
            pkg_tokens=np.maximum(pkg_tokens, 0),
            pkg_start=pkg_start,
        )


def _span_ms(
    later_ns: np.ndarray, earlier_ns: np.ndarray, where: np.ndarray, divisor: np.ndarray | float = 1.0
) -> np.ndarray:
    """``(later - earlier) / divisor`` in ms where ``where``, NaN elsewhere (int64 ns differences are exact)."""
    out = np.full(len(later_ns), np.nan)
    diff_ms = (later_ns - earlier_ns) / _NS_PER_MS
    np.divide(diff_ms, divisor, out=out, where=where)
    return out


def _latency_ms(c: _Columns) -> np.ndarray:
    """Latency (end-to-end), ms: ``t_last - t0``; a succeeded answer without output packages (embeddings)
    ends with its body: ``end - t0``. No value for a failed request without output."""
    streamed = c.n_pkg > 0
    return _span_ms(np.where(streamed, c.last_ns, c.end_ns), c.scheduled_ns, streamed | c.ok)


def _ttft_ms(c: _Columns) -> np.ndarray:
    """TTFT (time to first token), ms: ``t_first - t0``. No value without output packages."""
    return _span_ms(c.first_ns, c.scheduled_ns, c.n_pkg > 0)


def _tpot_ms(c: _Columns) -> np.ndarray:
    """TPOT (time per output token after the first), ms: ``(t_last - t_first) / (n_out - 1)``.

    Defined for ``n_out >= 2`` (and at least one package); TTFT is never part of it.
    """
    n_out = c.output_tokens
    defined = (c.n_pkg > 0) & (np.nan_to_num(n_out) >= 2)
    return _span_ms(c.last_ns, c.first_ns, defined, np.where(defined, n_out - 1, 1.0))


def _time_per_package_ms(c: _Columns) -> np.ndarray:
    """Time per package, ms: ``(t_last - t_first) / (n_pkg - 1)``, for ``n_pkg >= 2``."""
    defined = c.n_pkg >= 2
    return _span_ms(c.last_ns, c.first_ns, defined, np.where(defined, c.n_pkg - 1, 1).astype(np.float64))


def _queue_ms(c: _Columns) -> np.ndarray:
    """Queue time (client lag), ms: ``sent - t0``, how late the request left after it was due."""
    return (c.sent_ns - c.scheduled_ns) / _NS_PER_MS


def _itl(c: _Columns) -> tuple[np.ndarray, np.ndarray]:
    """ITL (inter-token latency), ms: per-token gaps between consecutive output packages.

    For consecutive token-carrying packages j-1, j of one request, every one of the
    ``package_tokens[j]`` tokens of package j gets an equal share of the gap:
    ``(t_j - t_{j-1}) / package_tokens[j]``, repeated ``package_tokens[j]`` times. A package
    counted as 0 tokens is skipped, so its gap flows into the next package's tokens. The
    first package's tokens get no sample (their wait is TTFT).

    Returns:
        (samples pooled over all records in record order, each record's largest sample or NaN,
        the record each sample belongs to)
    """
    n = len(c.n_pkg)
    owner = np.repeat(np.arange(n, dtype=np.int64), c.n_pkg)
    keep = c.pkg_tokens > 0
    record_start = np.zeros(len(c.pkg_ns), dtype=bool)  # marks each record's first package
    record_start[c.pkg_start[c.n_pkg > 0]] = True
    times, tokens = c.pkg_ns, c.pkg_tokens
    kept_per_record = c.n_pkg
    if not keep.all():
        # A record's first kept package starts its segment even if its first package was dropped.
        seen = np.concatenate(([0], np.cumsum(keep)))
        kept_per_record = seen[c.pkg_start + c.n_pkg] - seen[c.pkg_start]
        record_start = np.zeros(int(keep.sum()), dtype=bool)
        record_start[(seen[c.pkg_start])[kept_per_record > 0]] = True
        times, tokens, owner = times[keep], tokens[keep], owner[keep]
    pair = ~record_start[1:]  # (j-1, j) both belong to the same record
    pair_tokens = tokens[1:][pair]
    per_token_ms = (np.diff(times)[pair] / _NS_PER_MS) / pair_tokens
    pair_owner = owner[1:][pair]
    one_each = bool((pair_tokens == 1).all())
    samples = per_token_ms if one_each else np.repeat(per_token_ms, pair_tokens)
    owners = pair_owner if one_each else np.repeat(pair_owner, pair_tokens)
    pairs_per_record = np.maximum(kept_per_record - 1, 0)
    largest_ms = np.full(n, np.nan)
    has_pairs = pairs_per_record > 0
    if has_pairs.any():
        segment_start = (np.cumsum(pairs_per_record) - pairs_per_record)[has_pairs]
        largest_ms[has_pairs] = np.maximum.reduceat(per_token_ms, segment_start)
    return samples, largest_ms, owners


def _inter_package(c: _Columns) -> tuple[np.ndarray, np.ndarray]:
    """Inter-package gaps, ms: the plain gap between consecutive output packages of a request, not
    shared over their tokens (what vLLM, EvalScope and AIPerf call ITL). Returns (gaps, owner record)."""
    if not len(c.pkg_ns):
        return np.empty(0), np.empty(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(c.n_pkg)), c.n_pkg)
    pair = owner[1:] == owner[:-1]
    return np.diff(c.pkg_ns)[pair] / _NS_PER_MS, owner[1:][pair]


def _itl_samples(c: _Columns) -> tuple[np.ndarray, np.ndarray]:
    """ITL samples (``_itl``) with the record each belongs to, for a bootstrap by request."""
    samples, _, owners = _itl(c)
    return samples, owners


def _one(metric: Callable[[_Columns], np.ndarray], record: RequestRecord) -> float | None:
    value = float(metric(_Columns.of([record]))[0])
    return None if math.isnan(value) else value


def latency_ms(record: RequestRecord) -> float | None:
    """Latency (end-to-end) of one request, ms: ``t_last - t0``; None without output."""
    return _one(_latency_ms, record)


def ttft_ms(record: RequestRecord) -> float | None:
    """TTFT of one request, ms: ``t_first - t0``; None without output."""
    return _one(_ttft_ms, record)


def tpot_ms(record: RequestRecord) -> float | None:
    """TPOT of one request, ms: ``(t_last - t_first) / (n_out - 1)``; None unless ``n_out >= 2``."""
    return _one(_tpot_ms, record)


def time_per_package_ms(record: RequestRecord) -> float | None:
    """Time per package of one request, ms: ``(t_last - t_first) / (n_pkg - 1)``; None unless ``n_pkg >= 2``."""
    return _one(_time_per_package_ms, record)


def queue_ms(record: RequestRecord) -> float | None:
    """Queue time (client lag) of one request, ms: ``sent - t0``."""
    return _one(_queue_ms, record)


def itl_ms(record: RequestRecord) -> np.ndarray:
    """ITL samples of one request, ms, one per token after the first package (see ``_itl``); empty when none."""
    return _itl(_Columns.of([record]))[0]


def request_times_ms(record: RequestRecord) -> dict[str, float | None]:
    """``ttft_ms`` and ``latency_ms`` of one request (None where they do not apply), from one column build."""
    c = _Columns.of([record])
    out = {}
    for key, column in (("ttft_ms", _ttft_ms), ("latency_ms", _latency_ms)):
        value = float(column(c)[0])
        out[key] = None if math.isnan(value) else value
    return out


def inter_package_ms(record: RequestRecord) -> np.ndarray:
    """Gaps between one request's consecutive output packages, ms, not shared over tokens; empty when none."""
    return _inter_package(_Columns.of([record]))[0]


def per_request_ms(records: Sequence[RequestRecord]) -> dict[str, np.ndarray]:
    """Per-request metrics of many records at once, as float64 arrays (NaN = no value).

    Keys: ``ttft_ms``, ``latency_ms``, ``tpot_ms``, ``time_per_package_ms``, ``queue_ms`` and
    ``itl_max_ms`` (a request's largest per-token ITL). For plots and per-request SLO checks.
    """
    return _per_request(_Columns.of(records))[0]


def _per_request(c: _Columns) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(``per_request_ms``'s columns, the pooled ITL samples)."""
    itl_samples_ms, itl_max_ms, _ = _itl(c)
    columns = {
        "ttft_ms": _ttft_ms(c),
        "latency_ms": _latency_ms(c),
        "tpot_ms": _tpot_ms(c),
        "time_per_package_ms": _time_per_package_ms(c),
        "queue_ms": _queue_ms(c),
        "itl_max_ms": itl_max_ms,
    }
    return columns, itl_samples_ms


# --- the registry: one declaration per metric ---------------------------------------------

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
    column: Callable[[_Columns], np.ndarray] | None = None  # a per-request metric: one value per record (NaN: none)
    samples: Callable[[_Columns], tuple[np.ndarray, np.ndarray]] | None = None  # a pooled one: (values, owner record)
    slo_name: str | None = None  # its name in --slo ("ttft"), for the metrics an SLO may limit (slo.METRICS)

    @property
    def title(self) -> str:
        """``TTFT (ms)``: its label with its unit, as an axis or a column shows it."""
        return f"{self.label} ({self.unit})"

    def sample_values(self, c: _Columns) -> tuple[np.ndarray, np.ndarray]:
        """The metric's values over ``c`` and the record each belongs to (a per-request column without its NaN)."""
        if self.column is not None:
            return _column_samples(self.column)(c)
        assert self.samples is not None
        return self.samples(c)

    def threshold_specs(self) -> list[tuple[str, float]]:
        """``(metric, max change %)`` for each default check: ``("ttft_ms.p99", 10.0)``."""
        return [(f"{self.key}.{stat}" if stat else self.key, pct) for stat, pct in self.thresholds]


def _column_samples(values: Callable[[_Columns], np.ndarray]) -> Callable[[_Columns], tuple[np.ndarray, np.ndarray]]:
    """Samples of a per-request column: its values where defined, each owned by its own record."""

    def samples(c: _Columns) -> tuple[np.ndarray, np.ndarray]:
        column = values(c)
        keep = ~np.isnan(column)
        return column[keep], np.flatnonzero(keep)

    return samples


_P50_P99 = (("p50", 10.0), ("p99", 10.0))
_FALL_5 = (("", -5.0),)

METRICS: tuple[Metric, ...] = (
    Metric("latency_ms", "Latency", "ms", DISTRIBUTION, "t_last - t0 (a non-streamed answer: its last byte - t0)",
           thresholds=_P50_P99, compared=True, column=_latency_ms, slo_name="latency"),
    Metric("ttft_ms", "TTFT", "ms", DISTRIBUTION, "t_first - t0: time to the first output package",
           thresholds=_P50_P99, compared=True, column=_ttft_ms, slo_name="ttft"),
    Metric("tpot_ms", "TPOT", "ms", DISTRIBUTION, "(t_last - t_first) / (n_out - 1) per request",
           thresholds=_P50_P99, compared=True, column=_tpot_ms, slo_name="tpot"),
    Metric("itl_ms", "ITL", "ms", DISTRIBUTION, "gaps between output packages shared over their tokens, pooled",
           thresholds=_P50_P99, compared=True, samples=_itl_samples, slo_name="itl"),
    Metric("inter_package_ms", "Inter-package gap", "ms", DISTRIBUTION,
           "plain gaps between output packages, pooled (vLLM's, EvalScope's and AIPerf's 'ITL')", compared=True,
           samples=_inter_package),
    Metric("queue_ms", "Queue", "ms", DISTRIBUTION, "actual send - t0: the client's own lag", column=_queue_ms),
    Metric("time_per_package_ms", "Time per package", "ms", DISTRIBUTION, "(t_last - t_first) / (n_pkg - 1) per request",
           column=_time_per_package_ms),
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
SLO_METRICS: dict[str, Metric] = {m.slo_name: m for m in METRICS if m.slo_name}  # --slo's names: "ttft" -> TTFT
STATISTICS = ("count", "mean", "std", "min", "p50", "p90", "p95", "p99", "max")


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
    c = _Columns.of([records[i] for i in kept])
    where = np.asarray(kept, dtype=np.int64)
    out = {}
    for metric in DISTRIBUTIONS:
        values, owners = metric.sample_values(c)
        out[metric.key] = (values, where[owners] if len(owners) else owners)
    return out


# --- a step --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SloResult:
    """One step limit checked against a step: passed when ``value_ms <= limit_ms``."""

    name: str  # the limit as written, e.g. "ttft_p99"
    limit_ms: float  # the limit, ms
    value_ms: float | None  # the step's statistic, ms; None when the step has no values (fails)
    passed: bool  # value_ms is not None and value_ms <= limit_ms

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "limit_ms": self.limit_ms, "value_ms": self.value_ms, "passed": self.passed}


_STATS_KEYS = tuple(m.key for m in DISTRIBUTIONS)


@dataclass(frozen=True, slots=True)
class StepSummary:
    """One load step's numbers: DESIGN.md's STEP object, plus its SLO verdict."""

    concurrency: int | None  # the step's concurrency (closed loop) or cap (open loop; None: uncapped)
    rate_req_s: float | None  # the step's request rate, None for closed loop
    requests_expected: int  # requests the step was to send (warm-up excluded)
    requests_completed: int  # requests that finished, either way (succeeded + failed)
    requests_succeeded: int  # requests with status "ok"
    requests_failed: int  # requests with a failure reason
    failure_reasons: dict[str, int]  # {reason: count}, reasons sorted
    failure_examples: dict[str, str | None]  # {reason: the first error text seen for it (None: no text)}, reasons sorted
    duration_s: float | None  # first scheduled send to last request finished
    wire_duration_s: float | None  # the server's view: first request sent to last answer's last byte
    request_throughput_req_s: float | None  # succeeded requests / duration
    output_throughput_tok_s: float | None  # output tokens of succeeded requests / duration
    output_throughput_wire_tok_s: float | None  # the same over wire_duration_s (what the server delivered while busy)
    input_throughput_tok_s: float | None  # input tokens of succeeded requests / duration (None unless all are known)
    total_throughput_tok_s: float | None  # (input + output) tokens of succeeded requests / duration
    goodput_req_s: float | None  # succeeded requests meeting every per-request SLO / duration
    concurrency_achieved: float | None  # time-average of requests in flight
    latency_ms: Stats  # end-to-end latency per request
    ttft_ms: Stats  # time to first token per request
    tpot_ms: Stats  # time per output token per request
    itl_ms: Stats  # per-token inter-token latency, pooled over requests
    inter_package_ms: Stats  # plain gaps between output packages, pooled (other tools' "ITL")
    queue_ms: Stats  # client lag per request
    time_per_package_ms: Stats  # mean gap between output packages per request
    packages_per_request: Stats  # output-carrying packages per request
    input_tokens_per_request: Stats  # prompt tokens per request
    output_tokens_per_request: Stats  # generated tokens per request
    slo_passed: bool | None  # every step limit passed; None without step limits
    slo_results: tuple[SloResult, ...]  # one per step limit
    token_sources: dict[str, int]  # where succeeded requests' token counts came from: {usage|tokenizer|packages: count}

    def to_dict(self) -> dict[str, Any]:
        """The STEP object of summary.json (JSON-ready), plus ``slo_passed`` and ``slo_results``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Stats):
                value = value.to_dict()
            elif f.name == "slo_results":
                value = [result.to_dict() for result in value]
            elif f.name in ("failure_reasons", "failure_examples", "token_sources"):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepSummary:
        """Inverse of ``to_dict`` (reports re-read summary.json)."""
        values: dict[str, Any] = {f.name: d.get(f.name) for f in fields(cls)}
        for key in _STATS_KEYS:
            values[key] = Stats.from_dict(d[key])
        values["failure_reasons"] = dict(d.get("failure_reasons") or {})
        values["failure_examples"] = dict(d.get("failure_examples") or {})  # absent from older summaries
        values["token_sources"] = dict(d.get("token_sources") or {})
        values["slo_results"] = tuple(SloResult(**result) for result in d.get("slo_results") or ())
        return cls(**values)


def _duration_s(first_scheduled_ns: int | None, last_end_ns: int | None) -> float | None:
    """Duration, s: first scheduled send to last request finished,
    ``max(end_ns) - min(scheduled_ns)`` over the step's non-warm-up records (failed included).
    None when there are none or the span is not positive (no rate can be formed from it).
    """
    if first_scheduled_ns is None or last_end_ns is None:
        return None
    span_ns = last_end_ns - first_scheduled_ns
    return span_ns / _NS_PER_S if span_ns > 0 else None


def _concurrency_achieved(in_flight_ns: int, duration_s: float | None) -> float | None:
    """Concurrency achieved: time-average of requests in flight, ``sum(end - sent) / duration``,
    over the step's non-warm-up records (a failed request was in flight too); ``in_flight_ns``
    is that sum, an exact integer."""
    if duration_s is None:
        return None
    return in_flight_ns / _NS_PER_S / duration_s


def _per_second(amount: float | None, duration_s: float | None) -> float | None:
    """A throughput: ``amount / duration``; None when either is unknown."""
    return None if amount is None or duration_s is None else amount / duration_s


def _known_sum(tokens: np.ndarray, *, all_known: bool = False) -> float | None:
    """Tokens summed over the requests that have a count; None when none has one (embeddings have
    no output tokens: no output throughput, rather than 0), or with ``all_known`` when any lacks one."""
    missing = np.isnan(tokens)  # no succeeded request at all: a real 0 over a known duration
    if (tokens.size and missing.all()) or (all_known and missing.any()):
        return None
    return float(np.nansum(tokens))


def _total_tokens(input_tokens: np.ndarray, output_tokens: np.ndarray) -> float | None:
    """Input + output tokens of the given records; None unless every input count is known
    (a total over some requests only would read as a lower throughput)."""
    if np.isnan(input_tokens).any():
        return None
    return float(input_tokens.sum() + np.nansum(output_tokens))


def _good(per_request: Mapping[str, np.ndarray], limits_ms: Mapping[str, float]) -> np.ndarray:
    """Which requests meet every per-request limit (``value <= limit``).

    ``itl`` is checked on the request's largest per-token ITL. A limit on a metric the request
    has no value for counts as met for ``tpot`` (``n_out < 2``) and ``itl`` (fewer than two
    token-carrying packages), and as missed for ``ttft`` and ``latency`` (no output at all).
    """
    column = {"ttft": "ttft_ms", "latency": "latency_ms", "tpot": "tpot_ms", "itl": "itl_max_ms"}
    good = np.ones(len(per_request["ttft_ms"]), dtype=bool)
    for metric, limit_ms in limits_ms.items():
        values = per_request[column[metric]]
        met = values <= limit_ms  # NaN compares False
        if metric in ("tpot", "itl"):
            met |= np.isnan(values)
        good &= met
    return good


def _check(limit: StepLimit, values: np.ndarray) -> SloResult:
    """A step limit: the stat (``mean`` or ``pNN``) of the step's values must be <= the limit;
    with no values there is nothing to show it was met, so it fails."""
    values = values[~np.isnan(values)]
    value_ms: float | None = None
    if values.size:
        q = limit.percentile
        value_ms = float(values.mean() if q is None else np.percentile(values, q))
    passed = value_ms is not None and value_ms <= limit.limit_ms
    return SloResult(limit.name, limit.limit_ms, value_ms, passed)


# Besides each distribution, a StepAccumulator keeps each request's largest ITL sample, for the per-request itl SLO.
_ITL_MAX = "itl_max_ms"


class GrowingArray:
    """A 1-D float64 (or other) array appended to chunk by chunk, its capacity growing 1.5x.

    A list of chunks joined at the end holds every value twice at that moment, and the freed
    chunks (small heap blocks) stay in the process; this holds each value once, in one block,
    plus at most half again as spare room, and ``values`` is a view, never a copy.
    """

    def __init__(self, dtype: Any = np.float64) -> None:
        self._data = np.empty(0, dtype=dtype)  # values, then spare room
        self._size = 0  # values in use

    def extend(self, values: np.ndarray) -> None:
        """Append ``values`` (converted to this array's dtype)."""
        needed = self._size + len(values)
        if needed > len(self._data):
            grown = np.empty(max(needed, len(self._data) * 3 // 2, 1024), dtype=self._data.dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size : needed] = values
        self._size = needed

    @property
    def values(self) -> np.ndarray:
        """The values so far (a view)."""
        return self._data[: self._size]


class StepAccumulator:
    """One step's records reduced to what its summary needs: numeric columns, counts, extremes.

    ``add`` takes records in chunks (any order, from any number of workers) and keeps no record
    object, so a run of a million requests holds ~80 bytes per succeeded request plus its ITL
    samples, not the records. Per-request values are computed element-wise, so columns built
    chunk by chunk hold the same float64 values in the same order as one pass over all records,
    and ``summary`` gives exactly what ``summarize_step`` gives over the whole list.
    """

    def __init__(self) -> None:
        self.requests_completed = 0  # non-warm-up records seen, either way
        self.requests_succeeded = 0  # of which status "ok"
        self.failure_reasons: Counter[str] = Counter()  # {reason: count}
        self.failure_examples: dict[str, str | None] = {}  # {reason: first error text seen}
        self.token_sources: Counter[str] = Counter()  # succeeded records by token source
        self._first_scheduled_ns: int | None = None  # min(scheduled_ns) over non-warm-up records
        self._first_sent_ns: int | None = None  # min(sent_ns) over non-warm-up records
        self._last_end_ns: int | None = None  # max(end_ns) over non-warm-up records
        self._in_flight_ns = 0  # sum(end_ns - sent_ns) over non-warm-up records: a Python int, exact
        self._columns: dict[str, GrowingArray] = {key: GrowingArray() for key in (*_STATS_KEYS, _ITL_MAX)}

    def add(self, records: Iterable[RequestRecord]) -> None:
        """Take a chunk of records; warm-up records are ignored."""
        succeeded = []
        for r in records:
            if r.warmup:
                continue
            self.requests_completed += 1
            self._in_flight_ns += r.end_ns - r.sent_ns
            if self._first_scheduled_ns is None or r.scheduled_ns < self._first_scheduled_ns:
                self._first_scheduled_ns = r.scheduled_ns
            if self._first_sent_ns is None or r.sent_ns < self._first_sent_ns:
                self._first_sent_ns = r.sent_ns
            if self._last_end_ns is None or r.end_ns > self._last_end_ns:
                self._last_end_ns = r.end_ns
            if r.ok:
                succeeded.append(r)
                if r.token_source:
                    self.token_sources[r.token_source] += 1
            else:
                self.failure_reasons[r.status] += 1
                if self.failure_examples.get(r.status) is None:  # the first text; a later one if the first had none
                    self.failure_examples[r.status] = r.error or None
        if not succeeded:
            return
        self.requests_succeeded += len(succeeded)
        c = _Columns.of(succeeded)
        _, itl_max_ms, _ = _itl(c)
        self._columns[_ITL_MAX].extend(itl_max_ms)
        for metric in DISTRIBUTIONS:  # each value once: a per-request column aligned (NaN kept), a pooled metric's samples
            self._columns[metric.key].extend(metric.column(c) if metric.column is not None else metric.sample_values(c)[0])

    def column(self, key: str) -> np.ndarray:
        """A distribution over the succeeded records so far (a ``Metric.key``): a per-request metric's
        column, aligned with the records (NaN = no value), or a pooled metric's samples; or
        ``itl_max_ms``, a request's largest ITL sample. float64, a view, no copy."""
        return self._columns[key].values

    def summary(
        self, *, concurrency: int | None, rate_req_s: float | None, requests_expected: int, slos: Slos | None = None
    ) -> StepSummary:
        """The step's numbers from everything added so far (DESIGN.md's STEP object)."""
        duration_s = _duration_s(self._first_scheduled_ns, self._last_end_ns)
        per_request = {key: self.column(key) for key in ("ttft_ms", "latency_ms", "tpot_ms")}
        per_request[_ITL_MAX] = self.column(_ITL_MAX)
        input_tokens, output_tokens = self.column("input_tokens_per_request"), self.column("output_tokens_per_request")
        distributions = {
            "ttft": per_request["ttft_ms"],
            "latency": per_request["latency_ms"],
            "tpot": per_request["tpot_ms"],
            "itl": self.column("itl_ms"),
        }

        goodput_req_s = None
        slo_results: tuple[SloResult, ...] = ()
        if slos is not None:
            if slos.per_request_ms:
                good = int(_good(per_request, slos.per_request_ms).sum())
                goodput_req_s = _per_second(good, duration_s)
            slo_results = tuple(_check(limit, distributions[limit.metric]) for limit in slos.step_limits)

        return StepSummary(
            concurrency=concurrency,
            rate_req_s=rate_req_s,
            requests_expected=requests_expected,
            requests_completed=self.requests_completed,
            requests_succeeded=self.requests_succeeded,
            requests_failed=self.requests_completed - self.requests_succeeded,
            failure_reasons=dict(sorted(self.failure_reasons.items())),
            failure_examples=dict(sorted(self.failure_examples.items())),
            duration_s=duration_s,
            wire_duration_s=_duration_s(self._first_sent_ns, self._last_end_ns),
            output_throughput_wire_tok_s=_per_second(_known_sum(output_tokens), _duration_s(self._first_sent_ns, self._last_end_ns)),
            request_throughput_req_s=_per_second(self.requests_succeeded, duration_s),
            output_throughput_tok_s=_per_second(_known_sum(output_tokens), duration_s),
            input_throughput_tok_s=_per_second(_known_sum(input_tokens, all_known=True), duration_s),
            total_throughput_tok_s=_per_second(_total_tokens(input_tokens, output_tokens), duration_s),
            goodput_req_s=goodput_req_s,
            concurrency_achieved=_concurrency_achieved(self._in_flight_ns, duration_s),
            **{key: describe(self.column(key)) for key in _STATS_KEYS},
            slo_passed=all(r.passed for r in slo_results) if slo_results else None,
            slo_results=slo_results,
            token_sources=dict(sorted(self.token_sources.items())),
        )


def summarize_step(
    records: Iterable[RequestRecord],
    *,
    concurrency: int | None,
    rate_req_s: float | None,
    requests_expected: int,
    slos: Slos | None = None,
) -> StepSummary:
    """All of one step's numbers from its records (any order; from any number of workers).

    Warm-up records are ignored. Latency and token statistics use succeeded records only;
    duration and concurrency achieved use every non-warm-up record.
    """
    accumulator = StepAccumulator()
    accumulator.add(records)
    return accumulator.summary(
        concurrency=concurrency, rate_req_s=rate_req_s, requests_expected=requests_expected, slos=slos
    )
