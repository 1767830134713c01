"""``--export vllm``: each step as the result JSON of vLLM's ``vllm bench serve --save-result``,
so dashboards and scripts built for vLLM's files read perfbench runs.

The keys are vLLM's (without ``--save-detailed``'s per-request lists); the values are perfbench's,
mapped by meaning, not by name, where the two differ:

- ``mean/median/std/p90/p95/p99_itl_ms`` are perfbench's ``inter_package_ms``: vLLM's ITL is the
  gap between streamed chunks, whatever they carry (perfbench's own ``itl_ms`` is per token);
- ``*_e2el_ms`` is ``latency_ms``; ``*_tpot_ms`` and ``*_ttft_ms`` are the same definitions
  (perfbench's TTFT counts from the scheduled send, so client lag is not hidden);
- ``duration`` is the step's duration (first scheduled send to last request finished);
- ``completed`` counts succeeded requests and ``failed`` the others, as vLLM does;
- ``max_output_tokens_per_s`` is the most output tokens that arrived within one second of the
  step (whole seconds from its first send), ``max_concurrent_requests`` the most in flight at once.
A run with one step writes ``vllm_result.json``; a ladder writes ``vllm_result_step<N>.json`` per step.
"""

from __future__ import annotations

import datetime as dt
import json
from array import array
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from perfbench.results.runfiles import iter_request_line_chunks, output_error

# perfbench's API names as vLLM's --backend (endpoint type) names.
BACKENDS = {"openai-chat": "openai-chat", "openai-completions": "openai", "openai-responses": "openai-responses",
            "openai-embeddings": "openai-embeddings"}
# vLLM's metric name -> perfbench's STEP statistic.
METRICS = {"ttft": "ttft_ms", "tpot": "tpot_ms", "itl": "inter_package_ms", "e2el": "latency_ms"}
STATISTICS = {"mean": "mean", "median": "p50", "std": "std", "p90": "p90", "p95": "p95", "p99": "p99"}


def export_vllm(run_dir: Path, summary: Mapping[str, Any]) -> list[Path]:
    """Write one vLLM result file per step of ``run_dir``; return their paths."""
    steps = summary.get("steps") or []
    per_step = _request_totals(run_dir, len(steps))
    written = []
    for index, step in enumerate(steps):
        name = "vllm_result.json" if len(steps) == 1 else f"vllm_result_step{index + 1}.json"
        path = run_dir / name
        try:
            path.write_text(json.dumps(vllm_result(summary, step, per_step[index]), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise output_error(name, exc) from None
        written.append(path)
    return written


def vllm_result(summary: Mapping[str, Any], step: Mapping[str, Any], totals: Mapping[str, Any]) -> dict[str, Any]:
    """One step as vLLM's result dict (see the module docstring for what each key holds)."""
    config = summary.get("config") or {}
    target = summary.get("target") or {}
    started = summary.get("started_at")
    try:
        date = dt.datetime.fromisoformat(str(started)).strftime("%Y%m%d-%H%M%S")
    except ValueError:
        date = None
    rate = step.get("rate_req_s")
    result: dict[str, Any] = {
        "date": date,
        "backend": BACKENDS.get(str(target.get("api")), target.get("api")),
        "label": config.get("name"),
        "model_id": target.get("model"),
        "tokenizer_id": config.get("tokenizer") or target.get("model"),
        "num_prompts": step.get("requests_expected"),
        "request_rate": rate if rate is not None else "inf",
        "burstiness": config.get("burstiness"),
        "max_concurrency": step.get("concurrency"),
        "duration": step.get("duration_s"),
        "completed": step.get("requests_succeeded"),
        "failed": step.get("requests_failed"),
        "total_input_tokens": totals["input_tokens"],
        "total_output_tokens": totals["output_tokens"],
        "request_throughput": step.get("request_throughput_req_s"),
        "request_goodput": step.get("goodput_req_s"),
        "output_throughput": step.get("output_throughput_tok_s"),
        "total_token_throughput": step.get("total_throughput_tok_s"),
        "max_output_tokens_per_s": totals["max_output_tokens_per_s"],
        "max_concurrent_requests": totals["max_concurrent_requests"],
    }
    for vllm_name, key in METRICS.items():
        stats = step.get(key) or {}
        for vllm_stat, stat in STATISTICS.items():
            result[f"{vllm_stat}_{vllm_name}_ms"] = stats.get(stat) if stats.get("count") else None
    return result


def _request_totals(run_dir: Path, steps: int) -> list[dict[str, Any]]:
    """Per step, from requests.jsonl (read in chunks, times kept as float arrays): token sums over
    succeeded requests, the peak output tokens within one second, and the peak of requests in flight."""
    tokens_in = [0] * steps
    tokens_out = [0] * steps
    sent = [array("d") for _ in range(steps)]
    ended = [array("d") for _ in range(steps)]
    token_times: list[array[float]] = [array("d") for _ in range(steps)]
    token_counts: list[array[int]] = [array("q") for _ in range(steps)]
    for chunk in iter_request_line_chunks(run_dir):
        for line in chunk:
            step = line["step"]
            if line.get("warmup") or not 0 <= step < steps:
                continue
            sent[step].append(line["sent_s"])
            ended[step].append(line["end_s"])
            if line["status"] != "ok":
                continue
            tokens_in[step] += line.get("input_tokens") or 0
            tokens_out[step] += line.get("output_tokens") or 0
            times_ms, counts = line.get("package_times_ms") or (), line.get("package_tokens") or ()
            if len(times_ms) == len(counts):  # no token count per package: the request adds to no second
                token_times[step].extend(line["scheduled_s"] + ms / 1000 for ms in times_ms)
                token_counts[step].extend(counts)
    return [
        {"input_tokens": tokens_in[i], "output_tokens": tokens_out[i],
         "max_output_tokens_per_s": _peak_per_second(token_times[i], token_counts[i], min(sent[i], default=0.0)),
         "max_concurrent_requests": _peak_in_flight(sent[i], ended[i])}
        for i in range(steps)
    ]


def _peak_per_second(times_s: Sequence[float], tokens: Sequence[int], origin_s: float) -> float:
    if not times_s:
        return 0.0
    seconds = np.floor(np.asarray(times_s) - origin_s).astype(np.int64)
    return float(np.bincount(seconds - seconds.min(), weights=np.asarray(tokens, dtype=np.float64)).max())


def _peak_in_flight(sent_s: Sequence[float], ended_s: Sequence[float]) -> int:
    if not sent_s:
        return 0
    times = np.concatenate([np.asarray(sent_s), np.asarray(ended_s)])
    change = np.concatenate([np.ones(len(sent_s)), -np.ones(len(ended_s))])
    order = np.lexsort((change, times))  # at one instant an end comes before a send
    return int(np.cumsum(change[order]).max())
