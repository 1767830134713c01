"""The command line: argument parsing, wiring of the stages, one-line errors and exit codes.

Exit codes (DESIGN.md): 0 run completed and passed (failed requests included), 1 a check of the
run's verdict failed (perfbench.analysis.verdict), 2 bad usage or configuration, 3 the target could
not be reached, a local server failed or every request failed, 130 interrupted.
Heavy modules are imported only after parsing, so ``perfbench --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, NoReturn, Sequence

from perfbench.core.cliutil import print_error
from perfbench.core.version import __version__
from perfbench.core.errors import ConfigError, PerfbenchError
from perfbench.config.options import COMMAND_LINE_ONLY, GROUPS, OPTIONS

SUBCOMMANDS = {
    "mock": ("perfbench.servers.mock", "run the built-in mock server (ground truth, fault injection)"),
    "serve": ("perfbench.servers.serve", "start a local OpenAI-compatible server for a model"),
    "report": ("perfbench.commands.report", "rebuild report.html and plots of a run directory"),
    "plot": ("perfbench.report.plots", "rebuild the plots of a run directory"),
    "compare": ("perfbench.commands.compare", "compare two runs; exit 1 on regression"),
    "history": ("perfbench.commands.history", "list recorded runs and metric trends"),
}

EPILOG = "subcommands:\n" + "\n".join(f"  perfbench {name:<8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()) + """

examples:
  perfbench                                   # a demo run against the built-in mock (simulated)
  perfbench --url http://127.0.0.1:8000/v1/chat/completions --model m --concurrency 8 --number 200
  perfbench --url http://127.0.0.1:8000 --api openai-completions --concurrency 1,4,16 --number 50,200,800
  perfbench --url http://127.0.0.1:8000 --rate 4 --duration 60 --slo ttft_p99=500,tpot_p99=50
  perfbench --model ./my-model --concurrency 16 --number 500    # starts a local server for the model
"""

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
        from perfbench.config.scenario import load_scenario

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
    from perfbench.benchmark.run_benchmark import with_demo_load

    return with_demo_load(settings)


def run_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    else:
        logging.basicConfig(level=logging.WARNING, format="perfbench: %(message)s")

    from rich.console import Console

    from perfbench.benchmark.run_benchmark import run_benchmark
    from perfbench.config.run_config import config_from_settings

    config = config_from_settings(_settings(args))
    _hide_secrets(config)
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 140)  # logs and pipes: don't squeeze the tables
    return run_benchmark(config, console).exit_code


_run_secrets: tuple[str, ...] = ()  # this run's secrets (redact.run_secrets), masked in every line perfbench prints


def _shown(text: str) -> str:
    """A line for stderr: the run's secrets masked, control characters escaped (it may quote a server or a file)."""
    from perfbench.core.printable import printable
    from perfbench.core.redact import redact_text

    return printable(redact_text(text, _run_secrets))


class _SecretFilter(logging.Filter):
    """Masks the run's secrets in every log line (a warning may quote the target's URL or an error text)
    and escapes its control characters (or a server's words in it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _shown(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def _hide_secrets(config: Any) -> None:
    global _run_secrets
    from perfbench.core.redact import run_secrets

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
    from perfbench.core.cliutil import closed_pipes_ignored

    with closed_pipes_ignored():  # `perfbench ... | head`: the run still writes its files and exits with its own code
        return _main(list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    debug = "--debug" in argv
    try:
        _check_utf8(argv)
        if argv and argv[0] in SUBCOMMANDS:
            import importlib

            module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
            return int(module.main(argv[1:]) or 0)
        from perfbench.core.signals import terminate_as_interrupt

        with terminate_as_interrupt():  # SIGTERM, SIGHUP: like Ctrl-C (a local server stops, exit 130)
            return run_main(argv)
    except PerfbenchError as exc:
        if debug:
            raise
        print_error(_shown(str(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        print("perfbench: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full or read-only disk while writing reports: one line, not a traceback
        from perfbench.results.runfiles import OUTPUT_ERRNOS, output_error

        if debug or exc.errno not in OUTPUT_ERRNOS:
            raise
        print_error(str(output_error(exc.filename or "an output file", exc)))
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
