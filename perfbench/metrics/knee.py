"""The knee of a load curve: where throughput stops rising while latency climbs (searches, ladders, plots)."""

from __future__ import annotations

import math
from typing import Sequence

LATENCY_RISE = 0.20  # p50 latency this much higher counts as a rise (the knee's and a search's saturation rule)
# The knee reaches 90% of the best throughput, and a load >= 1.25x it shows the latency rise
# (so a curve still climbing, or flat without queueing, has no knee).
KNEE_SHARE_OF_BEST = 0.90
KNEE_CONFIRM_LOAD = 1.25


def find_knee(loads: Sequence[float], throughputs: Sequence[float], latencies: Sequence[float]) -> float | None:
    """The load where throughput stops rising while latency climbs, or None if the curve shows none.

    Rule: the knee is the smallest load whose throughput reaches 90% of the best throughput
    seen, provided some load at least 1.25x larger shows p50 latency more than 20% higher
    (with throughput by then at most ~1.11x the knee's, the curve is flat there: more load
    only queued). Without that evidence -- throughput still climbing at the last load, or
    latency flat -- there is no knee. Loads need not be sorted or distinct; points with a
    missing (NaN) value are ignored.

    Args:
        loads: concurrency or requests/s per step.
        throughputs: request throughput per step (any unit, one for all).
        latencies: p50 latency per step (any unit, one for all).
    """
    if not len(loads) == len(throughputs) == len(latencies):
        raise ValueError("loads, throughputs and latencies must have the same length")
    points = sorted(
        (float(x), float(t), float(l))
        for x, t, l in zip(loads, throughputs, latencies)
        if not (math.isnan(x) or math.isnan(t) or math.isnan(l))
    )
    if len(points) < 2:
        return None
    best = max(t for _, t, _ in points)
    if best <= 0:
        return None
    knee_load, _, knee_latency = next(p for p in points if p[1] >= KNEE_SHARE_OF_BEST * best)
    confirmed = any(
        x >= knee_load * KNEE_CONFIRM_LOAD and l > knee_latency * (1 + LATENCY_RISE) for x, _, l in points
    )
    return knee_load if confirmed else None
