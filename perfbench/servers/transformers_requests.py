"""What every generation route of the transformers server shares: reading a request, answering 400/404, receiving deltas.

Request bodies become prompt ids (chat template, completion prompt, token ids) and
``SamplingParams``, the model's generation config filling in what a request leaves out; a
request naming another model than the one served is refused with vLLM's 404. A ``DeltaStream`` is
one submitted sequence as the handler sees it: deltas from the generator thread, one per token
with complete text (never merged, so each becomes its own event), and the sequence cancelled when
the handler leaves before it finished (a client that went away frees its batch slot).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from perfbench.servers.generation import BatchGenerator, Delta, SamplingParams


class BadRequest(Exception):
    """A request the server refuses with HTTP 400; the message goes to the client."""

    status = 400


class ModelNotFound(BadRequest):
    """A request for a model this server does not serve: HTTP 404, as vLLM answers it."""

    status = 404


_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError"}


def error_response(message: str, status: int = 400) -> web.Response:
    """An OpenAI-style JSON error answer (``{"error": {...}}``)."""
    kind = _ERROR_TYPES.get(status, "InternalServerError")
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": status}}, status=status)


def check_model(body: dict[str, Any], served_model_name: str) -> None:
    """ModelNotFound unless ``body["model"]`` is absent or the served name (vLLM's rule and message)."""
    model = body.get("model")
    if model is None:
        return
    if not isinstance(model, str):
        raise BadRequest("'model' must be a string")
    if model != served_model_name:
        raise ModelNotFound(f"The model `{model}` does not exist.")


def chat_prompt_ids(generator: BatchGenerator, body: dict[str, Any]) -> list[int]:
    """The prompt ids of a chat request's ``messages`` (text content parts joined); BadRequest for an
    image (or any part that is not text): the models this server loads read text only."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise BadRequest("each message must be an object with a 'role'")
        content = message.get("content")
        if isinstance(content, list):  # OpenAI content parts: text only
            for j, part in enumerate(content):
                kind = part.get("type", "text") if isinstance(part, dict) else "text"
                if kind != "text":
                    raise BadRequest(f"this model is text-only: messages[{i}].content[{j}] is an {kind!r} part, "
                                     "which it cannot read; send text content only")
            message["content"] = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return template_prompt_ids(generator, messages)


def template_prompt_ids(generator: BatchGenerator, messages: list[dict[str, Any]]) -> list[int]:
    """The prompt ids of chat ``messages`` (roles and string contents) through the model's chat template."""
    tokenizer = generator.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise BadRequest("this model has no chat template; use /v1/completions")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # The template already holds the special tokens (BOS), so the tokenizer must not add more.
    return check_prompt(generator, tokenizer.encode(text, add_special_tokens=False))


def completion_prompt_ids(generator: BatchGenerator, body: dict[str, Any]) -> list[int]:
    """The prompt ids of a completions request: one string, or one list of token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        ids = generator.tokenizer.encode(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        ids = list(prompt)
    else:
        raise BadRequest("'prompt' must be a string or a list of token ids (one prompt per request)")
    return check_prompt(generator, ids)


def check_prompt(generator: BatchGenerator, ids: list[int]) -> list[int]:
    """``ids`` unchanged, or BadRequest when empty or too long for the model's context."""
    if not ids:
        raise BadRequest("the prompt is empty")
    if len(ids) >= generator.max_model_len:
        raise BadRequest(
            f"the prompt has {len(ids)} tokens; this model's maximum context length is {generator.max_model_len}"
        )
    return ids


def number(body: dict[str, Any], key: str, default: Any, kind: type, low: float, high: float) -> Any:
    """``body[key]`` as ``kind`` within [low, high], ``default`` when absent; BadRequest naming the key."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise BadRequest(f"'{key}' must be a number")
    if not low <= value <= high:
        raise BadRequest(f"'{key}' must be between {low} and {high}, got {value}")
    return kind(value)


def max_tokens_key(body: dict[str, Any], api: str) -> str:
    """Which field of the body carries the output length for ``api`` (chat, completions, responses)."""
    if api == "responses":
        return "max_output_tokens"
    return "max_completion_tokens" if api == "chat" and body.get("max_completion_tokens") is not None else "max_tokens"


def sampling_params(body: dict[str, Any], prompt_tokens: int, generator: BatchGenerator, *, api: str) -> SamplingParams:
    """The SamplingParams a request body asks for, the model's generation config filling in the rest.

    BadRequest naming the field when one is out of range.
    """
    if number(body, "n", 1, int, 1, 1) != 1:
        raise BadRequest("only n=1 is supported")
    defaults, max_model_len = generator.defaults, generator.max_model_len
    room = max_model_len - prompt_tokens
    key = max_tokens_key(body, api)
    max_tokens = number(body, key, min(defaults.max_new_tokens or room, room), int, 1, 2**31)
    if max_tokens > room:
        raise BadRequest(
            f"this model's maximum context length is {max_model_len} tokens; the prompt has {prompt_tokens} "
            f"and {key}={max_tokens} asks for more than the {room} left"
        )
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stop = tuple(stop)
    else:
        raise BadRequest("'stop' must be a string or a list of strings")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=number(body, "temperature", defaults.temperature, float, 0.0, 100.0),
        top_p=number(body, "top_p", defaults.top_p, float, 1e-9, 1.0),
        top_k=max(0, number(body, "top_k", defaults.top_k, int, -1, 2**31)),  # vLLM: -1 or 0 = off
        repetition_penalty=number(body, "repetition_penalty", defaults.repetition_penalty, float, 0.01, 100.0),
        seed=number(body, "seed", None, int, -(2**63), 2**63 - 1),
        stop=tuple(s for s in stop if s),
        ignore_eos=bool(body.get("ignore_eos", False)),
        min_tokens=min(number(body, "min_tokens", 0, int, 0, 2**31), max_tokens),
    )


class DeltaStream:
    """One submitted sequence's deltas on the event loop; ``close()`` cancels it unless it finished."""

    def __init__(self, generator: BatchGenerator, prompt_ids: list[int], params: SamplingParams) -> None:
        loop = asyncio.get_running_loop()
        self._generator = generator
        self._queue: asyncio.Queue[Delta] = asyncio.Queue()
        self._seq = generator.submit(prompt_ids, params, lambda d: loop.call_soon_threadsafe(self._queue.put_nowait, d))
        self.finished = False  # the last delta (with a finish_reason) was returned

    async def ready(self) -> list[Delta]:
        """The deltas that have arrived, in order, waiting for at least one; none after the last."""
        deltas = [await self._queue.get()]
        while not self._queue.empty() and deltas[-1].finish_reason is None:
            deltas.append(self._queue.get_nowait())
        self.finished = deltas[-1].finish_reason is not None
        return deltas

    async def whole(self) -> tuple[Delta, str]:
        """Wait for the end: (the last delta, all the text)."""
        texts = []
        while not self.finished:
            deltas = await self.ready()
            texts += (d.text for d in deltas)
        return deltas[-1], "".join(texts)

    def close(self) -> None:
        if not self.finished:
            self._generator.cancel(self._seq)

