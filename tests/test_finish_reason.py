"""finish_reason: what the server said ended each answer, per request in requests.jsonl and counted per step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfbench.apis import get_adapter
from perfbench.commands.main import main

QUIET = ["--no-live", "--no-plots", "--no-telemetry"]


@pytest.mark.parametrize(("api", "said"), [("openai-chat", "length"), ("openai-completions", "length"), ("openai-responses", "stop")])
def test_each_request_records_the_finish_reason_and_the_step_counts_them(api: str, said: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["--api", api, "--mock", "ttft_ms=1,itl_ms=1", "-c", "2", "-n", "6", "--max-tokens", "4", *QUIET,
                 "--output-dir", str(out)]) == 0
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert [line["finish_reason"] for line in lines] == [said] * 6
    step = json.loads((out / "summary.json").read_text())["steps"][0]
    assert step["finish_reasons"] == {said: 6}


def _chat_event(finish: object) -> bytes:
    return json.dumps({"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": finish}]}).encode()


def test_chat_takes_the_last_reason_given_and_none_when_none_is() -> None:
    chat = get_adapter("openai-chat")
    assert chat.interpret_events([_chat_event(None), _chat_event("stop"), b"[DONE]"], None).finish_reason == "stop"
    assert chat.interpret_events([_chat_event(None), _chat_event(None), b"[DONE]"], None).finish_reason is None
    assert chat.interpret_events([_chat_event(None), _chat_event(7), b"[DONE]"], None).finish_reason is None  # not a word


def test_responses_incomplete_at_max_output_tokens_is_length() -> None:
    responses = get_adapter("openai-responses")
    final = {"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                                                           "usage": {"input_tokens": 2, "output_tokens": 1}}}
    delta = {"type": "response.output_text.delta", "delta": "x"}
    content = responses.interpret_events([json.dumps(delta).encode(), json.dumps(final).encode()],
                                         ["response.output_text.delta", "response.incomplete"])
    assert content.finish_reason == "length"
