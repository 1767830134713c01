"""Sample GPU and server telemetry at a fixed interval during a run, and sum it up after.

telemetry.jsonl holds one JSON object per line, ``t_s`` being seconds since the run's start
(the same clock as requests.jsonl):

- ``{"t_s", "source": "gpu", "gpu": index, "name", "driver", "util_pct", "mem_used_mib",
  "mem_total_mib", "power_w", "energy_mj"}``: one line per GPU per sample; ``energy_mj`` is
  NVML's cumulative counter (None where unsupported).
- ``{"t_s", "source": "prometheus", KEY: value, ...}``: one scrape of ``/metrics``, one field
  per series, keys as ``parse_prometheus`` folds them (``vllm:num_requests_running{...}``).

Every other field is a numeric series over ``t_s``, so plots can draw them generically.

Sampling is timed on the run's event loop at absolute deadlines (``start + k * interval``), but
nothing of it runs there: NVML calls and the ``/metrics`` scrape (fetched, filtered to the series
the summary and the plots use, parsed) go to a thread, so the loop that stamps reads never parses
a page. A sampler never fails a run: a source that errors is logged once and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable

from perfbench.results.runfiles import write_telemetry
from perfbench.telemetry.gpu import GpuSource
from perfbench.telemetry.prometheus import KEPT_SERIES, parse_prometheus

log = logging.getLogger(__name__)

# Server series worth a line in the summary (vLLM, TGI, SGLang and similar names).
_HEADLINE_SERIES = re.compile(r"running|waiting|pending|queue|cache_usage|kv_cache|swapped", re.IGNORECASE)


class TelemetrySampler:
    """Async context manager collecting ``samples`` while the run goes on."""

    def __init__(
        self,
        *,
        run_start_ns: int,
        interval_s: float = 1.0,
        gpu: GpuSource | None,
        metrics_url: str | None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.run_start_ns = run_start_ns
        self.interval_s = interval_s
        self.gpu = gpu
        self.metrics_url = metrics_url
        self.samples: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._scraped_once = False

    async def __aenter__(self) -> "TelemetrySampler":
        self._task = asyncio.create_task(self._loop(), name="perfbench-telemetry")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._sample()  # a closing sample, so the energy counter covers the whole run

    def _t_s(self) -> float:
        return (time.perf_counter_ns() - self.run_start_ns) / 1e9

    async def _loop(self) -> None:
        start_ns = time.perf_counter_ns()
        period_ns = round(self.interval_s * 1e9)
        tick = 0
        while self.gpu is not None or self.metrics_url is not None:
            await self._sample()
            # next absolute deadline; ticks missed while a slow scrape ran are skipped, not bunched
            tick = max(tick + 1, (time.perf_counter_ns() - start_ns) // period_ns + 1)
            await asyncio.sleep(max(0.0, (start_ns + tick * period_ns - time.perf_counter_ns()) / 1e9))

    async def _sample(self) -> None:
        await asyncio.gather(self._sample_gpu(), self._scrape())

    async def _sample_gpu(self) -> None:
        gpu = self.gpu
        if gpu is None:
            return
        t_s = self._t_s()
        try:
            readings = await asyncio.to_thread(gpu.sample)
        except Exception as exc:  # noqa: BLE001 - kept broad: any GpuSource (NVML, a fake) failing must not fail the run
            log.warning("GPU telemetry failed (%s); GPU telemetry off for the rest of the run", exc)
            log.debug("GPU sample failed", exc_info=True)
            self.gpu = None
            return
        for reading in readings:
            fields = {k: v for k, v in reading.items() if k != "index"}
            self.samples.append({"t_s": t_s, "source": "gpu", "gpu": reading.get("index", 0), **fields})

    async def _scrape(self) -> None:
        url = self.metrics_url
        if url is None:
            return
        t_s = self._t_s()
        try:
            series = await asyncio.to_thread(_scrape, url, max(self.interval_s, 1.0))
        except (OSError, ValueError, UnicodeDecodeError) as exc:  # urllib's errors are OSErrors; a bad page
            if not self._scraped_once:
                log.warning("no Prometheus metrics at %s (%s); server telemetry off", url, exc or type(exc).__name__)
                self.metrics_url = None
            else:
                log.debug("scrape of %s failed: %s", url, exc)
            return
        self._scraped_once = True
        self.samples.append({"t_s": t_s, "source": "prometheus", **series})

    def write(self, path: Path) -> None:
        """Write the samples as telemetry.jsonl."""
        write_telemetry(path, self.samples)

    def summary(self, output_tokens: int) -> dict[str, Any]:
        """Energy and utilisation over the run; see ``summarize_telemetry``."""
        return summarize_telemetry(self.samples, output_tokens)


def server_series(sample: dict[str, Any]) -> dict[str, float]:
    """The series values of one prometheus sample (its fields but ``t_s`` and ``source``)."""
    return {k: v for k, v in sample.items() if k not in ("t_s", "source") and isinstance(v, (int, float))}


def _energy_j(readings: list[dict[str, Any]]) -> tuple[float | None, str | None]:
    """One GPU's energy over the samples: the counter's delta, else power integrated over time."""
    counters = [r.get("energy_mj") for r in readings]
    if len(readings) >= 2 and all(isinstance(c, (int, float)) for c in counters) and counters[-1] >= counters[0]:
        return (counters[-1] - counters[0]) / 1000.0, "counter"
    points = [(r["t_s"], r["power_w"]) for r in readings if isinstance(r.get("power_w"), (int, float))]
    if len(points) < 2:
        return None, None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(points, points[1:])), "power"


def _mean(values: Iterable[float]) -> float | None:
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def summarize_telemetry(samples: list[dict[str, Any]], output_tokens: int) -> dict[str, Any]:
    """The run's telemetry in a few numbers.

    Keys: ``gpu_count``, ``gpu_name``, ``gpu_driver``, ``energy_j`` (sum over GPUs of the
    energy counter's delta, or of power integrated by the trapezoid rule where a GPU has no
    counter), ``energy_source`` ("counter", "power", "mixed"), ``j_per_output_token``,
    ``output_tokens_per_j``, ``gpu_util_mean_pct``, ``gpu_power_mean_w``, ``gpu_mem_peak_mib``,
    ``gpu_mem_total_mib``, ``server_metrics`` ({series: {mean, max, last}} for queue and
    KV-cache gauges) and ``server_scrapes``. GPU keys are None without GPU samples.
    """
    by_gpu: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        if sample.get("source") == "gpu":
            by_gpu.setdefault(int(sample.get("gpu", 0)), []).append(sample)
    energy = [_energy_j(sorted(readings, key=lambda r: r["t_s"])) for readings in by_gpu.values()]
    energy_j = None
    sources = {source for _, source in energy}
    if energy and None not in sources:
        energy_j = sum(e for e, _ in energy)
    gpu_samples = [s for readings in by_gpu.values() for s in readings]
    first = gpu_samples[0] if gpu_samples else {}
    scrapes = [server_series(s) for s in samples if s.get("source") == "prometheus"]
    series: dict[str, dict[str, float]] = {}
    for key in dict.fromkeys(k for scrape in scrapes for k in scrape):
        if _HEADLINE_SERIES.search(key.partition("{")[0]):
            values = [scrape[key] for scrape in scrapes if key in scrape]
            series[key] = {"mean": sum(values) / len(values), "max": max(values), "last": values[-1]}
    per_token = energy_j / output_tokens if energy_j is not None and output_tokens > 0 else None
    return {
        "gpu_count": len(by_gpu),
        "gpu_name": first.get("name"),
        "gpu_driver": first.get("driver"),
        "energy_j": energy_j,
        "energy_source": (sources.pop() if len(sources) == 1 else "mixed") if energy_j is not None else None,
        "j_per_output_token": per_token,
        "output_tokens_per_j": output_tokens / energy_j if energy_j and output_tokens > 0 else None,
        "gpu_util_mean_pct": _mean(s.get("util_pct") for s in gpu_samples),
        "gpu_power_mean_w": _mean(s.get("power_w") for s in gpu_samples),
        "gpu_mem_peak_mib": max((s["mem_used_mib"] for s in gpu_samples if s.get("mem_used_mib") is not None), default=None),
        "gpu_mem_total_mib": first.get("mem_total_mib"),
        "server_scrapes": len(scrapes),
        "server_metrics": series,
    }


def _scrape(url: str, timeout_s: float) -> dict[str, float]:
    """One ``/metrics`` page (in a thread): the series worth keeping, parsed."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (the user's own server)
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}")
        text = response.read(_MAX_PAGE_BYTES).decode("utf-8")
    return parse_prometheus(text, keep=KEPT_SERIES)


_MAX_PAGE_BYTES = 16 * 2**20  # a /metrics page larger than this is read only this far
