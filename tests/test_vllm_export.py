"""--export vllm: each step as vLLM's `bench serve --save-result` JSON, keys as vLLM writes them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfbench.commands.main import main
from perfbench.report.vllm_export import _peak_in_flight, _peak_per_second

# What vllm/benchmarks/serve.py writes with --save-result (without --save-detailed), for ttft, tpot,
# itl and e2el with percentiles 90, 95 and 99.
VLLM_KEYS = {
    "date", "backend", "label", "model_id", "tokenizer_id", "num_prompts", "request_rate", "burstiness", "max_concurrency",
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput", "request_goodput",
    "output_throughput", "total_token_throughput", "max_output_tokens_per_s", "max_concurrent_requests",
} | {f"{stat}_{metric}_ms" for metric in ("ttft", "tpot", "itl", "e2el") for stat in ("mean", "median", "std", "p90", "p95", "p99")}


def test_a_ladder_writes_one_vllm_result_per_step_with_perfbench_values(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["--mock", "ttft_ms=10,itl_ms=2,tokens_per_package=2", "-c", "2,4", "-n", "8,12", "--max-tokens", "6",
                 "--export", "vllm", "--export", "vllm", "--no-live", "--no-plots", "--no-telemetry", "--output-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in out.glob("vllm_result*.json")) == ["vllm_result_step1.json", "vllm_result_step2.json"]
    for index, step in enumerate(summary["steps"]):
        result = json.loads((out / f"vllm_result_step{index + 1}.json").read_text())
        assert set(result) == VLLM_KEYS
        assert (result["completed"], result["failed"], result["num_prompts"]) == (step["requests_succeeded"], 0, [8, 12][index])
        assert result["max_concurrency"] == [2, 4][index] and result["request_rate"] == "inf"
        assert result["backend"] == "openai-chat" and result["model_id"] == "mock"
        assert result["mean_ttft_ms"] == step["ttft_ms"]["mean"] and result["median_ttft_ms"] == step["ttft_ms"]["p50"]
        assert result["p99_e2el_ms"] == step["latency_ms"]["p99"]
        # vLLM's ITL is the gap between chunks: with 2 tokens a chunk it is twice perfbench's per-token ITL.
        assert result["mean_itl_ms"] == step["inter_package_ms"]["mean"]
        assert result["mean_itl_ms"] == pytest.approx(2 * step["itl_ms"]["mean"], rel=0.05)
        mine = [line for line in lines if line["step"] == index]
        assert result["total_output_tokens"] == sum(line["output_tokens"] for line in mine) == 6 * len(mine)
        assert result["total_input_tokens"] == sum(line["input_tokens"] for line in mine)
        assert result["max_concurrent_requests"] == [2, 4][index]  # closed loop: every slot busy, an end before the next send
        assert 0 < result["max_output_tokens_per_s"] <= result["total_output_tokens"]


def test_peaks() -> None:
    assert _peak_in_flight([0.0, 0.5, 1.0], [1.0, 1.5, 2.0]) == 2  # the third starts as the first ends
    assert _peak_in_flight([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]) == 3
    assert _peak_in_flight([], []) == 0
    assert _peak_per_second([10.1, 10.2, 11.5, 11.6, 11.7], [1, 1, 2, 2, 2], origin_s=10.0) == 6.0
    assert _peak_per_second([], [], origin_s=0.0) == 0.0


def test_an_unknown_format_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--export", "aiperf", "--output-dir", str(tmp_path / "x")]) == 2
    assert "invalid choice: 'aiperf'" in capsys.readouterr().err
