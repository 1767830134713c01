"""The client checks itself: a step's ``client`` object (DESIGN.md) and its verdict, from the
engine's readings (perfbench/engine/client_meter.py) and the step's records.

A step is ``client_bound`` when the client, not the server, may have limited its numbers:

- the event loop's lag p99 exceeds ``loop_lag_p99_ms`` (every stamp may be late by the lag),
- a client process used ``cpu_utilization`` of a core or more (it had no time to spare),
- an open-loop step achieved less than ``rate_share`` of its requested rate,
- ``queue_ms`` p99 exceeds ``queue_p99_ms`` (requests left late).

A p99 is judged only on evidence (DESIGN.md judges a percentile only with 10 samples beyond it):
at least ``min_over_limit`` ticks (requests) past the limit. Without it, the p99 of a short step
is its one or two largest samples, and one scheduling hiccup of a busy machine would decide it.
The limits are declared once, in ``CLIENT_LIMITS``; each reason is a sentence naming the value
measured and its limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from perfbench.metrics._per_request import Columns
from perfbench.metrics._stats import Stats, describe
from perfbench.results.client_reading import ClientReading
from perfbench.results.records import RequestRecord

CLIENT_OK = "ok"
CLIENT_BOUND = "client_bound"
# The fix a client-bound step names wherever it is shown (terminal, report.html, search, compare).
CLIENT_FIX = "use --workers N, a bigger client machine, or lower load"


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """Past any of these a step is client-bound (DESIGN.md, "The client checks itself")."""

    loop_lag_p99_ms: float = 5.0  # the event loop's lag p99 must not exceed this, ms
    cpu_utilization: float = 0.90  # no client process may use this share of a core, or more
    rate_share: float = 0.95  # an open-loop step must achieve at least this share of its requested rate
    queue_p99_ms: float = 5.0  # queue time p99 must not exceed this, ms
    min_over_limit: int = 10  # a p99 past its limit counts only with this many samples past the limit


CLIENT_LIMITS = ClientLimits()


def same_read_counts(c: Columns) -> tuple[int, int]:
    """Same-read share's parts: (output packages that arrived in the same read as the previous
    output package of their request, output packages that have a previous one).

    The engine stamps every read once, so two packages of one read carry the same stamp:
    ``same = #{j >= 1 : t_j == t_(j-1)}`` within each request; ``pairs = sum(n_pkg - 1)``.
    """
    if not len(c.pkg_ns):
        return 0, 0
    owner = np.repeat(np.arange(len(c.n_pkg)), c.n_pkg)
    pair = owner[1:] == owner[:-1]
    same = (np.diff(c.pkg_ns) == 0) & pair
    return int(same.sum()), int(pair.sum())


def same_read_share(records: Sequence[RequestRecord]) -> float | None:
    """Same-read share, a fraction: ``same / pairs`` of ``same_read_counts`` over ``records``; None
    without a package that has a previous one. High values mean packages bunched up before the
    client read them (a busy client, or a server or proxy that buffers), so gaps between them read as 0."""
    same, pairs = same_read_counts(Columns.of(records))
    return same / pairs if pairs else None


class SendFit:
    """What the least-squares fit of due times on send times needs, summed exactly (Python ints) record
    by record, so a step read back in chunks, from any number of workers, gives one answer.

    Times are ns after the first request's due time (any fixed origin gives the same slope).
    """

    __slots__ = ("_origin_ns", "count", "due", "sent", "due_sent", "sent_sent")

    def __init__(self) -> None:
        self._origin_ns: int | None = None
        self.count = 0
        self.due = 0  # sum of due times
        self.sent = 0  # sum of send times
        self.due_sent = 0  # sum of due * sent
        self.sent_sent = 0  # sum of sent * sent

    def add(self, due_ns: int, sent_ns: int) -> None:
        """One more request."""
        if self._origin_ns is None:
            self._origin_ns = due_ns
        d, t = due_ns - self._origin_ns, sent_ns - self._origin_ns
        self.count += 1
        self.due += d
        self.sent += t
        self.due_sent += d * t
        self.sent_sent += t * t

    def slope(self) -> float | None:
        """d(due) / d(sent): 1 when every request left on time; None for fewer than two send times."""
        spread = self.count * self.sent_sent - self.sent * self.sent
        if self.count < 2 or spread <= 0:
            return None
        return (self.count * self.due_sent - self.due * self.sent) / spread


def achieved_rate_req_s(requested_rate_req_s: float | None, fit: SendFit) -> float | None:
    """The rate an open-loop step achieved, req/s: the rate at which the client worked through its
    schedule, ``requested * slope``, where slope is the least-squares slope of the requests' due
    times against their send times.

    A client that sent every request on time has slope 1 and achieved the requested rate, whatever
    the arrivals' randomness (a Poisson schedule's own span varies from run to run); one that could
    send only 4,000 req/s of a 30,000 req/s schedule has slope 4,000 / 30,000. A request or two
    sent late (a hiccup) barely moves the fit. None for closed loop and for fewer than two requests.
    """
    slope = fit.slope() if requested_rate_req_s is not None else None
    return None if slope is None else requested_rate_req_s * slope


def _shown(value: float, limit: float, scale: float = 1.0) -> str:
    """``value * scale`` with the fewest decimals (1 to 4) that tell it from ``limit * scale`` (one when equal)."""
    for digits in range(1, 5):
        text = f"{value * scale:.{digits}f}"
        if value == limit or float(text) != round(limit * scale, digits):
            return text
    return f"{value * scale:.4f}"


def _rate(value: float) -> str:
    """A rate as a person reads it: ``12,345``, ``48.2``, ``0.512``."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def client_verdict(
    *,
    loop_lag_p99_ms: float | None,
    late_ticks: int,
    cpu_utilization: Mapping[str, float],
    achieved_rate_req_s: float | None,
    requested_rate_req_s: float | None,
    queue_p99_ms: float | None,
    late_requests: int,
    limits: ClientLimits = CLIENT_LIMITS,
) -> tuple[str, tuple[str, ...]]:
    """``(CLIENT_OK or CLIENT_BOUND, reasons)`` for a step's measurements; a value that is None is not judged.

    Args:
        late_ticks: the lag samples past ``loop_lag_p99_ms`` (the evidence for its p99, module docstring).
        cpu_utilization: per process, by the name a reason gives it ("the client process", "worker 2"):
            CPU seconds over wall seconds, 1.0 = one core.
        late_requests: the requests whose queue time is past ``queue_p99_ms``.
    """
    reasons: list[str] = []
    if loop_lag_p99_ms is not None and loop_lag_p99_ms > limits.loop_lag_p99_ms and late_ticks >= limits.min_over_limit:
        reasons.append(f"event-loop lag p99 {_shown(loop_lag_p99_ms, limits.loop_lag_p99_ms)} ms > {limits.loop_lag_p99_ms:g} ms "
                       f"({late_ticks:,} ticks over {limits.loop_lag_p99_ms:g} ms)")
    for process, share in cpu_utilization.items():
        if share >= limits.cpu_utilization:
            reasons.append(f"{process} used {_shown(share, limits.cpu_utilization, 100)} % of a core "
                           f"≥ {limits.cpu_utilization * 100:g} %")
    if achieved_rate_req_s is not None and requested_rate_req_s:
        share = achieved_rate_req_s / requested_rate_req_s
        if share < limits.rate_share:
            reasons.append(f"achieved {_rate(achieved_rate_req_s)} req/s, {_shown(share, limits.rate_share, 100)} % of the "
                           f"requested {_rate(requested_rate_req_s)} req/s < {limits.rate_share * 100:g} %")
    if queue_p99_ms is not None and queue_p99_ms > limits.queue_p99_ms and late_requests >= limits.min_over_limit:
        reasons.append(f"queue p99 {_shown(queue_p99_ms, limits.queue_p99_ms)} ms > {limits.queue_p99_ms:g} ms "
                       f"({late_requests:,} requests over {limits.queue_p99_ms:g} ms)")
    return (CLIENT_BOUND if reasons else CLIENT_OK), tuple(reasons)


