"""Request bodies and event interpretation per API, on real SSE bytes through the real parser."""

import json

from perfbench.apis import get_adapter
from perfbench.apis.openai import interpret_events
from perfbench.prompts import Prompt
from perfbench.sse import SSEParser


def events(raw: bytes):
    parser = SSEParser()
    return parser.feed(raw) + parser.flush()


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
    content = interpret_events(get_adapter("openai-chat"), events(raw))
    assert content.output_events == [1]
    assert (content.prompt_tokens, content.completion_tokens, content.saw_done) == (4, 1, True)


def test_error_event_by_type_and_by_body():
    raw = b'event: error\ndata: {"message": "boom"}\n\n'
    assert interpret_events(get_adapter("openai-chat"), events(raw)).error == "boom"
    raw = b'data: {"object": "error", "message": "bad", "code": 400}\n\n'
    assert "bad" in interpret_events(get_adapter("openai-chat"), events(raw)).error


def test_malformed_event_is_reported():
    content = interpret_events(get_adapter("openai-completions"), events(b"data: {not json\n\n"))
    assert content.malformed == "{not json" and not content.output_events
