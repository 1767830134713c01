"""The built-in mock server: OpenAI-compatible streaming with exact timings, faults and a log of the truth.

It is perfbench's ground truth. Every request's packages go out at absolute deadlines measured
from the moment the request was admitted (``admitted + ttft``, then ``+ k*itl`` per package of k
tokens), so timings never drift however long the stream; a stream that wakes late sends every
package already due in one write. What the server actually did — when each output package's
bytes were written, how many tokens it carried, which fault it got — is kept in ``MockServer.log``
for tests to compare perfbench's numbers against.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` and ``POST /v1/responses``
(``stream`` true: SSE, chunked; false: one JSON body with ``usage``), ``POST /v1/embeddings``
(one JSON body), ``GET /v1/models``, ``GET /health``, ``GET /metrics`` (vLLM-style Prometheus
text). This module is the server: routes, admission and capacity, deadlines, faults, the log and
the CLI; what goes on the wire for each API (chunks, events, bodies, request parsing) is in
servers/mock_wire.py.

Shapes follow vLLM: chunks carry ``id``, ``object`` (``chat.completion.chunk`` /
``text_completion``), ``created``, ``model`` (echoed from the request) and
``choices[{index, delta|text, logprobs: null, finish_reason}]``. The last output package is the
finish chunk (``finish_reason: "length"``), as in vLLM. The chat role chunk is vLLM's
``{"role": "assistant", "content": ""}`` and goes out at once, before admission: it is not output.
Reasoning tokens and content tokens never share a package (the package holding the last reasoning
token may carry fewer than ``tokens_per_package``).

The Responses API (servers/openai_wire.py) has the same packages at the same deadlines: its
created/in_progress/item-added events go out at once, like the chat role chunk (not output); each
package is one ``response.output_text.delta`` (``response.reasoning_text.delta`` for reasoning
tokens, in their own output item first); the last one is followed in the same write by the done
events and ``response.completed`` with ``usage``. No ``[DONE]``. Its error event is ``event: error``.

Embeddings: the body is written at ``admitted + ttft + itl * (inputs - 1)`` (the first input costs a
TTFT, each further one an ITL, as if the batch were one input per token). The log has no output
packages for them, only ``finished_ns`` and ``prompt_tokens``; vectors are deterministic
(mock_wire.embedding_vector, ``embedding_dim`` floats unless the request asks for fewer).

Token counts: ``usage.prompt_tokens`` is the number of whitespace-separated words of the prompt
(completions: ``prompt``, a list of strings joined, or the length of a list of token ids; chat: all
message contents joined, text parts of list contents included); ``completion_tokens`` is the
number of tokens sent. Token text is deterministic words from a fixed list, one word per token.
Responses count the words of ``instructions`` and every input message; embeddings those of every
input.

Faults (chosen by ``FaultSchedule``, see mock_config.py) happen "halfway" = just before output
package ``n_packages // 2``, at the time it was due: ``cut`` aborts the TCP connection (the client
sees an incomplete chunked body), ``error_event`` sends ``data: {"error": {...}}`` and ends the
stream (no ``[DONE]``), ``stall`` shifts that package and all later ones by ``stall_s``.
``http_error`` (500, JSON) and ``bad_body`` (200, text/html) answer at once and never take a
capacity slot. Without streaming (embeddings included), a cut sends half the body then aborts, an
error event becomes a 500 at the halfway time (embeddings: at the due time), and a stall delays
the answer.

Capacity: at most ``capacity`` requests are admitted at once; the rest wait in a FIFO queue
(their SSE headers, role chunk and pings go out while they wait; the wait counts into the TTFT
the client sees). A client that disconnects cancels its handler (aiohttp ``handler_cancellation``),
which stops the generation and hands its slot to the next in line. ``/metrics`` reports vLLM's
``num_requests_running``/``waiting``, ``gpu_cache_usage_perc`` (tokens held by running requests
over ``KV_CACHE_TOKENS``), and the prompt, generation and success counters, labelled
``model_name``.

Precision: a package is never sent before its deadline; it is late by the event loop's wake-up
granularity (asyncio rounds epoll timeouts up to 1 ms), typically under 1 ms on an idle core.
The log records the true send times, so tests compare against the log, not the config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import subprocess
import sys
import threading
from dataclasses import fields
from pathlib import Path

from perfbench.core.cliutil import OneLineArgumentParser
from perfbench.core.errors import ConfigError, TargetError
from perfbench.core.mock_config import USAGE_PLACEMENTS, MockConfig
from perfbench.servers.mock_server import MockRequestLog, MockServer

__all__ = ["MockConfig", "MockRequestLog", "MockServer", "MockInThread", "MockProcess", "main"]


class MockInThread:
    """A MockServer on its own event loop in a daemon thread (for the CLI and synchronous callers).

    ``with MockInThread(config) as mock: ... mock.base_url ... mock.server.log``
    """

    def __init__(self, config: MockConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = MockServer(config)
        self.base_url = ""
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "MockInThread":
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="perfbench-mock", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            starting = asyncio.run_coroutine_threadsafe(self.server.start(self._host, self._port), loop)
            self.base_url = starting.result(timeout=30)
        except BaseException:  # cleanup, then re-raised: hides nothing
            self._close_loop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


class MockProcess:
    """The mock in a child process of its own (``perfbench mock --port 0``), for the built-in demo:
    its timing then shares no interpreter (and no GIL) with the client it is measured by.

    ``with MockProcess(config) as mock: ... mock.base_url``. The child dies with this process,
    even a SIGKILLed one (it watches the pipe on its stdin and arms the parent-death signal).
    """

    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> "MockProcess":
        settings = json.dumps({f.name: getattr(self.config, f.name) for f in fields(MockConfig)})
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])  # this perfbench, also from a source checkout
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._process = process = subprocess.Popen(
            [sys.executable, "-m", "perfbench", "mock", "--port", "0", "--settings-json", settings, "--parent-pid", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            self.base_url = _served_url(process, MOCK_START_TIMEOUT_S)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()  # the child this object started, by its handle
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


MOCK_START_TIMEOUT_S = 30.0
_SERVING = re.compile(r"^perfbench mock: serving (http://\S+) ")


def _served_url(process: subprocess.Popen[str], timeout_s: float) -> str:
    """The URL the child mock prints once it listens; TargetError with its last words if it does not."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline() if ready else ""
    found = _SERVING.match(line)
    if found is None:
        process.kill()
        _, err = process.communicate(timeout=10)
        tail = " ".join((err or line or "no output").split())[-300:]
        raise TargetError(f"the built-in mock server did not start ({tail}); run 'perfbench mock' to see why")
    return found.group(1)


