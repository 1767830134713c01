"""The transformers server over real HTTP on 127.0.0.1: SSE shape, usage, lengths, chat template, served name, /metrics, cancellation, errors."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import aiohttp
import pytest

from perfbench.core.errors import ConfigError
from perfbench.servers.generation import BatchGenerator
from perfbench.servers.transformers_server import create_app, default_served_model_name, load_model, resolve_device
from perfbench.telemetry.sampler import TelemetrySampler
from tests.tiny_llama import PROMPT, shared_tiny_llama, suppressed_eos_llama
from usage_errors import assert_one_line_usage_error

MODEL = "tiny-llama"


@pytest.fixture
async def base_url(aiohttp_server, generator):
    server = await aiohttp_server(create_app(generator, MODEL))  # the test server cancels handlers on disconnect, as serve() does
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def suppressed():
    return load_model(str(suppressed_eos_llama()), device="cpu")


@pytest.fixture
async def suppressed_url(aiohttp_server, suppressed):
    """A server for the tiny Llama whose generation_config.json suppresses EOS and byte fragments."""
    gen = BatchGenerator(suppressed.model, suppressed.tokenizer, max_batch_size=16)
    gen.start()
    server = await aiohttp_server(create_app(gen, MODEL))
    yield f"http://127.0.0.1:{server.port}"
    gen.stop()


async def sse_events(response: aiohttp.ClientResponse) -> list[str]:
    """The `data:` payloads of an SSE body, read as raw bytes (no SSE library)."""
    body = (await response.read()).decode()
    assert body.endswith("\n\n")
    events = [block for block in body.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in events)
    return [block[len("data: ") :] for block in events]


async def post(base_url: str, path: str, body: dict) -> tuple[int, list[str] | dict]:
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url + path, json=body, timeout=aiohttp.ClientTimeout(total=30)) as r:
            if r.headers.get("Content-Type", "").startswith("text/event-stream"):
                return r.status, await sse_events(r)
            return r.status, await r.json()


async def test_chat_stream_is_openai_sse_with_usage(base_url):
    status, events = await post(
        base_url,
        "/v1/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12, "ignore_eos": True,
         "temperature": 0, "stream": True, "stream_options": {"include_usage": True}},
    )  # fmt: skip
    assert status == 200 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == MODEL for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = chunks[1:-1]
    assert all(c["choices"][0]["delta"].keys() == {"content"} for c in content)
    assert [c["choices"][0]["finish_reason"] for c in content] == [None] * (len(content) - 1) + ["length"]
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 12
    assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + 12


def stream_body(body: dict) -> dict:
    return {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, **body}


def texts_and_usage(events: list[str]) -> tuple[list[str], list, dict]:
    """(each chunk's text, each chunk's finish_reason, usage) of a completions stream."""
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    usage = chunks[-1]["usage"]
    return [c["choices"][0]["text"] for c in chunks[:-1]], [c["choices"][0]["finish_reason"] for c in chunks[:-1]], usage


async def test_every_request_runs_to_its_length_one_token_per_chunk(suppressed_url):
    """The model's config suppresses EOS and byte fragments: exact lengths, one clean token per chunk, under load."""
    bodies = [stream_body({"prompt": f"{PROMPT} {i}", "max_tokens": 30 + i}) for i in range(12)]  # the file's sampling
    results = await asyncio.gather(*(post(suppressed_url, "/v1/completions", b) for b in bodies))
    for i, (status, events) in enumerate(results):
        texts, finishes, usage = texts_and_usage(events)
        assert status == 200 and usage["completion_tokens"] == len(texts) == 30 + i
        assert all(t and "\ufffd" not in t for t in texts)
        assert finishes == [None] * (len(texts) - 1) + ["length"]
    # Without max_tokens, the file's max_new_tokens; the request's own values win over the file's.
    _, reply = await post(suppressed_url, "/v1/completions", {"prompt": PROMPT})
    assert reply["usage"]["completion_tokens"] == 48 and reply["choices"][0]["finish_reason"] == "length"
    greedy = {"prompt": PROMPT, "max_tokens": 20, "temperature": 0, "repetition_penalty": 1.0}
    _, first = await post(suppressed_url, "/v1/completions", greedy)
    _, again = await post(suppressed_url, "/v1/completions", greedy)
    assert first["choices"][0]["text"] == again["choices"][0]["text"]


def test_request_values_override_the_files_defaults():
    from types import SimpleNamespace

    from perfbench.servers.sampling import GenerationDefaults
    from perfbench.servers.transformers_requests import sampling_params

    file = GenerationDefaults(temperature=0.0, top_k=40, top_p=0.95, repetition_penalty=1.1, max_new_tokens=48)
    gen = SimpleNamespace(defaults=file, max_model_len=1024)
    params = sampling_params({}, 10, gen, api="completions")
    assert (params.temperature, params.top_k, params.top_p, params.repetition_penalty, params.max_tokens) == (0.0, 40, 0.95, 1.1, 48)
    own = {"temperature": 0.5, "top_k": -1, "top_p": 1.0, "repetition_penalty": 1.0, "max_tokens": 7}
    params = sampling_params(own, 10, gen, api="completions")
    assert (params.temperature, params.top_k, params.top_p, params.repetition_penalty, params.max_tokens) == (0.5, 0, 1.0, 1.0, 7)
    assert sampling_params({}, 1000, gen, api="completions").max_tokens == 24  # the room left, when less


