"""The mock's embeddings API (POST /v1/embeddings): a real mock on 127.0.0.1, raw aiohttp reads.

Shapes and batches, deterministic unit vectors, base64, prompt-token counts, the due time
(admitted + ttft + itl * (inputs - 1)) against the log, every fault, and 400 answers to bad bodies.
"""

from __future__ import annotations

import base64
import math
import struct

import aiohttp
import pytest

from tests.mock_client import MS, parse_metrics, post, mock, session  # noqa: F401 (fixtures)

EMBEDDINGS = "/v1/embeddings"


async def embed(session: aiohttp.ClientSession, url: str, inputs: object, **extra: object) -> dict:
    reply = await post(session, url + EMBEDDINGS, {"model": "emb", "input": inputs, **extra})
    assert reply.status == 200 and reply.content_type.startswith("application/json"), reply.raw
    return reply.json()


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


@pytest.mark.parametrize(
    ("inputs", "count", "prompt_tokens"),
    [
        ("one two three", 1, 3),
        (["one two", "three", "four five six"], 3, 6),
        ([5, 6, 7, 8], 1, 4),  # token ids: one token each
        ([[1, 2], [3, 4, 5]], 2, 5),
    ],
)
async def test_shapes_batches_and_usage(mock, session, inputs, count, prompt_tokens):
    server, url = await mock(ttft_ms=0, itl_ms=0)
    answer = await embed(session, url, inputs)
    assert answer["object"] == "list" and answer["model"] == "emb"
    assert [d["index"] for d in answer["data"]] == list(range(count))
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 64 for d in answer["data"])
    assert all(norm(d["embedding"]) == pytest.approx(1.0) for d in answer["data"])
    assert answer["usage"] == {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    (entry,) = server.log
    assert entry.api == "embeddings" and not entry.stream and entry.prompt_tokens == prompt_tokens
    assert entry.package_sent_ns == [] and entry.completion_tokens == 0 and entry.finished_ns is not None


async def test_vectors_are_deterministic_per_input(mock, session):
    _, url = await mock(ttft_ms=0, itl_ms=0)
    first = await embed(session, url, ["same text", "other text", "same text"])
    again = await embed(session, url, "same text")
    vectors = [d["embedding"] for d in first["data"]]
    assert vectors[0] == vectors[2] == again["data"][0]["embedding"]
    assert vectors[0] != vectors[1]


async def test_dimensions_from_config_and_request(mock, session):
    _, url = await mock(ttft_ms=0, itl_ms=0, embedding_dim=16)
    assert len((await embed(session, url, "x"))["data"][0]["embedding"]) == 16
    short = (await embed(session, url, "x", dimensions=4))["data"][0]["embedding"]
    assert len(short) == 4 and norm(short) == pytest.approx(1.0)


async def test_base64_is_little_endian_float32(mock, session):
    _, url = await mock(ttft_ms=0, itl_ms=0)
    floats = (await embed(session, url, ["a b", "c"]))["data"]
    packed = (await embed(session, url, ["a b", "c"], encoding_format="base64"))["data"]
    for as_floats, as_base64 in zip(floats, packed):
        raw = base64.b64decode(as_base64["embedding"])
        assert len(raw) == 64 * 4
        decoded = struct.unpack("<64f", raw)
        assert decoded == pytest.approx(as_floats["embedding"], abs=1e-6)


async def test_body_is_written_at_ttft_plus_itl_per_further_input(mock, session):
    server, url = await mock(ttft_ms=30, itl_ms=10)
    await embed(session, url, ["a", "b", "c", "d"])
    await embed(session, url, "a")
    batch, single = server.log
    # Due at admitted + 30 ms + 10 ms * (4 - 1) = 60 ms, and 30 ms for one input.
    assert 60 * MS <= batch.finished_ns - batch.admitted_ns < 140 * MS
    assert 30 * MS <= single.finished_ns - single.admitted_ns < 110 * MS


async def test_capacity_queues_embeddings(mock, session):
    import asyncio

    server, url = await mock(ttft_ms=40, itl_ms=0, capacity=1)
    await asyncio.gather(embed(session, url, "a"), embed(session, url, "b"))
    first, second = sorted(server.log, key=lambda e: e.admitted_ns)
    assert second.admitted_ns >= first.finished_ns  # one slot: the second waited for the first


async def test_http_error_bad_body_and_error_event(mock, session):
    server, url = await mock(ttft_ms=20, itl_ms=0, http_error_fraction=0.5, bad_body_fraction=0.25, error_event_fraction=0.25)
    replies = [await post(session, url + EMBEDDINGS, {"model": "emb", "input": "x"}) for _ in range(4)]
    faults = [e.fault for e in server.log]
    assert sorted(faults) == ["bad_body", "error_event", "http_error", "http_error"]
    by_fault = dict(zip(faults, replies))
    assert by_fault["http_error"].status == 500 and by_fault["http_error"].json()["error"]["code"] == 500
    assert by_fault["bad_body"].status == 200 and by_fault["bad_body"].content_type.startswith("text/html")
    assert by_fault["error_event"].status == 500 and by_fault["error_event"].json()["error"]["message"]
    erred = next(e for e in server.log if e.fault == "error_event")
    assert erred.finished_ns - erred.admitted_ns >= 20 * MS  # the 500 comes at the due time


async def test_cut_sends_half_the_body_then_aborts(mock, session):
    server, url = await mock(ttft_ms=0, itl_ms=0, cut_fraction=1)
    reply = await post(session, url + EMBEDDINGS, {"model": "emb", "input": ["a", "b"]})
    assert reply.status == 200 and reply.error is not None
    assert 0 < len(reply.raw) and reply.raw.startswith(b'{"object": "list"')
    assert server.log[0].finished_ns is None


async def test_stall_delays_the_answer(mock, session):
    server, url = await mock(ttft_ms=10, itl_ms=0, stall_fraction=1, stall_s=0.3)
    await embed(session, url, "x")
    (entry,) = server.log
    assert 310 * MS <= entry.finished_ns - entry.admitted_ns < 500 * MS


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "emb"},
        {"model": "emb", "input": []},
        {"model": "emb", "input": ""},
        {"model": "emb", "input": ["ok", ""]},
        {"model": "emb", "input": ["ok", 3]},
        {"model": "emb", "input": [[1, 2], []]},
        {"model": "emb", "input": [True, False]},
        {"model": "emb", "input": "x", "encoding_format": "int8"},
        {"model": "emb", "input": "x", "dimensions": 65},
        {"model": "emb", "input": "x", "dimensions": 0},
        {"model": "emb", "input": "x", "stream": True},
    ],
)
async def test_bad_bodies_are_400_openai_errors(mock, session, bad):
    server, url = await mock()
    reply = await post(session, url + EMBEDDINGS, bad)
    assert reply.status == 400
    error = reply.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error" and error["message"]
    assert server.log == []


async def test_metrics_count_embeddings(mock, session):
    _, url = await mock(ttft_ms=0, itl_ms=0)
    await embed(session, url, ["one two", "three"])
    async with session.get(url + "/metrics") as resp:
        metrics = parse_metrics(await resp.text())
    assert metrics["vllm:request_success_total"] == 1 and metrics["vllm:prompt_tokens_total"] == 3
    assert metrics["vllm:generation_tokens_total"] == 0 and metrics["vllm:num_requests_running"] == 0


def test_embedding_dim_flag_and_its_validation():
    from perfbench.core.errors import ConfigError
    from perfbench.servers.mock import _parser, config_from_args

    assert config_from_args(_parser().parse_args(["--embedding-dim", "8"])).embedding_dim == 8
    with pytest.raises(ConfigError, match="embedding_dim"):
        config_from_args(_parser().parse_args(["--embedding-dim", "0"]))
