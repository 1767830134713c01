"""Test helper: synthetic run directories (requests.jsonl + summary.json) with known noise.

``simulate_step`` plays a closed-loop server whose TTFT is lognormal and whose per-token gap
is lognormal per request; ``write_run`` writes the records as perfbench does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from perfbench.metrics import summarize_step
from perfbench.report.requests_file import request_line
from perfbench.results.records import OK, RequestRecord

RUN_START_NS = 1_000_000_000


@dataclass(frozen=True)
class StepSpec:
    concurrency: int = 4
    requests: int = 300
    ttft_ms: float = 100.0  # median TTFT
    itl_ms: float = 20.0  # median per-token gap
    output_tokens: int = 40  # mean output tokens
    slowdown: float = 1.0  # every time multiplied by this
    failures: int = 0  # the first `failures` requests fail
    failure_ms: float = 5.0  # how long a failed request holds its slot
    error: str = "HTTP 500: upstream failed"


def simulate_step(step: int, spec: StepSpec, rng: np.random.Generator) -> list[RequestRecord]:
    """Closed loop: each of `concurrency` slots sends its next request when the last ends."""
    slots = [RUN_START_NS] * spec.concurrency
    records = []
    for index in range(spec.requests):
        slot = int(np.argmin(slots))
        t0 = slots[slot]
        if index < spec.failures:
            end = t0 + int(spec.failure_ms * 1e6)
            records.append(
                RequestRecord(step, index, False, "http_500", 500, spec.error, t0, t0, end, (), (), 10, None, None)
            )
            slots[slot] = end
            continue
        ttft_ms = spec.ttft_ms * spec.slowdown * rng.lognormal(0.0, 0.35)
        gap_ms = spec.itl_ms * spec.slowdown * rng.lognormal(0.0, 0.2)
        n_out = max(2, int(rng.poisson(spec.output_tokens)))
        gaps = gap_ms * rng.lognormal(0.0, 0.1, size=n_out - 1)
        times_ms = ttft_ms + np.concatenate([[0.0], np.cumsum(gaps)])
        times_ns = tuple(t0 + int(ms * 1e6) for ms in times_ms)
        end = times_ns[-1] + 100_000
        records.append(
            RequestRecord(step, index, False, OK, 200, None, t0, t0, end, times_ns, (1,) * n_out, 10, n_out, "usage")
        )
        slots[slot] = end
    return records


def summarize(records: list[RequestRecord], concurrency: int, rate: float | None = None) -> dict[str, Any]:
    """A STEP of summary.json, as perfbench writes it."""
    return summarize_step(records, concurrency=concurrency, rate_req_s=rate, requests_expected=len(records)).to_dict()


def write_run(
    run_dir: Path,
    specs: Sequence[StepSpec] = (StepSpec(),),
    *,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    model: str = "tiny-model",
    started_at: str = "2024-05-01T02:00:00Z",
) -> Path:
    """Write a run directory with one step per spec; returns it."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = []
    with (run_dir / "requests.jsonl").open("w", encoding="utf-8") as fh:
        for i, spec in enumerate(specs):
            records = simulate_step(i, spec, rng)
            for record in records:
                fh.write(json.dumps(request_line(record, RUN_START_NS)) + "\n")
            steps.append(summarize(records, spec.concurrency))
    summary = {
        "schema": "perfbench.summary/1", "perfbench_version": "0.1.0", "started_at": started_at,
        "target": {"url": "http://127.0.0.1:8000/v1/chat/completions", "api": "openai-chat", "model": model,
                   "simulated": True},
        "config": config or {"concurrency": [s.concurrency for s in specs], "max_tokens": 64},
        "steps": steps,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return run_dir
