"""Max-load search and knee detection: pure algorithms over step summaries, no network.

``search_max_load`` finds the highest load (concurrency or requests/s) whose step still passes
the SLOs. It calls ``probe(load)`` to run one step and ``passes(summary)`` to judge it:

1. Grow: probe ``start``, ``2 * start``, ``4 * start``, ... (capped at ``max_load``) until a
   step fails, the cap passes, or the server saturates: a doubling gains less than 5% request
   throughput while p50 latency rises more than 20%. Past that point more load only queues, so
   the search stops growing and the highest passing load probed stands (a lower bound of the
   SLO limit; ``stop_reason`` says "saturated").
2. Bisect between the last pass ``lo`` and the first fail ``hi`` until
   ``(hi - lo) / lo <= precision``; a concurrency search probes whole numbers only and also
   stops when ``hi - lo <= 1``.

A probe judged ``client_bound`` (the client, not the server, was the limit: its ``client``
object) says nothing about the server: it never passes, so it is never ``max_passing``, and it
bounds the search from above like a failure. When the upper bound the search ends on is such a
probe, ``stop_reason`` is "client_bound": ``max_passing`` is then the highest load the client
could measure, a lower bound of the server's limit. Client-bound probes are left out of the knee.

Every probe is kept (each is a step of the run). ``find_knee`` then reads the probes'
throughput-latency curve; its rule is in its docstring.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from perfbench.metrics.knee import LATENCY_RISE, find_knee

if TYPE_CHECKING:
    from perfbench.metrics import StepSummary

log = logging.getLogger(__name__)

CONCURRENCY = "concurrency"
RATE = "rate"

# Growth stops early on saturation: a doubling buys < 5% throughput while p50 latency rises > 20% (LATENCY_RISE).
SATURATION_GAIN = 0.05

# Why the search stopped.
STOP_START_FAILED = "start_failed"  # even the first load failed: max_passing is None
STOP_MAX_LOAD = "max_load"  # max_load passed: the true limit may be higher
STOP_SATURATED = "saturated"  # throughput stopped rising while latency climbed
STOP_BISECTED = "bisected"  # a failing load was found and the gap closed to the precision
STOP_CLIENT_BOUND = "client_bound"  # the client could not drive the load above max_passing (None: not even the start)


@dataclass(frozen=True, slots=True)
class Probe:
    """One step the search ran."""

    load: float  # concurrency (whole number) or requests/s
    summary: StepSummary  # what the step measured
    passed: bool  # whether the step met the SLOs (never, when client-bound)
    client_bound: bool = False  # the client, not the server, limited the step: it tells nothing about the server


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The answer of a max-load search, with every probe behind it."""

    dimension: str  # "concurrency" or "rate"
    max_passing: float | None  # highest load that passed; None when even the start failed
    knee: float | None  # load where throughput stops rising while latency climbs (find_knee)
    precision: float  # relative precision asked for
    probes: tuple[Probe, ...]  # in the order they ran
    stop_reason: str = STOP_BISECTED  # STOP_* above

    def to_dict(self) -> dict[str, Any]:
        """The summary.json "search" object (DESIGN.md), plus the stop reason and the probes."""
        return {
            "dimension": self.dimension,
            "max_passing": self.max_passing,
            "knee": self.knee,
            "precision": self.precision,
            "stop_reason": self.stop_reason,
            "probes": [{"load": p.load, "passed": p.passed, "client_bound": p.client_bound} for p in self.probes],
        }


def is_client_bound(summary: StepSummary) -> bool:
    """Whether the step's ``client`` object judged the client the limit (a summary without one: no)."""
    return summary.client is not None and summary.client.client_bound


def throughput_req_s(summary: StepSummary) -> float:
    """The step's request throughput (succeeded requests/s), the search's capacity measure; NaN if none."""
    value = summary.request_throughput_req_s
    return math.nan if value is None else float(value)  # None: nothing succeeded / no duration


