"""Start a local model server as a child process, wait until it answers, and always stop it.

``start_local_server`` runs ``python -m perfbench serve --engine transformers ...`` or
``vllm serve ...`` in its own process group with stdout and stderr going to a log file (the
child dies with perfbench, even a SIGKILLed one: perfbench/core/lifetime.py), polls
``/health`` then ``/v1/models`` until both answer, and yields a ``LocalServer`` whose
``model_name`` is the name ``/v1/models`` lists (the served name a request must send: the
transformers server's default is the directory's name, vLLM's the path as given). On leaving the
``with`` block, normally, on an exception or on Ctrl-C, it sends SIGTERM to the whole process
group, waits, then SIGKILLs what is left, so no worker process outlives the run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from perfbench.core.errors import ConfigError, TargetError
from perfbench.core.lifetime import die_with_parent_preexec

logger = logging.getLogger(__name__)

ENGINES = ("transformers", "vllm")
LOG_TAIL_LINES = 20
_POLL_INTERVAL_S = 0.25
_PROGRESS_INTERVAL_S = 2.0
_STOP_GRACE_S = 10.0


@dataclass
class LocalServer:
    """A running local server (a child process and its process group)."""

    base_url: str  # http://127.0.0.1:PORT
    model_name: str  # the name to put in requests ("model"): what /v1/models lists once ready
    engine: str  # "transformers" or "vllm"
    log_path: Path  # the server's stdout and stderr
    _process: subprocess.Popen | None = field(default=None, repr=False)
    stop_grace_s: float = _STOP_GRACE_S  # SIGTERM to SIGKILL

    def stop(self) -> None:
        """SIGTERM the process group, wait up to ``stop_grace_s``, then SIGKILL it. Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            _stop_group(process, self.stop_grace_s)
            if process.stdin is not None:  # the parent-watch pipe (see start_local_server)
                process.stdin.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(
    model: str, *, engine: str, port: int, engine_args: str, device: str, dtype: str, max_batch_size: int,
    served_model_name: str | None = None,
) -> list[str]:
    """The child's argv for ``engine``."""
    name = ["--served-model-name", served_model_name] if served_model_name else []
    if engine == "vllm":
        from perfbench.servers.vllm_launcher import vllm_command

        return vllm_command(model, host="127.0.0.1", port=port, engine_args=engine_args) + name
    if engine != "transformers":
        raise ConfigError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine_args:
        raise ConfigError("--engine-args is for --engine vllm; the transformers engine takes --device/--dtype")
    return [
        sys.executable, "-m", "perfbench", "serve", "--engine", "transformers", "--model", model,
        "--host", "127.0.0.1", "--port", str(port), "--device", device, "--dtype", dtype,
        "--max-batch-size", str(max_batch_size), "--parent-pid", str(os.getpid()), *name,
    ]  # fmt: skip


@contextmanager
def start_local_server(
    model: str,
    *,
    engine: str = "transformers",
    port: int | None = None,
    log_path: Path,
    engine_args: str = "",
    device: str = "auto",
    dtype: str = "auto",
    max_batch_size: int = 64,
    served_model_name: str | None = None,
    startup_timeout_s: float = 600,
    on_progress: Callable[[str], None] | None = None,
) -> Iterator[LocalServer]:
    """Start a server for ``model``, yield it once it answers, stop it on exit (see module doc).

    Raises ConfigError for bad arguments or a missing vLLM, TargetError when the server exits
    before it is ready or is not ready within ``startup_timeout_s`` (with the log's last lines).
    """
    port = port or free_port()
    command = server_command(
        model, engine=engine, port=port, engine_args=engine_args, device=device, dtype=dtype,
        max_batch_size=max_batch_size, served_model_name=served_model_name,
    )  # fmt: skip
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The child must import this perfbench even when it is run from a source checkout.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    logger.info("starting %s server: %s (log: %s)", engine, " ".join(command), log_path)
    # The server must die with perfbench, even a SIGKILLed one (core/lifetime.py): our own
    # server watches the pipe on its stdin and arms the parent-death signal itself; vLLM gets
    # that signal from a preexec hook.
    own_server = engine == "transformers"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
            stdin=subprocess.PIPE if own_server else subprocess.DEVNULL,
            preexec_fn=None if own_server else die_with_parent_preexec(),
            start_new_session=True,  # its own process group: one signal reaches its workers too
        )  # fmt: skip
    server = LocalServer(f"http://127.0.0.1:{port}", model, engine, log_path, process)
    try:
        _wait_ready(server, process, startup_timeout_s, on_progress)
        yield server
    finally:
        server.stop()


def _wait_ready(
    server: LocalServer, process: subprocess.Popen, timeout_s: float, on_progress: Callable[[str], None] | None
) -> None:
    start = time.monotonic()
    last_progress_s = 0.0
    last_line = ""
    while True:
        code = process.poll()
        if code is not None:
            raise TargetError(
                f"the {server.engine} server for {server.model_name} exited with code {code} before it was ready; "
                f"last lines of {server.log_path}:\n{log_tail(server.log_path)}"
            )
        served = _ready(server.base_url)
        if served is not None:
            server.model_name = served
            logger.info("%s server ready at %s after %.1f s", server.engine, server.base_url, time.monotonic() - start)
            return
        now = time.monotonic()
        if now - start > timeout_s:
            raise TargetError(
                f"the {server.engine} server for {server.model_name} was not ready after {timeout_s:g} s; "
                f"last lines of {server.log_path}:\n{log_tail(server.log_path)}"
            )
        if on_progress is not None and now - last_progress_s >= _PROGRESS_INTERVAL_S:
            last_progress_s = now
            line = log_tail(server.log_path, 1)
            if line and line != last_line:
                last_line = line
                on_progress(line)
        time.sleep(_POLL_INTERVAL_S)


def _ready(base_url: str) -> str | None:
    """The first model ``/v1/models`` lists once ``/health`` answers 200; None while not ready."""
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=2) as reply:
            if reply.status != 200:
                return None
        with urllib.request.urlopen(base_url + "/v1/models", timeout=2) as reply:
            models = json.load(reply).get("data") if reply.status == 200 else None
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if not isinstance(models, list) or not models or not isinstance(models[0], dict):
        return None
    name = models[0].get("id")
    return name if isinstance(name, str) and name else None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of ``path`` (progress bars' carriage returns split lines too)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    tail = deque((line.rstrip() for line in data.replace("\r", "\n").splitlines() if line.strip()), maxlen=lines)
    return "\n".join(tail)


def _stop_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the child's process group, wait for it to empty, SIGKILL whatever is left."""
    pgid = process.pid  # start_new_session made the child its group's leader
    if not _signal_group(pgid, signal.SIGTERM):
        process.wait()
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        process.poll()  # reap the leader, so a zombie does not keep the group alive
        if process.returncode is not None and not _group_alive(pgid):
            return
        time.sleep(0.05)
    logger.warning("server process group %d ignored SIGTERM for %.0f s; sending SIGKILL", pgid, grace_s)
    _signal_group(pgid, signal.SIGKILL)
    process.wait()


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in the group.

    Orphaned workers are re-parented to PID 1, which in a container may never reap them; a
    zombie-only group must count as empty or every stop would wait out the grace period.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return _signal_group(pgid, 0)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a zombie-only group on some systems
        return False
    return True
