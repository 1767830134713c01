"""A step's numbers: its records reduced, chunk by chunk, to DESIGN.md's STEP object and its SLO verdict.

Statistics use succeeded, non-warm-up records only; failed records count in ``requests_failed`` /
``failure_reasons``; warm-up records count nowhere. A long run feeds its records in chunks to a
``StepAccumulator``, which keeps numeric columns, never the record objects; ``summarize_step`` is
that accumulator fed one chunk, so both give one answer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from perfbench.metrics._by_turn import TurnAccumulator
from perfbench.metrics._client import ClientCheck, SendFit, achieved_rate_req_s, check_client, same_read_counts
from perfbench.metrics._per_request import Columns, itl_per_token
from perfbench.metrics._registry import DISTRIBUTIONS, SLO_MET_WITHOUT_VALUE, SLO_METRICS, Metric
from perfbench.metrics._stats import Stats, describe
from perfbench.results.client_reading import ClientReading
from perfbench.results.records import RequestRecord
from perfbench.metrics.slo import Slos, StepLimit

_NS_PER_S = 1e9


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
    finish_reasons: dict[str, int]  # why succeeded answers ended, as servers said ({"stop": n, "length": m}); unsaid ones absent
    by_turn: tuple[dict[str, Any], ...] = ()  # multi-turn runs: counts and statistics per turn index (metrics/_by_turn.py)
    client: ClientCheck | None = None  # how the client itself did (metrics/_client.py); None without the engine's readings

    def to_dict(self) -> dict[str, Any]:
        """The STEP object of summary.json (JSON-ready), plus ``slo_passed`` and ``slo_results``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Stats):
                value = value.to_dict()
            elif f.name == "slo_results":
                value = [result.to_dict() for result in value]
            elif f.name in ("failure_reasons", "failure_examples", "token_sources", "finish_reasons"):
                value = dict(value)
            elif f.name == "by_turn":
                if not value:
                    continue  # only a multi-turn run has turns
                value = [dict(entry) for entry in value]
            elif f.name == "client":
                value = value.to_dict() if value is not None else None
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
        values["finish_reasons"] = dict(d.get("finish_reasons") or {})  # absent from older summaries
        values["slo_results"] = tuple(SloResult(**result) for result in d.get("slo_results") or ())
        values["by_turn"] = tuple(d.get("by_turn") or ())
        values["client"] = ClientCheck.from_dict(d["client"]) if d.get("client") else None  # absent from older summaries
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
    """Which requests meet every per-request limit (``value <= limit``); ``per_request`` holds one
    value per request for each SLO metric, by its --slo name (``_request_value``).

    A limit on a metric the request has no value for counts as met for the metrics of
    SLO_MET_WITHOUT_VALUE (``tpot``: ``n_out < 2``; ``itl``: fewer than two token-carrying
    packages), and as missed for the others (``ttft``, ``latency``: no output at all).
    """
    good = np.ones(len(next(iter(per_request.values()))), dtype=bool)
    for name, limit_ms in limits_ms.items():
        values = per_request[name]
        met = values <= limit_ms  # NaN compares False
        if name in SLO_MET_WITHOUT_VALUE:
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
# A pooled metric (several samples per request) is limited per request by the request's largest sample.
_POOLED_PER_REQUEST = {"itl_ms": _ITL_MAX}