def latency_p50_ms(summary: StepSummary) -> float:
    """The step's median end-to-end latency; NaN when no request succeeded."""
    stats = summary.latency_ms
    value = getattr(stats, "p50", None) if stats is not None else None
    return math.nan if value is None else float(value)


async def search_max_load(
    probe: Callable[[float], Awaitable[StepSummary]],
    *,
    dimension: str,
    start: float,
    max_load: float,
    precision: float,
    passes: Callable[[StepSummary], bool],
    client_bound: Callable[[StepSummary], bool] = is_client_bound,
) -> SearchResult:
    """Find the highest load in ``[start, max_load]`` whose step passes (module docstring).

    Args:
        probe: runs one step at the given load and returns its summary.
        dimension: "concurrency" (loads are whole numbers) or "rate" (requests/s).
        start, max_load: the first load probed and the highest one allowed.
        precision: relative width ``(hi - lo) / lo`` at which bisection stops.
        passes: judges a step (the SLOs).
        client_bound: whether the client limited a step (such a probe never passes; module docstring).
    """
    if dimension not in (CONCURRENCY, RATE):
        raise ValueError(f"dimension must be {CONCURRENCY!r} or {RATE!r}, not {dimension!r}")
    whole = dimension == CONCURRENCY
    if whole:  # concurrency probes whole numbers only
        start, max_load = math.ceil(start), math.floor(max_load)
    if not 0 < start <= max_load or precision <= 0:
        raise ValueError(f"need 0 < start <= max_load and precision > 0 (got {start}, {max_load}, {precision})")
    probes: list[Probe] = []

    async def run(load: float) -> Probe:
        summary = await probe(load)
        bound = bool(client_bound(summary))
        result = Probe(load, summary, not bound and bool(passes(summary)), bound)
        probes.append(result)
        log.info("search %s=%g: %s", dimension, load, "client-bound" if bound else "pass" if result.passed else "fail")
        return result

    def done(max_passing: float | None, reason: str) -> SearchResult:
        loads = sorted((p for p in probes if not p.client_bound), key=lambda p: p.load)
        knee = find_knee(
            [p.load for p in loads],
            [throughput_req_s(p.summary) for p in loads],
            [latency_p50_ms(p.summary) for p in loads],
        )
        return SearchResult(dimension, max_passing, knee, precision, tuple(probes), reason)

    load = float(start)
    last = await run(load)
    if not last.passed:
        return done(None, STOP_CLIENT_BOUND if last.client_bound else STOP_START_FAILED)
    # 1. Grow geometrically until a failure, the cap, or saturation.
    while True:
        if load >= max_load:
            return done(load, STOP_MAX_LOAD)
        load = min(load * 2, float(max_load))
        if whole:
            load = float(math.floor(load))
        current = await run(load)
        if not current.passed:
            break
        if _saturated(last, current):
            return done(load, STOP_SATURATED)
        last = current
    # 2. Bisect between the last pass and the first failure.
    lo, upper = last.load, current
    while (upper.load - lo) / lo > precision and not (whole and upper.load - lo <= 1):
        mid = await run(float(math.floor((lo + upper.load) / 2) if whole else (lo + upper.load) / 2))
        if mid.passed:
            lo = mid.load
        else:
            upper = mid
    return done(lo, STOP_CLIENT_BOUND if upper.client_bound else STOP_BISECTED)


def _saturated(before: Probe, after: Probe) -> bool:
    """A load increase that bought almost no throughput while latency climbed."""
    thr_before, thr_after = throughput_req_s(before.summary), throughput_req_s(after.summary)
    lat_before, lat_after = latency_p50_ms(before.summary), latency_p50_ms(after.summary)
    if not (thr_before > 0 and lat_before > 0) or math.isnan(lat_after):
        return False
    return thr_after < thr_before * (1 + SATURATION_GAIN) and lat_after > lat_before * (1 + LATENCY_RISE)


