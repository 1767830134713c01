"""perfbench.telemetry: Prometheus parsing, the sampler with a fake NVML source, the mock's real /metrics."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from perfbench.core.errors import ConfigError
from perfbench.servers.mock import MockServer
from perfbench.core.mock_config import MockConfig
from perfbench.telemetry import gpu as gpu_module
from perfbench.telemetry import sampler as sampler_module
from perfbench.telemetry.prometheus import KEPT_SERIES, metrics_url_for, parse_prometheus
from perfbench.results.runfiles import read_telemetry
from perfbench.telemetry.sampler import TelemetrySampler, summarize_telemetry

VLLM_PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama"} 3.0
vllm:num_requests_waiting{model_name="llama"} 7
vllm:gpu_cache_usage_perc{model_name="llama"} 0.25 1700000000000
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="0.5",model_name="llama"} 4.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="llama"} 9.0
vllm:e2e_request_latency_seconds_sum{model_name="llama"} 12.5
vllm:e2e_request_latency_seconds_count{model_name="llama"} 9.0
vllm:request_success_created{model_name="llama"} 1.7e9
process_open_fds 12
weird{b="x,y}",a="q\\"uote"} 1
nan_metric NaN
broken{model_name="x 1
   not a number here
"""


def test_parse_prometheus_folds_labels_and_skips_noise() -> None:
    assert parse_prometheus(VLLM_PAGE) == {
        'vllm:num_requests_running{model_name="llama"}': 3.0,
        'vllm:num_requests_waiting{model_name="llama"}': 7.0,
        'vllm:gpu_cache_usage_perc{model_name="llama"}': 0.25,
        'vllm:e2e_request_latency_seconds_sum{model_name="llama"}': 12.5,
        'vllm:e2e_request_latency_seconds_count{model_name="llama"}': 9.0,
        "process_open_fds": 12.0,
        'weird{a="q\\"uote",b="x,y}"}': 1.0,  # labels sorted
    }
    assert parse_prometheus("") == {}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://127.0.0.1:8000/v1/chat/completions", "http://127.0.0.1:8000/metrics"),
        ("https://llm.example:443/v1", "https://llm.example:443/metrics"),
        ("http://[::1]:9000", "http://[::1]:9000/metrics"),
    ],
)
def test_metrics_url_for(target: str, expected: str) -> None:
    assert metrics_url_for(target) == expected


def test_metrics_url_for_rejects_non_http() -> None:
    with pytest.raises(ConfigError, match="--metrics-url"):
        metrics_url_for("localhost:8000")


class FakeGpu:
    """Two GPUs: GPU 0 has an energy counter rising 300 J/s of wall time; GPU 1 only power (100 W)."""

    def __init__(self) -> None:
        self.start_ns = time.perf_counter_ns()
        self.calls = 0

    def sample(self) -> list[dict[str, Any]]:
        self.calls += 1
        elapsed_s = (time.perf_counter_ns() - self.start_ns) / 1e9
        base = {"driver": "550.54", "mem_total_mib": 81559.0}
        return [
            {**base, "index": 0, "name": "NVIDIA H100 80GB HBM3", "util_pct": 90.0, "mem_used_mib": 1000.0 + self.calls,
             "power_w": 300.0, "energy_mj": 5e9 + elapsed_s * 300_000.0},
            {**base, "index": 1, "name": "NVIDIA H100 80GB HBM3", "util_pct": 50.0, "mem_used_mib": 500.0,
             "power_w": 100.0, "energy_mj": None},
        ]


