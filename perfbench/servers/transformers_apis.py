"""The transformers server's Responses and embeddings routes (``POST /v1/responses``, ``POST /v1/embeddings``).

Responses run on the same continuous-batching generator as chat: the input messages and
``instructions`` go through the model's chat template, ``max_output_tokens``, ``temperature``,
``top_p`` and ``seed`` become the sampling parameters, and the events are servers/openai_wire.py's
(the mock sends the same). Each package is one ``response.output_text.delta`` holding one token's
text, as the chat stream's chunks do. Both routes refuse another model's name with vLLM's 404.

Embeddings are the mean of the model's last hidden state over the input's tokens (padding masked
out), L2-normalised; strings are tokenised as a completion prompt is (with the tokenizer's special
tokens), token-id lists are used as given, and ``usage.prompt_tokens`` counts them all. The
forward passes run in a worker thread, batched ``EMBEDDING_BATCH`` inputs at a time, so the event
loop keeps serving the streams in flight.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, Awaitable, Callable

from aiohttp import web

from perfbench.servers.generation import FINISH_ERROR, BatchGenerator
from perfbench.servers.openai_wire import BadRequest as WireBadRequest
from perfbench.servers.openai_wire import (
    ResponseStream,
    embedding_inputs,
    embeddings_body,
    encoding_format,
    input_messages,
    max_output_tokens,
    response_object,
    response_output,
    responses_usage,
)
from perfbench.servers.transformers_requests import (
    BadRequest,
    DeltaStream,
    check_model,
    check_prompt,
    error_response,
    sampling_params,
    template_prompt_ids,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

EMBEDDING_BATCH = 32  # inputs per forward pass: bounds the padded batch's memory
MAX_EMBEDDING_INPUTS = 2048  # per request, as OpenAI's limit

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def responses_handler(generator: BatchGenerator, model_name: str) -> Handler:
    """The ``POST /v1/responses`` handler: streamed events or one response object."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await _json_body(request)
            check_model(body, model_name)
            max_output_tokens(body)  # type-checked here, range-checked with the prompt's room below
            prompt_ids = template_prompt_ids(generator, input_messages(body))
            params = sampling_params(body, len(prompt_ids), generator, api="responses")
        except (BadRequest, WireBadRequest) as exc:
            return error_response(str(exc), getattr(exc, "status", 400))
        events = ResponseStream(f"resp_{uuid.uuid4().hex}", int(time.time()), model_name)
        deltas = DeltaStream(generator, prompt_ids, params)
        try:
            if not body.get("stream", False):
                last, text = await deltas.whole()
                if last.finish_reason == FINISH_ERROR:
                    return error_response(last.error or "generation failed", status=500)
                usage = responses_usage(len(prompt_ids), last.completion_tokens)
                output = response_output(events.item_ids, "", text)
                return web.json_response(response_object(events.response_id, events.created_at, model_name, "completed", output, usage))
            response = web.StreamResponse(headers=_SSE_HEADERS)
            await response.prepare(request)
            await response.write(events.opening(reasoning_first=False))
            while not deltas.finished:
                ready = await deltas.ready()
                await response.write(b"".join(events.delta(d.text) for d in ready if d.text))
                delta = ready[-1]  # a failure is always the last delta
            if delta.finish_reason == FINISH_ERROR:
                await response.write(events.error(delta.error or "generation failed"))
            else:
                await response.write(events.closing(responses_usage(len(prompt_ids), delta.completion_tokens)))
            await response.write_eof()
            return response
        finally:
            deltas.close()

    return handle


def embeddings_handler(generator: BatchGenerator, model_name: str) -> Handler:
    """The ``POST /v1/embeddings`` handler: mean-pooled, normalised last hidden states, off the event loop."""
    hidden_size = _hidden_size(generator.model)
    vocab_size = generator.model.get_input_embeddings().num_embeddings

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await _json_body(request)
            check_model(body, model_name)
            inputs = embedding_inputs(body)
            fmt = encoding_format(body)
            dimensions = _dimensions(body, hidden_size)
            if len(inputs) > MAX_EMBEDDING_INPUTS:
                raise BadRequest(f"at most {MAX_EMBEDDING_INPUTS} inputs per request, got {len(inputs)}")
            ids = [_input_ids(generator, item, vocab_size) for item in inputs]
        except (BadRequest, WireBadRequest) as exc:
            return error_response(str(exc), getattr(exc, "status", 400))
        loop = asyncio.get_running_loop()
        try:
            vectors = await loop.run_in_executor(None, mean_pooled_embeddings, generator.model, ids, generator.pad_token_id, dimensions)
        except RuntimeError as exc:  # e.g. out of memory: the client gets a 500, the server keeps serving
            return error_response(f"embedding failed: {exc}", status=500)
        payload = embeddings_body(vectors, model_name, sum(len(x) for x in ids), fmt)
        return web.Response(body=payload, content_type="application/json")

    return handle


def _hidden_size(model: Any) -> int:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.hidden_size)


def _dimensions(body: dict[str, Any], hidden_size: int) -> int:
    value = body.get("dimensions")
    if value is None:
        return hidden_size
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hidden_size:
        raise BadRequest(f"'dimensions' must be an integer from 1 to {hidden_size} (this model's hidden size), got {value!r}")
    return value


def _input_ids(generator: BatchGenerator, item: str | list[int], vocab_size: int) -> list[int]:
    if isinstance(item, str):
        return check_prompt(generator, generator.tokenizer.encode(item))
    if max(item) >= vocab_size:
        raise BadRequest(f"token id {max(item)} is outside this model's vocabulary of {vocab_size}")
    return check_prompt(generator, list(item))


def mean_pooled_embeddings(model: Any, ids: list[list[int]], pad_token_id: int, dimensions: int) -> list[list[float]]:
    """One unit vector per input: the attention-masked mean of the last hidden state, cut to ``dimensions`` and L2-normalised.

    Inputs are right-padded within a batch, so a causal model's real tokens never see the padding.
    """
    import torch

    device = next(model.parameters()).device
    vectors: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(ids), EMBEDDING_BATCH):
            chunk = ids[start : start + EMBEDDING_BATCH]
            longest = max(len(x) for x in chunk)
            input_ids = torch.full((len(chunk), longest), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for row, x in enumerate(chunk):
                input_ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
                mask[row, : len(x)] = 1
            input_ids, mask = input_ids.to(device), mask.to(device)
            out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True, use_cache=False, logits_to_keep=1)
            hidden = out.hidden_states[-1].float()  # [batch, tokens, hidden]
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
            pooled = torch.nn.functional.normalize(pooled[:, :dimensions], dim=-1)
            vectors += pooled.cpu().tolist()
    return vectors
