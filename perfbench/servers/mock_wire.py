"""The mock's wire format per API: request bodies in, chunks, events and bodies out; no timing, no I/O.

``parse_request`` turns a body into a ``Job`` (what to generate, how many prompt tokens). A
``Wire`` encodes one request's answer: ``opening`` (sent at once, before admission: the chat role
chunk, the Responses created/in_progress events), ``package`` (one output package),
``finish`` (the last output package and whatever closes the stream), ``error_event`` and
``whole`` (the non-streaming body). ``ChatWire`` serves chat and completions as vLLM does,
``ResponsesWire`` the Responses API (servers/openai_wire.py); embeddings have no stream, only
``embeddings_payload``.

Token text is deterministic words from a fixed list, one word per token (``token_text``); prompt
tokens are whitespace-separated words (``count_words``; a token-id list counts one per id). A chat
message's ``image_url`` parts are counted (``Job.images``, the log's ``images``) and add no tokens.
Embedding vectors are deterministic too: a hash of the input expanded to ``dimensions`` floats,
L2-normalised, so identical inputs get identical vectors.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from perfbench.core.mock_config import DEFAULT_OUTPUT_TOKENS, MockConfig
from perfbench.servers.openai_wire import (
    BadRequest,
    ResponseStream,
    embedding_inputs,
    embeddings_body,
    encoding_format,
    error_body,
    input_messages,
    max_output_tokens,
    response_object,
    response_output,
    responses_usage,
)

API_CHAT = "chat"
API_COMPLETIONS = "completions"
API_RESPONSES = "responses"
API_EMBEDDINGS = "embeddings"

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


def token_text(seed: int, index: int, first_token: int, n: int) -> bytes:
    """The text of tokens ``first_token .. first_token+n-1`` of request ``index``: one word each."""
    start = seed + index * 7 + first_token
    return b"".join([_WORD_BYTES[(start + t) % _N_WORDS] for t in range(n)])


def count_words(content: Any) -> int:
    """Whitespace-separated words in a prompt or message content (token ids count one each)."""
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        if content and all(isinstance(x, int) for x in content):
            return len(content)
        return sum(count_words(part.get("text") if isinstance(part, dict) else part) for part in content)
    return 0


@dataclass(slots=True)
class Job:
    """One parsed request."""

    api: str
    stream: bool
    model: str
    n_tokens: int  # output tokens to generate (0 for embeddings)
    reasoning_tokens: int  # of those, how many are reasoning (chat and responses)
    include_usage: bool  # stream_options.include_usage (chat and completions)
    prompt_tokens: int
    inputs: list[Any] = field(default_factory=list)  # embeddings: one entry per vector
    encoding_format: str = "float"  # embeddings: "float" or "base64"
    dimensions: int = 0  # embeddings: floats per vector
    images: int = 0  # chat: image_url content parts (they add no prompt tokens: the mock counts words)


def parse_request(body: bytes, api: str, config: MockConfig) -> Job:
    """The Job for a request body; BadRequest (answered 400) when the body is not a valid request."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    model = data.get("model")
    model = model if isinstance(model, str) and model else config.model
    if api == API_EMBEDDINGS:
        return _embeddings_job(data, model, config)
    if api == API_CHAT:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list")
        prompt_tokens = sum(count_words(m.get("content") if isinstance(m, dict) else None) for m in messages)
        images = count_images(messages)
        requested = data.get("max_completion_tokens", data.get("max_tokens"))
    elif api == API_RESPONSES:
        prompt_tokens = sum(count_words(m["content"]) for m in input_messages(data))
        requested = max_output_tokens(data)
    else:
        if "prompt" not in data:
            raise BadRequest("'prompt' is required")
        prompt_tokens = count_words(data["prompt"])
        requested = data.get("max_tokens")
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int) or requested < 1):
        raise BadRequest(f"max_tokens must be a positive integer, got {requested!r}")
    n_tokens = config.output_tokens
    if n_tokens is None:
        n_tokens = requested if requested is not None else DEFAULT_OUTPUT_TOKENS
    options = data.get("stream_options")
    job = Job(
        api=api,
        stream=bool(data.get("stream", False)),
        model=model,
        n_tokens=n_tokens,
        reasoning_tokens=min(config.reasoning_tokens, n_tokens) if api in (API_CHAT, API_RESPONSES) else 0,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        prompt_tokens=prompt_tokens,
    )
    if api == API_CHAT:
        job.images = images
    return job


