"""One benchmark, from a validated RunConfig to its exit code: the checks that must come before
any server starts, the target (a URL, a local server, or the built-in mock), the run, the
summary on the terminal, and the finishing stages. The CLI and the Python API (perfbench.benchmark.api)
both call ``run_benchmark``.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from perfbench.core.errors import ConfigError
from perfbench.core.numbers import format_number
from perfbench.benchmark.finish import finish_run, open_store
from perfbench.report.shown import data_text
from perfbench.results.runfiles import step_label

SIMULATED_DEMO = {"concurrency": "8", "number": "100"}  # a run with no target and no load: about 9 s against the mock


def with_demo_load(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings``, with the demo's load when they name neither a target nor a load."""
    out = dict(settings)
    if not out.get("url") and not out.get("model"):
        load_keys = ("concurrency", "number", "rate", "duration_s")
        if not any(out.get(k) is not None for k in load_keys) and not out.get("search") and not out.get("trace"):
            out.update(SIMULATED_DEMO)
    return out


@dataclass
class BenchmarkResult:
    outcome: Any  # perfbench.benchmark.runner.RunOutcome: the summary, the run directory, whether it was interrupted
    exit_code: int  # DESIGN.md's: 0, 1, 2, 3 or 130


def run_benchmark(config: Any, console: Any) -> BenchmarkResult:
    """Run ``config`` (a RunConfig) and its finishing stages, printing to ``console`` (a rich Console)."""
    from perfbench.config.run_config import resolve_url
    from perfbench.engine.live import LiveCounters
    from perfbench.report.terminal import LiveDisplay, render_summary
    from perfbench.benchmark.runner import check_open_files, default_run_dir, execute, make_run_dir

    check_open_files(config)  # before any server starts: refusing after a model load would waste it
    tokenizer = None
    tokenizer_path = config.tokenizer
    if tokenizer_path is None and config.url is None and config.model and Path(config.model).is_dir():
        tokenizer_path = config.model  # a local model brings its tokenizer: exact synthetic prompt lengths
    if tokenizer_path:
        from perfbench.workload.tokens import load_tokenizer

        tokenizer = load_tokenizer(tokenizer_path)
    if config.thresholds:  # checked now: a typo must not cost a whole benchmark
        from perfbench.compare import parse_thresholds

        parse_thresholds(config.thresholds)
        if not config.baseline:
            logging.getLogger(__name__).warning("--threshold applies only with --baseline; this run is not compared")
    baseline_dir = _resolve_baseline(config)
    if config.store:  # refused now, not after the run: e.g. a file that is not a run store
        open_store(config).close()
    if config.junit:
        from perfbench.core.cliutil import check_writable_file

        check_writable_file(Path(config.junit), "--junit")
    if config.url is None and config.model and config.engine == "transformers":
        from perfbench.servers.serve import check_transformers_installed

        check_transformers_installed()
    label = "simulated" if config.simulated else (config.model or "run")
    run_dir = make_run_dir(Path(config.output_dir) if config.output_dir else default_run_dir(config, label))

    with ExitStack() as stack:
        endpoint = config.url
        model = config.model
        if config.simulated:
            from perfbench.servers.mock import MockProcess

            mock = stack.enter_context(MockProcess(_mock_config(config.mock)))  # its own process: its timing is not the client's
            endpoint, _ = resolve_url(mock.base_url, config.api)
            model = "mock"
            console.print(f"[yellow]No --url or --model: running against the built-in mock server at {mock.base_url} — SIMULATED numbers.[/]")
        elif endpoint is None:
            from perfbench.servers.local import start_local_server

            assert config.model is not None
            server = stack.enter_context(
                start_local_server(
                    config.model, engine=config.engine, log_path=run_dir / "server.log", engine_args=config.engine_args,
                    device=config.device, dtype=config.dtype, max_batch_size=config.max_batch_size,
                    on_progress=lambda line: console.print(data_text(f"server: {line}", "dim")),  # the server's own words
                )
            )
            endpoint, _ = resolve_url(server.base_url, config.api)
            model = server.model_name
            console.print(data_text(f"Local {config.engine} server for {config.model} ready at {server.base_url} (log: {run_dir / 'server.log'})"))
        if not config.simulated and model != config.model:
            config = replace(config, model=model)  # the local server's served name goes into requests

        counters = LiveCounters()
        display = stack.enter_context(LiveDisplay(console, counters, steps=len(config.steps), enabled=config.live,
                                                  search=bool(config.search), duration_s=config.duration_s))

        def on_step_done(summary: Any) -> None:
            if not display.active:
                console.print(
                    f"step done ({step_label(summary.to_dict())}): "
                    f"{summary.requests_succeeded} ok, {summary.requests_failed} failed in {format_number(summary.duration_s or 0.0, 's')}"
                )

        telemetry = _telemetry_factory(config, endpoint) if config.telemetry else None
        outcome = execute(
            config, endpoint_url=endpoint, model=model, run_dir=run_dir, counters=counters, tokenizer=tokenizer,
            on_step_start=display.step_started, on_step_done=on_step_done, telemetry=telemetry,
        )
    render_summary(console, outcome.summary)
    return BenchmarkResult(outcome, finish_run(config, outcome, console, baseline_dir))


SIMULATED_MOCK = {"ttft_ms": 50, "itl_ms": 5}  # the demo server: 50 ms to the first token, 5 ms per token


def _mock_config(settings: Any) -> Any:
    from perfbench.servers.mock import MockConfig

    try:
        return MockConfig(**{**SIMULATED_MOCK, **settings})
    except TypeError as exc:
        raise ConfigError(f"--mock: {exc}; see 'perfbench mock --help' for the settings (use their field names, e.g. itl_ms)") from None


def _telemetry_factory(config: Any, endpoint: str) -> Any:
    """A factory ``(run_start_ns) -> TelemetrySampler`` for the run."""
    from perfbench.telemetry.gpu import nvml_source
    from perfbench.telemetry.prometheus import metrics_url_for
    from perfbench.telemetry.sampler import TelemetrySampler

    metrics_url = config.metrics_url or metrics_url_for(endpoint)

    def factory(run_start_ns: int) -> Any:
        # Looked for only once the run starts, after every input was validated; only where the
        # server may use this machine's GPU (no warning about a GPU for a remote target, or the mock).
        gpu = nvml_source() if _server_on_this_machine(config) else None
        return TelemetrySampler(run_start_ns=run_start_ns, gpu=gpu, metrics_url=metrics_url)

    return factory


def _server_on_this_machine(config: Any) -> bool:
    """A server perfbench started for a model, or a URL on this host (not the built-in mock)."""
    if config.simulated:
        return False
    if config.url is None:
        return True
    import socket
    from urllib.parse import urlsplit

    host = (urlsplit(config.url).hostname or "").lower()
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0") or host.startswith("127.") or host == socket.gethostname().lower()


def _resolve_baseline(config: Any) -> Path | None:
    """The baseline's run directory, resolved before the run so a bad spec costs no benchmark time."""
    if not config.baseline:
        return None
    from perfbench.results.store import NoBaselineYet, resolve_baseline

    try:
        with open_store(config) as store:
            return resolve_baseline(config.baseline, store)
    except NoBaselineYet as exc:  # a nightly job's first night: this run becomes the first baseline
        logging.getLogger(__name__).warning("%s; running without a comparison", exc)
        return None