async def test_usage_counts_tokens_not_chunks(base_url):
    body = {"prompt": PROMPT, "max_tokens": 24, "ignore_eos": True, "temperature": 0}
    _, reply = await post(base_url, "/v1/completions", body)
    text = reply["choices"][0]["text"]
    # A stop string that starts like the text's middle but never completes: those tokens are held back.
    held = text[4:12] + "\x00"
    status, events = await post(base_url, "/v1/completions", stream_body({**body, "stop": held}))
    texts, finishes, usage = texts_and_usage(events)
    assert status == 200 and "".join(texts) == text and finishes[-1] == "length"
    assert usage["completion_tokens"] == 24 and len(texts) < 24


async def test_completions_stream_matches_non_stream_and_is_exact(base_url):
    body = {"model": MODEL, "prompt": "the model server", "max_tokens": 41, "ignore_eos": True, "temperature": 0}
    status, events = await post(base_url, "/v1/completions", {**body, "stream": True})
    assert status == 200 and events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" and "usage" not in c for c in chunks)  # no include_usage
    streamed = "".join(c["choices"][0]["text"] for c in chunks)
    status, reply = await post(base_url, "/v1/completions", body)
    assert status == 200 and reply["object"] == "text_completion"
    assert reply["choices"][0]["text"] == streamed
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 41


async def test_chat_applies_the_chat_template(base_url, loaded):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "explain the queue"}]
    status, reply = await post(base_url, "/v1/chat/completions", {"messages": messages, "max_tokens": 3})
    assert status == 200 and reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["role"] == "assistant"
    templated = loaded.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert templated.startswith("<s><<SYS>>") and "[INST]" in templated
    expected = len(loaded.tokenizer.encode(templated, add_special_tokens=False))
    assert reply["usage"]["prompt_tokens"] == expected
    assert expected > len(loaded.tokenizer.encode("be brief explain the queue")) + 5


async def test_stop_strings_and_seed_over_http(base_url):
    body = {"prompt": "history of science", "max_tokens": 30, "ignore_eos": True, "temperature": 0.8, "seed": 3}
    _, first = await post(base_url, "/v1/completions", body)
    _, again = await post(base_url, "/v1/completions", body)
    text = first["choices"][0]["text"]
    assert again["choices"][0]["text"] == text
    stop = text[8:11]
    _, cut = await post(base_url, "/v1/completions", {**body, "stop": stop})
    assert cut["choices"][0]["text"] == text[: text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"


async def test_models_and_health(base_url):
    async with aiohttp.ClientSession() as session:
        async with session.get(base_url + "/health") as r:
            assert r.status == 200
        async with session.get(base_url + "/v1/models") as r:
            models = await r.json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    assert models["data"][0]["max_model_len"] == 1024


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"prompt": "hi", "max_tokens": 5000}, "maximum context length"),
        ({"prompt": "hi", "n": 2}, "'n'"),
        ({"prompt": 42}, "'prompt'"),
        ({"prompt": "hi", "temperature": "hot"}, "'temperature'"),
    ],
)
async def test_bad_requests_get_400(base_url, body, fragment):
    status, reply = await post(base_url, "/v1/completions", body)
    assert status == 400 and fragment in reply["error"]["message"]


async def test_client_disconnect_cancels_and_frees_the_slot(base_url, generator):
    body = {"prompt": "a long one", "max_tokens": 1000, "ignore_eos": True, "stream": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(base_url + "/v1/completions", json=body) as r:
            await r.content.readuntil(b"\n\n")
            assert generator.running == 1
    deadline = time.monotonic() + 10
    while generator.running and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert generator.running == 0


async def test_concurrent_requests_are_batched(base_url, generator):
    body = {"prompt": "batch", "max_tokens": 30, "ignore_eos": True, "stream": True}
    results = await asyncio.gather(*(post(base_url, "/v1/completions", body) for _ in range(8)))
    assert all(status == 200 and events[-1] == "[DONE]" for status, events in results)
    assert generator.max_rows_seen >= 4
    assert generator.decode_steps < 8 * 29 / 3


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/completions", {"prompt": "hi", "max_tokens": 2}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}),
        ("/v1/responses", {"input": "hi", "max_output_tokens": 2}),
        ("/v1/embeddings", {"input": "hi"}),
    ],
)
async def test_only_the_served_model_is_answered(base_url, path, body):
    status, reply = await post(base_url, path, {**body, "model": "gpt-4"})
    assert status == 404
    assert reply == {"error": {"message": "The model `gpt-4` does not exist.", "type": "NotFoundError", "param": None, "code": 404}}
    assert (await post(base_url, path, {**body, "model": MODEL}))[0] == 200
    assert (await post(base_url, path, body))[0] == 200  # no model: the one served, as vLLM does


