"""OpenAI-compatible chat and completions: request bodies and the meaning of each streamed event.

What counts as *output* (DESIGN.md): a package whose choice carries content, reasoning content,
tool-call arguments or completion text. A role-only chunk, an empty delta, a finish-only chunk
and a usage-only chunk are not output. ``usage`` is taken from whichever chunk carries it — the
finish chunk or a separate chunk with empty ``choices`` — since servers differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from perfbench.errors import ConfigError
from perfbench.prompts import Prompt

DONE = b"[DONE]"


@dataclass(slots=True)
class StreamContent:
    """What a finished stream said, event by event (built after the stream, off the hot path)."""

    output_events: list[int] = field(default_factory=list)  # indices of the events that carry output
    output_chars: list[int] = field(default_factory=list)  # characters each of those carries
    output_text: list[str] = field(default_factory=list)  # the text pieces, in order
    prompt_tokens: int | None = None  # usage.prompt_tokens, when the server sent usage
    completion_tokens: int | None = None  # usage.completion_tokens, likewise
    error: str | None = None  # first error event's message, if any
    malformed: str | None = None  # first event that was not JSON, if any
    saw_done: bool = False  # whether `data: [DONE]` arrived


class ApiAdapter(Protocol):
    name: str
    path: str  # endpoint path appended to a base URL

    def build_body(self, prompt: Prompt, *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes: ...

    def output_text(self, choice: dict[str, Any]) -> str: ...


def _error_message(obj: dict[str, Any]) -> str:
    err = obj.get("error")
    if isinstance(err, dict):
        msg = err.get("message") or err.get("type") or json.dumps(err)
        code = err.get("code")
        return f"{msg} (code {code})" if code is not None else str(msg)
    return str(err if err is not None else obj.get("message", obj))


def interpret_events(adapter: ApiAdapter, events: Sequence[Any]) -> StreamContent:
    """Classify each SSE event of one stream; ``events`` are ``SSEEvent``s (``.data``, ``.event``)."""
    content = StreamContent()
    for i, event in enumerate(events):
        data = event.data
        if data == DONE:
            content.saw_done = True
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            if content.malformed is None:
                content.malformed = data[:200].decode("utf-8", "replace")
            continue
        if not isinstance(obj, dict):
            if content.malformed is None:
                content.malformed = data[:200].decode("utf-8", "replace")
            continue
        if event.event == "error" or obj.get("error") is not None or obj.get("object") == "error":
            if content.error is None:
                content.error = _error_message(obj)
            continue
        usage = obj.get("usage")
        if usage:
            content.prompt_tokens = usage.get("prompt_tokens", content.prompt_tokens)
            content.completion_tokens = usage.get("completion_tokens", content.completion_tokens)
        choices = obj.get("choices")
        if not choices:
            continue
        text = adapter.output_text(choices[0])
        if text:
            content.output_events.append(i)
            content.output_chars.append(len(text))
            content.output_text.append(text)
    return content


def _sampling_fields(max_tokens: int | None, extra: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    fields.update(extra)
    return fields


class OpenAIChat:
    name = "openai-chat"
    path = "/v1/chat/completions"

    def build_body(self, prompt: Prompt, *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        body: dict[str, Any] = {"messages": list(prompt.chat_messages)}
        if model:
            body["model"] = model
        body.update(_sampling_fields(max_tokens, extra))
        return json.dumps(body, ensure_ascii=False).encode()

    def output_text(self, choice: dict[str, Any]) -> str:
        delta = choice.get("delta") or choice.get("message")
        if not delta:
            return ""
        text = (delta.get("content") or "") + (delta.get("reasoning_content") or delta.get("reasoning") or "")
        for call in delta.get("tool_calls") or ():
            text += (call.get("function") or {}).get("arguments") or ""
        return text


class OpenAICompletions:
    name = "openai-completions"
    path = "/v1/completions"

    def build_body(self, prompt: Prompt, *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        body: dict[str, Any] = {"prompt": prompt.completion_text}
        if model:
            body["model"] = model
        body.update(_sampling_fields(max_tokens, extra))
        return json.dumps(body, ensure_ascii=False).encode()

    def output_text(self, choice: dict[str, Any]) -> str:
        return choice.get("text") or ""


_ADAPTERS: dict[str, ApiAdapter] = {a.name: a for a in (OpenAIChat(), OpenAICompletions())}
API_NAMES = tuple(_ADAPTERS)


def get_adapter(name: str) -> ApiAdapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise ConfigError(f"unknown API '{name}'; use --api {' or '.join(API_NAMES)}") from None
