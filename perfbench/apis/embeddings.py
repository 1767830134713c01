"""The OpenAI embeddings API (``/v1/embeddings``): one JSON answer per request, no output tokens.

A request carries ``--batch-size`` inputs; its answer must hold one embedding per input (a list
of numbers, or a base64 string with ``encoding_format: base64``). Input tokens come from
``usage.prompt_tokens``. Streaming metrics (TTFT, ITL, TPOT) do not apply: the records carry
no output packages, so those statistics are absent, never zero.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from perfbench.apis.base import InvalidEvent, StreamContent, encode_body, shown, token_count, usage_object, whole_answer
from perfbench.workload.prompts import Prompt


class OpenAIEmbeddings:
    name = "openai-embeddings"
    path = "/v1/embeddings"
    chat_input = False
    streams = False
    produces_output = False
    batched = True

    def build_body(self, prompts: Sequence[Prompt], *, model: str | None, max_tokens: int | None, extra: dict[str, Any]) -> bytes:
        texts = [p.completion_text for p in prompts]
        return encode_body({"input": texts[0] if len(texts) == 1 else texts}, model=model, extra=extra)

    def interpret_events(self, datas: Sequence[bytes], types: Sequence[str | None] | None) -> StreamContent:
        content = StreamContent()
        content.mark_invalid("the embeddings API does not stream, but the server sent events")
        return content

    def interpret_body(self, body: bytes) -> StreamContent:
        return whole_answer(body, _read_embeddings)


def _read_embeddings(obj: dict[str, Any], content: StreamContent) -> str:
    """The answer's embedding count and input tokens; an embeddings answer carries no output text."""
    content.items = _count_embeddings(obj.get("data"))
    usage = usage_object(obj)
    if usage:
        content.prompt_tokens = token_count(usage, "prompt_tokens")
    return ""


def _count_embeddings(data: Any) -> int:
    if not isinstance(data, list) or not data:
        raise InvalidEvent(f"data is {shown(data)}, not a non-empty list of embeddings")
    for item in data:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, str) and vector:
            continue  # base64
        if not isinstance(vector, list) or not vector:
            raise InvalidEvent(f"an embedding is {shown(vector)}, not a list of numbers")
        for x in vector:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise InvalidEvent(f"an embedding holds {shown(x)}, not a finite number")
    return len(data)
