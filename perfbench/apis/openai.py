"""OpenAI-compatible chat and completions: request bodies and the meaning of each streamed event.

What counts as *output* (DESIGN.md): a package whose choice carries content, reasoning content,
tool-call arguments or completion text. A role-only chunk, an empty delta, a finish-only chunk
and a usage-only chunk are not output. ``usage`` is taken from whichever chunk carries it — the
finish chunk or a separate chunk with empty ``choices`` — since servers differ.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
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

    def add_output(self, index: int, text: str) -> None:
        self.output_events.append(index)
        self.output_chars.append(len(text))
        self.output_text.append(text)


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


# Two probe strings that no server sends as a whole token: a skeleton is plain only if each comes
# back as the whole output (with one probe, a skeleton whose own bytes spelled it would pass).
_PROBES = ("\u2603perfbench-probe\u2603", "\u2604perfbench-probe-two\u2604")
# Bytes that end a JSON string, start an escape, or may not appear raw inside one (strict JSON).
_NOT_PLAIN = re.compile(rb'["\\\x00-\x1f]')
_FIRST_WINDOW = 16  # events checked at once when a run starts; doubled while windows match


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


def _string_value(raw: bytes) -> str | None:
    """The string whose JSON body (between its quotes) is ``raw``; None when that is not valid JSON.

    Decoded as ``json.loads`` decodes a whole event: UTF-8 with lone surrogates passed through.
    """
    try:
        text = raw.decode("utf-8", "surrogatepass")
        return json.loads('"' + text + '"') if _NOT_PLAIN.search(raw) else text
    except ValueError:  # UnicodeDecodeError included
        return None


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def interpret_events(adapter: ApiAdapter, datas: Sequence[bytes], types: Sequence[str | None] | None = None) -> StreamContent:
    """Classify each SSE event of one stream, given each event's data and type (None: all default).

    Most events of a stream differ only in their text: the same bytes before and after one string.
    Once a *skeleton* (the bytes around the string) is proven to mean "the output is exactly this
    string" — by decoding it with probes in place of the string — the events that follow with the
    same skeleton and a plain string are read in bulk, without decoding their JSON
    (``_read_plain_run``). Every other event takes the exact path (``_read_event``).
    """
    content = StreamContent()
    if types is not None and not any(types):
        types = None  # every event has the default type: runs need not check types
    plain_skeletons: set[tuple[bytes, bytes]] = set()
    skeleton: tuple[bytes, bytes] | None = None  # the last plain skeleton seen; the next events likely share it
    index, count = 0, len(datas)
    while index < count:
        if skeleton is not None:
            index += _read_plain_run(content, datas, types, index, *skeleton)
            if index == count:
                break
        event_type = types[index] if types is not None else None
        skeleton = _read_event(adapter, content, index, datas[index], event_type, plain_skeletons) or skeleton
        index += 1
    return content


def _read_plain_run(
    content: StreamContent, datas: Sequence[bytes], types: Sequence[str | None] | None, start: int, prefix: bytes, suffix: bytes
) -> int:
    """Read the events from ``start`` on that are ``prefix + text + suffix`` with a plain text; return how many.

    A text is plain when it holds no quote, backslash or control byte and is valid UTF-8: such an
    event is the proven skeleton around a string whose value is the text's bytes, decoded. Events
    are checked a window at a time with whole-window C-level operations: the window's events
    joined with NUL (which JSON never holds raw) must equal the texts cut out of them joined with
    ``suffix + NUL + prefix``. A failing window is halved until the first event that does not
    match, which is left to the exact path; windows only grow before that, so the work stays
    proportional to the run.
    """
    first = datas[start]
    if not (first.startswith(prefix) and first.endswith(suffix)):
        return 0  # the next event is not in the run (usage chunk, [DONE], another skeleton)
    cut = itemgetter(slice(len(prefix), -len(suffix)))  # the suffix holds at least the closing quote
    between = suffix + b"\0" + prefix
    end, size, growing = start, _FIRST_WINDOW, True
    while size and end < len(datas):
        window = datas[end : end + size]
        texts = list(map(cut, window))
        strings = None
        if (
            not _NOT_PLAIN.search(b"".join(texts))
            and prefix + between.join(texts) + suffix == b"\0".join(window)
            and (types is None or not any(types[end : end + len(window)]))
        ):
            try:
                strings = list(map(bytes.decode, texts))
            except UnicodeDecodeError:  # the exact path decides what the event means
                pass
        if strings is None:
            growing = False
            size = len(window) // 2
            continue
        kept = list(filter(None, strings))  # an empty string is not output
        content.output_events.extend(compress(range(end, end + len(window)), strings))
        content.output_text.extend(kept)
        content.output_chars.extend(map(len, kept))
        end += len(window)
        if growing:
            size *= 2
    return end - start


def _read_event(
    adapter: ApiAdapter,
    content: StreamContent,
    index: int,
    data: bytes,
    event_type: str | None,
    plain_skeletons: set[tuple[bytes, bytes]],
) -> tuple[bytes, bytes] | None:
    """Read one event exactly into ``content``; return its skeleton when that is proven plain."""
    split = _split_string_value(data, adapter.text_key) if event_type is None else None
    if split is not None and (split[0], split[2]) in plain_skeletons:
        text = _string_value(split[1])
        if text is not None:  # else the whole JSON is decoded below, to find what is wrong with it
            if text:
                content.add_output(index, text)
            return split[0], split[2]
    if data == DONE:
        content.saw_done = True
        return None
    obj = _decode(data)
    if not isinstance(obj, dict):
        if content.malformed is None:
            content.malformed = data[:200].decode("utf-8", "replace")
        return None
    if event_type == "error" or obj.get("error") is not None or obj.get("object") == "error":
        if content.error is None:
            content.error = _error_message(obj)
        return None
    usage = obj.get("usage")
    if usage:
        content.prompt_tokens = usage.get("prompt_tokens", content.prompt_tokens)
        content.completion_tokens = usage.get("completion_tokens", content.completion_tokens)
    choices = obj.get("choices")
    if not choices:
        return None
    text = adapter.output_text(choices[0])
    if text:
        content.add_output(index, text)
    if split is not None and not usage and _means_plain_text(adapter, split):
        plain_skeletons.add((split[0], split[2]))
        return split[0], split[2]
    return None


def _means_plain_text(adapter: ApiAdapter, split: tuple[bytes, bytes, bytes]) -> bool:
    """Whether any event ``prefix + "s" + suffix`` means exactly: output text s, nothing else."""
    for probe_text in _PROBES:
        probe = _decode(split[0] + json.dumps(probe_text)[1:-1].encode() + split[2])
        if not isinstance(probe, dict) or probe.get("usage") or probe.get("error") is not None or probe.get("object") == "error":
            return False
        choices = probe.get("choices")
        if not choices or adapter.output_text(choices[0]) != probe_text:
            return False
    return True


def _encode_body(body: dict[str, Any], *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
    """The API's own fields plus what every streaming request carries, encoded once before the run."""
    if model:
        body["model"] = model
    body.update(stream=True, stream_options={"include_usage": True})
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    body.update(extra)
    return json.dumps(body, ensure_ascii=False).encode()


class OpenAIChat:
    name = "openai-chat"
    path = "/v1/chat/completions"
    text_key = b'"content":"'

    def build_body(self, prompt: Prompt, *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        return _encode_body({"messages": list(prompt.chat_messages)}, model=model, max_tokens=max_tokens, extra=extra)

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
        return _encode_body({"prompt": prompt.completion_text}, model=model, max_tokens=max_tokens, extra=extra)

    def output_text(self, choice: dict[str, Any]) -> str:
        return choice.get("text") or ""


_ADAPTERS: dict[str, ApiAdapter] = {a.name: a for a in (OpenAIChat(), OpenAICompletions())}
API_NAMES = tuple(_ADAPTERS)


def get_adapter(name: str) -> ApiAdapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise ConfigError(f"unknown API '{name}'; use --api {' or '.join(API_NAMES)}") from None
