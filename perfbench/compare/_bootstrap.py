"""The noise model: per-request samples of a step resampled by request (a cluster bootstrap), each
statistic and throughput recomputed on every resample, and the confidence interval of a change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from perfbench.metrics import request_samples
from perfbench.results.records import RequestRecord


N_BOOTSTRAP = 1000  # resamples per run; 99 % CI tails then hold 5 resamples each
CONFIDENCE = 0.99  # high because ~10 metrics are checked per step (fewer false alarms)
MAX_CI_SAMPLES = 50_000  # pooled ITL gaps above this are subsampled for the CI only
_CHUNK_CELLS = 4_000_000  # bootstrap rows x samples processed at once (bounds memory)


@dataclass(frozen=True, slots=True)
class StepSamples:
    """Per-request arrays of one step, everything the bootstrap needs."""

    ok: np.ndarray  # bool per request
    occupancy_s: np.ndarray  # end - scheduled per request (failed ones too)
    output_tokens: np.ndarray  # per request (0 when unknown)
    total_tokens: np.ndarray  # input + output per request
    samples: dict[str, tuple[np.ndarray, np.ndarray]]  # distribution -> (values, request index)


def step_samples(lines: Iterable[dict[str, Any]]) -> StepSamples:
    """One step's requests.jsonl lines as the bootstrap's arrays; the distributions' samples come
    from perfbench.metrics (``request_samples``), so compare and the summary read one definition."""
    records = [RequestRecord.from_json(line) for line in lines]
    ok = np.fromiter((r.ok and not r.warmup for r in records), dtype=bool, count=len(records))
    output = np.fromiter((r.output_tokens or 0 for r in records), dtype=float, count=len(records))
    total = output + np.fromiter((r.input_tokens or 0 for r in records), dtype=float, count=len(records))
    occupancy_s = np.fromiter((max(r.end_ns - r.scheduled_ns, 0) / 1e9 for r in records), dtype=float, count=len(records))
    return StepSamples(
        ok=ok,
        occupancy_s=occupancy_s,
        output_tokens=np.where(ok, output, 0.0),
        total_tokens=np.where(ok, total, 0.0),
        samples=request_samples(records),
    )


def resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) counts: how often each request appears in each resample."""
    if n == 0:
        return np.zeros((n_boot, 0), dtype=np.int32)
    idx = rng.integers(0, n, size=(n_boot, n))
    idx += (np.arange(n_boot) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.int32)


def boot_statistics(
    values: np.ndarray, owners: np.ndarray, counts: np.ndarray, stats: Sequence[str], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Each statistic on every resample: samples weighted by their request's count.

    Percentiles use linear interpolation between order statistics of the resample, the
    definition of DESIGN.md, found without materialising the resamples: in a row of
    cumulative weights over the sorted samples, order statistic k is the first sample
    whose cumulative weight exceeds k.
    """
    n_boot, n_requests = counts.shape
    out: dict[str, np.ndarray] = {}
    if "mean" in stats:
        # per-request sums and sample counts, so the weighted mean is two matrix products
        sums = np.bincount(owners, weights=values, minlength=n_requests)
        ns = np.bincount(owners, minlength=n_requests).astype(float)
        total = counts @ ns
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mean"] = np.where(total > 0, (counts @ sums) / np.where(total > 0, total, 1), np.nan)
    quantiles = [float(stat[1:]) / 100.0 for stat in stats if stat != "mean"]
    if not quantiles:
        return out
    if values.size > MAX_CI_SAMPLES:
        keep = rng.choice(values.size, MAX_CI_SAMPLES, replace=False)
        values, owners = values[keep], owners[keep]
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_owners = values[order], owners[order]
    q = np.asarray(quantiles)
    result = np.full((n_boot, len(q)), np.nan)
    rows_per_chunk = max(1, _CHUNK_CELLS // max(1, values.size))
    for start in range(0, n_boot, rows_per_chunk):
        cum = np.cumsum(counts[start : start + rows_per_chunk, sorted_owners], axis=1, dtype=np.int32)  # totals < 2**31 (MAX_CI_SAMPLES)
        total = cum[:, -1]
        # lay the rows end to end, each shifted past the previous one's largest weight, so
        # one searchsorted serves every row
        shift = np.arange(len(cum), dtype=np.int32) * np.int32(int(total.max()) + 1)
        flat = (cum + shift[:, None]).ravel()
        pos = (np.maximum(total, 1) - 1)[:, None] * q[None, :]
        lower = np.floor(pos)
        upper = np.minimum(lower + 1, np.maximum(total, 1)[:, None] - 1)
        row_start = (np.arange(len(cum)) * values.size)[:, None]
        k_lo = np.searchsorted(flat, lower + shift[:, None], side="right") - row_start
        k_hi = np.searchsorted(flat, upper + shift[:, None], side="right") - row_start
        lo = sorted_values[np.minimum(k_lo, values.size - 1)]
        hi = sorted_values[np.minimum(k_hi, values.size - 1)]
        chunk = lo + (pos - lower) * (hi - lo)
        chunk[total == 0] = np.nan
        result[start : start + len(cum)] = chunk
    out.update((stat, result[:, i]) for i, stat in enumerate(s for s in stats if s != "mean"))
    return out


def boot_throughput_factor(data: StepSamples, metric: str, counts: np.ndarray, closed_loop: bool) -> np.ndarray:
    """Each resample's throughput relative to the run's own.

    throughput = sum(tokens of succeeded requests) / duration. In closed loop the duration
    is (sum of request occupancies) / concurrency, so a resample scales the throughput by
    its token sum over its occupancy sum; in open loop the duration is set by the arrival
    rate and only the token sum (and the share of succeeded requests) varies.
    """
    per_request = {
        "output_throughput_tok_s": data.output_tokens,
        "total_throughput_tok_s": data.total_tokens,
        "request_throughput_req_s": data.ok.astype(float),
    }[metric]
    point = per_request.sum()
    if point <= 0:
        return np.zeros(counts.shape[0])
    factor = (counts @ per_request) / point
    if closed_loop:
        occupied = data.occupancy_s.sum()
        boot_occupied = counts @ data.occupancy_s
        factor = factor * np.where(boot_occupied > 0, occupied / np.where(boot_occupied > 0, boot_occupied, 1), 1.0)
    return factor


def ci_pct(base_boot: np.ndarray, new_boot: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    with np.errstate(invalid="ignore", divide="ignore"):
        change = (new_boot / base_boot - 1.0) * 100.0
    change = change[np.isfinite(change)]
    if change.size < 0.9 * len(base_boot):
        return None, None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(change, [tail, 100.0 - tail])
    return float(low), float(high)
