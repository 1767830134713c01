"""The command line: argument parsing, wiring of the stages, one-line errors and exit codes.

Exit codes: 0 run completed (failed requests included), 1 a regression check failed,
2 bad usage or configuration, 3 the target could not be reached or a local server failed.
Heavy modules are imported only after parsing, so ``perfbench --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, Sequence

from perfbench import __version__
from perfbench.errors import ConfigError, PerfbenchError
from perfbench.finish import finish_run, open_store
from perfbench.options import COMMAND_LINE_ONLY, GROUPS, OPTIONS

SUBCOMMANDS = {
    "mock": ("perfbench.servers.mock", "run the built-in mock server (ground truth, fault injection)"),
    "serve": ("perfbench.servers.serve", "start a local OpenAI-compatible server for a model"),
    "report": ("perfbench.report.html", "rebuild report.html and plots of a run directory"),
    "plot": ("perfbench.report.plots", "rebuild the plots of a run directory"),
    "compare": ("perfbench.compare", "compare two runs; exit 1 on regression"),
    "history": ("perfbench.history", "list recorded runs and metric trends"),
}

EPILOG = "subcommands:\n" + "\n".join(f"  perfbench {name:<8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()) + """

examples:
  perfbench                                   # a demo run against the built-in mock (simulated)
  perfbench --url http://127.0.0.1:8000/v1/chat/completions --model m --concurrency 8 --number 200
  perfbench --url http://127.0.0.1:8000 --api openai-completions --concurrency 1,4,16 --number 50,200,800
  perfbench --url http://127.0.0.1:8000 --rate 4 --duration 60 --slo ttft_p99=500,tpot_p99=50
  perfbench --model ./my-model --concurrency 16 --number 500    # starts a local server for the model
"""

SIMULATED_DEMO = {"concurrency": "8", "number": "100"}  # a no-flag run: about 9 s against the mock


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        raise ConfigError(f"{message}; see '{self.prog} --help'")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="perfbench",
        description="Load-test an OpenAI-compatible LLM server with streaming requests and exact TTFT/ITL/TPOT metrics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=None,
    )
    p.add_argument("--version", action="version", version=f"perfbench {__version__}")
    groups = {name: p.add_argument_group(name) for name in GROUPS}
    for option in OPTIONS:
        if option.flags:
            groups[option.group].add_argument(*option.flags, dest=option.dest, help=option.help, **option.parse)
    return p


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Scenario values, overridden by every flag given on the command line."""
    settings: dict[str, Any] = {}
    if args.scenario:
        from perfbench.scenario import load_scenario

        settings.update(load_scenario(args.scenario))
    flags = {k: v for k, v in vars(args).items() if v is not None and k not in COMMAND_LINE_ONLY}
    if "number" in flags:
        settings.pop("duration_s", None)
    if "duration_s" in flags:
        settings.pop("number", None)
    if "rate" in flags or "concurrency" in flags:
        settings.pop("search", None)  # a ladder given on the command line replaces the file's search
    if "search" in flags:  # the searched dimension comes from the search, not from the file's ladder
        settings.pop("rate" if flags["search"] == "concurrency" else "concurrency", None)
    settings.update(flags)
    if not settings.get("url") and not settings.get("model"):
        load_keys = ("concurrency", "number", "rate", "duration_s")
        if not any(settings.get(k) is not None for k in load_keys) and not settings.get("search"):
            settings.update(SIMULATED_DEMO)
    return settings


