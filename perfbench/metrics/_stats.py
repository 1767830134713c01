"""The statistics object of DESIGN.md: count, mean, std, min, p50/p90/p95/p99, max of one distribution."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

STATISTICS = ("count", "mean", "std", "min", "p50", "p90", "p95", "p99", "max")  # Stats' fields, in order
_PERCENTILES = (50.0, 90.0, 95.0, 99.0)


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
