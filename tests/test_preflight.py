"""The pre-flight request: one real request before the first step, counted nowhere; its failure is exit 3 at once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import contextmanager
from typing import Awaitable, Callable, Iterator

from aiohttp import web

from perfbench.commands.main import main
from perfbench.servers.mock import MockConfig, MockInThread

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextmanager
def server_in_thread(handler: Handler, methods: tuple[str, ...] = ("POST",)) -> Iterator[str]:
    """A real aiohttp server on 127.0.0.1 on its own loop; yields its chat endpoint URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    for method in methods:
        app.router.add_route(method, "/v1/chat/completions", handler)
    runner = web.AppRunner(app)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def run_cli(*args: str) -> int:
    return main([*args, "--no-plots", "--no-live", "--no-telemetry"])


def test_a_refused_field_exits_3_at_once_naming_the_flag_that_sent_it(tmp_path, capsys):
    bodies: list[dict] = []

    async def refuse(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response({"detail": "Unexpected fields in the request: {'min_tokens', 'ignore_eos'}"}, status=422)

    with server_in_thread(refuse) as url:
        started = time.monotonic()
        code = run_cli("--url", url, "-n", "50", "--output-tokens", "64", "--output-dir", str(tmp_path / "r"))
        elapsed_s = time.monotonic() - started
    assert code == 3 and elapsed_s < 10
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("perfbench: error: pre-flight request failed (http_422): HTTP 422: Unexpected fields")
    assert "--output-tokens" in line and "--no-preflight" in line
    assert len(bodies) == 1 and bodies[0]["min_tokens"] == bodies[0]["max_tokens"] <= 8  # short, exact-length fields kept
    assert not (tmp_path / "r" / "requests.jsonl").exists() or not (tmp_path / "r" / "requests.jsonl").read_text()


def test_a_server_answering_404_to_everything_exits_3_after_one_request(tmp_path, capsys):
    seen: list[str] = []

    async def not_found(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"error": {"message": "The model `m` does not exist."}}, status=404)

    with server_in_thread(not_found) as url:
        assert run_cli("--url", url, "--model", "m", "-n", "20", "--output-dir", str(tmp_path / "r")) == 3
    err = capsys.readouterr().err
    assert "http_404" in err and "does not exist" in err and len(seen) == 1


def test_the_preflight_is_counted_nowhere(tmp_path):
    with MockInThread(MockConfig(ttft_ms=1, itl_ms=1)) as mock:
        assert run_cli("--url", mock.base_url, "-n", "6", "--max-tokens", "32", "--output-dir", str(tmp_path / "r")) == 0
        served = len(mock.server.log)
    lines = (tmp_path / "r" / "requests.jsonl").read_text().splitlines()
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert served == 7 and len(lines) == 6
    assert summary["steps"][0]["requests_completed"] == 6
    assert all(json.loads(line)["output_tokens"] == 32 for line in lines)  # the step's requests keep their length


def test_no_preflight_sends_only_the_steps_requests(tmp_path):
    with MockInThread(MockConfig(ttft_ms=1, itl_ms=1)) as mock:
        assert run_cli("--url", mock.base_url, "-n", "5", "--max-tokens", "4", "--no-preflight", "--output-dir", str(tmp_path / "r")) == 0
        assert len(mock.server.log) == 5


@contextmanager
def counting_server() -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """A raw HTTP/1.1 server on 127.0.0.1 (own thread) answering every POST with a short SSE stream and
    keeping the connection; yields its URL and its events: ("connect", client port) or ("POST", client port)."""
    events: list[tuple[str, int]] = []
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 59\r\n\r\n"
              b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n')

    class Server(asyncio.Protocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            self.transport, self.port, self.buffer = transport, transport.get_extra_info("peername")[1], b""
            events.append(("connect", self.port))

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\r\n\r\n" in self.buffer:
                head, _, rest = self.buffer.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), b"0"))
                if len(rest) < length:
                    return
                self.buffer = rest[length:]
                events.append((head.split(b" ")[0].decode(), self.port))
                self.transport.write(answer)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(loop.create_server(Server, "127.0.0.1", 0), loop).result(10)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions", events
    finally:
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def test_each_step_opens_its_connections_before_its_clock(tmp_path):
    with counting_server() as (url, events):
        assert run_cli("--url", url, "-c", "4", "-n", "8", "--no-preflight", "--output-dir", str(tmp_path / "a")) == 0
        warm = list(events)
        events.clear()
        assert run_cli("--url", url, "-c", "4", "-n", "8", "--no-preflight", "--no-preconnect", "--output-dir", str(tmp_path / "b")) == 0
        cold = list(events)
    # The first connection of each run is the reachability check (perfbench/benchmark/preflight.py), closed at once.
    connects = [port for kind, port in warm if kind == "connect"]
    assert len(connects) == 5 and [kind for kind, _ in warm[:5]] == ["connect"] * 5  # all before the first request of the step
    assert [kind for kind, _ in warm[5:]] == ["POST"] * 8 and {port for _, port in warm[5:]} <= set(connects[1:])  # the step ran on those
    assert sorted(kind for kind, _ in cold) == ["POST"] * 8 + ["connect"] * 5  # opened as the step's requests went