def run_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    else:
        logging.basicConfig(level=logging.WARNING, format="perfbench: %(message)s")

    from rich.console import Console

    from perfbench.config import config_from_settings, resolve_url
    from perfbench.engine import LiveCounters
    from perfbench.report.terminal import LiveDisplay, render_summary
    from perfbench.run import check_open_files, default_run_dir, execute, make_run_dir

    config = config_from_settings(_settings(args))
    _hide_secrets(config)
    check_open_files(config)  # before any server starts: refusing after a model load would waste it
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 140)  # logs and pipes: don't squeeze the tables
    tokenizer = None
    tokenizer_path = config.tokenizer
    if tokenizer_path is None and config.url is None and config.model and Path(config.model).is_dir():
        tokenizer_path = config.model  # a local model brings its tokenizer: exact synthetic prompt lengths
    if tokenizer_path:
        from perfbench.tokens import load_tokenizer

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
        from perfbench.cliutil import check_writable_file

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
            from perfbench.servers.mock import MockInThread

            mock = stack.enter_context(MockInThread(_mock_config(config.mock)))
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
                    on_progress=lambda line: console.print(f"[dim]server: {line}[/]"),
                )
            )
            endpoint, _ = resolve_url(server.base_url, config.api)
            model = server.model_name
            console.print(f"Local {config.engine} server for {config.model} ready at {server.base_url} (log: {run_dir / 'server.log'})")
        if not config.simulated and model != config.model:
            config = replace(config, model=model)  # the local server's served name goes into requests

        counters = LiveCounters()
        display = stack.enter_context(LiveDisplay(console, counters, steps=len(config.steps), enabled=config.live))

        def on_step_done(summary: Any) -> None:
            if not display.active:
                console.print(
                    f"step done: concurrency {summary.concurrency} rate {summary.rate_req_s}: "
                    f"{summary.requests_succeeded} ok, {summary.requests_failed} failed in {summary.duration_s or 0:.2f} s"
                )

        telemetry = _telemetry_factory(config, endpoint) if config.telemetry else None
        outcome = execute(
            config, endpoint_url=endpoint, model=model, run_dir=run_dir, counters=counters, tokenizer=tokenizer,
            on_step_start=display.step_started, on_step_done=on_step_done, telemetry=telemetry,
        )
    render_summary(console, outcome.summary)
    return finish_run(config, outcome, console, baseline_dir)


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
        # Looked for only once the run starts, after every input was validated.
        return TelemetrySampler(run_start_ns=run_start_ns, gpu=nvml_source(), metrics_url=metrics_url)

    return factory


def _resolve_baseline(config: Any) -> Path | None:
    """The baseline's run directory, resolved before the run so a bad spec costs no benchmark time."""
    if not config.baseline:
        return None
    from perfbench.store import NoBaselineYet, resolve_baseline

    try:
        return resolve_baseline(config.baseline, open_store(config))
    except NoBaselineYet as exc:  # a nightly job's first night: this run becomes the first baseline
        logging.getLogger(__name__).warning("%s; running without a comparison", exc)
        return None


_run_secrets: tuple[str, ...] = ()  # this run's secrets (redact.run_secrets), masked in every line perfbench prints


def _redacted(text: str) -> str:
    from perfbench.redact import redact_text

    return redact_text(text, _run_secrets)


class _SecretFilter(logging.Filter):
    """Masks the run's secrets in every log line (a warning may quote the target's URL or an error text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _redacted(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def _hide_secrets(config: Any) -> None:
    global _run_secrets
    from perfbench.redact import run_secrets

    _run_secrets = run_secrets(url=config.url, api_key=config.api_key, headers=config.headers)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _SecretFilter) for f in handler.filters):
            handler.addFilter(_SecretFilter())


def _check_utf8(argv: Sequence[str]) -> None:
    """ConfigError for an argument that is not UTF-8 (Python keeps such bytes as surrogates, which
    no output file, report or terminal line can hold), naming the flag it belongs to."""
    for i, arg in enumerate(argv):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            flag = arg.partition("=")[0] if arg.startswith("--") else argv[i - 1] if i and argv[i - 1].startswith("-") else "an argument"
            if not flag.isascii() or "\udc80" <= max(flag) <= "\udcff":
                flag = "an argument"
            raise ConfigError(f"{flag}: {ascii(arg)[:80]} is not valid UTF-8 text; use UTF-8 names and values") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        _check_utf8(argv)
        if argv and argv[0] in SUBCOMMANDS:
            import importlib

            module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
            return int(module.main(argv[1:]) or 0)
        from perfbench.signals import terminate_as_interrupt

        with terminate_as_interrupt():  # SIGTERM, SIGHUP: like Ctrl-C (a local server stops, exit 130)
            return run_main(argv)
    except PerfbenchError as exc:
        if debug:
            raise
        print(f"perfbench: error: {_redacted(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("perfbench: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full or read-only disk while writing reports: one line, not a traceback
        from perfbench.runfiles import OUTPUT_ERRNOS, output_error

        if debug or exc.errno not in OUTPUT_ERRNOS:
            raise
        print(f"perfbench: error: {output_error(exc.filename or 'an output file', exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os._exit(1)


if __name__ == "__main__":
    raise SystemExit(main())