def _parser() -> argparse.ArgumentParser:
    """Every option's dest is a MockConfig field, so the config is built from the namespace as is."""
    p = OneLineArgumentParser(
        prog="perfbench mock",
        description="Serve the built-in mock: an OpenAI-compatible streaming server with exact timings and "
        "injected faults (the ground truth perfbench is tested against). Faults hit exact fractions by arrival order.",
    )
    d = MockConfig()
    add = p.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    add("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default %(default)s)")
    add("--ttft-ms", type=float, default=d.ttft_ms, help="admission to first output package, ms (default %(default)s)")
    add("--itl-ms", type=float, default=d.itl_ms, help="time per output token, ms (default %(default)s)")
    add("--output-tokens", type=int, default=d.output_tokens, help="fixed output length (default: max_tokens, else 128)")
    add("--tokens-per-package", type=int, default=d.tokens_per_package, help="tokens per SSE package (default 1)")
    add("--no-role-chunk", dest="role_chunk", action="store_false", help="chat: no role-only first chunk")
    add("--reasoning-tokens", type=int, default=d.reasoning_tokens, help="chat, responses: the first N tokens go out as reasoning")
    add("--no-done", dest="send_done", action="store_false", help="do not end streams with data: [DONE]")
    add("--usage", choices=USAGE_PLACEMENTS, default=d.usage,
        help="where streamed usage goes when the request asks for it (default %(default)s)")  # fmt: skip
    add("--crlf", action="store_true", help="\\r\\n line endings")
    add("--ping-ms", dest="ping_interval_ms", type=float, default=d.ping_interval_ms, help="send ': ping' comments this often, ms (0 = never)")
    add("--capacity", type=int, default=d.capacity, help="at most K requests generate at once; the rest queue (FIFO)")
    add("--http-error-rate", dest="http_error_fraction", type=float, default=0.0, help="fraction of requests answered HTTP 500")
    add("--cut-rate", dest="cut_fraction", type=float, default=0.0, help="fraction of streams whose connection is cut halfway")
    add("--error-event-rate", dest="error_event_fraction", type=float, default=0.0, help="fraction of streams ending in an error event halfway")
    add("--stall-rate", dest="stall_fraction", type=float, default=0.0, help="fraction of streams that stall halfway for --stall-s")
    add("--stall-s", type=float, default=d.stall_s, help="length of a stall, s (default %(default)s)")
    add("--bad-body-rate", dest="bad_body_fraction", type=float, default=0.0, help="fraction of requests answered 200 with an HTML body")
    add("--seed", type=int, default=d.seed, help="varies ids and token words (faults go by arrival order)")
    add("--model", default=d.model, help="model name served (default %(default)s)")
    add("--embedding-dim", type=int, default=d.embedding_dim, help="floats per /v1/embeddings vector (default %(default)s)")
    # For MockProcess: every setting at once, and the parent to die with.
    add("--settings-json", help=argparse.SUPPRESS)
    add("--parent-pid", type=int, help=argparse.SUPPRESS)
    return p


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """The MockConfig for parsed ``perfbench mock`` arguments (ConfigError on bad values)."""
    return MockConfig(**{f.name: getattr(args, f.name) for f in fields(MockConfig)})


def main(argv: list[str]) -> int:
    """``perfbench mock ...``: serve until Ctrl-C. Bad usage or values raise ConfigError (exit 2)."""
    args = _parser().parse_args(argv)
    config = MockConfig(**json.loads(args.settings_json)) if args.settings_json else config_from_args(args)
    if args.parent_pid is not None:
        from perfbench.core.lifetime import exit_with_parent

        exit_with_parent(args.parent_pid)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")

    async def serve() -> None:
        server = MockServer(config)
        url = await server.start(args.host, args.port)
        timings = f"ttft {config.ttft_ms:g} ms, itl {config.itl_ms:g} ms"
        print(f"perfbench mock: serving {url} ({timings}); Ctrl-C stops", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0
