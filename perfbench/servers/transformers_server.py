"""An OpenAI-compatible HTTP server for a local Hugging Face causal LM, with continuous batching.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming and not),
``POST /v1/responses`` and ``POST /v1/embeddings`` (servers/transformers_apis.py),
``GET /v1/models``, ``GET /health`` and ``GET /metrics``. One model is served, under one name
(``--served-model-name``, by default the model directory's name); a request naming another gets
vLLM's 404. Chunks are shaped like vLLM's: the chat stream opens with a role-only chunk, each later
chunk carries the text of one token (a token that ends inside a UTF-8 character goes with the one
that completes it), the last chunk carries ``finish_reason``, and with
``stream_options.include_usage`` a final chunk with empty ``choices`` carries ``usage``; then
``data: [DONE]``.

``/metrics`` uses vLLM's names, so perfbench's telemetry reads it as it reads vLLM's:
``vllm:num_requests_running`` and ``vllm:num_requests_waiting``, ``vllm:prompt_tokens_total`` and
``vllm:generation_tokens_total``, and ``vllm:kv_cache_usage_perc``: this server's cache has no fixed
pool of blocks, so the fraction is of the largest cache the batch may hold (KV slots held, left
padding included, over ``max_batch_size`` rows of the model's context length).

Generation runs in ``BatchGenerator``'s own thread (perfbench/servers/generation.py); each
request waits on an ``asyncio.Queue`` fed through ``loop.call_soon_threadsafe``. Deltas that pile
up while a handler is busy are written together, still one event each. A client that disconnects
(the handler is cancelled) cancels its sequence, which frees its batch slot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from perfbench.core.errors import ConfigError
from perfbench.servers.generation import FINISH_ERROR, BatchGenerator, Delta
from perfbench.servers.transformers_apis import embeddings_handler, responses_handler
from perfbench.servers.transformers_requests import (
    BadRequest,
    DeltaStream,
    chat_prompt_ids,
    check_model,
    completion_prompt_ids,
    error_response,
    sampling_params,
)

logger = logging.getLogger(__name__)

GENERATOR_KEY = web.AppKey("generator", BatchGenerator)
MODEL_NAME_KEY = web.AppKey("model_name", str)
_METRICS_HEADERS = {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model and tokenizer ready to serve, and where they live."""

    model: Any  # transformers PreTrainedModel, eval mode, on ``device``
    tokenizer: Any  # transformers tokenizer
    device: str  # "cpu" or "cuda:N"
    dtype: str  # "float32", "bfloat16", ...
    parameter_count: int
    memory_bytes: int  # parameters + buffers


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; checks an explicit choice."""
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device} but no CUDA GPU is available to torch; use --device cpu or auto")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device} but only {torch.cuda.device_count()} CUDA device(s) exist; pick one below that"
            )
        return f"cuda:{index}"
    raise ConfigError(f"--device {device!r} is not one of auto, cpu, cuda, cuda:N")


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> bfloat16 on a GPU that supports it (else float16), float32 on CPU."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    if dtype not in ("bfloat16", "float16", "float32"):
        raise ConfigError(f"--dtype {dtype!r} is not one of auto, bfloat16, float16, float32")
    return dtype


def load_model(model: str, *, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load ``model`` (a directory or a name in the local HF cache; nothing is downloaded)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
        hf_model = AutoModelForCausalLM.from_pretrained(model, local_files_only=True, dtype=getattr(torch, dtype))
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"cannot load model {model!r} from a local directory or the local Hugging Face cache ({first_line}); "
            f"pass a model directory or download it first (huggingface-cli download {model})"
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    hf_model.to(device).eval()
    if device == "cpu":
        _limit_cpu_threads(torch)
    parameter_count = sum(p.numel() for p in hf_model.parameters())
    memory_bytes = sum(t.numel() * t.element_size() for t in (*hf_model.parameters(), *hf_model.buffers()))
    loaded = LoadedModel(hf_model, tokenizer, device, dtype, parameter_count, memory_bytes)
    logger.info(
        "loaded %s (%s, %.1fM parameters) on %s as %s: %.1f MiB of weights%s",
        model,
        type(hf_model).__name__,
        parameter_count / 1e6,
        device,
        dtype,
        memory_bytes / 2**20,
        _cuda_memory_note(device),
    )
    return loaded


def _limit_cpu_threads(torch: Any) -> None:
    """Leave two cores to the event loop and the load generator, which usually share the machine.

    torch's default (one OpenMP thread per core) spins threads on every core; with the client on
    the same machine those threads get descheduled mid-barrier and decoding slows down tenfold
    (measured: 100 vs 1600 tok/s on 2 cores). An explicit OMP_NUM_THREADS wins.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores - 2))
    logger.info("using %d CPU threads for torch (of %d cores; set OMP_NUM_THREADS to change)", torch.get_num_threads(), cores)


def _cuda_memory_note(device: str) -> str:
    if not device.startswith("cuda"):
        return ""
    import torch

    free_bytes, total_bytes = torch.cuda.mem_get_info(torch.device(device))
    return f"; GPU memory {(total_bytes - free_bytes) / 2**30:.2f} of {total_bytes / 2**30:.1f} GiB in use"


def default_served_model_name(model: str) -> str:
    """A model directory's own name (``./models/llama-3/`` -> ``llama-3``); a cache name as given."""
    path = Path(model)
    return path.resolve().name if path.is_dir() else model


