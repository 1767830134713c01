"""The built-in mock server: OpenAI-compatible streaming with exact timings, faults and a log of the truth.

It is perfbench's ground truth. Every request's packages go out at absolute deadlines measured
from the moment the request was admitted (``admitted + ttft``, then ``+ k*itl`` per package of k
tokens), so timings never drift however long the stream; a stream that wakes late sends every
package already due in one write. What the server actually did — when each output package's
bytes were written, how many tokens it carried, which fault it got — is kept in ``MockServer.log``
for tests to compare perfbench's numbers against.

Routes: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (``stream`` true: SSE,
chunked; false: one JSON body with ``usage``), ``GET /v1/models``, ``GET /health``,
``GET /metrics`` (vLLM-style Prometheus text).

Shapes follow vLLM: chunks carry ``id``, ``object`` (``chat.completion.chunk`` /
``text_completion``), ``created``, ``model`` (echoed from the request) and
``choices[{index, delta|text, logprobs: null, finish_reason}]``. The last output package is the
finish chunk (``finish_reason: "length"``), as in vLLM. The chat role chunk is vLLM's
``{"role": "assistant", "content": ""}`` and goes out at once, before admission: it is not output.
Reasoning tokens and content tokens never share a package (the package holding the last reasoning
token may carry fewer than ``tokens_per_package``).

Token counts: ``usage.prompt_tokens`` is the number of whitespace-separated words of the prompt
(completions: ``prompt``, a list of strings joined, or the length of a list of token ids; chat: all
message contents joined, text parts of list contents included); ``completion_tokens`` is the
number of tokens sent. Token text is deterministic words from a fixed list, one word per token.

Faults (chosen by ``FaultSchedule``, see mock_config.py) happen "halfway" = just before output
package ``n_packages // 2``, at the time it was due: ``cut`` aborts the TCP connection (the client
sees an incomplete chunked body), ``error_event`` sends ``data: {"error": {...}}`` and ends the
stream (no ``[DONE]``), ``stall`` shifts that package and all later ones by ``stall_s``.
``http_error`` (500, JSON) and ``bad_body`` (200, text/html) answer at once and never take a
capacity slot. Without streaming, a cut sends half the body then aborts, an error event becomes a
500 at the halfway time, and a stall delays the answer.

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
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

from aiohttp import web

from perfbench.cliutil import OneLineArgumentParser
from perfbench.errors import ConfigError, TargetError
from perfbench.servers.mock_config import (
    DEFAULT_OUTPUT_TOKENS,
    FAULT_BAD_BODY,
    FAULT_CUT,
    FAULT_ERROR_EVENT,
    FAULT_HTTP_ERROR,
    FAULT_STALL,
    USAGE_PLACEMENTS,
    FaultSchedule,
    MockConfig,
)

__all__ = ["MockConfig", "MockRequestLog", "MockServer", "MockInThread", "main"]

log = logging.getLogger(__name__)

perf_ns = time.perf_counter_ns

API_CHAT = "chat"
API_COMPLETIONS = "completions"

# Simulated KV cache size in tokens: vllm:gpu_cache_usage_perc = tokens held by running
# requests (prompt + generated so far) / this, capped at 1.
KV_CACHE_TOKENS = 65536

# Token text: one word per token, JSON-safe (no escaping needed when spliced into templates).
_WORDS = (
    " The", " model", " reads", " the", " prompt", " and", " writes", " one", " token", " at",
    " a", " time", ",", " so", " each", " request", " streams", " its", " answer", " back",
    " to", " client", " as", " soon", " it", " is", " ready", ".", " Latency", " depends",
    " on", " batch", " size", " memory", " bandwidth", " server", " load", " queue", " length",
    " of", " output", " in", " this", " test", " we", " measure", " first", " inter", " time",
    " per", " throughput", " under", " steady", " concurrency", " with", " known", " timings",
    " that", " never", " drift", " over", " long", " runs", " good",
)  # fmt: skip
_WORD_BYTES = tuple(w.encode() for w in _WORDS)
_N_WORDS = len(_WORDS)

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_BAD_BODY_HTML = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>\n"
_METRICS_HEADERS = {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}


@dataclass(slots=True)
class MockRequestLog:
    """What the server actually did with one generation request. Times are perf_counter_ns."""

    index: int  # arrival order among valid generation requests (0-based); decides the fault
    api: str  # "chat" or "completions"
    stream: bool  # SSE (True) or one JSON body (False)
    received_ns: int  # handler entered
    admitted_ns: int | None  # got a capacity slot (== about received without capacity); None: never
    fault: str | None  # one of mock_config.FAULT_KINDS, or None
    package_sent_ns: list[int] = field(default_factory=list)  # after each OUTPUT package's write returned
    package_tokens: list[int] = field(default_factory=list)  # tokens carried by each of those packages
    prompt_tokens: int = 0  # words in the prompt (see module docstring)
    completion_tokens: int = 0  # tokens sent
    finished_ns: int | None = None  # last byte written; None when the connection was aborted or lost
    client_disconnected: bool = False  # the client went away before the answer was complete


class _Slots:
    """At most ``capacity`` holders at once; the rest wait in FIFO order (None: no limit)."""

    __slots__ = ("_capacity", "_held", "_waiters")

    def __init__(self, capacity: int | None) -> None:
        self._capacity = capacity
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def request(self) -> asyncio.Future[None] | None:
        """None: the slot is held now. Else a future that completes when the slot is handed over."""
        if self._capacity is None or (self._held < self._capacity and not self._waiters):
            self._held += 1
            return None
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def release(self) -> None:
        # Hand the slot straight to the first live waiter, so a newcomer cannot overtake it.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._held -= 1

    def abandon(self, waiter: asyncio.Future[None]) -> None:
        """A waiter gave up (client gone): drop it, or pass on the slot it was just handed."""
        if waiter.done() and not waiter.cancelled():
            self.release()
        else:
            waiter.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass


class _Templates:
    """Pre-encoded pieces of one response's chunks; a package is ``head + open + text + close``."""

    __slots__ = ("response_id", "created", "eol", "end", "head", "role", "open_content", "open_reasoning",
                 "close", "close_final", "usage_head")  # fmt: skip

    def __init__(self, api: str, response_id: str, created: int, model: str, crlf: bool) -> None:
        self.response_id = response_id  # with its API's prefix: "chatcmpl-..." / "cmpl-..."
        self.created = created
        self.eol = b"\r\n" if crlf else b"\n"
        self.end = b"}" + self.eol + self.eol  # closes a chunk's JSON object and its event
        obj = "chat.completion.chunk" if api == API_CHAT else "text_completion"
        prefix = f'data: {{"id":"{response_id}","object":"{obj}","created":{created},"model":{json.dumps(model)},'
        prefix_b = prefix.encode()
        if api == API_CHAT:
            self.open_content = b'"delta":{"content":"'
            self.open_reasoning = b'"delta":{"reasoning_content":"'
            tail = b'"},"logprobs":null,"finish_reason":'
        else:
            self.open_content = self.open_reasoning = b'"text":"'
            tail = b'","logprobs":null,"finish_reason":'
        self.head = prefix_b + b'"choices":[{"index":0,'
        # vLLM's (and OpenAI's) role chunk carries an empty content: still not output.
        self.role = (
            self.head + b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]' + self.end
        )
        self.usage_head = prefix_b + b'"choices":[],"usage":'
        self.close = tail + b"null}]" + self.end
        # The finish chunk may carry usage before its closing brace; callers add `end`.
        self.close_final = tail + b'"length","stop_reason":null}]'


