"""What the plots draw, read from a run directory's files: its steps, SLO limits and knee
(summary.json), and its requests as numeric columns (requests.jsonl, chunk by chunk)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from perfbench import metrics
from perfbench.core.errors import ConfigError
from perfbench.results.records import RequestRecord
from perfbench.results.runfiles import iter_record_chunks, step_label
from perfbench.metrics.knee import find_knee
from perfbench.metrics.slo import split_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One summary.json step with what the plots need."""

    index: int  # position in summary.json (= records' step)
    label: str  # runfiles.step_label ("c=8", "rate=4/s cap=8"), "#3 " before it when a load repeats
    load: float  # concurrency or requests/s
    data: dict[str, Any]  # the STEP object

    def stat(self, metric: str, stat: str) -> float:
        value = (self.data.get(metric) or {}).get(stat)
        return math.nan if value is None else float(value)

    def value(self, key: str) -> float:
        value = self.data.get(key)
        return math.nan if value is None else float(value)


@dataclass(frozen=True)
class Limit:
    """A step-limit SLO, e.g. ttft_p99 <= 500 ms."""

    metric: str  # its name in --slo: a key of perfbench.metrics.SLO_METRICS
    stat: str  # "p99", "mean", ...
    limit_ms: float

    @property
    def label(self) -> str:
        return f"SLO {self.metric}_{self.stat} ≤ {self.limit_ms:g} ms"


def read_steps(summary: dict[str, Any]) -> list[Step]:
    steps = []
    for index, data in enumerate(summary["steps"]):
        rate = data.get("rate_req_s")
        load = float(rate) if rate is not None else float(data.get("concurrency") or 0)
        steps.append(Step(index, step_label(data), load, data))
    labels = [s.label for s in steps]
    if len(set(labels)) < len(labels):  # repeated loads: tell them apart by step number
        steps = [Step(s.index, f"#{s.index + 1} {s.label}", s.load, s.data) for s in steps]
    return steps


def by_load(steps: Iterable[Step]) -> list[Step]:
    return sorted(steps, key=lambda s: (s.load, s.index))


def read_slos(summary: dict[str, Any]) -> tuple[list[Limit], dict[str, float]]:
    """Step limits (from the steps' verdicts, else the config) and per-request limits (config)."""
    limits: dict[str, Limit] = {}
    for step in summary["steps"]:
        for result in step.get("slo_results") or ():
            metric, stat = split_name(str(result.get("name", "")))
            if stat and isinstance(result.get("limit_ms"), (int, float)):
                limits.setdefault(result["name"], Limit(metric, stat, float(result["limit_ms"])))
    per_request: dict[str, float] = {}
    config = summary.get("config") or {}
    text = config.get("slo_text") or config.get("slo")
    if isinstance(text, str) and text:
        from perfbench.metrics.slo import parse_slos

        try:
            slos = parse_slos(text)
        except ConfigError:
            log.warning("summary.json config slo %r unreadable; plotting without it", text)
        else:
            per_request = dict(slos.per_request_ms)
            for limit in slos.step_limits:
                limits.setdefault(limit.name, Limit(limit.metric, limit.stat, limit.limit_ms))
    return list(limits.values()), per_request


def knee_of(summary: dict[str, Any], steps: list[Step]) -> tuple[float | None, str]:
    search = summary.get("search")
    if isinstance(search, dict):
        return search.get("knee"), "search"
    knee = find_knee(
        [s.load for s in steps],
        [s.value("request_throughput_req_s") for s in steps],
        [s.stat("latency_ms", "p50") for s in steps],
    )
    return knee, "estimated"


def run_title(summary: dict[str, Any], run_dir: Path) -> str:
    config = summary.get("config") or {}
    target = summary.get("target") or {}
    name = config.get("name") or run_dir.name
    model = target.get("model")
    parts = [str(name)]
    if model:
        parts.append(f"model {model}")
    if target.get("simulated"):
        parts.append("simulated (built-in mock)")
    return " · ".join(parts)


@dataclass(frozen=True)
class Requests:
    """requests.jsonl as the numeric columns the plots draw: one entry per record (times in s
    since the run's start), and one per output package. Read chunk by chunk, so a run of a
    million requests never exists as record objects at once."""

    step: np.ndarray  # int64: the record's step
    warmup: np.ndarray  # bool
    ok: np.ndarray  # bool: status "ok"
    scheduled_s: np.ndarray  # float64: t0
    sent_s: np.ndarray  # float64
    end_s: np.ndarray  # float64
    ttft_ms: np.ndarray  # float64, NaN without output packages (metrics.py's definition)
    latency_ms: np.ndarray  # float64, NaN without output packages (metrics.py's definition)
    tokens: _TokenHistogram  # output tokens by package arrival

    @property
    def measured(self) -> np.ndarray:
        """Succeeded, non-warm-up records with output: the ones in the latency statistics."""
        return self.ok & ~self.warmup & ~np.isnan(self.ttft_ms)