def count_images(messages: list[Any]) -> int:
    """The ``image_url`` content parts of chat messages; BadRequest for one without a URL string."""
    images = 0
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else ()):
            if isinstance(part, dict) and part.get("type") == "image_url":
                image = part.get("image_url")
                if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                    raise BadRequest(f"messages[{i}].content[{j}].image_url must be an object with a 'url' string")
                images += 1
    return images


def _embeddings_job(data: dict[str, Any], model: str, config: MockConfig) -> Job:
    inputs = embedding_inputs(data)
    dimensions = data.get("dimensions")
    if dimensions is None:
        dimensions = config.embedding_dim
    elif isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= config.embedding_dim:
        raise BadRequest(f"'dimensions' must be an integer from 1 to {config.embedding_dim}, got {dimensions!r}")
    if data.get("stream"):
        raise BadRequest("embeddings cannot be streamed; leave 'stream' out")
    return Job(api=API_EMBEDDINGS, stream=False, model=model, n_tokens=0, reasoning_tokens=0, include_usage=False,
               prompt_tokens=sum(count_words(x) for x in inputs), inputs=inputs,
               encoding_format=encoding_format(data), dimensions=dimensions)  # fmt: skip


def error_payload(api: str, status: int, error_type: str, message: str) -> bytes:
    """An error body: vLLM's flat ``{"object": "error", ...}`` for chat and completions, OpenAI's nested one for the newer APIs."""
    if api in (API_RESPONSES, API_EMBEDDINGS):
        return error_body(status, message)
    return json.dumps({"object": "error", "message": message, "type": error_type, "param": None, "code": status}).encode()


def _usage(job: Job, completion_tokens: int) -> bytes:
    usage: dict[str, Any] = {
        "prompt_tokens": job.prompt_tokens,
        "total_tokens": job.prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }
    if job.reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": job.reasoning_tokens}
    return json.dumps(usage, separators=(",", ":")).encode()


class ChatWire:
    """Chat and completions chunks, pre-encoded: a package is ``head + open + text + close``."""

    __slots__ = ("job", "config", "response_id", "created", "eol", "end", "head", "role", "open_content",
                 "open_reasoning", "close", "close_final", "usage_head")  # fmt: skip

    def __init__(self, job: Job, config: MockConfig, response_hex: str, created: int) -> None:
        self.job = job
        self.config = config
        api = job.api
        response_id = ("chatcmpl-" if api == API_CHAT else "cmpl-") + response_hex
        self.response_id = response_id
        self.created = created
        self.eol = b"\r\n" if config.crlf else b"\n"
        self.end = b"}" + self.eol + self.eol  # closes a chunk's JSON object and its event
        obj = "chat.completion.chunk" if api == API_CHAT else "text_completion"
        prefix = f'data: {{"id":"{response_id}","object":"{obj}","created":{created},"model":{json.dumps(job.model)},'
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

    def opening(self) -> bytes:
        """The chat role chunk (not output), sent before admission; nothing for completions."""
        return self.role if self.job.api == API_CHAT and self.config.role_chunk else b""

    def package(self, text: bytes, reasoning: bool) -> bytes:
        return self.head + (self.open_reasoning if reasoning else self.open_content) + text + self.close

    def finish(self, text: bytes, reasoning: bool, completion_tokens: int) -> list[bytes]:
        """The finish chunk (last output, finish_reason "length"), usage where configured, [DONE]."""
        job = self.job
        placement = self.config.usage if job.include_usage else "none"
        usage = _usage(job, completion_tokens)
        in_finish = b',"usage":' + usage if placement == "last" else b""
        opened = (self.open_reasoning if reasoning else self.open_content) + text
        parts = [self.head + opened + self.close_final + in_finish + self.end]
        if placement == "separate":
            parts.append(self.usage_head + usage + self.end)
        if self.config.send_done:
            parts.append(b"data: [DONE]" + self.eol + self.eol)
        return parts

    def error_event(self) -> bytes:
        error = {"error": {"message": "mock: injected error event", "type": "InternalServerError", "code": 500}}
        return b"data: " + json.dumps(error).encode() + self.eol + self.eol

    def whole(self, text: str, reasoning_chars: int) -> bytes:
        """The non-streaming body: all ``job.n_tokens`` tokens, the first ``reasoning_chars`` characters reasoning."""
        job = self.job
        usage = json.loads(_usage(job, job.n_tokens))
        if job.api == API_CHAT:
            message = {"role": "assistant", "content": text[reasoning_chars:],
                       "reasoning_content": text[:reasoning_chars] or None, "tool_calls": []}  # fmt: skip
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "length", "stop_reason": None}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "stop_reason": None}
            obj = "text_completion"
        body = {"id": self.response_id, "object": obj, "created": self.created, "model": job.model,
                "choices": [choice], "usage": usage}  # fmt: skip
        return json.dumps(body).encode()