async def test_sampler_with_fake_gpu(tmp_path: Path) -> None:
    fake = FakeGpu()
    run_start_ns = time.perf_counter_ns()
    async with TelemetrySampler(run_start_ns=run_start_ns, interval_s=0.05, gpu=fake, metrics_url=None) as sampler:
        await asyncio.sleep(0.5)
    elapsed_s = (time.perf_counter_ns() - run_start_ns) / 1e9
    gpu0 = [s for s in sampler.samples if s["source"] == "gpu" and s["gpu"] == 0]
    assert 5 <= len(gpu0) <= 13  # ~11 ticks in 0.5 s plus the closing sample; generous on a busy machine
    times = [s["t_s"] for s in gpu0]
    assert times == sorted(times) and 0 <= times[0] < 0.2 and times[-1] <= elapsed_s
    span_s = times[-1] - times[0]
    summary = sampler.summary(output_tokens=1000)
    # GPU 0 by its counter (300 J/s), GPU 1 by power integration (100 W): 400 J per second sampled
    assert summary["energy_j"] == pytest.approx(400.0 * span_s, rel=0.05)
    assert summary["energy_source"] == "mixed"
    assert summary["j_per_output_token"] == pytest.approx(summary["energy_j"] / 1000)
    assert summary["output_tokens_per_j"] == pytest.approx(1000 / summary["energy_j"])
    assert summary["gpu_count"] == 2 and summary["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert summary["gpu_driver"] == "550.54"
    assert summary["gpu_util_mean_pct"] == pytest.approx(70.0)
    assert summary["gpu_mem_peak_mib"] == max(s["mem_used_mib"] for s in gpu0)
    # the file round-trips
    sampler.write(tmp_path / "telemetry.jsonl")
    assert read_telemetry(tmp_path) == sampler.samples


def test_summary_without_gpu_or_tokens() -> None:
    summary = summarize_telemetry([], output_tokens=0)
    assert summary["energy_j"] is None and summary["gpu_count"] == 0 and summary["j_per_output_token"] is None
    # power-only integration by the trapezoid rule: 100 W then 200 W over 2 s = 300 J
    samples = [{"t_s": 0.0, "source": "gpu", "gpu": 0, "power_w": 100.0, "energy_mj": None},
               {"t_s": 2.0, "source": "gpu", "gpu": 0, "power_w": 200.0, "energy_mj": None}]
    summary = summarize_telemetry(samples, output_tokens=600)
    assert summary["energy_j"] == 300.0 and summary["energy_source"] == "power"
    assert summary["j_per_output_token"] == 0.5 and summary["output_tokens_per_j"] == 2.0


async def test_sampler_scrapes_the_mock_metrics_while_it_serves() -> None:
    server = MockServer(MockConfig(ttft_ms=50, itl_ms=20, output_tokens=20, capacity=2))
    base_url = await server.start()
    try:
        async with aiohttp.ClientSession() as session:

            async def one_request() -> None:
                body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi there"}]}
                async with session.post(f"{base_url}/v1/chat/completions", json=body) as resp:
                    await resp.read()

            url = metrics_url_for(f"{base_url}/v1/chat/completions")
            run_start_ns = time.perf_counter_ns()
            async with TelemetrySampler(
                run_start_ns=run_start_ns, interval_s=0.05, gpu=None, metrics_url=url
            ) as sampler:
                await asyncio.wait_for(asyncio.gather(*(one_request() for _ in range(5))), timeout=10)
    finally:
        await server.stop()
    scrapes = [s for s in sampler.samples if s["source"] == "prometheus"]
    assert len(scrapes) >= 5
    running = [v for s in scrapes for k, v in s.items() if k.startswith("vllm:num_requests_running")]
    waiting = [v for s in scrapes for k, v in s.items() if k.startswith("vllm:num_requests_waiting")]
    assert max(running) == 2  # capacity 2: two generate, the rest wait
    assert max(waiting) >= 1
    summary = sampler.summary(output_tokens=100)
    assert summary["server_scrapes"] == len(scrapes)
    key = next(k for k in summary["server_metrics"] if k.startswith("vllm:num_requests_running"))
    assert summary["server_metrics"][key]["max"] == 2
    assert summary["energy_j"] is None  # no GPU source


async def test_missing_metrics_and_failing_gpu_do_not_fail_the_run(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await aiohttp_server(web.Application())  # every path: 404

    class BrokenGpu:
        def sample(self) -> list[dict[str, Any]]:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")

    caplog.set_level(logging.WARNING)
    async with TelemetrySampler(
        run_start_ns=time.perf_counter_ns(), interval_s=0.02, gpu=BrokenGpu(),
        metrics_url=str(server.make_url("/metrics")),
    ) as sampler:
        await asyncio.sleep(0.2)
    assert sampler.samples == []
    assert sampler.metrics_url is None and sampler.gpu is None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("server telemetry off" in m for m in messages) == 1
    assert sum("GPU telemetry off" in m for m in messages) == 1


def test_nvml_source_without_a_gpu_says_so_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    monkeypatch.setattr(gpu_module, "_warned", False)
    caplog.set_level(logging.WARNING)
    assert gpu_module.nvml_source() is None
    assert gpu_module.nvml_source() is None
    assert [r.getMessage() for r in caplog.records if "GPU telemetry off" in r.getMessage()] == [
        "no NVIDIA GPU found (nvidia-ml-py not installed: pip install 'perfbench[gpu]'); GPU telemetry off"
    ]
    assert gpu_module.local_gpu_info() == (None, None)


def test_the_gpu_is_sampled_only_where_the_server_may_use_this_machines_gpu() -> None:
    from perfbench.benchmark.run_benchmark import _server_on_this_machine
    from perfbench.config.run_config import config_from_settings

    assert not _server_on_this_machine(config_from_settings({}))  # the built-in mock uses no GPU
    assert not _server_on_this_machine(config_from_settings({"url": "http://gpu-box.example:8000/v1"}))  # remote: no GPU warning
    assert _server_on_this_machine(config_from_settings({"url": "http://127.0.0.1:8000/v1"}))
    assert _server_on_this_machine(config_from_settings({"url": "http://localhost:8000/v1"}))
    assert _server_on_this_machine(config_from_settings({"model": "org/model"}))  # a local server perfbench starts


def test_a_scrape_keeps_only_the_series_the_summary_and_plots_read() -> None:
    page = "\n".join([
        'vllm:num_requests_running{model_name="m"} 3',
        'vllm:gpu_cache_usage_perc{model_name="m"} 0.5',
        'vllm:generation_tokens_total{model_name="m"} 1200',
        'vllm:e2e_request_latency_seconds_bucket{le="0.3",model_name="m"} 7',
        'process_cpu_seconds_total{state="running"} 12',  # "running" only in a label: not kept
        *(f"python_gc_objects_collected_total{{generation=\"{i}\"}} {i}" for i in range(500)),
    ])
    assert parse_prometheus(page, keep=KEPT_SERIES) == {
        'vllm:num_requests_running{model_name="m"}': 3.0,
        'vllm:gpu_cache_usage_perc{model_name="m"}': 0.5,
        'vllm:generation_tokens_total{model_name="m"}': 1200.0,
    }


async def test_the_scrape_is_fetched_and_parsed_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []

    def recording(text: str, keep: Any = None) -> dict[str, float]:
        threads.append(threading.current_thread())
        return parse_prometheus(text, keep)

    monkeypatch.setattr(sampler_module, "parse_prometheus", recording)
    server = MockServer(MockConfig(ttft_ms=5, itl_ms=1))
    base_url = await server.start()
    try:
        async with TelemetrySampler(run_start_ns=time.perf_counter_ns(), interval_s=0.05, gpu=None,
                                    metrics_url=metrics_url_for(f"{base_url}/v1/chat/completions")) as sampler:
            await asyncio.sleep(0.2)
    finally:
        await server.stop()
    assert threads and threading.current_thread() not in threads
    assert any(k.startswith("vllm:num_requests_running") for s in sampler.samples for k in s)
