"""Request bodies and event interpretation per API, on real SSE bytes through the real parser."""

import json

from perfbench.apis import get_adapter
from perfbench.apis.openai import interpret_events
from perfbench.prompts import Prompt
from perfbench.sse import SSEParser


def events(raw: bytes) -> tuple[list[bytes], list[str | None]]:
    """(data, types) of the events in ``raw``, as interpret_events takes them."""
    parser = SSEParser()
    parsed = parser.feed(raw) + parser.flush()
    return [e.data for e in parsed], [e.event for e in parsed]


def test_chat_body_streams_with_usage_and_extra_fields():
    body = json.loads(get_adapter("openai-chat").build_body(Prompt("hi", None, None), model="m", max_tokens=5, extra={"ignore_eos": True}))
    assert body == {"messages": [{"role": "user", "content": "hi"}], "model": "m", "stream": True,
                    "stream_options": {"include_usage": True}, "max_tokens": 5, "ignore_eos": True}


def test_completions_body_from_messages():
    prompt = Prompt(None, ({"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}), None)
    body = json.loads(get_adapter("openai-completions").build_body(prompt, model=None, max_tokens=None, extra={}))
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
