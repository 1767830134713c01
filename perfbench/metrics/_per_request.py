"""Per-request metrics: each formula of DESIGN.md's table once, column-wise over many records.

Records become ``Columns`` (one array per field, packages flattened); each metric is a function
of those columns. The public one-record functions (``ttft_ms`` ...) run the same code on a single
record, so each formula exists once. No value is NaN in the arrays and None for one record, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Callable

import numpy as np

from perfbench.results.records import RequestRecord

_NS_PER_MS = 1e6


@dataclass(frozen=True, slots=True)
class Columns:
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
    def of(cls, records: Sequence[RequestRecord]) -> Columns:
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


def latency_column(c: Columns) -> np.ndarray:
    """Latency (end-to-end), ms: ``t_last - t0``; a succeeded answer without output packages (embeddings)
    ends with its body: ``end - t0``. No value for a failed request without output."""
    streamed = c.n_pkg > 0
    return _span_ms(np.where(streamed, c.last_ns, c.end_ns), c.scheduled_ns, streamed | c.ok)


def ttft_column(c: Columns) -> np.ndarray:
    """TTFT (time to first token), ms: ``t_first - t0``. No value without output packages."""
    return _span_ms(c.first_ns, c.scheduled_ns, c.n_pkg > 0)


def tpot_column(c: Columns) -> np.ndarray:
    """TPOT (time per output token after the first), ms: ``(t_last - t_first) / (n_out - 1)``.

    Defined for ``n_out >= 2`` (and at least one package); TTFT is never part of it.
    """
    n_out = c.output_tokens
    defined = (c.n_pkg > 0) & (np.nan_to_num(n_out) >= 2)
    return _span_ms(c.last_ns, c.first_ns, defined, np.where(defined, n_out - 1, 1.0))


def time_per_package_column(c: Columns) -> np.ndarray:
    """Time per package, ms: ``(t_last - t_first) / (n_pkg - 1)``, for ``n_pkg >= 2``."""
    defined = c.n_pkg >= 2
    return _span_ms(c.last_ns, c.first_ns, defined, np.where(defined, c.n_pkg - 1, 1).astype(np.float64))


def queue_column(c: Columns) -> np.ndarray:
    """Queue time (client lag), ms: ``sent - t0``, how late the request left after it was due."""
    return (c.sent_ns - c.scheduled_ns) / _NS_PER_MS


def itl_per_token(c: Columns) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def inter_package_samples(c: Columns) -> tuple[np.ndarray, np.ndarray]:
    """Inter-package gaps, ms: the plain gap between consecutive output packages of a request, not
    shared over their tokens (what vLLM, EvalScope and AIPerf call ITL). Returns (gaps, owner record)."""
    if not len(c.pkg_ns):
        return np.empty(0), np.empty(0, dtype=np.int64)
    owner = np.repeat(np.arange(len(c.n_pkg)), c.n_pkg)
    pair = owner[1:] == owner[:-1]
    return np.diff(c.pkg_ns)[pair] / _NS_PER_MS, owner[1:][pair]


def itl_samples(c: Columns) -> tuple[np.ndarray, np.ndarray]:
    """ITL samples (``itl_per_token``) with the record each belongs to, for a bootstrap by request."""
    samples, _, owners = itl_per_token(c)
    return samples, owners


def _one(metric: Callable[[Columns], np.ndarray], record: RequestRecord) -> float | None:
    value = float(metric(Columns.of([record]))[0])
    return None if math.isnan(value) else value


def latency_ms(record: RequestRecord) -> float | None:
    """Latency (end-to-end) of one request, ms: ``t_last - t0``; None without output."""
    return _one(latency_column, record)


def ttft_ms(record: RequestRecord) -> float | None:
    """TTFT of one request, ms: ``t_first - t0``; None without output."""
    return _one(ttft_column, record)


def tpot_ms(record: RequestRecord) -> float | None:
    """TPOT of one request, ms: ``(t_last - t_first) / (n_out - 1)``; None unless ``n_out >= 2``."""
    return _one(tpot_column, record)


def time_per_package_ms(record: RequestRecord) -> float | None:
    """Time per package of one request, ms: ``(t_last - t_first) / (n_pkg - 1)``; None unless ``n_pkg >= 2``."""
    return _one(time_per_package_column, record)


def queue_ms(record: RequestRecord) -> float | None:
    """Queue time (client lag) of one request, ms: ``sent - t0``."""
    return _one(queue_column, record)


def itl_ms(record: RequestRecord) -> np.ndarray:
    """ITL samples of one request, ms, one per token after the first package (see ``itl_per_token``); empty when none."""
    return itl_per_token(Columns.of([record]))[0]


def requests_times_ms(records: Sequence[RequestRecord]) -> dict[str, list[float | None]]:
    """``ttft_ms`` and ``latency_ms`` of each request (None where they do not apply): ``ttft_column``'s
    and ``latency_column``'s formulas for one record at a time, with no array built (requests.jsonl
    gets them for every request as it finishes; a test holds them equal to the columns)."""
    ttft: list[float | None] = []
    latency: list[float | None] = []
    for record in records:
        t0, times = record.scheduled_ns, record.package_times_ns
        if times:
            ttft.append((times[0] - t0) / _NS_PER_MS)
            latency.append((times[-1] - t0) / _NS_PER_MS)
        else:
            ttft.append(None)
            latency.append((record.end_ns - t0) / _NS_PER_MS if record.ok else None)
    return {"ttft_ms": ttft, "latency_ms": latency}


def inter_package_ms(record: RequestRecord) -> np.ndarray:
    """Gaps between one request's consecutive output packages, ms, not shared over tokens; empty when none."""
    return inter_package_samples(Columns.of([record]))[0]


def per_request_ms(records: Sequence[RequestRecord]) -> dict[str, np.ndarray]:
    """Per-request metrics of many records at once, as float64 arrays (NaN = no value).

    Keys: ``ttft_ms``, ``latency_ms``, ``tpot_ms``, ``time_per_package_ms``, ``queue_ms`` and
    ``itl_max_ms`` (a request's largest per-token ITL). For plots and per-request SLO checks.
    """
    c = Columns.of(records)
    return {
        "ttft_ms": ttft_column(c),
        "latency_ms": latency_column(c),
        "tpot_ms": tpot_column(c),
        "time_per_package_ms": time_per_package_column(c),
        "queue_ms": queue_column(c),
        "itl_max_ms": itl_per_token(c)[1],
    }
