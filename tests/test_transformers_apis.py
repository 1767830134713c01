"""The transformers server's Responses and embeddings routes over real HTTP on 127.0.0.1, with the tiny test Llama."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time

import aiohttp
import pytest

from perfbench.servers import transformers_apis
from perfbench.servers.transformers_server import create_app

MODEL = "tiny-llama"
OPENING = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
CLOSING = ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]


@pytest.fixture
async def base_url(aiohttp_server, generator):
    server = await aiohttp_server(create_app(generator, MODEL))
    return f"http://127.0.0.1:{server.port}"


async def post(base_url: str, path: str, body: dict) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url + path, json=body, timeout=aiohttp.ClientTimeout(total=60)) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.read()


def events(raw: bytes) -> list[tuple[str, dict]]:
    """(name, data) of each named SSE event, split by hand."""
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            assert name.startswith("event: ") and data.startswith("data: ")
            out.append((name[len("event: ") :], json.loads(data[len("data: ") :])))
    return out


def greedy(body: dict) -> dict:
    return {"model": MODEL, "temperature": 0, "ignore_eos": True, **body}


@pytest.mark.parametrize("max_output_tokens", [5, 17])
async def test_responses_stream_is_the_chat_answer_with_its_token_count(base_url, max_output_tokens):
    messages = [{"role": "user", "content": [{"type": "input_text", "text": "explain the "}, {"type": "input_text", "text": "queue"}]}]
    status, content_type, raw = await post(
        base_url, "/v1/responses", greedy({"input": messages, "instructions": "be brief", "max_output_tokens": max_output_tokens, "stream": True})
    )
    assert status == 200 and content_type.startswith("text/event-stream")
    stream = events(raw)
    names = [name for name, _ in stream]
    n_deltas = names.count("response.output_text.delta")
    assert names == OPENING + ["response.output_text.delta"] * n_deltas + CLOSING and n_deltas >= 1
    assert all(data["type"] == name for name, data in stream)
    assert [data["sequence_number"] for _, data in stream] == list(range(len(stream)))
    text = "".join(data["delta"] for name, data in stream if name == "response.output_text.delta")
    completed = stream[-1][1]["response"]
    assert completed["status"] == "completed" and completed["output"][0]["content"][0]["text"] == text
    usage = completed["usage"]
    assert usage["output_tokens"] == max_output_tokens  # max_output_tokens honoured (EOS ignored)
    # The same request through chat: the same greedy tokens, so the same text and counts.
    chat_messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "explain the queue"}]
    _, _, chat_raw = await post(base_url, "/v1/chat/completions", greedy({"messages": chat_messages, "max_tokens": max_output_tokens}))
    chat = json.loads(chat_raw)
    assert chat["choices"][0]["message"]["content"] == text
    assert usage["input_tokens"] == chat["usage"]["prompt_tokens"] and usage["output_tokens"] == chat["usage"]["completion_tokens"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


async def test_responses_non_streaming_and_seeded_sampling(base_url):
    body = {"model": MODEL, "input": "history of science", "max_output_tokens": 9, "temperature": 0.9, "top_p": 0.9, "seed": 4}
    answers = [json.loads((await post(base_url, "/v1/responses", body))[2]) for _ in range(2)]
    first = answers[0]
    assert first["object"] == "response" and first["status"] == "completed" and first["model"] == MODEL
    (message,) = first["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["text"] == answers[1]["output"][0]["content"][0]["text"]  # same seed, same text
    assert first["usage"]["output_tokens"] <= 9


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"max_output_tokens": 3}, "'input'"),
        ({"input": [], "max_output_tokens": 3}, "'input'"),
        ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "hi", "max_output_tokens": 5000}, "maximum context length"),
        ({"input": "hi", "temperature": "hot"}, "'temperature'"),
    ],
)
async def test_responses_bad_requests_get_400(base_url, body, fragment):
    status, _, raw = await post(base_url, "/v1/responses", body)
    assert status == 400 and fragment in json.loads(raw)["error"]["message"]


async def test_embeddings_of_a_batch_are_unit_vectors_of_the_hidden_size(base_url, loaded):
    inputs = ["the model reads the prompt", "a much longer second input about queues and batches", "the model reads the prompt"]
    status, _, raw = await post(base_url, "/v1/embeddings", {"model": MODEL, "input": inputs})
    assert status == 200
    answer = json.loads(raw)
    assert answer["object"] == "list" and answer["model"] == MODEL
    vectors = [d["embedding"] for d in answer["data"]]
    assert [d["index"] for d in answer["data"]] == [0, 1, 2] and len(vectors) == 3
    assert all(len(v) == loaded.model.config.hidden_size for v in vectors)
    assert all(math.sqrt(sum(x * x for x in v)) == pytest.approx(1.0, abs=1e-5) for v in vectors)
    assert vectors[0] == pytest.approx(vectors[2], abs=1e-6)  # identical inputs, identical vectors (padding masked)
    assert max(abs(a - b) for a, b in zip(vectors[0], vectors[1])) > 1e-3
    expected_tokens = sum(len(loaded.tokenizer.encode(text)) for text in inputs)
    assert answer["usage"] == {"prompt_tokens": expected_tokens, "total_tokens": expected_tokens}
    # Alone (no padding in its batch) the first input gets the same vector.
    _, _, alone = await post(base_url, "/v1/embeddings", {"model": MODEL, "input": inputs[0]})
    assert json.loads(alone)["data"][0]["embedding"] == pytest.approx(vectors[0], abs=1e-5)


async def test_embeddings_token_ids_base64_and_dimensions(base_url, loaded):
    ids = loaded.tokenizer.encode("queue length")
    _, _, as_text = await post(base_url, "/v1/embeddings", {"input": "queue length"})
    _, _, as_ids = await post(base_url, "/v1/embeddings", {"input": ids, "encoding_format": "base64"})
    floats = json.loads(as_text)["data"][0]["embedding"]
    packed = json.loads(as_ids)
    assert packed["usage"]["prompt_tokens"] == len(ids)
    decoded = struct.unpack(f"<{len(floats)}f", base64.b64decode(packed["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats, abs=1e-5)
    _, _, short = await post(base_url, "/v1/embeddings", {"input": "queue length", "dimensions": 8})
    vector = json.loads(short)["data"][0]["embedding"]
    assert len(vector) == 8 and math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"input": []}, "'input'"),
        ({"input": ["ok", ""]}, "input[1]"),
        ({"input": [10**9]}, "vocabulary"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "x", "dimensions": 10**6}, "dimensions"),
    ],
)
async def test_embeddings_bad_requests_get_400(base_url, body, fragment):
    status, _, raw = await post(base_url, "/v1/embeddings", body)
    assert status == 400 and fragment in json.loads(raw)["error"]["message"]


async def test_embeddings_run_off_the_event_loop(base_url, monkeypatch):
    """A slow embedding (1 s in its thread) must not stop the server from answering meanwhile."""
    real = transformers_apis.mean_pooled_embeddings

    def slow(*args: object) -> list[list[float]]:
        time.sleep(1.0)
        return real(*args)

    monkeypatch.setattr(transformers_apis, "mean_pooled_embeddings", slow)
    embedding = asyncio.ensure_future(post(base_url, "/v1/embeddings", {"input": "x"}))
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url + "/health", timeout=aiohttp.ClientTimeout(total=10)) as r:
            assert r.status == 200
    assert time.perf_counter() - started < 0.6 and not embedding.done()
    assert (await embedding)[0] == 200
