"""Throughput of perfbench's transformers server vs concurrency: proof that batching works.

Starts ``perfbench serve`` on a model (default: the tiny random Llama of the tests, built in a
temporary directory) as a child process, then for each concurrency runs a closed loop of
streaming completions with ``ignore_eos`` and a fixed ``max_tokens`` from a plain aiohttp client,
and prints aggregate output tokens/s. Batching works when concurrency 16 gives several times the
concurrency-1 throughput.

    python benchmarks/local_server.py [--model DIR] [--device cpu] [--concurrency 1,4,16]
    # on a GPU: a random ~1B Llama (TinyLlama's shape, built locally), beside plain batched generate()
    python benchmarks/local_server.py --random-1b --device cuda --concurrency 1,8,32 --compare-generate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perfbench.servers.local import start_local_server  # noqa: E402


async def one_request(session: aiohttp.ClientSession, url: str, model: str, max_tokens: int) -> int:
    """One streaming completion; returns the completion tokens reported in usage."""
    body = {
        "model": model, "prompt": "benchmark the throughput of the server", "max_tokens": max_tokens,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    tokens = 0
    async with session.post(url, json=body) as response:
        response.raise_for_status()
        async for line in response.content:
            if line.startswith(b"data: {") and b'"usage"' in line:
                tokens = json.loads(line[6:])["usage"]["completion_tokens"]
    return tokens


async def closed_loop(url: str, model: str, concurrency: int, requests: int, max_tokens: int) -> tuple[int, float]:
    """``requests`` requests, ``concurrency`` at a time; returns (output tokens, seconds)."""
    remaining = requests
    total_tokens = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, total_tokens
        while remaining > 0:
            remaining -= 1
            tokens = await one_request(session, url, model, max_tokens)
            total_tokens += tokens  # not `+= await ...`: that reads the total before awaiting

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        await one_request(session, url, model, 4)  # warm-up: first forward passes, connection
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return total_tokens, time.perf_counter() - start


def build_random_1b(directory: Path) -> Path:
    """A randomly initialised Llama of TinyLlama-1.1B's shape (vocabulary: the tiny tokenizer's), in bf16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tests.tiny_models import build_tiny_tokenizer

    build_tiny_tokenizer(directory)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
        num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(str(directory))
    return directory


def generate_baseline(model_dir: str, device: str, dtype: str, concurrencies: list[int], max_tokens: int) -> None:
    """Plain ``model.generate`` on a static batch of ``c`` prompts: the no-server reference."""
    import torch

    from perfbench.servers.transformers_server import load_model

    loaded = load_model(model_dir, device=device, dtype=dtype)
    tokenizer = loaded.tokenizer
    tokenizer.padding_side = "left"
    print(f"{'generate() batch':>16} {'tokens':>8} {'seconds':>8} {'output tok/s':>12}")
    for concurrency in concurrencies:
        batch = tokenizer(["benchmark the throughput of the server"] * concurrency, return_tensors="pt").to(loaded.device)
        for warm_up in (True, False):
            start = time.perf_counter()
            with torch.inference_mode():
                out = loaded.model.generate(
                    **batch, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip
            if loaded.device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        tokens = (out.shape[1] - batch["input_ids"].shape[1]) * concurrency
        print(f"{concurrency:>16} {tokens:>8} {seconds:>8.2f} {tokens / seconds:>12.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: build the tiny test Llama)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests-per-slot", type=int, default=8, help="requests = this x concurrency")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--random-1b", action="store_true", help="build and serve a random ~1B Llama (for GPUs)")
    parser.add_argument("--compare-generate", action="store_true", help="also time plain batched model.generate()")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.random_1b:
            model = str(build_random_1b(Path(tmp) / "random-1b"))
        elif model is None:
            from tests.tiny_llama import build_tiny_llama

            model = str(build_tiny_llama(Path(tmp) / "tiny-llama"))
        with start_local_server(
            model, log_path=Path(tmp) / "server.log", device=args.device, dtype=args.dtype,
            max_batch_size=args.max_batch_size, startup_timeout_s=900,
        ) as server:  # fmt: skip
            url = server.base_url + "/v1/completions"
            base = None
            print(f"{'concurrency':>11} {'requests':>8} {'tokens':>8} {'seconds':>8} {'output tok/s':>12} {'vs c=1':>7}")
            for concurrency in concurrencies:
                requests = concurrency * args.requests_per_slot
                tokens, seconds = asyncio.run(closed_loop(url, server.model_name, concurrency, requests, args.max_tokens))
                rate = tokens / seconds
                base = base or rate
                print(f"{concurrency:>11} {requests:>8} {tokens:>8} {seconds:>8.2f} {rate:>12.0f} {rate / base:>6.1f}x")
        if args.compare_generate:
            generate_baseline(model, args.device, args.dtype, concurrencies, args.max_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