@dataclass(frozen=True, slots=True)
class ClientCheck:
    """A step's ``client`` object in summary.json: how the client itself did, and whether it was the limit."""

    loop_lag_ms: Stats  # how late a periodic timer ran on the engine's event loop(s), every worker's pooled, ms
    cpu_utilization: float | None  # the busiest client process's CPU seconds over the step's wall time (1.0 = one core)
    workers_cpu_utilization: tuple[float, ...]  # each worker process's, by worker number; () in one process
    same_read_share: float | None  # output packages that arrived in the same read as the previous one of their request
    achieved_rate_req_s: float | None  # open loop: the rate the client kept (achieved_rate_req_s); None for closed loop
    requested_rate_req_s: float | None  # open loop: the step's rate; None for closed loop
    verdict: str  # CLIENT_OK or CLIENT_BOUND
    reasons: tuple[str, ...]  # one sentence per limit passed, with the value and the limit

    @property
    def client_bound(self) -> bool:
        return self.verdict == CLIENT_BOUND

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["loop_lag_ms"] = self.loop_lag_ms.to_dict()
        out["workers_cpu_utilization"] = list(self.workers_cpu_utilization)
        out["reasons"] = list(self.reasons)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClientCheck:
        """Inverse of ``to_dict``."""
        values = {f.name: d.get(f.name) for f in fields(cls)}
        values["loop_lag_ms"] = Stats.from_dict(d["loop_lag_ms"])
        values["workers_cpu_utilization"] = tuple(d.get("workers_cpu_utilization") or ())
        values["reasons"] = tuple(d.get("reasons") or ())
        return cls(**values)