@dataclass(slots=True)
class _Job:
    """One parsed generation request."""

    api: str
    stream: bool
    model: str
    n_tokens: int  # output tokens to generate
    reasoning_tokens: int  # of those, how many are reasoning (chat only)
    include_usage: bool  # stream_options.include_usage
    prompt_tokens: int


class _BadRequest(Exception):
    """The request body is not a valid request; answered with 400."""


class MockServer:
    """The mock server. ``start()`` it on an event loop; read ``log`` for the truth."""

    def __init__(self, config: MockConfig = MockConfig()) -> None:
        self.config = config
        self.log: list[MockRequestLog] = []
        self._faults = FaultSchedule(config)
        self._slots = _Slots(config.capacity)
        self._ttft_ns = round(config.ttft_ms * 1e6)
        self._itl_ns = config.itl_ms * 1e6  # float: multiplied by a token count, then rounded
        self._ping_ns = round(config.ping_interval_ms * 1e6)
        self._stall_ns = round(config.stall_s * 1e9)
        self._eol = b"\r\n" if config.crlf else b"\n"
        self._ping = b": ping" + self._eol + self._eol
        self._done = b"data: [DONE]" + self._eol + self._eol
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

    async def _generate(self, request: web.Request, api: str) -> web.StreamResponse:
        received_ns = perf_ns()
        try:
            job = self._parse(await request.read(), api)
        except _BadRequest as exc:
            return _error_response(400, "BadRequestError", str(exc))
        index = len(self.log)
        entry = MockRequestLog(index=index, api=api, stream=job.stream, received_ns=received_ns, admitted_ns=None,
                               fault=self._faults.fault_for(index), prompt_tokens=job.prompt_tokens)  # fmt: skip
        self.log.append(entry)
        if entry.fault is not None:
            log.debug("mock request %d (%s): fault %s", index, api, entry.fault)
        if entry.fault == FAULT_HTTP_ERROR:
            error = _error_response(500, "InternalServerError", "mock: injected server error")
            return await self._finish_at_once(request, entry, error)
        if entry.fault == FAULT_BAD_BODY:
            html = web.Response(status=200, text=_BAD_BODY_HTML, content_type="text/html")
            return await self._finish_at_once(request, entry, html)

        # A deterministic, random-looking id (a multiplicative hash of seed and index).
        response_hex = f"{(((self.config.seed << 32) + index + 1) * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}"
        response_id = ("chatcmpl-" if api == API_CHAT else "cmpl-") + response_hex
        templates = _Templates(api, response_id, int(time.time()), job.model, self.config.crlf)
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
                if api == API_CHAT and self.config.role_chunk:
                    await resp.write(templates.role)
            if waiter is not None:
                await self._wait_admission(resp, waiter, entry)
                self._waiting -= 1
                admitted = True
                self._admit(entry)
            if job.stream:
                assert resp is not None
                await self._stream(request, resp, entry, job, templates)
            else:
                resp = await self._whole(request, entry, job, templates)
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

    def _parse(self, body: bytes, api: str) -> _Job:
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise _BadRequest(f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _BadRequest("body must be a JSON object")
        if api == API_CHAT:
            messages = data.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _BadRequest("'messages' must be a non-empty list")
            prompt_tokens = sum(_count_words(m.get("content") if isinstance(m, dict) else None) for m in messages)
            requested = data.get("max_completion_tokens", data.get("max_tokens"))
        else:
            if "prompt" not in data:
                raise _BadRequest("'prompt' is required")
            prompt_tokens = _count_words(data["prompt"])
            requested = data.get("max_tokens")
        if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int) or requested < 1):
            raise _BadRequest(f"max_tokens must be a positive integer, got {requested!r}")
        n_tokens = self.config.output_tokens
        if n_tokens is None:
            n_tokens = requested if requested is not None else DEFAULT_OUTPUT_TOKENS
        options = data.get("stream_options")
        model = data.get("model")
        return _Job(
            api=api,
            stream=bool(data.get("stream", False)),
            model=model if isinstance(model, str) and model else self.config.model,
            n_tokens=n_tokens,
            reasoning_tokens=min(self.config.reasoning_tokens, n_tokens) if api == API_CHAT else 0,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
            prompt_tokens=prompt_tokens,
        )

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
                next_ping_ns = _next_tick(next_ping_ns, self._ping_ns, perf_ns())

    def _package_plan(self, job: _Job) -> list[int]:
        """Tokens per output package; reasoning and content never share a package."""
        k = self.config.tokens_per_package
        plan: list[int] = []
        for part in (job.reasoning_tokens, job.n_tokens - job.reasoning_tokens):
            full, rest = divmod(part, k)
            plan += [k] * full
            if rest:
                plan.append(rest)
        return plan

    def _deadlines(self, entry: MockRequestLog, job: _Job, plan: list[int]) -> list[int]:
        """Absolute due time of each output package (the finish chunk alone when there are none)."""
        assert entry.admitted_ns is not None
        base = entry.admitted_ns + self._ttft_ns
        deadlines = []
        tokens_after_first = 0
        for p, tokens in enumerate(plan):
            if p:
                tokens_after_first += tokens
            deadlines.append(base + round(self._itl_ns * tokens_after_first))
        if not deadlines:
            deadlines.append(base)
        if entry.fault == FAULT_STALL:
            half = len(plan) // 2
            deadlines[half:] = [d + self._stall_ns for d in deadlines[half:]]
        return deadlines

    def _usage(self, job: _Job, completion_tokens: int) -> bytes:
        usage: dict[str, Any] = {
            "prompt_tokens": job.prompt_tokens,
            "total_tokens": job.prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
        }
        if job.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": job.reasoning_tokens}
        return json.dumps(usage, separators=(",", ":")).encode()

    def _text(self, entry: MockRequestLog, first_token: int, n: int) -> bytes:
        start = self.config.seed + entry.index * 7 + first_token
        return b"".join([_WORD_BYTES[(start + t) % _N_WORDS] for t in range(n)])

    async def _stream(
        self, request: web.Request, resp: web.StreamResponse, entry: MockRequestLog, job: _Job, tpl: _Templates
    ) -> None:
        """Send the output packages at their deadlines, then the finish extras; or the halfway fault."""
        plan = self._package_plan(job)
        deadlines = self._deadlines(entry, job, plan)
        n_packages = len(plan)
        fault_at = n_packages // 2 if entry.fault in (FAULT_CUT, FAULT_ERROR_EVENT) else -1
        next_ping_ns = (entry.received_ns + self._ping_ns) if self._ping_ns else None
        sent = 0  # packages sent
        sent_tokens = 0
        while True:
            next_ping_ns = await self._sleep_until(resp, deadlines[sent], next_ping_ns)
            if sent == fault_at:
                await self._inject(request, resp, entry, tpl)
                return
            # Everything due by now goes out in one write, so a late wake-up does not add up.
            now = perf_ns()
            parts = []
            p = sent
            while True:
                tokens = plan[p] if n_packages else 0  # no packages: the finish chunk alone, empty
                open_ = tpl.open_reasoning if sent_tokens < job.reasoning_tokens else tpl.open_content
                text = self._text(entry, sent_tokens, tokens)
                sent_tokens += tokens
                p += 1
                if p < n_packages:
                    parts.append(tpl.head + open_ + text + tpl.close)
                else:
                    parts += self._finish(job, tpl, open_ + text, sent_tokens)
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

    def _finish(self, job: _Job, tpl: _Templates, opened_text: bytes, completion_tokens: int) -> list[bytes]:
        """The finish chunk (last output, finish_reason "length"), usage where configured, [DONE]."""
        placement = self.config.usage if job.include_usage else "none"
        usage = self._usage(job, completion_tokens)
        in_finish = b',"usage":' + usage if placement == "last" else b""
        parts = [tpl.head + opened_text + tpl.close_final + in_finish + tpl.end]
        if placement == "separate":
            parts.append(tpl.usage_head + usage + tpl.end)
        if self.config.send_done:
            parts.append(self._done)
        return parts

    async def _sleep_until(self, resp: web.StreamResponse, due_ns: int, next_ping_ns: int | None) -> int | None:
        """Sleep until ``due_ns`` (absolute), writing pings due before it; returns the next ping time."""
        while True:
            now = perf_ns()
            if now >= due_ns:
                return next_ping_ns
            if next_ping_ns is not None and next_ping_ns < due_ns:
                if now >= next_ping_ns:
                    await resp.write(self._ping)
                    next_ping_ns = _next_tick(next_ping_ns, self._ping_ns, perf_ns())
                    continue
                await asyncio.sleep((next_ping_ns - now) / 1e9)
            else:
                await asyncio.sleep((due_ns - now) / 1e9)

    async def _inject(
        self, request: web.Request, resp: web.StreamResponse, entry: MockRequestLog, tpl: _Templates
    ) -> None:
        """The halfway fault of a stream: cut the connection, or send an error event and end."""
        if entry.fault == FAULT_CUT:
            await _abort(request)
            return
        error = {"error": {"message": "mock: injected error event", "type": "InternalServerError", "code": 500}}
        await resp.write(b"data: " + json.dumps(error).encode() + tpl.eol + tpl.eol)
        await resp.write_eof()
        entry.finished_ns = perf_ns()

    async def _whole(
        self, request: web.Request, entry: MockRequestLog, job: _Job, tpl: _Templates
    ) -> web.StreamResponse:
        """A non-streaming answer: one JSON body when the last package would have been sent."""
        plan = self._package_plan(job)
        deadlines = self._deadlines(entry, job, plan)
        if entry.fault == FAULT_ERROR_EVENT:
            await _sleep_until_ns(deadlines[len(plan) // 2])
            resp = _error_response(500, "InternalServerError", "mock: injected error")
            await resp.prepare(request)
            await resp.write_eof()
            entry.finished_ns = perf_ns()
            return resp
        await _sleep_until_ns(deadlines[-1])
        text = self._text(entry, 0, job.n_tokens).decode()
        usage = json.loads(self._usage(job, job.n_tokens))
        if job.api == API_CHAT:
            reasoning_chars = len(self._text(entry, 0, job.reasoning_tokens))
            message = {"role": "assistant", "content": text[reasoning_chars:],
                       "reasoning_content": text[:reasoning_chars] or None, "tool_calls": []}  # fmt: skip
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "length", "stop_reason": None}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "stop_reason": None}
            obj = "text_completion"
        body = {"id": tpl.response_id, "object": obj, "created": tpl.created, "model": job.model,
                "choices": [choice], "usage": usage}  # fmt: skip
        payload = json.dumps(body).encode()
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
        entry.package_sent_ns.append(entry.finished_ns)
        entry.package_tokens.append(job.n_tokens)
        entry.completion_tokens = job.n_tokens
        self._generation_tokens_total += job.n_tokens
        self._cache_tokens += job.n_tokens
        self._success_total += 1
        return resp


