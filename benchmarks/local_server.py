"""perfbench's transformers server: output tok/s and TTFT beside `transformers serve --continuous-batching`, and RSS over rounds.

The client is perfbench itself (a subprocess per measurement, as a user runs it), on completions with a
fixed ``--max-tokens`` and synthetic prompts of 64 tokens exactly (``--tokenizer``); no ``--ignore-eos``,
which ``transformers serve`` refuses (HTTP 422).
The model is ``--model DIR`` or a random Llama built here: ``--size tiny`` (the tests' 2-layer one) or
``--size 23m`` (8 layers, 512 wide); a built model's generation_config.json suppresses EOS, BOS and
padding, so a server that honours it answers exactly ``--max-tokens`` (each row also gives the mean
output tokens per request, which shows it).

Speed (default): both servers are started once; then each round runs every concurrency against each
server, the order alternating (A B, B A, ...), so drift on a shared machine hits both alike. Reported per
concurrency: best and median output tok/s of the rounds, the median TTFT p50, and the ratio of medians.
``transformers serve`` needs FastAPI and Uvicorn (``pip install 'transformers[serving]'``, or a folder
of them given with ``--serving-path``); without them only perfbench's server is measured.

Memory (``--memory``): ``--rounds`` rounds (default 5) of ``--number`` requests (default 200) against
perfbench's server; its RSS (/proc) right after each round and after 1 s idle, and the spread of rounds 2..N.

    python benchmarks/local_server.py --size 23m --concurrency 1,4,16,32 --rounds 3 --serving-path /tmp/tf-serving
    python benchmarks/local_server.py --size 23m --memory --concurrency 32
    # on a GPU: a random ~1B Llama, beside plain batched model.generate()
    python benchmarks/local_server.py --size 1b --device cuda --concurrency 1,8,32 --compare-generate
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perfbench.servers.local import free_port, log_tail, start_local_server  # noqa: E402

# name -> (hidden, intermediate, layers, heads, kv heads, context)
SIZES = {"tiny": (64, 128, 2, 4, 2, 1024), "23m": (512, 1376, 8, 8, 4, 2048), "1b": (2048, 5632, 22, 32, 4, 2048)}


def build_model(directory: Path, size: str) -> Path:
    """A random Llama of ``size`` with the tests' tiny tokenizer; its generation config suppresses EOS, BOS and padding."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tests.tiny_models import build_tiny_tokenizer

    if (directory / "config.json").is_file():
        return directory
    build_tiny_tokenizer(directory)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    hidden, intermediate, layers, heads, kv_heads, context = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=context,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if size == "1b":
        model = model.to(torch.bfloat16)
    model.generation_config.suppress_tokens = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id]
    model.save_pretrained(str(directory))
    return directory


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