def check_client(
    readings: Sequence[ClientReading],
    *,
    queue_ms: np.ndarray,
    same_read: tuple[int, int],
    requested_rate_req_s: float | None,
    achieved_rate_req_s: float | None,
    limits: ClientLimits = CLIENT_LIMITS,
) -> ClientCheck:
    """A step's ``client`` object from the engine's readings (one per process) and what its records gave
    (``queue_ms``: the step's queue times, ms).

    Lag samples of every process are pooled into one distribution (exact percentiles, never an
    average of per-worker ones); CPU is judged per process.
    """
    lag_ns = np.concatenate([np.frombuffer(r.loop_lag_ns, dtype=np.int64) for r in readings]) if readings else np.empty(0)
    lag_ms = lag_ns / 1e6
    loop_lag_ms = describe(lag_ms)
    workers = sorted((r for r in readings if r.worker is not None), key=lambda r: r.worker or 0)
    by_process: dict[str, float] = {}
    for reading in readings:
        share = reading.cpu_utilization
        if share is not None:
            name = "the client process" if not workers else "the main process" if reading.worker is None else f"worker {reading.worker}"
            by_process[name] = share
    workers_cpu = tuple(share for r in workers if (share := r.cpu_utilization) is not None)
    same, pairs = same_read
    queue = queue_ms[~np.isnan(queue_ms)]
    verdict, reasons = client_verdict(
        loop_lag_p99_ms=loop_lag_ms.p99, late_ticks=int((lag_ms > limits.loop_lag_p99_ms).sum()),
        cpu_utilization=by_process, achieved_rate_req_s=achieved_rate_req_s, requested_rate_req_s=requested_rate_req_s,
        queue_p99_ms=describe(queue).p99, late_requests=int((queue > limits.queue_p99_ms).sum()), limits=limits,
    )
    return ClientCheck(
        loop_lag_ms=loop_lag_ms,
        cpu_utilization=max(by_process.values()) if by_process else None,
        workers_cpu_utilization=workers_cpu,
        same_read_share=same / pairs if pairs else None,
        achieved_rate_req_s=achieved_rate_req_s,
        requested_rate_req_s=requested_rate_req_s,
        verdict=verdict,
        reasons=reasons,
    )


def client_bound_reasons(step: Mapping[str, Any]) -> tuple[str, ...] | None:
    """A summary.json STEP's reasons when its client was judged the limit; None when it was not
    (or not checked: a summary written before the check, or one made from records alone)."""
    client = step.get("client")
    if not isinstance(client, Mapping) or client.get("verdict") != CLIENT_BOUND:
        return None
    return tuple(str(reason) for reason in client.get("reasons") or ())
