"""The server side of the OpenAI Responses and embeddings APIs: reading requests, writing answers.

Shared by the mock (servers/mock.py) and the transformers server (servers/transformers_apis.py),
so both speak exactly the same wire format, which is OpenAI's (and vLLM's):

Responses (``POST /v1/responses``): ``input`` is a string or a list of messages
``{"role", "content"}`` whose content is a string or a list of ``{"type": "input_text", "text"}``
parts; ``instructions`` becomes a system message in front. A stream is SSE with named events
(``event: <type>`` + ``data: <json>``, the JSON's ``type`` equal to the event name, an increasing
``sequence_number``), in this order: ``response.created``, ``response.in_progress``, then per
output item ``response.output_item.added``, ``response.content_part.added``, the deltas
(``response.reasoning_text.delta`` for a reasoning item, ``response.output_text.delta`` for the
message), ``response.*_text.done``, ``response.content_part.done``, ``response.output_item.done``;
finally ``response.completed`` carrying the whole response with ``usage``. No ``[DONE]``.

Embeddings (``POST /v1/embeddings``): ``input`` is a string, a list of strings, a list of token
ids or a list of token-id lists; the answer is ``{"object": "list", "data": [{"object":
"embedding", "index", "embedding"}], "model", "usage": {"prompt_tokens", "total_tokens"}}``, each
embedding a list of floats or, with ``encoding_format: "base64"``, little-endian float32 bytes in
base64 (as OpenAI sends them).

Errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any, Sequence

__all__ = [
    "BadRequest", "ResponseStream", "embedding_inputs", "embeddings_body", "encoding_format",
    "error_body", "input_messages", "max_output_tokens", "response_object", "response_output", "responses_usage",
]  # fmt: skip

_ENCODING_FORMATS = ("float", "base64")


class BadRequest(ValueError):
    """A request body the server refuses with HTTP 400; the message goes to the client."""


def error_body(status: int, message: str, error_type: str | None = None) -> bytes:
    """An OpenAI-style error body (``{"error": {...}}``) as JSON bytes."""
    kind = error_type or ("invalid_request_error" if status < 500 else "server_error")
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": status}}).encode()


# ---------------------------------------------------------------------------------- Responses


def input_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages of a Responses request: ``instructions`` as a system message, then ``input``.

    Content parts are joined into one string (their ``text``), so the result suits a chat template.
    """
    raw = body.get("input")
    if isinstance(raw, str):
        if not raw:
            raise BadRequest("'input' must not be empty")
        messages = [{"role": "user", "content": raw}]
    elif isinstance(raw, list) and raw:
        messages = [_message(item, i) for i, item in enumerate(raw)]
    else:
        raise BadRequest("'input' must be a string or a non-empty list of messages")
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BadRequest("'instructions' must be a string")
        messages.insert(0, {"role": "system", "content": instructions})
    return messages


def _message(item: Any, index: int) -> dict[str, str]:
    if not isinstance(item, dict) or not isinstance(item.get("role"), str):
        raise BadRequest(f"input[{index}] must be a message object with a 'role'")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": item["role"], "content": content}
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise BadRequest(f"input[{index}].content parts must be objects like {{'type': 'input_text', 'text': '...'}}")
            texts.append(part.get("text", ""))
        return {"role": item["role"], "content": "".join(texts)}
    raise BadRequest(f"input[{index}].content must be a string or a list of content parts")


def max_output_tokens(body: dict[str, Any]) -> int | None:
    """The request's ``max_output_tokens`` (None when absent); BadRequest unless a positive integer."""
    value = body.get("max_output_tokens")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise BadRequest(f"'max_output_tokens' must be a positive integer, got {value!r}")
    return value