def create_app(generator: BatchGenerator, model_name: str) -> web.Application:
    """The aiohttp application serving ``generator`` under ``model_name``."""
    app = web.Application(client_max_size=64 * 2**20)
    app[GENERATOR_KEY] = generator
    app[MODEL_NAME_KEY] = model_name
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/metrics", _metrics)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_post("/v1/responses", responses_handler(generator, model_name))
    app.router.add_post("/v1/embeddings", embeddings_handler(generator, model_name))
    return app


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="")


async def _models(request: web.Request) -> web.Response:
    generator = request.app[GENERATOR_KEY]
    return web.json_response(
        {
            "object": "list",
            "data": [
                {
                    "id": request.app[MODEL_NAME_KEY],
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "perfbench",
                    "max_model_len": generator.max_model_len,
                }
            ],
        }
    )


def metrics_text(generator: BatchGenerator, model_name: str) -> str:
    """The /metrics page (see the module docstring), Prometheus text format 0.0.4."""
    label = 'model_name="' + model_name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    cache = min(1.0, generator.cache_tokens / generator.cache_capacity_tokens)
    rows = (
        ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", generator.running_requests),
        ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.", generator.waiting),
        ("vllm:kv_cache_usage_perc", "gauge",
         "KV-cache usage: slots held over max_batch_size x context length. 1 means 100 percent usage.", cache),
        ("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.", generator.prompt_tokens_total),
        ("vllm:generation_tokens_total", "counter", "Number of generation tokens processed.", generator.generation_tokens_total),
    )  # fmt: skip
    lines = []
    for name, kind, help_text, value in rows:
        lines += (f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{{{label}}} {float(value)!r}")
    return "\n".join(lines) + "\n"


async def _metrics(request: web.Request) -> web.Response:
    text = metrics_text(request.app[GENERATOR_KEY], request.app[MODEL_NAME_KEY])
    return web.Response(body=text.encode(), headers=_METRICS_HEADERS)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=True)


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=False)


async def _generate(request: web.Request, *, chat: bool) -> web.StreamResponse:
    generator = request.app[GENERATOR_KEY]
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        check_model(body, request.app[MODEL_NAME_KEY])
        prompt_ids = chat_prompt_ids(generator, body) if chat else completion_prompt_ids(generator, body)
        params = sampling_params(body, len(prompt_ids), generator, api="chat" if chat else "completions")
        stream = bool(body.get("stream", False))
        stream_options = body.get("stream_options") or {}
        include_usage = bool(stream_options.get("include_usage", False)) if isinstance(stream_options, dict) else False
    except json.JSONDecodeError:
        return error_response("the request body is not valid JSON")
    except BadRequest as exc:
        return error_response(str(exc), exc.status)

    deltas = DeltaStream(generator, prompt_ids, params)
    try:
        reply = _Reply(chat=chat, model=request.app[MODEL_NAME_KEY], prompt_tokens=len(prompt_ids))
        if not stream:
            delta, text = await deltas.whole()
            if delta.finish_reason == FINISH_ERROR:
                return error_response(delta.error or "generation failed", status=500)
            return web.json_response(reply.full(text, delta))

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        if chat:
            await response.write(reply.sse(reply.chunk_chat({"role": "assistant", "content": ""}, None)))
        while not deltas.finished:
            events = []
            for delta in await deltas.ready():
                if delta.finish_reason == FINISH_ERROR:
                    events.append(reply.sse({"error": {"message": delta.error, "type": "InternalServerError", "code": 500}}))
                elif delta.text or delta.finish_reason is not None:
                    events.append(reply.sse(reply.chunk(delta)))
            await response.write(b"".join(events))
        if include_usage and delta.finish_reason != FINISH_ERROR:
            await response.write(reply.sse(reply.usage_chunk(delta.completion_tokens)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    finally:
        deltas.close()


class _Reply:
    """Builds the response objects of one request (ids, timestamps and shapes as vLLM sends them)."""

    def __init__(self, *, chat: bool, model: str, prompt_tokens: int) -> None:
        self.chat = chat
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    @staticmethod
    def sse(obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def chunk_chat(self, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope("chat.completion.chunk", [choice])

    def chunk(self, delta: Delta) -> dict[str, Any]:
        if self.chat:
            return self.chunk_chat({"content": delta.text}, delta.finish_reason)
        choice = {"index": 0, "text": delta.text, "logprobs": None, "finish_reason": delta.finish_reason}
        return self._envelope("text_completion", [choice])

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def usage_chunk(self, completion_tokens: int) -> dict[str, Any]:
        chunk = self._envelope("chat.completion.chunk" if self.chat else "text_completion", [])
        chunk["usage"] = self.usage(completion_tokens)
        return chunk

    def full(self, text: str, last: Delta) -> dict[str, Any]:
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": last.finish_reason,
            }
            reply = self._envelope("chat.completion", [choice])
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": last.finish_reason}
            reply = self._envelope("text_completion", [choice])
        reply["usage"] = self.usage(last.completion_tokens)
        return reply


async def serve(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    dtype: str = "auto",
    max_batch_size: int = 64,
    served_model_name: str | None = None,
) -> None:
    """Load ``model`` and serve it until cancelled."""
    loaded = await asyncio.get_running_loop().run_in_executor(None, lambda: load_model(model, device=device, dtype=dtype))
    generator = BatchGenerator(loaded.model, loaded.tokenizer, max_batch_size=max_batch_size)
    generator.start()
    name = served_model_name or default_served_model_name(model)
    runner = web.AppRunner(create_app(generator, name), handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from exc
        logger.info("serving %s as %r on http://%s:%d (max batch size %d)", model, name, host, port, max_batch_size)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        generator.stop()