def _request_value(metric: Metric) -> str:
    """The column holding one value per request of an SLO metric: its own, or a pooled one's largest sample."""
    return metric.key if metric.column is not None else _POOLED_PER_REQUEST[metric.key]


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
        self.finish_reasons: Counter[str] = Counter()  # succeeded records by the finish reason their server gave
        self._first_scheduled_ns: int | None = None  # min(scheduled_ns) over non-warm-up records
        self._first_sent_ns: int | None = None  # min(sent_ns) over non-warm-up records
        self._last_end_ns: int | None = None  # max(end_ns) over non-warm-up records
        self._send_fit = SendFit()  # due against send times of non-warm-up records: the rate the client kept
        self._same_read = [0, 0]  # same_read_counts summed over the succeeded records' chunks
        self._in_flight_ns = 0  # sum(end_ns - sent_ns) over non-warm-up records: a Python int, exact
        self._columns: dict[str, GrowingArray] = {key: GrowingArray() for key in (*_STATS_KEYS, _ITL_MAX)}
        self._turns = TurnAccumulator()

    def add(self, records: Iterable[RequestRecord]) -> None:
        """Take a chunk of records; warm-up records are ignored."""
        succeeded, measured = [], []
        for r in records:
            if r.warmup:
                continue
            measured.append(r)
            self.requests_completed += 1
            self._in_flight_ns += r.end_ns - r.sent_ns
            if self._first_scheduled_ns is None or r.scheduled_ns < self._first_scheduled_ns:
                self._first_scheduled_ns = r.scheduled_ns
            if self._first_sent_ns is None or r.sent_ns < self._first_sent_ns:
                self._first_sent_ns = r.sent_ns
            if self._last_end_ns is None or r.end_ns > self._last_end_ns:
                self._last_end_ns = r.end_ns
            self._send_fit.add(r.scheduled_ns, r.sent_ns)
            if r.ok:
                succeeded.append(r)
                if r.token_source:
                    self.token_sources[r.token_source] += 1
                if r.finish_reason:
                    self.finish_reasons[r.finish_reason] += 1
            else:
                self.failure_reasons[r.status] += 1
                if self.failure_examples.get(r.status) is None:  # the first text; a later one if the first had none
                    self.failure_examples[r.status] = r.error or None
        if not succeeded:
            self._turns.add(measured, (), None)
            return
        self.requests_succeeded += len(succeeded)
        c = Columns.of(succeeded)
        self._turns.add(measured, succeeded, c)
        _, itl_max_ms, _ = itl_per_token(c)
        same, pairs = same_read_counts(c)
        self._same_read[0] += same
        self._same_read[1] += pairs
        self._columns[_ITL_MAX].extend(itl_max_ms)
        for metric in DISTRIBUTIONS:  # each value once: a per-request column aligned (NaN kept), a pooled metric's samples
            self._columns[metric.key].extend(metric.column(c) if metric.column is not None else metric.sample_values(c)[0])

    def column(self, key: str) -> np.ndarray:
        """A distribution over the succeeded records so far (a ``Metric.key``): a per-request metric's
        column, aligned with the records (NaN = no value), or a pooled metric's samples; or
        ``itl_max_ms``, a request's largest ITL sample. float64, a view, no copy."""
        return self._columns[key].values

    def summary(
        self, *, concurrency: int | None, rate_req_s: float | None, requests_expected: int, slos: Slos | None = None,
        client_readings: Sequence[ClientReading] | None = None,
    ) -> StepSummary:
        """The step's numbers from everything added so far (DESIGN.md's STEP object); its ``client``
        object from ``client_readings``, the engine's of this step (None without them)."""
        duration_s = _duration_s(self._first_scheduled_ns, self._last_end_ns)
        # Per SLO metric (SLO_METRICS): one value per request for per-request limits, the step's values for step limits.
        per_request = {name: self.column(_request_value(metric)) for name, metric in SLO_METRICS.items()}
        distributions = {name: self.column(metric.key) for name, metric in SLO_METRICS.items()}
        input_tokens, output_tokens = self.column("input_tokens_per_request"), self.column("output_tokens_per_request")

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
            finish_reasons=dict(sorted(self.finish_reasons.items())),
            by_turn=self._turns.summary(),
            client=self._client(client_readings, rate_req_s) if client_readings else None,
        )

    def _client(self, readings: Sequence[ClientReading], rate_req_s: float | None) -> ClientCheck:
        return check_client(
            readings, queue_ms=self.column("queue_ms"), same_read=(self._same_read[0], self._same_read[1]),
            requested_rate_req_s=rate_req_s, achieved_rate_req_s=achieved_rate_req_s(rate_req_s, self._send_fit),
        )


def summarize_step(
    records: Iterable[RequestRecord],
    *,
    concurrency: int | None,
    rate_req_s: float | None,
    requests_expected: int,
    slos: Slos | None = None,
    client_readings: Sequence[ClientReading] | None = None,
) -> StepSummary:
    """All of one step's numbers from its records (any order; from any number of workers).

    Warm-up records are ignored. Latency and token statistics use succeeded records only;
    duration and concurrency achieved use every non-warm-up record. ``client_readings``: the
    engine's readings of the step (one per process), for its ``client`` object.
    """
    accumulator = StepAccumulator()
    accumulator.add(records)
    return accumulator.summary(
        concurrency=concurrency, rate_req_s=rate_req_s, requests_expected=requests_expected, slos=slos,
        client_readings=client_readings,
    )