def responses_usage(input_tokens: int, output_tokens: int, reasoning_tokens: int = 0) -> dict[str, Any]:
    """The Responses API's usage object."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def response_object(
    response_id: str, created_at: int, model: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    """A Responses ``response`` object (the non-streaming answer; created/completed events carry one)."""
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status, "model": model,
        "output": output, "usage": usage, "error": None, "incomplete_details": None,
        "parallel_tool_calls": False, "tool_choice": "none", "tools": [],
    }  # fmt: skip


def _item(kind: str, item_id: str, text: str | None) -> dict[str, Any]:
    """An output item; ``text`` None: just added (in progress, no content yet)."""
    done = text is not None
    if kind == "reasoning":
        content = [{"type": "reasoning_text", "text": text}] if done else []
        return {"id": item_id, "type": "reasoning", "summary": [], "content": content,
                "status": "completed" if done else "in_progress"}  # fmt: skip
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if done else []
    return {"id": item_id, "type": "message", "status": "completed" if done else "in_progress",
            "role": "assistant", "content": content}  # fmt: skip


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "reasoning":
        return {"type": "reasoning_text", "text": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def response_output(item_ids: dict[str, str], reasoning_text: str, text: str) -> list[dict[str, Any]]:
    """The finished ``output`` list: a reasoning item when there is reasoning text, then the message."""
    output = [_item("reasoning", item_ids["reasoning"], reasoning_text)] if reasoning_text else []
    return output + [_item("message", item_ids["message"], text)]


class ResponseStream:
    """The SSE events of one streamed response, numbered in order; each method returns bytes to write.

    ``opening`` (created, in_progress, the first item), then ``delta`` per output package (it opens
    the message item when the reasoning item ends), then ``closing`` (the done events and
    ``response.completed``), or ``error`` instead of the rest.
    """

    def __init__(self, response_id: str, created_at: int, model: str, *, eol: bytes = b"\n") -> None:
        self.response_id = response_id
        self.created_at = created_at
        self.model = model
        suffix = response_id.split("_", 1)[-1]
        self.item_ids = {"reasoning": "rs_" + suffix, "message": "msg_" + suffix}
        self._eol = eol
        self._sequence_number = 0
        self._kind: str | None = None  # the output item now open
        self._output_index = -1
        self._texts: dict[str, list[str]] = {"reasoning": [], "message": []}
        self._delta_head = b""  # the open item's delta event up to its sequence number
        self._delta_where = b""  # ... and from after the sequence number up to the delta text

    def _event(self, event_type: str, fields: dict[str, Any]) -> bytes:
        data = {"type": event_type, "sequence_number": self._sequence_number, **fields}
        self._sequence_number += 1
        return b"event: " + event_type.encode() + self._eol + b"data: " + _dumps(data) + self._eol + self._eol

    def opening(self, reasoning_first: bool) -> bytes:
        """``response.created``, ``response.in_progress`` and the first item's added events."""
        in_progress = {"response": response_object(self.response_id, self.created_at, self.model, "in_progress", [], None)}
        return (
            self._event("response.created", in_progress)
            + self._event("response.in_progress", in_progress)
            + self._open("reasoning" if reasoning_first else "message")
        )

    def _open(self, kind: str) -> bytes:
        self._kind = kind
        self._output_index += 1
        item_id = self.item_ids[kind]
        where = {"item_id": item_id, "output_index": self._output_index, "content_index": 0}
        event_type = "response.reasoning_text.delta" if kind == "reasoning" else "response.output_text.delta"
        self._delta_head = (
            b"event: " + event_type.encode() + self._eol + b'data: {"type":"' + event_type.encode() + b'","sequence_number":'
        )
        self._delta_where = b"," + _dumps(where)[1:-1] + b',"delta":'
        return self._event("response.output_item.added", {"output_index": self._output_index, "item": _item(kind, item_id, None)}) + self._event(
            "response.content_part.added", {**where, "part": _part(kind, "")}
        )

    def _close(self) -> bytes:
        kind = self._kind
        assert kind is not None
        text = "".join(self._texts[kind])
        item_id = self.item_ids[kind]
        where = {"item_id": item_id, "output_index": self._output_index, "content_index": 0}
        done = "response.reasoning_text.done" if kind == "reasoning" else "response.output_text.done"
        text_fields = {"text": text} if kind == "reasoning" else {"text": text, "logprobs": []}
        self._kind = None
        return (
            self._event(done, {**where, **text_fields})
            + self._event("response.content_part.done", {**where, "part": _part(kind, text)})
            + self._event("response.output_item.done", {"output_index": self._output_index, "item": _item(kind, item_id, text)})
        )

    def delta(self, text: str, reasoning: bool = False) -> bytes:
        """One output package: a text delta of the reasoning or the message item."""
        kind = "reasoning" if reasoning else "message"
        switch = b""
        if self._kind != kind:
            switch = (self._close() if self._kind is not None else b"") + self._open(kind)
        self._texts[kind].append(text)
        n = self._sequence_number
        self._sequence_number += 1
        return (
            switch + self._delta_head + str(n).encode() + self._delta_where + json.dumps(text).encode()
            + b',"logprobs":[]}' + self._eol + self._eol
        )  # fmt: skip

    def closing(self, usage: dict[str, Any]) -> bytes:
        """The open item's done events (the message item is opened first if it never was), then ``response.completed``."""
        parts = []
        if self._kind != "message":
            if self._kind is not None:
                parts.append(self._close())
            parts.append(self._open("message"))
        parts.append(self._close())
        output = response_output(self.item_ids, "".join(self._texts["reasoning"]), "".join(self._texts["message"]))
        response = response_object(self.response_id, self.created_at, self.model, "completed", output, usage)
        parts.append(self._event("response.completed", {"response": response}))
        return b"".join(parts)

    def error(self, message: str) -> bytes:
        """An ``error`` event (the stream ends after it)."""
        return self._event("error", {"code": "server_error", "message": message, "param": None})


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------- embeddings


def embedding_inputs(body: dict[str, Any]) -> list[str | list[int]]:
    """The inputs of an embeddings request, one per vector asked for (BadRequest when malformed)."""
    raw = body.get("input")
    if isinstance(raw, str):
        raw = [raw]
    elif isinstance(raw, list) and raw and all(_is_token_id(t) for t in raw):
        raw = [raw]  # one input given as token ids
    if not isinstance(raw, list) or not raw:
        raise BadRequest("'input' must be a string, a list of strings, a list of token ids or a list of token-id lists")
    for i, item in enumerate(raw):
        if isinstance(item, str):
            if not item:
                raise BadRequest(f"input[{i}] is an empty string")
        elif not (isinstance(item, list) and item and all(_is_token_id(t) for t in item)):
            raise BadRequest(f"input[{i}] must be a non-empty string or a non-empty list of token ids")
    return raw


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def encoding_format(body: dict[str, Any]) -> str:
    """``float`` (default) or ``base64``."""
    value = body.get("encoding_format")
    if value is None:
        return "float"
    if value not in _ENCODING_FORMATS:
        raise BadRequest(f"'encoding_format' must be one of {', '.join(_ENCODING_FORMATS)}, got {value!r}")
    return value


def embeddings_body(vectors: Sequence[Sequence[float]], model: str, prompt_tokens: int, fmt: str) -> bytes:
    """The JSON answer for ``vectors`` (one per input, in order); base64 packs little-endian float32."""
    data = []
    for index, vector in enumerate(vectors):
        if fmt == "base64":
            embedding: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        else:
            embedding = [float(x) for x in vector]
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return json.dumps({"object": "list", "data": data, "model": model, "usage": usage}).encode()
