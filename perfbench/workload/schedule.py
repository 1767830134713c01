"""Open-loop arrival schedules: when each request is due, as offsets from one shared start time.

Pure functions, no clock and no sleeping. The engine turns an offset into an absolute deadline
(``start_ns + offset``), so sends never drift, and any slice of the offsets (one per worker process)
stays valid against the same start time. Closed-loop (fixed concurrency) runs need no schedule:
a request is due the moment a slot frees.
"""

from __future__ import annotations

import numpy as np

ARRIVALS = ("poisson", "constant")


def _ramped(full_rate_offsets_s: np.ndarray, ramp_up_s: float) -> np.ndarray:
    """Map offsets at the full rate onto a rate that rises linearly from 0 over ``ramp_up_s``.

    With rate(t) = R*t/T for t < T, the expected arrivals by t are R*t²/(2T), then R*(t - T/2).
    An arrival at full-rate time u happens where that count equals R*u: t = sqrt(2*T*u) for
    u < T/2, else u + T/2.
    """
    if ramp_up_s <= 0:
        return full_rate_offsets_s
    u = full_rate_offsets_s
    return np.where(u < ramp_up_s / 2, np.sqrt(2 * ramp_up_s * u), u + ramp_up_s / 2)


def arrival_offsets_s(
    *,
    rate_req_s: float,
    count: int | None = None,
    duration_s: float | None = None,
    arrivals: str = "poisson",
    burstiness: float = 1.0,
    ramp_up_s: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Due times in seconds from the start, ascending; the first request is due at 0.

    Args:
        rate_req_s: mean request rate once ramped up.
        count: number of arrivals; or
        duration_s: keep arrivals due before this many seconds (one of the two is required).
        arrivals: "poisson" (gamma intervals of shape ``burstiness``; 1 is Poisson, < 1 burstier,
            > 1 more regular) or "constant" (exactly 1/rate apart).
        ramp_up_s: rise linearly from 0 to the rate over this many seconds.
        seed: the random generator's seed; the same seed gives the same schedule.
    """
    if rate_req_s <= 0:
        raise ValueError("rate_req_s must be positive")
    if (count is None) == (duration_s is None):
        raise ValueError("give exactly one of count and duration_s")
    if count is None:
        # Enough arrivals to cover the duration with a wide margin; trimmed below.
        assert duration_s is not None
        n = int((duration_s + ramp_up_s) * rate_req_s * 1.5) + 64
    else:
        n = count
    if n <= 0:
        return np.zeros(0)
    mean_gap_s = 1.0 / rate_req_s
    if arrivals == "constant":
        gaps = np.full(n, mean_gap_s)
    elif arrivals == "poisson":
        rng = np.random.default_rng(seed)
        gaps = rng.gamma(shape=burstiness, scale=mean_gap_s / burstiness, size=n)
    else:
        raise ValueError(f"unknown arrivals {arrivals!r}")
    gaps[0] = 0.0
    offsets = _ramped(np.cumsum(gaps), ramp_up_s)
    if duration_s is not None:
        while offsets[-1] < duration_s:  # the margin was too small: extend
            more = arrival_offsets_s(rate_req_s=rate_req_s, count=n, arrivals=arrivals, burstiness=burstiness, seed=seed + 1)
            offsets = np.concatenate([offsets, offsets[-1] + mean_gap_s + more])
        offsets = offsets[offsets < duration_s]
    return offsets
