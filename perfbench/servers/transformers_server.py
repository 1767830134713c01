"""An OpenAI-compatible HTTP server for a local Hugging Face causal LM, with continuous batching.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (streaming and not),
``POST /v1/responses`` and ``POST /v1/embeddings`` (servers/transformers_apis.py),
``GET /v1/models``, ``GET /health``. Chunks are shaped like vLLM's: the chat stream opens with a
role-only chunk, each later chunk carries new text, the last text chunk carries ``finish_reason``,
and with ``stream_options.include_usage`` a final chunk with empty ``choices`` carries ``usage``;
then ``data: [DONE]``.

Generation runs in ``BatchGenerator``'s own thread (perfbench/servers/generation.py); each
request waits on an ``asyncio.Queue`` fed through ``loop.call_soon_threadsafe``. Deltas that pile
up while a handler is busy are sent as one chunk. A client that disconnects (the handler is
cancelled) cancels its sequence, which frees its batch slot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from perfbench.errors import ConfigError
from perfbench.servers.generation import FINISH_ERROR, BatchGenerator, Delta
from perfbench.servers.transformers_apis import embeddings_handler, responses_handler
from perfbench.servers.transformers_requests import (
    BadRequest,
    DeltaStream,
    chat_prompt_ids,
    completion_prompt_ids,
    error_response,
    sampling_params,
)

logger = logging.getLogger(__name__)

GENERATOR_KEY = web.AppKey("generator", BatchGenerator)
MODEL_NAME_KEY = web.AppKey("model_name", str)


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


def create_app(generator: BatchGenerator, model_name: str) -> web.Application:
    """The aiohttp application serving ``generator`` under ``model_name``."""
    app = web.Application(client_max_size=64 * 2**20)
    app[GENERATOR_KEY] = generator
    app[MODEL_NAME_KEY] = model_name
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/models", _models)
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
        prompt_ids = chat_prompt_ids(generator, body) if chat else completion_prompt_ids(generator, body)
        params = sampling_params(body, len(prompt_ids), generator.max_model_len, api="chat" if chat else "completions")
        stream = bool(body.get("stream", False))
        stream_options = body.get("stream_options") or {}
        include_usage = bool(stream_options.get("include_usage", False)) if isinstance(stream_options, dict) else False
    except json.JSONDecodeError:
        return error_response("the request body is not valid JSON")
    except BadRequest as exc:
        return error_response(str(exc))

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
            delta = await deltas.next()
            if delta.finish_reason == FINISH_ERROR:
                error = {"error": {"message": delta.error, "type": "InternalServerError", "code": 500}}
                await response.write(reply.sse(error))
                break
            if delta.text or deltas.finished:
                await response.write(reply.sse(reply.chunk(delta)))
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
    runner = web.AppRunner(create_app(generator, served_model_name or model), handler_cancellation=True, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from exc
        logger.info("serving %s on http://%s:%d (max batch size %d)", served_model_name or model, host, port, max_batch_size)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        generator.stop()
