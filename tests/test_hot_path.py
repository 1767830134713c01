"""What the event loop spends per ended request: answers read on the fast path whatever the JSON
spacing, skeletons proven once across answers, JSON read as json.loads would, requests.jsonl
written a batch per loop turn."""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path

import pytest

import perfbench.apis.openai as openai_api
from perfbench.apis import get_adapter
from perfbench.apis.base import decode_json
from perfbench.report.requests_file import RecordWriter
from perfbench.results.records import OK, RequestRecord
from perfbench.results.runfiles import OutputError, read_request_lines


def _chunk(text: str, *, answer: str, created: int, spaced: bool, **extra: object) -> bytes:
    obj = {"id": f"chatcmpl-{answer}", "object": "chat.completion.chunk", "created": created, "model": "m",
           "choices": [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}], **extra}
    return json.dumps(obj, separators=(", ", ": ") if spaced else (",", ":")).encode()


def _answer(n: int, *, answer: str = "a", created: int = 1, spaced: bool = False) -> list[bytes]:
    return [_chunk(f" w{k}", answer=answer, created=created, spaced=spaced) for k in range(n)]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every event the adapter decodes whole (the exact path); the fast path decodes none."""
    seen: list[bytes] = []

    def counting(data: bytes) -> object:
        seen.append(data)
        return decode_json(data)

    monkeypatch.setattr(openai_api, "_decode", counting)
    monkeypatch.setattr(openai_api, "_proven_skeletons", {})
    return seen


@pytest.mark.parametrize("spaced", [False, True])
def test_events_with_or_without_spaces_after_colons_take_the_fast_path(decodes: list[bytes], spaced: bool) -> None:
    content = get_adapter("openai-chat").interpret_events(_answer(200, spaced=spaced), None)
    assert "".join(content.output_text) == "".join(f" w{k}" for k in range(200))
    assert content.output_events == list(range(200))
    # The first event is decoded (its skeleton proven with two probes); the other 199 are read in bulk.
    assert len(decodes) <= 4, len(decodes)


def test_a_skeleton_is_proven_once_across_answers_whose_ids_and_times_differ(decodes: list[bytes]) -> None:
    adapter = get_adapter("openai-chat")
    adapter.interpret_events(_answer(50, answer="first", created=100), None)
    first = len(decodes)
    content = adapter.interpret_events(_answer(50, answer="second", created=200), None)
    assert len(content.output_events) == 50
    assert len(decodes) - first == 1  # its first event only: no probe again


def test_a_skeleton_proven_for_one_answer_is_not_taken_for_another_shape(decodes: list[bytes]) -> None:
    # Plain content events first; then events whose delta also carries reasoning after the content:
    # their skeleton must be proven on its own (output = content + reasoning), never read as content alone.
    adapter = get_adapter("openai-chat")
    adapter.interpret_events(_answer(20), None)
    both = [b'{"id":"chatcmpl-c","object":"chat.completion.chunk","created":3,"model":"m","choices":[{"index":0,'
            b'"delta":{"content":"x%d","reasoning_content":"r"},"logprobs":null,"finish_reason":null}]}' % k for k in range(20)]
    content = adapter.interpret_events(both, None)
    assert content.output_text == [f"x{k}r" for k in range(20)]


@pytest.mark.parametrize("data, expected", [
    (b'{"a": 1, "b": [true, null]}', {"a": 1, "b": [True, None]}),
    (b'{"n": 123456789012345678901234567890}', {"n": 123456789012345678901234567890}),  # past 64 bits
    (b'{"x": 1e999}', {"x": math.inf}),
    ('{"t": "\u00e9"}'.encode("utf-16"), {"t": "\u00e9"}),  # another encoding json.loads detects
])
def test_json_is_read_as_json_loads_reads_it(data: bytes, expected: object) -> None:
    assert decode_json(data) == expected == json.loads(data)


def test_json_that_json_loads_refuses_is_none() -> None:
    assert decode_json(b'{"a": ') is None and decode_json(b"\xff\xfe\x00") is None


def test_nan_is_read_as_json_loads_reads_it() -> None:
    assert math.isnan(decode_json(b'{"x": NaN}')["x"])


def _record(index: int) -> RequestRecord:
    times = tuple(1_000_000 * (index + k) for k in range(1, 6))
    return RequestRecord(0, index, False, OK, 200, None, 0, 0, times[-1], times, (1,) * 5, 12, 5, "usage")


async def test_records_of_one_loop_turn_are_written_in_one_write_after_the_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real_write = os.write

    def counting_write(fd: int, data: bytes) -> int:
        writes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", counting_write)
    writer = RecordWriter(tmp_path / "requests.jsonl", 0)
    for index in range(5):
        writer.write(_record(index))
    assert writes == [] and read_request_lines(tmp_path) == []  # the turn's reads come first
    await asyncio.sleep(0)
    assert len(writes) == 1
    lines = read_request_lines(tmp_path)
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4]
    assert [line["ttft_ms"] for line in lines] == [1.0, 2.0, 3.0, 4.0, 5.0]  # t_first - t0, from metrics
    assert [line["latency_ms"] for line in lines] == [5.0, 6.0, 7.0, 8.0, 9.0]
    writer.write(_record(5))
    writer.close()  # what the turn still held goes with the close
    assert [line["index"] for line in read_request_lines(tmp_path)] == [0, 1, 2, 3, 4, 5]


async def test_a_deferred_write_that_fails_reaches_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failures: list[OutputError] = []
    writer = RecordWriter(tmp_path / "requests.jsonl", 0, on_failure=failures.append)

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    writer.write(_record(0))
    await asyncio.sleep(0)
    assert len(failures) == 1 and "No space left on device" in str(failures[0])
    writer.write(_record(1))  # nothing more is written after a failure
    writer.close()
    assert writer.failed


def test_outside_an_event_loop_a_record_is_written_at_once(tmp_path: Path) -> None:
    writer = RecordWriter(tmp_path / "requests.jsonl", 0)
    writer.write(_record(7))
    assert [line["index"] for line in read_request_lines(tmp_path)] == [7]
    writer.close()
