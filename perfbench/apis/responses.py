"""The OpenAI Responses API (``/v1/responses``), streaming: typed events instead of ``choices``.

Output packages are the text deltas a person would see arrive: ``response.output_text.delta``,
reasoning (``response.reasoning_text.delta``, ``response.reasoning_summary_text.delta``), refusals
and function-call arguments. Lifecycle events (``response.created``, ``…output_item.added``,
``…done``) are not output. Usage comes from the final response (``response.completed``, or
``response.incomplete`` when ``max_output_tokens`` ran out); ``error`` and ``response.failed``
fail the request. The stream has no ``[DONE]``: it ends with the final response.
"""

from __future__ import annotations

from typing import Any, Sequence

from perfbench.apis.base import (
    InvalidEvent,
    StreamContent,
    decode_json,
    encode_body,
    error_message,
    one_prompt,
    optional_str,
    shown,
    token_count,
    usage_object,
    whole_answer,
)
from perfbench.workload.prompts import Prompt

OUTPUT_DELTAS = frozenset({
    "response.output_text.delta",
    "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
})  # fmt: skip
FINAL = frozenset({"response.completed", "response.incomplete"})
FAILED = "response.failed"


class OpenAIResponses:
    name = "openai-responses"
    path = "/v1/responses"
    chat_input = True
    streams = True
    produces_output = True
    batched = False

    def build_body(self, prompts: Sequence[Prompt], *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        prompt = one_prompt(prompts, self.name)
        messages = list(prompt.chat_messages)
        fields: dict[str, Any] = {"input": messages[0]["content"] if len(messages) == 1 and messages[0]["role"] == "user" else messages}
        fields["stream"] = True
        if max_tokens is not None:
            fields["max_output_tokens"] = max_tokens
        return encode_body(fields, model=model, extra=extra)

    def interpret_events(self, datas: Sequence[bytes], types: Sequence[str | None] | None) -> StreamContent:
        content = StreamContent()
        for index, data in enumerate(datas):
            if data == b"[DONE]":  # not part of this API, but harmless where a proxy adds it
                content.saw_done = True
                continue
            obj = decode_json(data)
            if not isinstance(obj, dict):
                if content.malformed is None:
                    content.malformed = data.decode("utf-8", "replace")  # whole: cut once, secrets masked first (answers.py)
                continue
            event_type = obj.get("type", types[index] if types is not None else None)
            try:
                self._read_event(content, index, event_type, obj)
            except InvalidEvent as exc:
                content.mark_invalid(str(exc))
        return content

    def _read_event(self, content: StreamContent, index: int, event_type: Any, obj: dict[str, Any]) -> None:
        if not isinstance(event_type, str):
            raise InvalidEvent(f"event has no 'type': {shown(obj)}")
        if event_type == "error" or event_type == FAILED:
            if content.error is None:
                content.error = _failure_message(obj)
            return
        if event_type in OUTPUT_DELTAS:
            text = optional_str(obj.get("delta"), f"{event_type} delta")
            if text:
                if content.saw_done:
                    raise InvalidEvent(f"output after {event_type!r} ended the response")
                content.add_output(index, text)
            return
        if event_type in FINAL:
            response = obj.get("response")
            if not isinstance(response, dict):
                raise InvalidEvent(f"{event_type} has no response object: {shown(obj)}")
            _read_usage(content, response)
            content.saw_done = True

    def interpret_body(self, body: bytes) -> StreamContent:
        """A non-streamed response object: its whole output is one package (event 0)."""
        return whole_answer(body, _read_response, _response_failure)


def _read_response(obj: dict[str, Any], content: StreamContent) -> str:
    _read_usage(content, obj)
    return "".join(_output_texts(obj.get("output")))


def _response_failure(obj: dict[str, Any]) -> str | None:
    failed = (obj.get("error") is not None and obj.get("object") != "response") or obj.get("status") == "failed"
    return _failure_message(obj) if failed else None


def _read_usage(content: StreamContent, response: dict[str, Any]) -> None:
    content.finish_reason = _finish_reason(response) or content.finish_reason
    usage = usage_object(response)
    if usage:
        prompt_tokens, completion_tokens = token_count(usage, "input_tokens"), token_count(usage, "output_tokens")
        content.prompt_tokens = prompt_tokens if prompt_tokens is not None else content.prompt_tokens
        content.completion_tokens = completion_tokens if completion_tokens is not None else content.completion_tokens


def _finish_reason(response: dict[str, Any]) -> str | None:
    """The Responses API's end in the chat API's words: "stop" when completed, "length" when
    max_output_tokens ran out, else the incomplete reason or the status as given."""
    status = response.get("status")
    if status == "completed":
        return "stop"
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if reason == "max_output_tokens":
        return "length"
    for word in (reason, status):
        if isinstance(word, str) and word:
            return word  # whole: shortened once, secrets masked first (answers.py)
    return None


def _output_texts(output: Any) -> list[str]:
    """The text of a response object's output items: message text, refusals, reasoning, call arguments."""
    if output is None:
        return []
    if not isinstance(output, list):
        raise InvalidEvent(f"output is {shown(output)}, not a list")
    texts: list[str] = []
    for item in output:
        if not isinstance(item, dict):
            raise InvalidEvent(f"an output item is {shown(item)}, not an object")
        if item.get("type") == "function_call":
            texts.append(optional_str(item.get("arguments"), "function_call.arguments"))
            continue
        parts = item.get("content") or []
        if item.get("type") == "reasoning":
            parts = list(parts) + list(item.get("summary") or [])
        if not isinstance(parts, list):
            raise InvalidEvent(f"an output item's content is {shown(parts)}, not a list")
        for part in parts:
            if not isinstance(part, dict):
                raise InvalidEvent(f"a content part is {shown(part)}, not an object")
            texts.append(optional_str(part.get("text", part.get("refusal")), "content part text"))
    return texts


def _failure_message(obj: dict[str, Any]) -> str:
    """The message of an ``error`` event, a ``response.failed`` event or a failed response."""
    response = obj.get("response")
    if isinstance(response, dict) and response.get("error") is not None:
        return error_message(response)
    if obj.get("error") is not None:
        return error_message(obj)
    code = obj.get("code")
    message = obj.get("message") or shown(obj)
    return f"{message} (code {code})" if code is not None else str(message)
