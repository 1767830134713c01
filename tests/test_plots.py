"""Plots: built from a run directory's files alone; which figures appear, and the numbers behind them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from perfbench.core.errors import ConfigError
from perfbench.metrics import summarize_step
from perfbench.results.records import OK, RequestRecord, http_reason

HTTP_500 = http_reason(500)
from perfbench.report import plots
from perfbench.report.plots import _inputs, _requests, _telemetry
from perfbench.results.runfiles import read_records
from perfbench.report.requests_file import RecordWriter
from perfbench.metrics.slo import parse_slos
from usage_errors import assert_one_line_usage_error

MS = 1_000_000  # ns


def record(step: int, index: int, start_ms: float, ttft_ms: float, tokens: int, itl_ms: float, *, warmup: bool = False,
           status: str = OK) -> RequestRecord:  # fmt: skip
    """A request sent at ``start_ms`` streaming ``tokens`` one-token packages, ``itl_ms`` apart."""
    t0 = round(start_ms * MS)
    times = tuple(t0 + round((ttft_ms + k * itl_ms) * MS) for k in range(tokens)) if status == OK else ()
    return RequestRecord(
        step=step, index=index, warmup=warmup, status=status, http_status=200 if status == OK else 500,
        error=None if status == OK else "HTTP 500", scheduled_ns=t0, sent_ns=t0,
        end_ns=times[-1] if times else t0 + 5 * MS, package_times_ns=times, package_tokens=(1,) * len(times),
        input_tokens=10, output_tokens=tokens if status == OK else None, token_source="usage" if status == OK else None,
    )  # fmt: skip


def closed_loop_step(step: int, concurrency: int, slots: int, start_ms: float, waves: int = 4) -> list[RequestRecord]:
    """``concurrency`` clients against ``slots`` slots, 10 tokens at 5 ms after a 20 ms TTFT (65 ms each)."""
    service_ms = 20 + 9 * 5
    out = []
    for k in range(concurrency * waves):
        wave, client = divmod(k, concurrency)
        queue_ms = (client // slots) * service_ms  # clients past the slots wait a service time per rank
        cycle_ms = service_ms * -(-concurrency // slots)
        out.append(record(step, k, start_ms + wave * cycle_ms, 20 + queue_ms, 10, 5))
    return out


def write_run(run_dir: Path, steps: list[list[RequestRecord]], *, slo: str | None = None, search: dict | None = None,
              loads: list[tuple[int, float | None]] | None = None) -> Path:  # fmt: skip
    """A run directory as perfbench writes it: requests.jsonl via RecordWriter, summary.json of StepSummary dicts."""
    run_dir.mkdir(parents=True, exist_ok=True)
    writer = RecordWriter(run_dir / "requests.jsonl", run_start_ns=0)
    for records in steps:
        for r in records:
            writer.write(r)
    writer.close()
    slos = parse_slos(slo) if slo else None
    loads = loads or [(max(1, len({r.index for r in rs if not r.warmup}) // 4), None) for rs in steps]
    summaries = [
        summarize_step(rs, concurrency=c, rate_req_s=rate, requests_expected=len(rs), slos=slos).to_dict()
        for rs, (c, rate) in zip(steps, loads)
    ]
    summary = {
        "schema": "perfbench.summary/1",
        "target": {"url": "http://127.0.0.1:1/v1/chat/completions", "api": "openai-chat", "model": "m", "simulated": True},
        "config": {"name": "plot-test", "slo_text": slo},
        "steps": summaries,
    }
    if search is not None:
        summary["search"] = search
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return run_dir


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def ladder(tmp_path: Path) -> Path:
    steps = []
    start_ms = 0.0
    for index, c in enumerate((1, 2, 4, 8, 16)):
        records = closed_loop_step(index, c, slots=4, start_ms=start_ms)
        steps.append(records)
        start_ms = max(r.end_ns for r in records) / MS + 10
    loads = [(c, None) for c in (1, 2, 4, 8, 16)]
    return write_run(tmp_path / "run", steps, slo="ttft_p99=60,tpot_p99=20,latency=200", loads=loads)


def test_ladder_gets_every_figure(tmp_path: Path) -> None:
    run_dir = ladder(tmp_path)
    written = plots.write_plots(run_dir)
    assert [p.name for p in written] == ["capacity.png", "percentiles.png", "latency_cdf.png", "timeline.png"]
    for path in written:
        assert path.parent == run_dir / "plots"
        width, height = png_size(path)
        assert width >= 800 and height >= 400
        assert path.stat().st_size > 20_000  # drawn, not blank


def test_single_step_skips_cross_step_plot(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "one", [closed_loop_step(0, 4, slots=4, start_ms=0)], loads=[(4, None)])
    names = [p.name for p in plots.write_plots(run_dir)]
    assert names == ["percentiles.png", "latency_cdf.png", "timeline.png"]


def test_knee_from_search_or_estimated_from_ladder(tmp_path: Path) -> None:
    run_dir = ladder(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    steps = _inputs.read_steps(summary)
    assert [s.label for s in steps] == ["c=1", "c=2", "c=4", "c=8", "c=16"]
    assert _inputs.knee_of(summary, steps) == (4.0, "estimated")  # throughput flat past 4 slots
    summary["search"] = {"dimension": "concurrency", "max_passing": 4, "knee": 8, "precision": 0.1}
    assert _inputs.knee_of(summary, steps) == (8, "search")


def test_slo_limits_read_from_steps_and_config(tmp_path: Path) -> None:
    summary = json.loads((ladder(tmp_path) / "summary.json").read_text())
    limits, per_request = _inputs.read_slos(summary)
    assert {(x.metric, x.stat, x.limit_ms) for x in limits} == {("ttft", "p99", 60.0), ("tpot", "p99", 20.0)}
    assert per_request == {"latency": 200.0}
    assert [s["slo_passed"] for s in summary["steps"]] == [True, True, True, False, False]


def test_search_run_and_rate_steps_plot(tmp_path: Path) -> None:
    # Probes in search order (not sorted), open-loop steps labelled by rate.
    steps, loads, start_ms = [], [], 0.0
    for index, rate in enumerate((2.0, 4.0, 8.0, 6.0)):
        records = [record(index, k, start_ms + k * 1000 / rate, 20 + (rate > 5) * 100 * k, 10, 5) for k in range(8)]
        steps.append(records)
        loads.append((64, rate))
        start_ms = max(r.end_ns for r in records) / MS
    search = {"dimension": "rate", "max_passing": 4.0, "knee": 4.0, "precision": 0.1}
    run_dir = write_run(tmp_path / "search", steps, slo="ttft_p99=100", search=search, loads=loads)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s.label for s in _inputs.by_load(_inputs.read_steps(summary))] == ["rate=2/s cap=64", "rate=4/s cap=64", "rate=6/s cap=64", "rate=8/s cap=64"]
    assert "capacity.png" in [p.name for p in plots.write_plots(run_dir)]


def test_failures_warmup_and_torn_last_line(tmp_path: Path) -> None:
    records = [record(0, k, k * 10, 20, 5, 5, warmup=True) for k in range(2)]
    records += [record(0, k, 100 + k * 10, 20, 5, 5) for k in range(6)]
    records += [record(0, 6, 200, 0, 0, 0, status=HTTP_500)]
    run_dir = write_run(tmp_path / "f", [records], loads=[(2, None)])
    with (run_dir / "requests.jsonl").open("a") as f:
        f.write('{"step": 0, "index": 7, "stat')  # an interrupted run's last line
    assert len(read_records(run_dir)) == 9
    assert "timeline.png" in [p.name for p in plots.write_plots(run_dir)]


def test_all_failed_step_plots_what_it_can(tmp_path: Path) -> None:
    records = [record(0, k, k * 10, 0, 0, 0, status=HTTP_500) for k in range(4)]
    run_dir = write_run(tmp_path / "bad", [records], loads=[(1, None)])
    assert [p.name for p in plots.write_plots(run_dir)] == ["timeline.png"]


def test_telemetry_series(tmp_path: Path) -> None:
    # The shapes perfbench/telemetry/sampler.py writes: one line per GPU per sample, one per scrape.
    run_dir = ladder(tmp_path)
    gpu = [
        {"t_s": t * 0.1, "source": "gpu", "gpu": g, "name": "NVIDIA H100", "driver": "550.54", "util_pct": 50.0 + t,
         "mem_used_mib": 1000.0, "mem_total_mib": 80000.0, "power_w": 200.0 + g, "energy_mj": 1000.0 * t}
        for t in range(20) for g in (0, 1)
    ]  # fmt: skip
    scrapes = [
        {"t_s": t * 0.2, "source": "prometheus", 'vllm:num_requests_running{model_name="m"}': t % 5,
         'vllm:num_requests_waiting{model_name="m"}': 0.0, 'vllm:generation_tokens_total{model_name="m"}': 100.0 * t,
         'vllm:request_success_total{finished_reason="length",model_name="m"}': t}
        for t in range(10)
    ]  # fmt: skip
    (run_dir / "telemetry.jsonl").write_text("\n".join(json.dumps(x) for x in gpu + scrapes) + "\nnot json\n")
    series = {(x.panel, x.label): x for x in _telemetry.telemetry_series(run_dir)}
    assert list(series) == [
        ("Server requests", "running"),
        ("Server requests", "waiting"),
        ("Server generated tokens (1/s)", "server output tok/s"),
        ("GPU utilization (%)", "GPU 0"),
        ("GPU utilization (%)", "GPU 1"),
        ("GPU power (W)", "GPU 0"),
        ("GPU power (W)", "GPU 1"),
        ("GPU memory used (MiB)", "GPU 0"),
        ("GPU memory used (MiB)", "GPU 1"),
    ]
    rate = series[("Server generated tokens (1/s)", "server output tok/s")]
    assert rate.values == pytest.approx([500.0] * 9)  # 100 tokens per 0.2 s: a counter becomes a rate
    assert rate.times_s[0] == pytest.approx(0.1)  # drawn between the two scrapes
    assert series[("GPU power (W)", "GPU 1")].values[-1] == 201.0
    assert plots.write_plots(run_dir)[-1].name == "telemetry.png"


def test_busy_time_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    start = rng.uniform(0, 10, 200)
    end = start + rng.uniform(0, 3, 200)
    at = np.linspace(-1, 14, 61)
    brute = np.array([np.clip(t - start, 0, end - start).sum() for t in at])
    assert _requests._busy_time_s(start, end, at) == pytest.approx(brute)
    # one request in flight from 1 s to 3 s: a 1 s bin over [1.5, 2.5] holds one request on average
    assert np.diff(_requests._busy_time_s(np.array([1.0]), np.array([3.0]), np.array([1.5, 2.5]))) == pytest.approx([1.0])


@pytest.mark.parametrize(("duration_s", "width_s"), [(0.5, 0.01), (14, 0.1), (43, 0.2), (600, 5), (3600, 20)])
def test_bin_width(duration_s: float, width_s: float) -> None:
    assert _requests._bin_s(duration_s) == width_s


def test_main_lists_files_and_rejects_a_dir_without_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = ladder(tmp_path)
    assert plots.main([str(run_dir)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(run_dir / "plots" / "capacity.png")
    assert plots.main([str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.startswith("perfbench: error: ")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "summary.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="has no 'steps' list"):
        plots.write_plots(tmp_path / "junk")


def test_module_import_does_not_load_matplotlib() -> None:
    import subprocess
    import sys

    code = "import sys, perfbench.report.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_plot_usage_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    assert_one_line_usage_error("plot", expect="required: DIR")
    assert_one_line_usage_error("plot", str(tmp_path), "--what", expect="unrecognized arguments: --what")


def test_plots_read_requests_in_chunks_and_draw_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A million-request run must never exist as record objects at once: the plots read
    # requests.jsonl chunk by chunk. Small chunks must draw exactly what one chunk draws.
    from perfbench.results import runfiles

    steps = [closed_loop_step(0, 8, slots=4, start_ms=0, waves=20), closed_loop_step(1, 16, slots=4, start_ms=9000, waves=20)]
    steps[0][5:9] = [record(0, k, 50 * k, 0, 0, 0, status=HTTP_500) for k in range(5, 9)]
    run_dir = write_run(tmp_path / "run", steps, loads=[(8, None), (16, None)])
    one = {p.name: p.read_bytes() for p in plots.write_plots(run_dir)}
    largest: list[int] = []

    def small_chunks(run_dir: Path, size: int = 0):
        for chunk in runfiles.iter_record_chunks(run_dir, size=7):
            largest.append(len(chunk))
            yield chunk

    monkeypatch.setattr(_inputs, "iter_record_chunks", small_chunks)
    chunked = {p.name: p.read_bytes() for p in plots.write_plots(run_dir)}
    assert len(largest) > 40 and max(largest) == 7
    assert chunked.keys() == one.keys() == {"capacity.png", "percentiles.png", "latency_cdf.png", "timeline.png"}
    assert chunked == one


@pytest.mark.parametrize("max_fine_bins", [1_000_000, 50])
def test_token_histogram_counts_what_a_histogram_of_every_package_counts(monkeypatch: pytest.MonkeyPatch, max_fine_bins: int) -> None:
    # The timeline counts packages into fine bins as chunks arrive instead of keeping them; with
    # few bins allowed it coarsens 10x (twice here: 10 ms -> 1 s) and must still count every token.
    monkeypatch.setattr(_inputs, "_MAX_FINE_BINS", max_fine_bins)
    rng = np.random.default_rng(3)
    times_s = np.sort(rng.uniform(0, 40, 5000))
    tokens = rng.integers(1, 4, 5000).astype(np.float64)
    histogram = _inputs._TokenHistogram()
    for part in np.array_split(np.arange(5000), 13):
        histogram.add(times_s[part], tokens[part])
    width_s = 1.0 if max_fine_bins == 50 else 0.2
    assert histogram.width_s == pytest.approx(1.0 if max_fine_bins == 50 else 0.01)
    edges = np.arange(0, 40 + width_s, width_s)
    expected, _ = np.histogram(times_s, bins=edges, weights=tokens)
    assert histogram.per_bin(edges) == pytest.approx(expected)
    assert histogram.per_bin(edges).sum() == tokens.sum()


def test_every_metric_name_and_unit_drawn_comes_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Give every metric a made-up label and unit: a figure still showing "TTFT", "Latency" or "(ms)"
    # has its own copy of a name instead of the registry's one declaration.
    import dataclasses
    import re

    from matplotlib.figure import Figure

    from perfbench.metrics import METRICS_BY_KEY

    for n, (key, metric) in enumerate(list(METRICS_BY_KEY.items())):
        monkeypatch.setitem(METRICS_BY_KEY, key, dataclasses.replace(metric, label=f"M{n}", unit=f"u{n}"))
    figures: list[Figure] = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *args, **kwargs: figures.append(self))
    plots.write_plots(ladder(tmp_path))
    texts = []
    for figure in figures:
        texts.append(figure.get_suptitle())
        for ax in figure.axes:
            texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
            texts += [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
    assert len(figures) == 4
    own = [t for t in texts if not t.startswith("SLO ") and re.search(r"(?i)\b(ttft|tpot|itl|latency)\b|\((ms|tok/s|req/s)\)", t)]
    assert own == []
    shown = {METRICS_BY_KEY[key].title for key in ("ttft_ms", "tpot_ms", "latency_ms", "output_throughput_tok_s")}
    assert shown <= set(texts)