@contextmanager
def transformers_serve(model: str, serving_path: str | None, log_path: Path) -> Iterator[tuple[str, str]]:
    """Run ``transformers serve --continuous-batching`` on the CPU; yields (base URL, the model name it lists)."""
    port = free_port()
    env = dict(os.environ)
    if serving_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (serving_path, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", "--continuous-batching",
               "--device", "cpu", "--host", "127.0.0.1", "--port", str(port), model]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"transformers serve exited with code {process.returncode}:\n{log_tail(log_path)}")
            try:
                with urllib.request.urlopen(base + "/v1/models", timeout=2) as reply:
                    name = json.load(reply)["data"][0]["id"]
                break
            except (OSError, ValueError, KeyError, IndexError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"transformers serve not ready after 300 s:\n{log_tail(log_path)}") from None
                time.sleep(0.5)
        yield base, name
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def warm_up(base: str, model: str) -> float:
    """One streaming request read to its end, before any timing; returns its seconds.

    transformers serve's first request on the 23M model takes 25-38 s. Its stream sometimes carries the
    text of a short answer in no chunk at all (only the final one, empty, with usage), which perfbench's
    pre-flight refuses as no_output; so the runs skip the pre-flight and this request warms up instead.
    """
    body = json.dumps({"model": model, "prompt": "warm up the server", "max_tokens": 16, "stream": True}).encode()
    request = urllib.request.Request(base + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as reply:
        reply.read()
    return time.perf_counter() - start


def serving_available(serving_path: str | None) -> bool:
    env = dict(os.environ, PYTHONPATH=serving_path or "")
    probe = subprocess.run([sys.executable, "-c", "import fastapi, uvicorn, openai"], env=env, capture_output=True)
    return probe.returncode == 0


def perfbench_run(base: str, model: str, tokenizer: str, concurrency: int, number: int, max_tokens: int, out: Path) -> dict:
    """One perfbench run (a subprocess, as a user runs it); returns its step's summary."""
    command = [
        sys.executable, "-m", "perfbench", "--url", base + "/v1/completions", "--model", model, "--tokenizer", tokenizer,
        "--input-tokens", "64", "--concurrency", str(concurrency), "--number", str(number), "--max-tokens", str(max_tokens),
        "--warmup", str(min(concurrency, 4)), "--no-preflight", "--no-live", "--no-plots", "--no-telemetry", "--output-dir", str(out),
    ]  # fmt: skip
    env = dict(os.environ, XDG_DATA_HOME=str(out / "history"))  # keep these runs out of the user's run history
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    summary = out / "summary.json"
    steps = json.loads(summary.read_text())["steps"] if summary.is_file() else []
    if not steps:
        raise RuntimeError(f"perfbench against {base} failed (exit {done.returncode}): {(done.stderr or done.stdout)[-2000:]}")
    return steps[0]


def speed(args: argparse.Namespace, model: str, tmp: Path) -> None:
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    with start_local_server(
        model, log_path=tmp / "perfbench-server.log", device=args.device, dtype=args.dtype, startup_timeout_s=900
    ) as ours:  # fmt: skip
        servers = {"perfbench": (ours.base_url, ours.model_name)}
        theirs = None
        if args.device == "cpu" and serving_available(args.serving_path):
            theirs = transformers_serve(model, args.serving_path, tmp / "transformers-serve.log")
            servers["transformers"] = theirs.__enter__()
        else:
            print("transformers serve: not measured (needs fastapi, uvicorn and openai: pip install 'transformers[serving]', or --serving-path)")
        try:
            for name, (base, served) in servers.items():
                print(f"{name}: first request (not timed) {warm_up(base, served):.1f} s", flush=True)
            results: dict[tuple[str, int], list[dict]] = {}
            for round_index in range(args.rounds):
                order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
                for concurrency in concurrencies:
                    for name in order:
                        base, served = servers[name]
                        out = tmp / f"run-{name}-{concurrency}-{round_index}"
                        step = perfbench_run(base, served, model, concurrency, concurrency * args.requests_per_slot, args.max_tokens, out)
                        results.setdefault((name, concurrency), []).append(step)
                        failed = f"  {step['requests_failed']} failed: {step['failure_reasons']}" if step["requests_failed"] else ""
                        print(f"round {round_index + 1} c={concurrency:<3} {name:<12} {step['output_throughput_tok_s']:8.0f} tok/s  "
                              f"TTFT p50 {step['ttft_ms']['p50']:7.1f} ms{failed}", flush=True)  # fmt: skip
        finally:
            if theirs is not None:
                theirs.__exit__(None, None, None)
    print(f"\nload average {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} / {os.getloadavg()[2]:.2f} (1/5/15 min), {os.cpu_count()} cores")
    print(f"{'concurrency':>11} {'server':<12} {'best tok/s':>10} {'median':>8} {'spread':>13} {'TTFT p50 ms':>11} {'tokens/req':>10}")
    for concurrency in concurrencies:
        medians = {}
        for name in servers:
            steps = results[(name, concurrency)]
            rates = [s["output_throughput_tok_s"] for s in steps]
            medians[name] = statistics.median(rates)
            ttft = statistics.median(s["ttft_ms"]["p50"] for s in steps)
            tokens = statistics.mean(s["output_tokens_per_request"]["mean"] for s in steps)
            print(f"{concurrency:>11} {name:<12} {max(rates):>10.0f} {medians[name]:>8.0f} {min(rates):>6.0f}..{max(rates):<6.0f}"
                  f" {ttft:>11.1f} {tokens:>10.1f}")  # fmt: skip
        if len(medians) == 2:
            print(f"{'':>11} {'ratio':<12} {medians['perfbench'] / medians['transformers']:>19.2f}x (medians)")


def memory(args: argparse.Namespace, model: str, tmp: Path) -> None:
    concurrency = int(args.concurrency.split(",")[-1])
    with start_local_server(model, log_path=tmp / "perfbench-server.log", device=args.device, dtype=args.dtype) as server:
        pid = server._process.pid
        print(f"after start: {rss_mb(pid):.1f} MB; {args.rounds} rounds of {args.number} requests at concurrency {concurrency}")
        idle = []
        for round_index in range(args.rounds):
            step = perfbench_run(server.base_url, server.model_name, model, concurrency, args.number, args.max_tokens,
                                 tmp / f"memory-{round_index}")  # fmt: skip
            busy = rss_mb(pid)
            time.sleep(1.0)
            idle.append(rss_mb(pid))
            print(f"round {round_index + 1}: RSS {busy:.1f} MB right after, {idle[-1]:.1f} MB after 1 s idle "
                  f"({step['output_throughput_tok_s']:.0f} tok/s)", flush=True)  # fmt: skip
    later = idle[1:]
    if later:
        spread = (max(later) - min(later)) / min(later) * 100
        print(f"rounds 2..{args.rounds} after idle: {min(later):.1f} .. {max(later):.1f} MB, spread {spread:.1f} % (target 5 %)")


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
        for _ in range(2):  # the first is a warm-up
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
    parser.add_argument("--model", help="model directory (default: build one of --size)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny", help="the random Llama to build (default: tiny)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--concurrency", default="1,4,16,32")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default: 3 for speed, 5 for --memory)")
    parser.add_argument("--requests-per-slot", type=int, default=8, help="speed: requests = this x concurrency")
    parser.add_argument("--number", type=int, default=200, help="--memory: requests per round")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--serving-path", help="a folder holding fastapi, uvicorn and openai for transformers serve")
    parser.add_argument("--memory", action="store_true", help="RSS over rounds instead of speed")
    parser.add_argument("--compare-generate", action="store_true", help="also time plain batched model.generate()")
    args = parser.parse_args()
    args.rounds = args.rounds or (5 if args.memory else 3)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = args.model or str(build_model(tmp / f"llama-{args.size}", args.size))
        (memory if args.memory else speed)(args, model, tmp)
        if args.compare_generate:
            generate_baseline(model, args.device, args.dtype, [int(c) for c in args.concurrency.split(",")], args.max_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
