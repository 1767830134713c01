"""Throughput of perfbench's transformers server vs concurrency: proof that batching works.

Starts ``perfbench serve`` on a model (default: the tiny random Llama of the tests, built in a
temporary directory) as a child process, then for each concurrency runs a closed loop of
streaming completions with ``ignore_eos`` and a fixed ``max_tokens`` from a plain aiohttp client,
and prints aggregate output tokens/s. Batching works when concurrency 16 gives several times the
concurrency-1 throughput.

    python benchmarks/local_server.py [--model DIR] [--device cpu] [--concurrency 1,4,16]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: build the tiny test Llama)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests-per-slot", type=int, default=8, help="requests = this x concurrency")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-batch-size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from tests.tiny_llama import build_tiny_llama

            model = str(build_tiny_llama(Path(tmp) / "tiny-llama"))
        with start_local_server(
            model, log_path=Path(tmp) / "server.log", device=args.device, dtype=args.dtype,
            max_batch_size=args.max_batch_size, startup_timeout_s=900,
        ) as server:  # fmt: skip
            url = server.base_url + "/v1/completions"
            base = None
            print(f"{'concurrency':>11} {'requests':>8} {'tokens':>8} {'seconds':>8} {'output tok/s':>12} {'vs c=1':>7}")
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                requests = concurrency * args.requests_per_slot
                tokens, seconds = asyncio.run(closed_loop(url, server.model_name, concurrency, requests, args.max_tokens))
                rate = tokens / seconds
                base = base or rate
                print(f"{concurrency:>11} {requests:>8} {tokens:>8} {seconds:>8.2f} {rate:>12.0f} {rate / base:>6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
