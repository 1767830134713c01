"""What every API adapter shares: the interface the engine knows, what an answer said, checked reading.

An adapter owns its endpoint path, its request bodies, whether it streams, and the meaning of
what comes back (streamed events, or one JSON body); the engine only moves bytes and stamps reads.
Every value taken from a server is checked where it is read: a wrong type or an impossible value
raises ``InvalidEvent``, which fails that request with the message (never the run).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import orjson

from perfbench.workload.prompts import Prompt

MAX_TOKEN_COUNT = 10**9  # a usage count above this is no real answer (and would overflow int64 sums)


@dataclass(slots=True)
class StreamContent:
    """What a finished answer said, event by event (built after the stream, off the hot path)."""

    output_events: list[int] = field(default_factory=list)  # indices of the events that carry output
    output_chars: list[int] = field(default_factory=list)  # characters each of those carries
    output_text: list[str] = field(default_factory=list)  # the text pieces, in order
    prompt_tokens: int | None = None  # input tokens, from the server's usage
    completion_tokens: int | None = None  # output tokens, likewise
    error: str | None = None  # first error event's message, if any
    malformed: str | None = None  # first event that was not JSON, if any
    invalid: str | None = None  # first event whose JSON has the wrong shape or a wrong value, if any
    saw_done: bool = False  # whether the stream's end marker arrived (`[DONE]`, `response.completed`)
    items: int | None = None  # embeddings in the answer (embeddings API)
    finish_reason: str | None = None  # why generation ended, as the server said: "stop", "length", ...

    def add_output(self, index: int, text: str) -> None:
        self.output_events.append(index)
        self.output_chars.append(len(text))
        self.output_text.append(text)

    def mark_invalid(self, message: str) -> None:
        if self.invalid is None:
            self.invalid = message


class ApiAdapter(Protocol):
    """One API: how to ask, and what the answer means. Registered in ``perfbench.apis``."""

    name: str  # --api value
    path: str  # endpoint path, appended to a base URL; a URL ending in it selects this adapter
    streams: bool  # True: asks for SSE and reads events; False: one JSON body per request
    produces_output: bool  # False: an answer without output tokens is a success (embeddings)
    batched: bool  # True: one request carries --batch-size prompts
    chat_input: bool  # True: prompts go as chat messages (token counts use the chat template)

    def build_body(self, prompts: Sequence[Prompt], *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        """The encoded JSON body for one request (``prompts`` holds one prompt unless ``batched``)."""
        ...

    def interpret_events(self, datas: Sequence[bytes], types: Sequence[str | None] | None) -> StreamContent:
        """A whole stream's events (data and type, in order) read into a StreamContent."""
        ...

    def interpret_body(self, body: bytes) -> StreamContent:
        """A whole JSON answer read into a StreamContent; its output, if any, is event 0."""
        ...


class InvalidEvent(ValueError):
    """An answer's JSON has a field of the wrong type or an impossible value; the message says which."""


def optional_str(value: Any, where: str) -> str:
    """A string field, "" when absent or null."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidEvent(f"{where} is {shown(value)}, not a string")
    return value


def shown(value: Any) -> str:
    """A value as JSON for an error text, whole: the record's error is cut once, with the run's
    secrets masked before the cut (``redact.excerpt``); a cut here could leave a key's beginning."""
    return json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, float) else repr(value)


def token_count(usage: dict[str, Any], key: str) -> int | None:
    """A usage count as a whole number in [0, MAX_TOKEN_COUNT]; None when absent."""
    value = usage.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        raise InvalidEvent(f"usage.{key} is {shown(value)}, not a token count")
    return value


_LONG_DIGITS = re.compile(rb"[0-9]{19}")  # an integer past 64 bits has at least 19 digits


def decode_json(data: bytes) -> Any:
    """JSON of ``data``, None when it is not JSON.

    orjson reads strict UTF-8 JSON at a quarter of the cost; what it refuses (NaN, lone
    surrogates, other encodings) and the long digit runs it would read otherwise (integers past 64
    bits become floats there) are read by ``json.loads``, so the result is always what
    ``json.loads`` would give.
    """
    if _LONG_DIGITS.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(data)
    except ValueError:
        return None


def error_message(obj: dict[str, Any]) -> str:
    """The message of an OpenAI-style error object (``{"error": {...}}`` or a flat one)."""
    err = obj.get("error")
    if isinstance(err, dict):
        msg = err.get("message") or err.get("type") or json.dumps(err)
        code = err.get("code")
        return f"{msg} (code {code})" if code is not None else str(msg)
    return str(err if err is not None else obj.get("message", obj))


def openai_error(obj: dict[str, Any]) -> str | None:
    """The message of an OpenAI-style error answer; None when ``obj`` is no error."""
    return error_message(obj) if obj.get("error") is not None or obj.get("object") == "error" else None


def whole_answer(
    body: bytes, read: Callable[[dict[str, Any], StreamContent], str], failure: Callable[[dict[str, Any]], str | None] = openai_error
) -> StreamContent:
    """A non-streamed JSON answer: ``failure(obj)`` names an error answer; ``read(obj, content)`` records
    its usage (checked as it reads) and returns its output text, which is one package (event 0)."""
    content = StreamContent()
    obj = decode_json(body)
    if not isinstance(obj, dict):
        content.malformed = body.decode("utf-8", "replace")  # whole: cut once, secrets masked first (answers.py)
        return content
    error = failure(obj)
    if error is not None:
        content.error = error
        return content
    try:
        text = read(obj, content)
    except InvalidEvent as exc:
        content.mark_invalid(str(exc))
        return content
    if text:
        content.add_output(0, text)
    content.saw_done = True
    return content


def usage_object(obj: dict[str, Any]) -> dict[str, Any] | None:
    """``obj["usage"]`` checked to be an object; None when absent."""
    usage = obj.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise InvalidEvent(f"usage is {shown(usage)}, not an object")
    return usage


def encode_body(body: dict[str, Any], *, model: str | None, extra: dict[str, Any]) -> bytes:
    """The API's own fields plus the model and the user's extra fields, encoded once before the run."""
    if model:
        body["model"] = model
    body.update(extra)
    return json.dumps(body, ensure_ascii=False).encode()


def one_prompt(prompts: Sequence[Prompt], api: str) -> Prompt:
    if len(prompts) != 1:
        raise ValueError(f"{api} sends one prompt per request, not {len(prompts)}")
    return prompts[0]