def _count_words(content: Any) -> int:
    """Whitespace-separated words in a prompt or message content (token ids count one each)."""
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        if content and all(isinstance(x, int) for x in content):
            return len(content)
        return sum(_count_words(part.get("text") if isinstance(part, dict) else part) for part in content)
    return 0


def _next_tick(tick_ns: int, period_ns: int, now_ns: int) -> int:
    """The first tick of the grid ``tick + m*period`` that is after ``now``."""
    if now_ns < tick_ns:
        return tick_ns
    return tick_ns + ((now_ns - tick_ns) // period_ns + 1) * period_ns


async def _sleep_until_ns(due_ns: int) -> None:
    while (left_ns := due_ns - perf_ns()) > 0:
        await asyncio.sleep(left_ns / 1e9)


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


def _error_response(status: int, error_type: str, message: str) -> web.Response:
    body = {"object": "error", "message": message, "type": error_type, "param": None, "code": status}
    return web.Response(status=status, body=json.dumps(body).encode(), headers=_JSON_HEADERS)


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
        except BaseException:
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
    add("--reasoning-tokens", type=int, default=d.reasoning_tokens, help="chat: the first N tokens go out as reasoning_content")
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
    return p


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """The MockConfig for parsed ``perfbench mock`` arguments (ConfigError on bad values)."""
    return MockConfig(**{f.name: getattr(args, f.name) for f in fields(MockConfig)})


def main(argv: list[str]) -> int:
    """``perfbench mock ...``: serve until Ctrl-C. Bad usage or values raise ConfigError (exit 2)."""
    args = _parser().parse_args(argv)
    config = config_from_args(args)
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
