"""OpenAI-compatible chat and completions: request bodies and the meaning of each streamed event.

What counts as *output* (DESIGN.md): a package whose choice carries content, reasoning content,
tool-call arguments or completion text. A role-only chunk, an empty delta, a finish-only chunk
and a usage-only chunk are not output. ``usage`` is taken from whichever chunk carries it — the
finish chunk or a separate chunk with empty ``choices`` — since servers differ. A server that
answers with one JSON body instead of a stream is read as one package at the body's end.
"""

from __future__ import annotations

import json
import re
from itertools import compress
from operator import itemgetter
from typing import Any, Protocol, Sequence

from perfbench.apis.base import (
    InvalidEvent,
    StreamContent,
    decode_json as _decode,
    encode_body,
    error_message as _error_message,
    one_prompt,
    optional_str as _optional_str,
    shown as _shown,
    token_count as _token_count,
    usage_object,
    whole_answer,
)
from perfbench.workload.prompts import Prompt

DONE = b"[DONE]"


# Two probe strings that no server sends as a whole token: a skeleton is plain only if each comes
# back as the whole output (with one probe, a skeleton whose own bytes spelled it would pass).
_PROBES = ("\u2603perfbench-probe\u2603", "\u2604perfbench-probe-two\u2604")
# Bytes that end a JSON string, start an escape, or may not appear raw inside one (strict JSON).
_NOT_PLAIN = re.compile(rb'["\\\x00-\x1f]')
_FIRST_WINDOW = 16  # events checked at once when a run starts; doubled while windows match
_COLON_QUOTE = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*"')  # between a key and its string value
# What varies from one answer to the next around the same skeleton: the chunk id and the time.
_PER_ANSWER = re.compile(rb'"id"[ \t]*:[ \t]*"[^"\\]*"|"created"[ \t]*:[ \t]*[0-9]+')
_PROVEN_SKELETONS_MAX = 4096  # proofs kept across answers (a server's few chunk shapes), at most
_proven_skeletons: dict[tuple[str, bytes, bytes], bool] = {}


def _split_string_value(data: bytes, key: bytes) -> tuple[bytes, bytes, bytes] | None:
    """Split ``data`` around the first string value of ``key``: (prefix, raw string, suffix).

    ``key`` is the JSON key with its quotes (``b'"content"'``); a colon follows, with or without
    spaces around it (``"content":"`` and ``"content": "``). In JSON an unescaped quote only
    delimits strings, so those bytes can only be the key with a string value; a split is used
    only once probes have proven its skeleton (``_means_plain_text``).
    """
    at = data.find(key)
    while at >= 0:
        opened = _COLON_QUOTE.match(data, at + len(key))
        if opened is not None:
            break
        at = data.find(key, at + len(key))
    else:
        return None
    start = opened.end()
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


class _ChoicesApi(Protocol):
    """What the choices reader needs of an adapter."""

    text_key: bytes  # the JSON key, with its quotes, whose string value usually holds the output

    def output_text(self, choice: dict[str, Any]) -> str: ...


def interpret_events(adapter: _ChoicesApi, datas: Sequence[bytes], types: Sequence[str | None] | None = None) -> StreamContent:
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
                content.mark_invalid(f"output after [DONE] ({len(after.output_events)} events)")
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
    adapter: _ChoicesApi,
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
            content.malformed = data.decode("utf-8", "replace")  # whole: cut once, secrets masked first (answers.py)
        return None
    if event_type == "error" or obj.get("error") is not None or obj.get("object") == "error":
        if content.error is None:
            content.error = _error_message(obj)
        return None
    try:
        usage, text = _read_usage_and_text(adapter, obj, content)
    except InvalidEvent as exc:
        content.mark_invalid(str(exc))
        return None
    if text:
        content.add_output(index, text)
    if split is not None and not usage and _means_plain_text(adapter, split):
        plain_skeletons.add((split[0], split[2]))
        return split[0], split[2]
    return None


def _read_usage_and_text(adapter: _ChoicesApi, obj: dict[str, Any], content: StreamContent) -> tuple[Any, str]:
    """An event's usage (recorded into ``content``) and output text, each value checked as it is read."""
    usage = usage_object(obj)
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
    finish_reason = choices[0].get("finish_reason")
    if isinstance(finish_reason, str) and finish_reason:
        content.finish_reason = finish_reason  # whole: shortened once, secrets masked first (answers.py)
    return usage, adapter.output_text(choices[0])


def _means_plain_text(adapter: _ChoicesApi, split: tuple[bytes, bytes, bytes]) -> bool:
    """Whether any event ``prefix + "s" + suffix`` means exactly: output text s, nothing else.

    Proven once per skeleton shape and remembered across answers: the chunk id and ``created``
    (which differ in every answer and play no part in the meaning) are left out of the key.
    """
    key = (adapter.name, _PER_ANSWER.sub(b"", split[0]), _PER_ANSWER.sub(b"", split[2]))
    proven = _proven_skeletons.get(key)
    if proven is None:
        if len(_proven_skeletons) >= _PROVEN_SKELETONS_MAX:
            _proven_skeletons.clear()
        proven = _proven_skeletons[key] = _probe_plain_text(adapter, split)
    return proven


def _probe_plain_text(adapter: _ChoicesApi, split: tuple[bytes, bytes, bytes]) -> bool:
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


def interpret_body(adapter: _ChoicesApi, body: bytes) -> StreamContent:
    """A whole (non-streamed) JSON answer: its output, if any, is one package (event 0)."""
    return whole_answer(body, lambda obj, content: _read_usage_and_text(adapter, obj, content)[1])


class _Choices:
    """What chat and completions share: streamed chunks with ``choices``, usage asked for in the stream."""

    path: str
    text_key: bytes
    streams = True
    produces_output = True
    batched = False

    def _body(self, fields: dict[str, Any], *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        fields.update(stream=True, stream_options={"include_usage": True})
        if max_tokens is not None:
            fields["max_tokens"] = max_tokens
        return encode_body(fields, model=model, extra=extra)

    def output_text(self, choice: dict[str, Any]) -> str:
        raise NotImplementedError

    def interpret_events(self, datas: Sequence[bytes], types: Sequence[str | None] | None) -> StreamContent:
        return interpret_events(self, datas, types)

    def interpret_body(self, body: bytes) -> StreamContent:
        return interpret_body(self, body)


class OpenAIChat(_Choices):
    name = "openai-chat"
    chat_input = True
    path = "/v1/chat/completions"
    text_key = b'"content"'

    def build_body(self, prompts: Sequence[Prompt], *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        prompt = one_prompt(prompts, self.name)
        return self._body({"messages": list(prompt.chat_messages)}, model=model, max_tokens=max_tokens, extra=extra)

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


class OpenAICompletions(_Choices):
    name = "openai-completions"
    chat_input = False
    path = "/v1/completions"
    text_key = b'"text"'

    def build_body(self, prompts: Sequence[Prompt], *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        prompt = one_prompt(prompts, self.name)
        return self._body({"prompt": prompt.completion_text}, model=model, max_tokens=max_tokens, extra=extra)

    def output_text(self, choice: dict[str, Any]) -> str:
        return _optional_str(choice.get("text"), "choices[0].text")
