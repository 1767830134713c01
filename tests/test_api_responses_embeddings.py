"""The Responses and embeddings adapters against real aiohttp servers on 127.0.0.1 writing the APIs' bytes."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from perfbench.results import records as R
from perfbench.apis import adapter_for_path, get_adapter
from perfbench.engine.engine import Engine
from perfbench.engine.transport_factory import make_transport
from perfbench.engine.plan import PreparedRequest, StepPlan, Target
from perfbench.metrics import summarize_step
from perfbench.workload.prompts import Prompt


def event(event_type: str, sequence: int, **fields) -> bytes:
    return f"event: {event_type}\ndata: ".encode() + json.dumps({"type": event_type, "sequence_number": sequence, **fields}).encode() + b"\n\n"


def responses_stream(deltas: list[str], *, usage: dict | None = None, final: str = "response.completed", reasoning: list[str] = ()) -> list[bytes]:
    """The events of one streamed response, in vLLM's and OpenAI's order."""
    n = 0

    def nxt(event_type: str, **fields) -> bytes:
        nonlocal n
        n += 1
        return event(event_type, n - 1, **fields)

    response = {"id": "resp_1", "object": "response", "status": "in_progress", "model": "m", "output": []}
    out = [nxt("response.created", response=response), nxt("response.in_progress", response=response)]
    for text in reasoning:
        out.append(nxt("response.reasoning_text.delta", item_id="rs_1", output_index=0, content_index=0, delta=text))
    out.append(nxt("response.output_item.added", output_index=0, item={"id": "msg_1", "type": "message", "content": []}))
    out.append(nxt("response.content_part.added", item_id="msg_1", output_index=0, content_index=0, part={"type": "output_text", "text": ""}))
    for text in deltas:
        out.append(nxt("response.output_text.delta", item_id="msg_1", output_index=0, content_index=0, delta=text, logprobs=[]))
    out.append(nxt("response.output_text.done", item_id="msg_1", output_index=0, content_index=0, text="".join(deltas)))
    done = {**response, "status": "completed" if final == "response.completed" else "incomplete",
            "usage": usage if usage is not None else {"input_tokens": 5, "output_tokens": len(deltas) + len(reasoning), "total_tokens": 9}}
    out.append(nxt(final, response=done))
    return out


def sse_app(path: str, answers: list[list[tuple[float, bytes]]], *, content_type: str = "text/event-stream", bodies: list | None = None):
    """A server answering request k with ``answers[k % n]``: (delay s, bytes) writes."""
    count = {"n": 0}

    async def handler(request: web.Request) -> web.StreamResponse:
        if bodies is not None:
            bodies.append(await request.json())
        parts = answers[count["n"] % len(answers)]
        count["n"] += 1
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        for delay_s, data in parts:
            if delay_s:
                await asyncio.sleep(delay_s)
            await response.write(data)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post(path, handler)
    return app


async def run(url: str, api: str, number: int = 1, inputs: int = 1, body: bytes = b"{}"):
    records: list[R.RequestRecord] = []
    target = Target(url, get_adapter(api), {})
    async with make_transport(target, timeout_s=10, connect_timeout_s=2, max_connections=2) as transport:
        engine = Engine(transport, target, [PreparedRequest(body, None, inputs)], records.append)
        await engine.run_step(StepPlan(step=0, concurrency=1, number=number, duration_s=None))
    return records


async def serve(aiohttp_server, app, path: str) -> str:
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url(path))


# --- Responses --------------------------------------------------------------------------------


def test_paths_select_their_adapters():
    assert adapter_for_path("/v1/responses").name == "openai-responses"
    assert adapter_for_path("/openai/v1/embeddings/").name == "openai-embeddings"
    assert adapter_for_path("/v1/chat/completions").name == "openai-chat"
    assert adapter_for_path("/v1/completions").name == "openai-completions"
    assert adapter_for_path("/v1/chat/completion") is None


def test_responses_body_carries_input_and_max_output_tokens():
    adapter = get_adapter("openai-responses")
    body = json.loads(adapter.build_body([Prompt("hello", None, None)], model="m", max_tokens=7, extra={"temperature": 0}))
    assert body == {"input": "hello", "stream": True, "max_output_tokens": 7, "model": "m", "temperature": 0}
    messages = ({"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"})
    body = json.loads(adapter.build_body([Prompt(None, messages, None)], model=None, max_tokens=None, extra={}))
    assert body["input"] == list(messages) and "max_output_tokens" not in body


async def test_responses_stream_deltas_are_the_packages_and_usage_comes_from_completed(aiohttp_server):
    events = responses_stream(["Hel", "lo", " there"], reasoning=["think"], usage={"input_tokens": 11, "output_tokens": 6})
    writes = [(0.0, b"".join(events[:4]))] + [(0.02, e) for e in events[4:]]
    url = await serve(aiohttp_server, sse_app("/v1/responses", [writes]), "/v1/responses")
    [rec] = await run(url, "openai-responses")
    assert rec.ok, rec.error
    assert (rec.input_tokens, rec.output_tokens, rec.token_source) == (11, 6, R.TOKENS_FROM_USAGE)
    assert len(rec.package_times_ns) == 4  # the reasoning delta and three text deltas; lifecycle events are not output
    gaps_ms = [(b - a) / 1e6 for a, b in zip(rec.package_times_ns, rec.package_times_ns[1:])]
    assert all(g > 10 for g in gaps_ms[1:])  # each delta stamped by its own read


async def test_responses_incomplete_is_a_success_with_its_usage(aiohttp_server):
    events = responses_stream(["a", "b"], final="response.incomplete", usage={"input_tokens": 1, "output_tokens": 2})
    url = await serve(aiohttp_server, sse_app("/v1/responses", [[(0, e) for e in events]]), "/v1/responses")
    [rec] = await run(url, "openai-responses")
    assert rec.ok and rec.output_tokens == 2


@pytest.mark.parametrize(
    "failure",
    [
        event("error", 3, code="server_error", message="boom"),
        event("response.failed", 3, response={"id": "r", "status": "failed", "error": {"code": "server_error", "message": "boom"}}),
    ],
)
async def test_responses_error_events_fail_the_request(aiohttp_server, failure):
    events = responses_stream(["a"])[:5] + [failure]
    url = await serve(aiohttp_server, sse_app("/v1/responses", [[(0, e) for e in events]]), "/v1/responses")
    [rec] = await run(url, "openai-responses")
    assert rec.status == R.ERROR_EVENT and "boom" in rec.error


@pytest.mark.parametrize(
    "bad",
    [
        event("response.output_text.delta", 9, delta=["x"]),
        b'data: {"sequence_number": 4, "delta": "untyped"}\n\n',
        event("response.completed", 9, response="done"),
        event("response.completed", 9, response={"usage": {"input_tokens": 1, "output_tokens": "3"}}),
    ],
)
async def test_responses_events_of_the_wrong_shape_fail_the_request(aiohttp_server, bad):
    events = responses_stream(["a", "b"])
    url = await serve(aiohttp_server, sse_app("/v1/responses", [[(0, e) for e in [*events[:-1], bad]]]), "/v1/responses")
    [rec] = await run(url, "openai-responses")
    assert rec.status == R.BAD_RESPONSE and rec.error


async def test_output_after_the_final_response_fails_the_request(aiohttp_server):
    events = responses_stream(["a"]) + [event("response.output_text.delta", 99, delta="late")]
    url = await serve(aiohttp_server, sse_app("/v1/responses", [[(0, e) for e in events]]), "/v1/responses")
    [rec] = await run(url, "openai-responses")
    assert rec.status == R.BAD_RESPONSE and "ended the response" in rec.error


async def test_a_non_streamed_response_object_is_one_package(aiohttp_server):
    body = {"id": "r", "object": "response", "status": "completed",
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "whole"}]}],
            "usage": {"input_tokens": 2, "output_tokens": 3}}
    app = sse_app("/v1/responses", [[(0.03, json.dumps(body).encode())]], content_type="application/json")
    [rec] = await run(await serve(aiohttp_server, app, "/v1/responses"), "openai-responses")
    assert rec.ok and rec.output_tokens == 3 and len(rec.package_times_ns) == 1


# --- embeddings -------------------------------------------------------------------------------


def embeddings_answer(n: int, *, prompt_tokens: int = 12, vector=None) -> bytes:
    data = [{"object": "embedding", "index": i, "embedding": vector if vector is not None else [0.1, -0.2, 0.3]} for i in range(n)]
    return json.dumps({"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}).encode()


def test_embeddings_body_batches_its_inputs():
    adapter = get_adapter("openai-embeddings")
    body = json.loads(adapter.build_body([Prompt("a b", None, None), Prompt("c", None, None)], model="e", max_tokens=None, extra={}))
    assert body == {"input": ["a b", "c"], "model": "e"}
    assert "stream" not in json.loads(adapter.build_body([Prompt("a", None, None)], model=None, max_tokens=None, extra={}))


async def test_embeddings_latency_and_input_tokens_without_streaming_metrics(aiohttp_server):
    app = sse_app("/v1/embeddings", [[(0.03, embeddings_answer(3))]], content_type="application/json")
    records = await run(await serve(aiohttp_server, app, "/v1/embeddings"), "openai-embeddings", number=4, inputs=3)
    assert [r.status for r in records] == [R.OK] * 4
    assert all(r.input_tokens == 12 and r.output_tokens is None and r.package_times_ns == () for r in records)
    step = summarize_step(records, concurrency=1, rate_req_s=None, requests_expected=4)
    assert step.requests_succeeded == 4
    assert step.ttft_ms.count == 0 and step.itl_ms.count == 0 and step.tpot_ms.count == 0  # absent, never zero
    assert step.ttft_ms.mean is None
    assert step.latency_ms.count == 4 and step.latency_ms.min >= 25  # from t0 to the answer's last byte
    assert step.input_tokens_per_request.mean == 12


@pytest.mark.parametrize(
    "answer, inputs",
    [
        (embeddings_answer(2), 3),  # fewer embeddings than inputs
        (embeddings_answer(1, vector=["x"]), 1),
        (embeddings_answer(1, vector=[]), 1),
        (embeddings_answer(1, prompt_tokens=-4), 1),
        (b'{"object": "list", "data": "none"}', 1),
        (b'{"error": {"message": "input too long", "code": 400}}', 1),
    ],
)
async def test_embeddings_answers_that_do_not_hold_up_fail_the_request(aiohttp_server, answer, inputs):
    app = sse_app("/v1/embeddings", [[(0, answer)]], content_type="application/json")
    [rec] = await run(await serve(aiohttp_server, app, "/v1/embeddings"), "openai-embeddings", inputs=inputs)
    assert rec.status in (R.BAD_RESPONSE, R.ERROR_EVENT) and rec.error


async def test_embeddings_answered_as_a_stream_fail(aiohttp_server):
    app = sse_app("/v1/embeddings", [[(0, b"data: {}\n\n")]])
    [rec] = await run(await serve(aiohttp_server, app, "/v1/embeddings"), "openai-embeddings")
    assert rec.status == R.BAD_RESPONSE and "does not stream" in rec.error


# --- through the command line, against the built-in mock ---------------------------------------


def _cli_run(tmp_path, *args: str) -> dict:
    from perfbench.commands.main import main

    out = tmp_path / "run"
    assert main([*args, "--no-plots", "--no-live", "--no-telemetry", "--output-dir", str(out), "--store", str(tmp_path / "s.db")]) == 0
    return json.loads((out / "summary.json").read_text())


def test_a_responses_run_against_the_mock(tmp_path):
    summary = _cli_run(tmp_path, "--api", "openai-responses", "-c", "3", "-n", "9", "--max-tokens", "12", "--mock", "ttft_ms=5,itl_ms=1")
    [step] = summary["steps"]
    assert summary["target"]["url"].endswith("/v1/responses") and summary["target"]["api"] == "openai-responses"
    assert step["requests_succeeded"] == 9 and step["output_tokens_per_request"]["mean"] == 12
    assert step["packages_per_request"]["mean"] == 12 and step["ttft_ms"]["count"] == 9


def test_an_embeddings_run_against_the_mock_batches_and_shows_no_streaming_metrics(tmp_path):
    summary = _cli_run(tmp_path, "--api", "openai-embeddings", "--batch-size", "4", "-c", "2", "-n", "6", "--input-tokens", "10",
                       "--mock", "ttft_ms=5")
    [step] = summary["steps"]
    assert step["requests_succeeded"] == 6 and step["input_tokens_per_request"]["mean"] == 40  # 4 inputs of 10 words
    assert step["latency_ms"]["count"] == 6 and step["latency_ms"]["min"] >= 4
    assert step["ttft_ms"]["count"] == 0 and step["ttft_ms"]["mean"] is None and step["itl_ms"]["mean"] is None
    assert step["output_throughput_tok_s"] is None and step["input_throughput_tok_s"] > 0
    lines = [json.loads(line) for line in (tmp_path / "run" / "requests.jsonl").read_text().splitlines()]
    assert all(line["latency_ms"] >= 4 and line["ttft_ms"] is None for line in lines)


def test_options_an_api_cannot_honour_are_refused(tmp_path, capsys):
    from perfbench.commands.main import main

    assert main(["--api", "openai-embeddings", "--max-tokens", "5", "--output-dir", str(tmp_path / "a")]) == 2
    assert main(["--api", "openai-chat", "--batch-size", "3", "--output-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--max-tokens" in err[0] and "--batch-size" in err[1]
