"""The mock for tests: a raw aiohttp client (every read stamped, named SSE events split by hand), and
``perfbench mock`` in a process of its own (``mock_process``), the one way tests start it."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator

import aiohttp
import pytest

from perfbench.servers.mock import MockConfig, MockServer

MS = 1_000_000  # ns per ms
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Reply:
    """One HTTP answer as the client saw it: every read with its arrival time."""

    status: int
    content_type: str
    reads: list[tuple[int, bytes]] = field(default_factory=list)  # (perf_counter_ns, bytes)
    error: BaseException | None = None  # a transport error while reading the body

    @property
    def raw(self) -> bytes:
        return b"".join(b for _, b in self.reads)

    def json(self) -> dict:
        return json.loads(self.raw)

    def blocks(self) -> list[bytes]:
        """The stream split at blank lines (events and comment blocks), line endings normalised."""
        text = self.raw.replace(b"\r\n", b"\n")
        return [b for b in text.split(b"\n\n") if b]

    def data(self) -> list[bytes]:
        """The `data:` payloads in order (comments dropped)."""
        return [b[len(b"data: ") :] for b in self.blocks() if b.startswith(b"data: ")]

    def chunks(self) -> list[dict]:
        """The JSON objects of the stream (without [DONE])."""
        return [json.loads(d) for d in self.data() if d != b"[DONE]"]

    def events(self) -> list[tuple[str, dict]]:
        """(event name, data JSON) of each named event; comment blocks (pings) dropped."""
        out = []
        for block in self.blocks():
            if block.startswith(b":"):
                continue
            lines = block.split(b"\n")
            assert len(lines) == 2 and lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), block
            out.append((lines[0][len(b"event: ") :].decode(), json.loads(lines[1][len(b"data: ") :])))
        return out

    def arrival_ns(self, marker: bytes) -> int:
        """When the read that completed the first occurrence of ``marker`` arrived."""
        seen = b""
        for t, b in self.reads:
            seen += b
            if marker in seen:
                return t
        raise AssertionError(f"{marker!r} never arrived")


async def post(session: aiohttp.ClientSession, url: str, body: dict | bytes, timeout_s: float = 10) -> Reply:
    """POST and read the whole body raw, stamping each read."""
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with session.post(url, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs) as resp:
        reply = Reply(resp.status, resp.headers.get("Content-Type", ""))
        try:
            async for chunk in resp.content.iter_any():
                reply.reads.append((time.perf_counter_ns(), chunk))
        except aiohttp.ClientPayloadError as exc:
            reply.error = exc
        return reply


class MockStarter:
    """``await start(**config)`` -> (server, base_url); ``await stop_all()`` after the test."""

    def __init__(self) -> None:
        self.servers: list[MockServer] = []

    async def __call__(self, **config: object) -> tuple[MockServer, str]:
        server = MockServer(MockConfig(**config))
        self.servers.append(server)
        return server, await server.start()

    async def stop_all(self) -> None:
        for server in self.servers:
            await server.stop()


def parse_metrics(text: str) -> dict[str, float]:
    """``name{labels} value`` lines of a Prometheus page, keyed by the name alone."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            values[name_labels.split("{", 1)[0]] = float(value)
    return values


@pytest.fixture
async def mock():
    """``await mock(**config)`` -> (server, base_url); every server is stopped after the test."""
    starter = MockStarter()
    yield starter
    await starter.stop_all()


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (the system's pick, released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MockProcess:
    """A running ``perfbench mock``: its base URL and its process."""

    base_url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[str]
    _stderr: IO[str]

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; its exit code (killed after 10 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def stderr(self) -> str:
        """What it wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read()


@contextmanager
def mock_process(*args: str, timeout_s: float = 30.0) -> Iterator[MockProcess]:
    """``perfbench mock ARGS`` in a process of its own (its timing shares nothing with the test's
    interpreter), on a port the system picks: yields it once it listens (it prints its URL then);
    stopped with Ctrl-C after. Fails the test, with the mock's stderr, when it does not start in time."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "perfbench", "mock", "--port", "0", *args], cwd=REPO, env=env,
                                   stdout=subprocess.PIPE, stderr=stderr, text=True)
        mock = MockProcess("", process, stderr)
        try:
            ready, _, _ = select.select([process.stdout], [], [], timeout_s)
            line = process.stdout.readline() if ready else ""
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found is None:
                mock.stop()
                pytest.fail(f"perfbench mock gave no URL within {timeout_s:g} s (it said {line!r}): {mock.stderr()[-2000:]}")
            mock.base_url = found.group(0)
            yield mock
        finally:
            mock.stop()
