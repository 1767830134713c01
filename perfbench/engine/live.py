"""Counters of a running benchmark, for the live display: updated once per finished request, never per package.

The running TTFT and ITL here follow DESIGN's definitions (the ones perfbench/metrics computes
column-wise); they are taken inline from the record's stamps because a numpy column build per
request would cost more than the whole count.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from perfbench.results.records import RequestRecord

LIVE_SAMPLES = 2048  # recent values a live display's running percentiles are taken from
_GAPS_PER_REQUEST = 8  # ITL samples taken from each request for the live display


@dataclass(slots=True)
class LiveCounters:
    """Counters a live display reads from another thread; updated once per request, never per package.

    With ``track_recent`` (set by a live display), each request also leaves its TTFT and a few
    ITL samples in bounded deques for running percentiles; without it, counting costs a few adds.
    """

    sent: int = 0
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    output_tokens: int = 0
    ttft_ms_sum: float = 0.0
    ttft_count: int = 0  # succeeded requests with a first token (all but non-streaming ones)
    step: int = 0
    step_expected: int | None = None
    step_done: int = 0
    step_load: dict[str, Any] = field(default_factory=dict)  # {"concurrency", "rate_req_s"} of the running step
    failure_reasons: Counter[str] = field(default_factory=Counter)  # the running step's failed requests by reason
    track_recent: bool = False
    recent_ttft_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LIVE_SAMPLES))
    recent_itl_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LIVE_SAMPLES))

    def start_step(self, step: int, expected: int | None, *, concurrency: int | None = None, rate_req_s: float | None = None) -> None:
        self.step, self.step_expected, self.step_done = step, expected, 0
        self.step_load = {"concurrency": concurrency, "rate_req_s": rate_req_s}
        self.failure_reasons = Counter()
        self.recent_ttft_ms.clear()
        self.recent_itl_ms.clear()

    def count(self, record: RequestRecord) -> None:
        """One finished request."""
        if record.ok:
            self.succeeded += 1
            self.output_tokens += record.output_tokens or 0
            times = record.package_times_ns
            if times:  # a non-streaming answer (embeddings) has no first token
                ttft_ms = (times[0] - record.scheduled_ns) / 1e6
                self.ttft_ms_sum += ttft_ms
                self.ttft_count += 1
                if self.track_recent:
                    self.recent_ttft_ms.append(ttft_ms)
                    self._sample_gaps(times, record.package_tokens)
        else:
            self.failed += 1
            self.failure_reasons[record.status] += 1
        self.step_done += 1

    def _sample_gaps(self, times: Sequence[int], tokens: Sequence[int]) -> None:
        """A few of the request's per-token gaps, evenly spread (ITL's definition: a gap over its package's tokens)."""
        gaps = len(times) - 1
        if gaps < 1:
            return
        for k in range(min(gaps, _GAPS_PER_REQUEST)):
            i = 1 + k * gaps // min(gaps, _GAPS_PER_REQUEST)
            share = tokens[i] if i < len(tokens) and tokens[i] else 1
            self.recent_itl_ms.append((times[i] - times[i - 1]) / 1e6 / share)