def read_requests(run_dir: Path) -> Requests:
    """The run's records as ``Requests`` columns (ConfigError for a damaged requests.jsonl)."""
    names = [f.name for f in Requests.__dataclass_fields__.values() if f.name != "tokens"]
    dtypes = {"step": np.int64, "warmup": bool, "ok": bool}
    columns = {name: metrics.GrowingArray(dtypes.get(name, np.float64)) for name in names}
    tokens = _TokenHistogram()
    for chunk in iter_record_chunks(run_dir):
        n = len(chunk)
        values_ms = metrics.per_request_ms(chunk)
        columns["step"].extend(np.fromiter((r.step for r in chunk), dtype=np.int64, count=n))
        columns["warmup"].extend(np.fromiter((r.warmup for r in chunk), dtype=bool, count=n))
        columns["ok"].extend(np.fromiter((r.ok for r in chunk), dtype=bool, count=n))
        for name, attribute in (("scheduled_s", "scheduled_ns"), ("sent_s", "sent_ns"), ("end_s", "end_ns")):
            columns[name].extend(np.fromiter((getattr(r, attribute) for r in chunk), dtype=np.int64, count=n) / 1e9)
        columns["ttft_ms"].extend(values_ms["ttft_ms"])
        columns["latency_ms"].extend(values_ms["latency_ms"])
        tokens.add(*_package_tokens(chunk))
    return Requests(**{name: column.values for name, column in columns.items()}, tokens=tokens)


_FINE_BIN_S = 0.01  # the narrowest timeline bin (_requests._bin_s)
_MAX_FINE_BINS = 1_000_000  # past this many, the fine bins become 10x wider (a run of hours needs no 10 ms bins)


class _TokenHistogram:
    """Output tokens by arrival time, counted into fine bins as chunks are read, so the packages
    of a long run are never all held. A bin spans ``[k, k+1) * width_s`` since the run's start;
    ``width_s`` (10 ms, 10x wider whenever a run outgrows the bins) divides every width ``_requests._bin_s``
    picks for the run, so the timeline's bins, aligned to multiples of their width, are sums of whole fine bins.
    """

    def __init__(self) -> None:
        self.width_s = _FINE_BIN_S
        self.tokens = np.zeros(0)  # tokens per fine bin

    def add(self, times_s: np.ndarray, tokens: np.ndarray) -> None:
        if not len(times_s):
            return
        index = np.maximum(np.floor(times_s / self.width_s), 0).astype(np.int64)  # none arrive before the start
        while int(index.max()) >= _MAX_FINE_BINS:
            self._coarsen()
            index //= 10
        counted = np.bincount(index, weights=tokens)
        if len(counted) > len(self.tokens):
            self.tokens = np.concatenate([self.tokens, np.zeros(len(counted) - len(self.tokens))])
        self.tokens[: len(counted)] += counted

    def _coarsen(self) -> None:
        padded = np.concatenate([self.tokens, np.zeros(-len(self.tokens) % 10)])
        self.tokens = padded.reshape(-1, 10).sum(axis=1)
        self.width_s *= 10

    def per_bin(self, edges: np.ndarray) -> np.ndarray:
        """Tokens in each bin between consecutive ``edges`` (each fine bin counted where its middle falls)."""
        middles = (np.arange(len(self.tokens)) + 0.5) * self.width_s
        counts, _ = np.histogram(middles, bins=edges, weights=self.tokens)
        return counts


def _package_tokens(records: Sequence[RequestRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Arrival (s) and output tokens of every package; without per-package counts, spread evenly."""
    times: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    for r in records:
        if not r.package_times_ns:
            continue
        times.append(np.asarray(r.package_times_ns, dtype=np.float64) / 1e9)
        if len(r.package_tokens) == len(r.package_times_ns):
            tokens.append(np.asarray(r.package_tokens, dtype=np.float64))
        else:
            total = r.output_tokens if r.output_tokens else len(r.package_times_ns)
            tokens.append(np.full(len(r.package_times_ns), total / len(r.package_times_ns)))
    if not times:
        return np.array([]), np.array([])
    return np.concatenate(times), np.concatenate(tokens)