def test_served_name_defaults_to_the_directory_name(tmp_path):
    (tmp_path / "my-llama").mkdir()
    assert default_served_model_name(str(tmp_path / "my-llama") + "/") == "my-llama"
    assert default_served_model_name("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"  # a cache name as given


async def test_telemetry_reads_the_vllm_metrics(aiohttp_server, loaded):
    gen = BatchGenerator(loaded.model, loaded.tokenizer, max_batch_size=4)
    gen.start()
    try:
        server = await aiohttp_server(create_app(gen, MODEL))
        base = f"http://127.0.0.1:{server.port}"
        body = {"prompt": PROMPT, "max_tokens": 100, "ignore_eos": True}
        async with TelemetrySampler(run_start_ns=time.perf_counter_ns(), interval_s=0.02, gpu=None, metrics_url=base + "/metrics") as sampler:
            results = await asyncio.gather(*(post(base, "/v1/completions", body) for _ in range(6)))
        await asyncio.sleep(0)
    finally:
        gen.stop()
    label = f'{{model_name="{MODEL}"}}'
    scrapes = [s for s in sampler.samples if s["source"] == "prometheus"]
    names = ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc", "prompt_tokens_total", "generation_tokens_total")
    assert all(f"vllm:{n}{label}" in scrape for scrape in scrapes for n in names)
    assert max(s[f"vllm:num_requests_running{label}"] for s in scrapes) >= 2
    assert max(s[f"vllm:num_requests_waiting{label}"] for s in scrapes) >= 1  # 6 requests, 4 slots
    assert 0 < max(s[f"vllm:kv_cache_usage_perc{label}"] for s in scrapes) < 1
    last = scrapes[-1]  # the closing scrape, after every request ended
    assert last[f"vllm:generation_tokens_total{label}"] == 6 * 100
    assert last[f"vllm:prompt_tokens_total{label}"] == sum(reply["usage"]["prompt_tokens"] for _, reply in results)
    assert last[f"vllm:num_requests_running{label}"] == 0
    summary = sampler.summary(output_tokens=600)["server_metrics"]
    assert f"vllm:num_requests_running{label}" in summary and f"vllm:kv_cache_usage_perc{label}" in summary


def test_missing_model_is_a_one_line_config_error(tmp_path):
    for name in (str(tmp_path / "no-such-model"), "nobody-perfbench/no-such-model"):
        with pytest.raises(ConfigError) as err:
            load_model(name, device="cpu")
        assert "\n" not in str(err.value) and name in str(err.value)


def test_device_selection():
    import torch

    if torch.cuda.is_available():
        assert resolve_device("auto").startswith("cuda")
        return
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="not one of"):
        resolve_device("tpu")


def test_start_local_server_serves_and_stops(tmp_path):
    """`perfbench serve` as a child process: ready, answers, and is gone afterwards."""
    from perfbench.servers.local import start_local_server

    progress: list[str] = []
    with start_local_server(
        str(shared_tiny_llama()), log_path=tmp_path / "server.log", device="cpu", startup_timeout_s=120,
        on_progress=progress.append, served_model_name="tiny",
    ) as server:  # fmt: skip
        assert server.model_name == "tiny"  # --served-model-name, read back from /v1/models
        pid = server._process.pid
        request = urllib.request.Request(
            server.base_url + "/v1/completions",
            data=json.dumps({"model": server.model_name, "prompt": "hi", "max_tokens": 5, "ignore_eos": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert json.load(reply)["usage"]["completion_tokens"] == 5
    assert server._process is None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
    assert "loaded" in (tmp_path / "server.log").read_text()


def test_perfbench_end_to_end_against_the_local_server(tmp_path):
    """`perfbench --model DIR` (no --url) starts this server, measures it, and stops it."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "perfbench", "--model", str(shared_tiny_llama()), "--api", "openai-completions",
        "--concurrency", "4", "--number", "8", "--max-tokens", "16", "--ignore-eos", "--output-dir", str(out),
    ]  # fmt: skip
    subprocess.run(command, cwd=os.getcwd(), capture_output=True, timeout=120)
    # The exit code belongs to the CLI's later stages (reports); what this server owes is below.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"]["model"] == "model"  # the served name: the directory's
    step = summary["steps"][0]
    assert step["requests_succeeded"] == 8 and step["requests_failed"] == 0
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert [r["output_tokens"] for r in lines if not r["warmup"]] == [16] * 8
    assert all(r["token_source"] == "usage" for r in lines)
    assert "loaded" in (out / "server.log").read_text()


def test_serve_usage_errors_are_one_line_exit_2():
    assert_one_line_usage_error("serve", expect="required: --model")
    assert_one_line_usage_error("serve", "--model", "m", "--dtype", "int3", expect="--dtype: invalid choice")
