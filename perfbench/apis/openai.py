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
    invalid: str | None = None  # first event whose JSON has the wrong shape or a wrong value, if any
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


MAX_TOKEN_COUNT = 10**9  # a usage count above this is no real answer (and would overflow int64 sums)


class InvalidEvent(ValueError):
    """An event's JSON has a field of the wrong type or an impossible value; the message says which."""


def _optional_str(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidEvent(f"{where} is {_shown(value)}, not a string")
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _token_count(usage: dict[str, Any], key: str) -> int | None:
    """A usage count as a whole number in [0, MAX_TOKEN_COUNT]; None when absent."""
    value = usage.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_COUNT:
        raise InvalidEvent(f"usage.{key} is {_shown(value)}, not a token count")
    return value


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
    try:
        done_at = datas.index(DONE)  # the stream is over there: nothing after it may count
    except ValueError:
        done_at = len(datas)
    else:
        if done_at + 1 < len(datas):
            after = interpret_events(adapter, datas[done_at + 1 :], None if types is None else types[done_at + 1 :])
            if after.output_events:
                content.invalid = f"output after [DONE] ({len(after.output_events)} events)"
            datas = datas[: done_at + 1]
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
    try:
        usage, text = _read_usage_and_text(adapter, obj, content)
    except InvalidEvent as exc:
        if content.invalid is None:
            content.invalid = str(exc)
        return None
    if text:
        content.add_output(index, text)
    if split is not None and not usage and _means_plain_text(adapter, split):
        plain_skeletons.add((split[0], split[2]))
        return split[0], split[2]
    return None


def _read_usage_and_text(adapter: ApiAdapter, obj: dict[str, Any], content: StreamContent) -> tuple[Any, str]:
    """An event's usage (recorded into ``content``) and output text, each value checked as it is read."""
    usage = obj.get("usage")
    if usage is not None and not isinstance(usage, dict):
        raise InvalidEvent(f"usage is {_shown(usage)}, not an object")
    if usage:
        prompt_tokens, completion_tokens = _token_count(usage, "prompt_tokens"), _token_count(usage, "completion_tokens")
        if prompt_tokens is not None:
            content.prompt_tokens = prompt_tokens
        if completion_tokens is not None:
            content.completion_tokens = completion_tokens
    if "choices" not in obj:
        if usage is None:
            raise InvalidEvent(f"event has no 'choices': {_shown(obj)}")
        return usage, ""
    choices = obj["choices"]
    if not isinstance(choices, list):
        raise InvalidEvent(f"choices is {_shown(choices)}, not a list")
    if not choices:
        return usage, ""
    if not isinstance(choices[0], dict):
        raise InvalidEvent(f"choices[0] is {_shown(choices[0])}, not an object")
    return usage, adapter.output_text(choices[0])


def _means_plain_text(adapter: ApiAdapter, split: tuple[bytes, bytes, bytes]) -> bool:
    """Whether any event ``prefix + "s" + suffix`` means exactly: output text s, nothing else."""
    for probe_text in _PROBES:
        probe = _decode(split[0] + json.dumps(probe_text)[1:-1].encode() + split[2])
        if not isinstance(probe, dict) or probe.get("usage") or probe.get("error") is not None or probe.get("object") == "error":
            return False
        choices = probe.get("choices")
        try:
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                return False
            if adapter.output_text(choices[0]) != probe_text:
                return False
        except InvalidEvent:
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
        delta = choice.get("delta")
        if delta is None:
            delta = choice.get("message")
        if delta is None:
            return ""
        if not isinstance(delta, dict):
            raise InvalidEvent(f"choices[0].delta is {_shown(delta)}, not an object")
        text = _optional_str(delta.get("content"), "delta.content")
        text += _optional_str(delta.get("reasoning_content"), "delta.reasoning_content") or _optional_str(
            delta.get("reasoning"), "delta.reasoning"
        )
        calls = delta.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise InvalidEvent(f"delta.tool_calls is {_shown(calls)}, not a list")
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else call
                if function is None:
                    continue
                if not isinstance(function, dict):
                    raise InvalidEvent(f"a tool call's function is {_shown(function)}, not an object")
                text += _optional_str(function.get("arguments"), "tool_calls[].function.arguments")
        return text


class OpenAICompletions:
    name = "openai-completions"
    path = "/v1/completions"
    text_key = b'"text":"'

    def build_body(self, prompt: Prompt, *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        return _encode_body({"prompt": prompt.completion_text}, model=model, max_tokens=max_tokens, extra=extra)

    def output_text(self, choice: dict[str, Any]) -> str:
        return _optional_str(choice.get("text"), "choices[0].text")


_ADAPTERS: dict[str, ApiAdapter] = {a.name: a for a in (OpenAIChat(), OpenAICompletions())}
API_NAMES = tuple(_ADAPTERS)


def get_adapter(name: str) -> ApiAdapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise ConfigError(f"unknown API '{name}'; use --api {' or '.join(API_NAMES)}") from None
