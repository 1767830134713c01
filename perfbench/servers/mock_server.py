"""The mock server itself: routes, admission and capacity, deadlines, faults, ``/metrics`` and the log.

What it does is described in perfbench/servers/mock.py (the entry point, with ``MockInThread``
and the CLI); what goes on the wire per API is servers/mock_wire.py, its clock servers/mock_timing.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiohttp import web

from perfbench.core.errors import TargetError
from perfbench.core.mock_config import (
    FAULT_BAD_BODY,
    FAULT_CUT,
    FAULT_ERROR_EVENT,
    FAULT_HTTP_ERROR,
    FAULT_STALL,
    FaultSchedule,
    MockConfig,
)
from perfbench.servers.mock_timing import Slots, next_tick, package_deadlines, package_plan, sleep_until_ns
from perfbench.servers.mock_wire import (
    API_CHAT,
    API_COMPLETIONS,
    API_EMBEDDINGS,
    API_RESPONSES,
    BadRequest,
    ChatWire,
    Job,
    ResponsesWire,
    embeddings_payload,
    error_payload,
    make_wire,
    parse_request,
    token_text,
)

__all__ = ["MockRequestLog", "MockServer"]

log = logging.getLogger(__name__)

perf_ns = time.perf_counter_ns

# Simulated KV cache size in tokens: vllm:gpu_cache_usage_perc = tokens held by running
# requests (prompt + generated so far) / this, capped at 1.
KV_CACHE_TOKENS = 65536

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_BAD_BODY_HTML = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n"
_METRICS_HEADERS = {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}


@dataclass(slots=True)
class MockRequestLog:
    """What the server actually did with one generation request. Times are perf_counter_ns."""

    index: int  # arrival order among valid generation requests (0-based); decides the fault
    api: str  # "chat", "completions", "responses" or "embeddings"
    stream: bool  # SSE (True) or one JSON body (False)
    received_ns: int  # handler entered
    admitted_ns: int | None  # got a capacity slot (== about received without capacity); None: never
    fault: str | None  # one of mock_config.FAULT_KINDS, or None
    package_sent_ns: list[int] = field(default_factory=list)  # after each OUTPUT package's write returned (none for embeddings)
    package_tokens: list[int] = field(default_factory=list)  # tokens carried by each of those packages
    prompt_tokens: int = 0  # words in the prompt (see module docstring)
    completion_tokens: int = 0  # tokens sent
    finished_ns: int | None = None  # last byte written; None when the connection was aborted or lost
    client_disconnected: bool = False  # the client went away before the answer was complete
    body: bytes | None = None  # the request body as received, when the server keeps bodies (``keep_bodies``)
    images: int = 0  # chat: image_url content parts received


class MockServer:
    """The mock server. ``start()`` it on an event loop; read ``log`` for the truth."""

    def __init__(self, config: MockConfig = MockConfig()) -> None:
        self.config = config
        self.log: list[MockRequestLog] = []
        self.keep_bodies = False  # tests that check what was sent set it: bodies cost memory over a long run
        self._faults = FaultSchedule(config)
        self._slots = Slots(config.capacity)
        self._ttft_ns = round(config.ttft_ms * 1e6)
        self._itl_ns = config.itl_ms * 1e6  # float: multiplied by a token count, then rounded
        self._ping_ns = round(config.ping_interval_ms * 1e6)
        self._stall_ns = round(config.stall_s * 1e9)
        self._eol = b"\r\n" if config.crlf else b"\n"
        self._ping = b": ping" + self._eol + self._eol
        # /metrics state
        self._running = 0
        self._waiting = 0
        self._cache_tokens = 0
        self._prompt_tokens_total = 0
        self._generation_tokens_total = 0
        self._success_total = 0
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self._chat)
        self.app.router.add_post("/v1/completions", self._completions)
        self.app.router.add_post("/v1/responses", self._responses)
        self.app.router.add_post("/v1/embeddings", self._embeddings)
        self.app.router.add_get("/v1/models", self._models)
        self.app.router.add_get("/health", self._health)
        self.app.router.add_get("/metrics", self._metrics)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0: any free port); returns the base URL ``http://host:port``."""
        # handler_cancellation: a client that goes away cancels its handler, which frees the slot.
        # shutdown_timeout: stop() must not wait for stalled streams.
        runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or exc
            raise TargetError(f"mock server cannot listen on {host}:{port}: {reason}; pick another --port") from exc
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        return f"http://{shown}:{bound_port}"

    async def stop(self) -> None:
        """Stop listening and end all requests in flight."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ------------------------------------------------------------------ small routes

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": self.config.model, "object": "model", "created": int(time.time()),
                 "owned_by": "perfbench", "root": self.config.model, "parent": None}  # fmt: skip
        return web.json_response({"object": "list", "data": [model]})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics_text().encode(), headers=_METRICS_HEADERS)

    def metrics_text(self) -> str:
        """The /metrics page: vLLM's names, Prometheus text format 0.0.4."""
        escaped = self.config.model.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        label = f'model_name="{escaped}"'
        cache = min(1.0, self._cache_tokens / KV_CACHE_TOKENS)
        rows = (
            ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.",
             label, self._running),
            ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.",
             label, self._waiting),
            ("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent usage.",
             label, cache),
            ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
             label, self._prompt_tokens_total),
            ("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.",
             label, self._generation_tokens_total),
            ("vllm:request_success_total", "counter", "Count of successfully processed requests.",
             'finished_reason="length",' + label, self._success_total),
        )  # fmt: skip
        lines = []
        for name, kind, help_text, labels, value in rows:
            lines += (f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{{{labels}}} {float(value)!r}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ generation

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, API_CHAT)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, API_COMPLETIONS)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, API_RESPONSES)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, API_EMBEDDINGS)

    async def _generate(self, request: web.Request, api: str) -> web.StreamResponse:
        received_ns = perf_ns()
        body = await request.read()
        try:
            job = parse_request(body, api, self.config)
        except BadRequest as exc:
            return _error_response(api, 400, "BadRequestError", str(exc))
        index = len(self.log)
        entry = MockRequestLog(index=index, api=api, stream=job.stream, received_ns=received_ns, admitted_ns=None,
                               fault=self._faults.fault_for(index), prompt_tokens=job.prompt_tokens,
                               body=body if self.keep_bodies else None, images=job.images)  # fmt: skip
        self.log.append(entry)
        if entry.fault is not None:
            log.debug("mock request %d (%s): fault %s", index, api, entry.fault)
        if entry.fault == FAULT_HTTP_ERROR:
            error = _error_response(api, 500, "InternalServerError", "mock: injected server error")
            return await self._finish_at_once(request, entry, error)
        if entry.fault == FAULT_BAD_BODY:
            html = web.Response(status=200, text=_BAD_BODY_HTML, content_type="text/html")
            return await self._finish_at_once(request, entry, html)

        # A deterministic, random-looking id (a multiplicative hash of seed and index).
        response_hex = f"{(((self.config.seed << 32) + index + 1) * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}"
        wire = None if api == API_EMBEDDINGS else make_wire(job, self.config, response_hex, int(time.time()))
        waiter = self._slots.request()
        if waiter is None:
            self._admit(entry)
        else:
            self._waiting += 1
        resp: web.StreamResponse | None = None
        admitted = waiter is None
        try:
            if job.stream:
                resp = web.StreamResponse(status=200, headers=_SSE_HEADERS)
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                assert wire is not None
                opening = wire.opening()
                if opening:
                    await resp.write(opening)
            if waiter is not None:
                await self._wait_admission(resp, waiter, entry)
                self._waiting -= 1
                admitted = True
                self._admit(entry)
            if job.stream:
                assert resp is not None and wire is not None
                await self._stream(request, resp, entry, job, wire)
            else:
                resp = await self._whole(request, entry, job, wire)
        except ConnectionResetError:
            # The client went away and a write noticed before the handler was cancelled.
            entry.client_disconnected = True
        except asyncio.CancelledError:
            entry.client_disconnected = entry.finished_ns is None
            raise
        finally:
            if not admitted:
                self._waiting -= 1
                assert waiter is not None
                self._slots.abandon(waiter)
            else:
                self._running -= 1
                self._cache_tokens -= entry.prompt_tokens + entry.completion_tokens
                self._slots.release()
        return resp if resp is not None else web.Response(status=499)

    def _admit(self, entry: MockRequestLog) -> None:
        entry.admitted_ns = perf_ns()
        self._running += 1
        self._prompt_tokens_total += entry.prompt_tokens
        self._cache_tokens += entry.prompt_tokens

    async def _finish_at_once(self, request: web.Request, entry: MockRequestLog, resp: web.Response) -> web.Response:
        await resp.prepare(request)
        await resp.write_eof()
        entry.finished_ns = perf_ns()
        return resp

    async def _wait_admission(
        self, resp: web.StreamResponse | None, waiter: asyncio.Future[None], entry: MockRequestLog
    ) -> None:
        """Wait in the queue for a slot, sending pings meanwhile when the stream is open."""
        if resp is None or self._ping_ns == 0:
            await waiter
            return
        next_ping_ns = entry.received_ns + self._ping_ns
        while not waiter.done():
            await asyncio.wait((waiter,), timeout=max(0.0, (next_ping_ns - perf_ns()) / 1e9))
            if not waiter.done():
                await resp.write(self._ping)
                next_ping_ns = next_tick(next_ping_ns, self._ping_ns, perf_ns())

    def _deadlines(self, entry: MockRequestLog, plan: list[int]) -> list[int]:
        assert entry.admitted_ns is not None
        stall_ns = self._stall_ns if entry.fault == FAULT_STALL else 0
        return package_deadlines(entry.admitted_ns + self._ttft_ns, self._itl_ns, plan, stall_ns)

    def _text(self, entry: MockRequestLog, first_token: int, n: int) -> bytes:
        return token_text(self.config.seed, entry.index, first_token, n)

    async def _stream(
        self, request: web.Request, resp: web.StreamResponse, entry: MockRequestLog, job: Job, wire: ChatWire | ResponsesWire
    ) -> None:
        """Send the output packages at their deadlines, then the finish extras; or the halfway fault."""
        plan = package_plan(job.reasoning_tokens, job.n_tokens, self.config.tokens_per_package)
        deadlines = self._deadlines(entry, plan)
        n_packages = len(plan)
        fault_at = n_packages // 2 if entry.fault in (FAULT_CUT, FAULT_ERROR_EVENT) else -1
        next_ping_ns = (entry.received_ns + self._ping_ns) if self._ping_ns else None
        sent = 0  # packages sent
        sent_tokens = 0
        while True:
            next_ping_ns = await self._sleep_until(resp, deadlines[sent], next_ping_ns)
            if sent == fault_at:
                await self._inject(request, resp, entry, wire)
                return
            # Everything due by now goes out in one write, so a late wake-up does not add up.
            now = perf_ns()
            parts = []
            p = sent
            while True:
                tokens = plan[p] if n_packages else 0  # no packages: the finish chunk alone, empty
                reasoning = sent_tokens < job.reasoning_tokens
                text = self._text(entry, sent_tokens, tokens)
                sent_tokens += tokens
                p += 1
                if p < n_packages:
                    parts.append(wire.package(text, reasoning))
                else:
                    parts += wire.finish(text, reasoning, sent_tokens)
                if p >= n_packages or p == fault_at or deadlines[p] > now:
                    break
            await resp.write(b"".join(parts))
            written_ns = perf_ns()
            new_tokens = plan[sent:p]
            entry.package_sent_ns += [written_ns] * len(new_tokens)
            entry.package_tokens += new_tokens
            entry.completion_tokens += sum(new_tokens)
            self._generation_tokens_total += sum(new_tokens)
            self._cache_tokens += sum(new_tokens)
            sent = p
            if sent >= n_packages:
                break
        await resp.write_eof()
        entry.finished_ns = perf_ns()
        self._success_total += 1

    async def _sleep_until(self, resp: web.StreamResponse, due_ns: int, next_ping_ns: int | None) -> int | None:
        """Sleep until ``due_ns`` (absolute), writing pings due before it; returns the next ping time."""
        while True:
            now = perf_ns()
            if now >= due_ns:
                return next_ping_ns
            if next_ping_ns is not None and next_ping_ns < due_ns:
                if now >= next_ping_ns:
                    await resp.write(self._ping)
                    next_ping_ns = next_tick(next_ping_ns, self._ping_ns, perf_ns())
                    continue
                await asyncio.sleep((next_ping_ns - now) / 1e9)
            else:
                await asyncio.sleep((due_ns - now) / 1e9)

    async def _inject(
        self, request: web.Request, resp: web.StreamResponse, entry: MockRequestLog, wire: ChatWire | ResponsesWire
    ) -> None:
        """The halfway fault of a stream: cut the connection, or send an error event and end."""
        if entry.fault == FAULT_CUT:
            await _abort(request)
            return
        await resp.write(wire.error_event())
        await resp.write_eof()
        entry.finished_ns = perf_ns()

    async def _whole(
        self, request: web.Request, entry: MockRequestLog, job: Job, wire: ChatWire | ResponsesWire | None
    ) -> web.StreamResponse:
        """A non-streaming answer: one JSON body when the last package would have been sent.

        Embeddings (``wire`` None): at ``admitted + ttft + itl * (inputs - 1)``, stalls added.
        """
        if wire is None:
            assert entry.admitted_ns is not None
            due_ns = entry.admitted_ns + self._ttft_ns + round(self._itl_ns * (len(job.inputs) - 1))
            deadlines = [due_ns + (self._stall_ns if entry.fault == FAULT_STALL else 0)]
            error_due_ns = deadlines[0]
        else:
            plan = package_plan(job.reasoning_tokens, job.n_tokens, self.config.tokens_per_package)
            deadlines = self._deadlines(entry, plan)
            error_due_ns = deadlines[len(plan) // 2]
        if entry.fault == FAULT_ERROR_EVENT:
            await sleep_until_ns(error_due_ns)
            resp = _error_response(job.api, 500, "InternalServerError", "mock: injected error")
            await resp.prepare(request)
            await resp.write_eof()
            entry.finished_ns = perf_ns()
            return resp
        await sleep_until_ns(deadlines[-1])
        if wire is None:
            payload = embeddings_payload(job)
        else:
            text = self._text(entry, 0, job.n_tokens).decode()
            payload = wire.whole(text, len(self._text(entry, 0, job.reasoning_tokens)))
        resp = web.StreamResponse(status=200, headers=_JSON_HEADERS)
        resp.content_length = len(payload)
        await resp.prepare(request)
        if entry.fault == FAULT_CUT:
            await resp.write(payload[: len(payload) // 2])
            await _abort(request)
            return resp
        await resp.write(payload)
        await resp.write_eof()
        entry.finished_ns = perf_ns()
        if wire is None:  # embeddings: no output packages
            self._success_total += 1
            return resp
        entry.package_sent_ns.append(entry.finished_ns)
        entry.package_tokens.append(job.n_tokens)
        entry.completion_tokens = job.n_tokens
        self._generation_tokens_total += job.n_tokens
        self._cache_tokens += job.n_tokens
        self._success_total += 1
        return resp


async def _abort(request: web.Request) -> None:
    """Abort the TCP connection once what was written so far has left (a cut, not a clean close)."""
    transport = request.transport
    if transport is None:
        return
    for _ in range(100):  # bounded: up to 0.1 s for the kernel to take the buffered bytes
        if transport.get_write_buffer_size() == 0:
            break
        await asyncio.sleep(0.001)
    transport.abort()


def _error_response(api: str, status: int, error_type: str, message: str) -> web.Response:
    return web.Response(status=status, body=error_payload(api, status, error_type, message), headers=_JSON_HEADERS)
