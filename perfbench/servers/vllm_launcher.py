"""The ``vllm serve`` command line for a model, and the check that vLLM is installed.

perfbench does not import vLLM: it runs ``vllm serve MODEL --host H --port P <engine args>`` as a
child process (perfbench/servers/local.py starts, watches and stops it).
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import sys

from perfbench.core.errors import ConfigError

INSTALL_HINT = "install it with: pip install 'perfbench[vllm]'"


def vllm_executable() -> list[str]:
    """How to run the vLLM CLI: ``vllm`` on PATH, else ``python -m vllm.entrypoints.cli.main``."""
    found = shutil.which("vllm")
    if found:
        return [found]
    if importlib.util.find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    raise ConfigError(f"--engine vllm needs vLLM, which is not installed; {INSTALL_HINT}")


def vllm_command(model: str, *, host: str, port: int, engine_args: str = "") -> list[str]:
    """The full ``vllm serve`` argv; ``engine_args`` is one shell-quoted string of extra flags."""
    try:
        extra = shlex.split(engine_args)
    except ValueError as exc:
        raise ConfigError(f"--engine-args {engine_args!r} cannot be split into arguments ({exc}); check its quotes") from exc
    for flag in ("--host", "--port"):
        if any(arg == flag or arg.startswith(flag + "=") for arg in extra):
            raise ConfigError(f"--engine-args must not set {flag}; perfbench chooses it (use perfbench's own flag)")
    return [*vllm_executable(), "serve", model, "--host", host, "--port", str(port), *extra]
