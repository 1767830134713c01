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
    text_key: bytes  # the JSON key, with its opening quote, whose string usually holds the output

    def build_body(self, prompt: Prompt, *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes: ...

    def output_text(self, choice: dict[str, Any]) -> str: ...


def _error_message(obj: dict[str, Any]) -> str:
    err = obj.get("error")
    if isinstance(err, dict):
        msg = err.get("message") or err.get("type") or json.dumps(err)
        code = err.get("code")
        return f"{msg} (code {code})" if code is not None else str(msg)
    return str(err if err is not None else obj.get("message", obj))


def _decode_all(events: Sequence[Any]) -> list[Any]:
    """JSON of every event (``DONE`` for [DONE], ``None`` for malformed ones).

    One ``json.loads`` over the whole stream joined as an array costs a fraction of one call per
    event; only a stream holding a malformed event (rare) is decoded event by event.
    """
    datas = [e.data for e in events]
    payload = [d for d in datas if d != DONE]
    try:
        decoded = json.loads(b"[" + b",".join(payload) + b"]")
        if len(decoded) == len(payload):  # else an event held several values, like `1,2`
            values = iter(decoded)
            return [DONE if d == DONE else next(values) for d in datas]
    except ValueError:
        pass
    objs = []
    for d in datas:
        try:
            objs.append(DONE if d == DONE else json.loads(d))
        except ValueError:
            objs.append(None)
    return objs


_SENTINEL = "\u2603perfbench-probe\u2603"  # a string no server sends as a whole token


def _split_string_value(data: bytes, key: bytes) -> tuple[bytes, bytes, bytes] | None:
    """Split ``data`` around the first string value of ``key``: (prefix, raw string, suffix).

    In JSON an unescaped quote only delimits strings, so the bytes ``"content":"`` can only be
    the key "content" with a string value.
    """
    at = data.find(key)
    if at < 0:
        return None
    start = at + len(key)
    end = data.find(b'"', start)
    while end > 0 and data[end - 1] == 0x5C:  # a backslash: count the run to see if it escapes the quote
        run = 1
        while data[end - 1 - run] == 0x5C:
            run += 1
        if run % 2 == 0:
            break
        end = data.find(b'"', end + 1)
    if end < 0:
        return None
    return data[:start], data[start:end], data[end:]


def _string_value(raw: bytes) -> str:
    return json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode("utf-8")


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def interpret_events(adapter: ApiAdapter, datas: Sequence[bytes], types: Sequence[str | None] | None = None) -> StreamContent:
    """Classify each SSE event of one stream, given each event's data and type (None: all default).

    Most events of a stream differ only in their text: the same bytes before and after one string.
    Once a *skeleton* (the bytes around the string) is proven to mean "the output is exactly this
    string" — by decoding it with a sentinel in place of the string — later events with the same
    skeleton are read without decoding their JSON. Anything else takes the full path.
    """
    content = StreamContent()
    output_text = adapter.output_text
    key = adapter.text_key
    plain_skeletons: set[tuple[bytes, bytes]] = set()
    prefix, suffix, cut_start, cut_end = b"\0", b"\0", 0, 0  # the last plain skeleton seen
    add_event, add_chars, add_text = content.output_events.append, content.output_chars.append, content.output_text.append
    for i, data in enumerate(datas):
        event_type = types[i] if types is not None else None
        if data.startswith(prefix) and data.endswith(suffix) and event_type is None and len(data) >= cut_start + cut_end:
            raw = data[cut_start : len(data) - cut_end]
            if b'"' not in raw and b"\\" not in raw:  # then `raw` is the whole string, unescaped
                if raw:
                    add_event(i)
                    add_text(text := raw.decode("utf-8"))
                    add_chars(len(text))
                continue
        split = _split_string_value(data, key) if event_type is None else None
        if split is not None and (split[0], split[2]) in plain_skeletons:
            prefix, suffix, cut_start, cut_end = split[0], split[2], len(split[0]), len(split[2])
            text = _string_value(split[1])
            if text:
                content.output_events.append(i)
                content.output_chars.append(len(text))
                content.output_text.append(text)
            continue
        if data == DONE:
            content.saw_done = True
            continue
        obj = _decode(data)
        if not isinstance(obj, dict):
            if content.malformed is None:
                content.malformed = data[:200].decode("utf-8", "replace")
            continue
        if event_type == "error" or obj.get("error") is not None or obj.get("object") == "error":
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
        text = output_text(choices[0])
        if text:
            content.output_events.append(i)
            content.output_chars.append(len(text))
            content.output_text.append(text)
        if split is not None and not usage and _means_plain_text(adapter, split):
            plain_skeletons.add((split[0], split[2]))
    return content


def _means_plain_text(adapter: ApiAdapter, split: tuple[bytes, bytes, bytes]) -> bool:
    """Whether any event ``prefix + "s" + suffix`` means exactly: output text s, nothing else."""
    probe = _decode(split[0] + json.dumps(_SENTINEL)[1:-1].encode() + split[2])
    if not isinstance(probe, dict) or probe.get("usage") or probe.get("error") is not None or probe.get("object") == "error":
        return False
    choices = probe.get("choices")
    return bool(choices) and adapter.output_text(choices[0]) == _SENTINEL


def _sampling_fields(max_tokens: int | None, extra: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    fields.update(extra)
    return fields


class OpenAIChat:
    name = "openai-chat"
    path = "/v1/chat/completions"
    text_key = b'"content":"'

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
    text_key = b'"text":"'

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
