"""Request bodies and event interpretation per API, on real SSE bytes through the real parser."""

import json

from perfbench.apis import get_adapter
from perfbench.apis.openai import interpret_events
from perfbench.workload.prompts import Prompt
from perfbench.engine.sse import SSEParser


def events(raw: bytes) -> tuple[list[bytes], list[str | None]]:
    """(data, types) of the events in ``raw``, as interpret_events takes them."""
    parser = SSEParser()
    parsed = parser.feed(raw) + parser.flush()
    return [e.data for e in parsed], [e.event for e in parsed]


def test_chat_body_streams_with_usage_and_extra_fields():
    body = json.loads(get_adapter("openai-chat").build_body([Prompt("hi", None, None)], model="m", max_tokens=5, extra={"ignore_eos": True}))
    assert body == {"messages": [{"role": "user", "content": "hi"}], "model": "m", "stream": True,
                    "stream_options": {"include_usage": True}, "max_tokens": 5, "ignore_eos": True}


def test_completions_body_from_messages():
    prompt = Prompt(None, ({"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}), None)
    body = json.loads(get_adapter("openai-completions").build_body([prompt], model=None, max_tokens=None, extra={}))
    assert "be brief" in body["prompt"] and "hi" in body["prompt"] and "model" not in body


def test_role_finish_and_usage_only_chunks_are_not_output():
    raw = (b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
           b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
           b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":1}}\n\n'
           b'data: [DONE]\n\n')
    content = interpret_events(get_adapter("openai-chat"), *events(raw))
    assert content.output_events == [1]
    assert (content.prompt_tokens, content.completion_tokens, content.saw_done) == (4, 1, True)


def test_error_event_by_type_and_by_body():
    raw = b'event: error\ndata: {"message": "boom"}\n\n'
    assert interpret_events(get_adapter("openai-chat"), *events(raw)).error == "boom"
    raw = b'data: {"object": "error", "message": "bad", "code": 400}\n\n'
    assert "bad" in interpret_events(get_adapter("openai-chat"), *events(raw)).error


def test_malformed_event_is_reported():
    content = interpret_events(get_adapter("openai-completions"), *events(b"data: {not json\n\n"))
    assert content.malformed == "{not json" and not content.output_events


def test_one_bad_event_does_not_hide_the_others():
    raw = (b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
           b'data: 1,2\n\n'
           b'data: {"choices":[{"delta":{"content":"b"}}]}\n\n'
           b'data: [DONE]\n\n')
    content = interpret_events(get_adapter("openai-chat"), *events(raw))
    assert content.output_events == [0, 2] and content.malformed == "1,2" and content.saw_done


def _slow_path(adapter, evs):
    """Reference: decode every event fully (no skeleton reuse)."""
    from perfbench.apis import openai as oa

    out = []
    for data, event_type in zip(*evs):
        obj = oa._decode(data)
        if isinstance(obj, dict) and event_type is None and obj.get("error") is None and obj.get("choices"):
            text = adapter.output_text(obj["choices"][0])
            if text:
                out.append(text)
    return out


from hypothesis import given, settings, strategies as st  # noqa: E402

_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["content", "reasoning_content", "both", "tool", "role", "usage", "decoy"]), _texts), min_size=1, max_size=12))
def test_skeleton_reuse_reads_exactly_what_full_decoding_reads(items):
    # Streams whose chunks share skeletons, with escapes, unicode, decoy keys and mixed fields.
    chunks = []
    for kind, text in items:
        if kind == "content":
            delta = {"content": text}
        elif kind == "reasoning_content":
            delta = {"reasoning_content": text, "content": ""}
        elif kind == "both":
            delta = {"content": text, "reasoning_content": "r"}
        elif kind == "tool":
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
        elif kind == "role":
            delta = {"role": "assistant", "content": ""}
        elif kind == "decoy":
            chunks.append({"content": text, "choices": [{"index": 0, "delta": {"content": "fixed"}}]})
            continue
        else:
            chunks.append({"choices": [{"index": 0, "delta": {"content": text}}], "usage": {"prompt_tokens": 1, "completion_tokens": 2}})
            continue
        chunks.append({"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    raw = b"".join(b"data: " + json.dumps(c, ensure_ascii=bool(len(chunks) % 2)).encode() + b"\n\n" for c in chunks)
    adapter = get_adapter("openai-chat")
    evs = events(raw)
    assert interpret_events(adapter, *evs).output_text == _slow_path(adapter, evs)


# --- interpret_events against full decoding, on whole streams --------------------------------

from perfbench.apis import openai as oa  # noqa: E402
from perfbench.apis.base import MAX_TOKEN_COUNT, InvalidEvent, StreamContent  # noqa: E402
from perfbench.engine.sse import parse_recorded  # noqa: E402


def _reference_content(adapter, datas, types) -> StreamContent:
    """What decoding every event's JSON in full says: interpret_events must say exactly this.

    ``invalid`` is compared as "some event was invalid" (True/None), not by its message.
    """
    content = StreamContent()
    datas, types = list(datas), list(types)
    if b"[DONE]" in datas:
        done = datas.index(b"[DONE]")
        if _reference_content(adapter, datas[done + 1 :], types[done + 1 :]).output_events:
            content.invalid = True
        datas, types = datas[: done + 1], types[: done + 1]

    def invalid() -> None:
        if content.invalid is None:
            content.invalid = True

    def count(value):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT

    for index, (data, event_type) in enumerate(zip(datas, types)):
        if data == b"[DONE]":
            content.saw_done = True
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            if content.malformed is None:
                content.malformed = data[:200].decode("utf-8", "replace")
            continue
        if event_type == "error" or obj.get("error") is not None or obj.get("object") == "error":
            if content.error is None:
                content.error = oa._error_message(obj)
            continue
        usage = obj.get("usage")
        if usage is not None and not isinstance(usage, dict):
            invalid()
            continue
        if usage:
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if not all(v is None or count(v) for v in (prompt, completion)):
                invalid()
                continue
            content.prompt_tokens = prompt if prompt is not None else content.prompt_tokens
            content.completion_tokens = completion if completion is not None else content.completion_tokens
        if "choices" not in obj:
            if usage is None:
                invalid()
            continue
        choices = obj["choices"]
        if not isinstance(choices, list) or (choices and not isinstance(choices[0], dict)):
            invalid()
            continue
        if choices:
            finish = choices[0].get("finish_reason")
            if isinstance(finish, str) and finish:
                content.finish_reason = finish[:40]
            try:
                text = adapter.output_text(choices[0])
            except InvalidEvent:
                invalid()
                continue
            if text:
                content.output_events.append(index)
                content.output_chars.append(len(text))
                content.output_text.append(text)
    return content


def _said(content: StreamContent) -> StreamContent:
    """``content`` with ``invalid`` as a flag, to compare with the reference."""
    from dataclasses import replace

    return replace(content, invalid=True if content.invalid is not None else None)


_CHAT = b'{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
# Event shapes with a slot for a string's raw JSON bytes: plain ones (the output is the slot) and
# look-alikes that are not (reasoning or a decoy key beside it, a later duplicate key, usage).
_CHAT_TEMPLATES = [
    _CHAT + b'{"content":"%s"},"finish_reason":null}]}',
    _CHAT + b'{"content":"%s"},"logprobs":null,"finish_reason":null}]}',
    _CHAT + b'{"role":"assistant","content":"%s"},"finish_reason":null}]}',
    _CHAT + b'{"reasoning_content":"%s","content":""}}]}',
    _CHAT + b'{"content":"%s","reasoning_content":"r"}}]}',
    _CHAT + b'{"tool_calls":[{"index":0,"function":{"arguments":"%s"}}]}}]}',
    _CHAT + b'{"content":"%s","content":"late"}}]}',
    _CHAT + b'{"content":"%s","content":"\\u2603perfbench-probe\\u2603"}}]}',  # spells the first probe
    _CHAT + b'{"content":"%s"},"finish_reason":"length"}],"usage":{"prompt_tokens":2,"completion_tokens":7}}',
    b'{"content":"%s","choices":[{"index":0,"delta":{"content":"fixed"}}]}',
]
_COMPLETIONS_TEMPLATES = [
    b'{"id":"c1","choices":[{"text":"%s","index":0,"finish_reason":null}]}',
    b'{"id":"c1","choices":[{"text":"%s","index":0,"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":3}}',
    b'{"id":"c1","choices":[{"index":0,"text":"%s"}],"text":"decoy"}',
]
_OTHER_EVENTS = [
    b"[DONE]", b"1,2", b"{not json", b"", b'{"choices":[]}', b'{"error":{"message":"boom","code":500}}',
    b'{"object":"error","message":"bad"}', b'{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}',
    # Shapes and values no answer may have: each fails its request (``invalid``), none raises.
    b'{"choices":"nope"}', b'{"choices":[1]}', b'{"choices":[{"delta":"text"}]}', b'{"id":"c1"}', b'{"usage":"x"}',
    b'{"choices":[{"delta":{"content":5}}]}', b'{"choices":[{"text":["a"]}]}',
    b'{"choices":[],"usage":{"completion_tokens":"5"}}', b'{"choices":[],"usage":{"completion_tokens":1e30}}',
    b'{"choices":[],"usage":{"completion_tokens":-1}}', b'{"choices":[],"usage":{"completion_tokens":2.5}}',
    b'{"choices":[],"usage":{"completion_tokens":NaN}}', b'{"choices":[],"usage":{"prompt_tokens":[1]}}',
    b'{"usage":{"completion_tokens":3}}',
]
# What goes in a slot: JSON-escaped text (unicode, escapes, either ensure_ascii), or raw bytes that
# may hold quotes, backslashes, control bytes, NUL, invalid UTF-8 or encoded surrogates.
_slot = st.one_of(
    st.builds(lambda s, ascii_only: json.dumps(s, ensure_ascii=ascii_only)[1:-1].encode(), _texts, st.booleans()),
    st.sampled_from([b"", b"a", b" the", b"\xed\xa0\x80", b"\\ud800", b"\x01", b"\t", b"\x00", b"\x7f", b'\\"', b"\\\\", b"\xc3", b"\xc3\xa9"]),
    st.binary(max_size=5).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
# A run: one template filled with many slots (long enough for several bulk windows), or one other event.
_run = st.one_of(
    st.tuples(st.integers(0, 9), st.lists(_slot, min_size=1, max_size=70)),
    st.tuples(st.just(-1), st.lists(st.sampled_from(_OTHER_EVENTS), min_size=1, max_size=2)),
)


def _stream(adapter_name: str, runs, event_types, ending: bytes, comments: bool) -> bytes:
    templates = _CHAT_TEMPLATES if adapter_name == "openai-chat" else _COMPLETIONS_TEMPLATES
    events = []
    for template, slots in runs:
        events += slots if template < 0 else [templates[template % len(templates)] % s for s in slots]
    lines = []
    for i, data in enumerate(events):
        if comments and i % 5 == 0:
            lines.append(b": ping")
        if event_types and i % 7 == 3:
            lines.append(b"event: " + event_types[i % len(event_types)])
        lines += [b"data: " + data, b""]
    return b"".join(line + ending for line in lines)


@settings(max_examples=300, deadline=None)
@given(
    adapter_name=st.sampled_from(["openai-chat", "openai-completions"]),
    runs=st.lists(_run, min_size=1, max_size=6),
    event_types=st.lists(st.sampled_from([b"error", b"message", b"other"]), max_size=2),
    ending=st.sampled_from([b"\n", b"\r\n"]),
    comments=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=100_000), max_size=8),
)
def test_interpretation_equals_full_decoding_of_every_event(adapter_name, runs, event_types, ending, comments, cuts):
    adapter = get_adapter(adapter_name)
    stream = _stream(adapter_name, runs, event_types, ending, comments)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    recorded = parse_recorded(chunks)
    expected = _reference_content(adapter, *events(stream))
    assert _said(interpret_events(adapter, recorded.data, recorded.types)) == expected
    assert _said(interpret_events(adapter, *events(stream))) == expected  # types given as a list


def test_long_plain_run_then_finish_chunk_with_usage():
    adapter = get_adapter("openai-chat")
    words = [" the", " quick", "", " brown", " ✓", "fox"]
    datas = [_CHAT_TEMPLATES[2] % b""] + [_CHAT_TEMPLATES[0] % words[i % 6].encode() for i in range(300)]
    datas += [_CHAT_TEMPLATES[8] % b" end", b"[DONE]"]
    content = interpret_events(adapter, datas)
    assert _said(content) == _reference_content(adapter, datas, [None] * len(datas))
    assert content.output_events[:5] == [1, 2, 4, 5, 6]  # event 3 carries an empty string: no output
    assert content.output_events[-1] == 301 and content.output_text[-1] == " end"
    assert (content.completion_tokens, content.saw_done) == (7, True)
    assert content.output_chars[3] == 2  # " ✓": characters, not bytes


def test_a_skeleton_that_spells_a_probe_is_not_taken_for_plain():
    # The later duplicate key wins: every event's output is the probe's text, whatever the first string says.
    adapter = get_adapter("openai-chat")
    datas = [_CHAT_TEMPLATES[7] % t for t in (b"a", b"b", b"c")]
    assert interpret_events(adapter, datas).output_text == ["\u2603perfbench-probe\u2603"] * 3


def test_raw_control_byte_or_bad_utf8_in_a_plain_skeleton_is_what_full_decoding_says():
    adapter = get_adapter("openai-chat")
    datas = [_CHAT_TEMPLATES[0] % t for t in (b"a", b"b", b"c\x01", b"d", b"\xff", b"\xed\xa0\x80", b"e")]
    content = interpret_events(adapter, datas)
    assert _said(content) == _reference_content(adapter, datas, [None] * len(datas))
    assert content.output_events == [0, 1, 3, 5, 6] and content.output_text[3] == "\ud800"
    assert content.malformed is not None