class ResponsesWire:
    """The Responses API's events for one mock request (servers/openai_wire.ResponseStream)."""

    __slots__ = ("job", "stream")

    def __init__(self, job: Job, config: MockConfig, response_hex: str, created: int) -> None:
        self.job = job
        self.stream = ResponseStream("resp_" + response_hex, created, job.model, eol=b"\r\n" if config.crlf else b"\n")

    def opening(self) -> bytes:
        return self.stream.opening(reasoning_first=self.job.reasoning_tokens > 0)

    def package(self, text: bytes, reasoning: bool) -> bytes:
        return self.stream.delta(text.decode(), reasoning)

    def finish(self, text: bytes, reasoning: bool, completion_tokens: int) -> list[bytes]:
        """The last delta (none when there is no text), the done events and ``response.completed``."""
        last = self.stream.delta(text.decode(), reasoning) if text else b""
        usage = responses_usage(self.job.prompt_tokens, completion_tokens, min(self.job.reasoning_tokens, completion_tokens))
        return [last + self.stream.closing(usage)]

    def error_event(self) -> bytes:
        return self.stream.error("mock: injected error event")

    def whole(self, text: str, reasoning_chars: int) -> bytes:
        job, stream = self.job, self.stream
        output = response_output(stream.item_ids, text[:reasoning_chars], text[reasoning_chars:])
        usage = responses_usage(job.prompt_tokens, job.n_tokens, job.reasoning_tokens)
        return json.dumps(response_object(stream.response_id, stream.created_at, job.model, "completed", output, usage)).encode()


def make_wire(job: Job, config: MockConfig, response_hex: str, created: int) -> ChatWire | ResponsesWire:
    """The encoder of a generation request's answer (not for embeddings)."""
    if job.api == API_RESPONSES:
        return ResponsesWire(job, config, response_hex, created)
    return ChatWire(job, config, response_hex, created)


def embedding_vector(item: str | list[int], dimensions: int) -> list[float]:
    """A deterministic unit vector for one input: its hash, expanded, mapped to [-1, 1], normalised."""
    key = item.encode() if isinstance(item, str) else b"ids:" + ",".join(map(str, item)).encode()
    raw = hashlib.shake_256(key).digest(4 * dimensions)
    values = [x / 2**31 - 1.0 for x in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def embeddings_payload(job: Job) -> bytes:
    """The embeddings answer for a Job."""
    vectors = [embedding_vector(item, job.dimensions) for item in job.inputs]
    return embeddings_body(vectors, job.model, job.prompt_tokens, job.encoding_format)
