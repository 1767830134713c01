"""How exact is perfbench under heavy load? Its numbers against a server's own write stamps.

The server here runs in its own process and writes ONE SSE EVENT PER WRITE, as real inference
servers do (not a whole response per write): each request's first token is due ``--ttft-ms``
after the request arrived, then one token every ``--itl-ms``, at absolute deadlines. It stamps
when each request arrived and when each event was written (``time.perf_counter_ns``: the same
monotonic clock in every process on Linux), and dumps the stamps when it is stopped.

perfbench's engine runs in this process against it, closed loop. Reported, per configuration:
the client's mean latency, TTFT, TPOT, ITL and output throughput, the same from the server's
stamps (latency = last write - arrival, TTFT = first write - arrival, throughput = tokens written
/ (last write - first arrival)), and the relative error. The client's t0 is its scheduled send
time, so its own send path counts against it, as it should.

``--compare REV`` also runs the engine of a git revision (``git show REV:perfbench/engine/engine.py``)
in alternating rounds, so a change can be judged by ratios taken in one run on a noisy machine.

Run: python benchmarks/load_accuracy.py [--concurrency 256 --itl-ms 5 --tokens 256 --requests 1024] [--rounds 3] [--compare REV]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

from perfbench.engine import engine as engine_now
from perfbench.engine import event_loop
from perfbench.apis import get_adapter
from perfbench.metrics import summarize_step
from perfbench.workload.prompts import Prompt

# --- the stamping server ------------------------------------------------------------------------


async def _serve(port: int, ttft_ns: int, itl_ns: int, stamps: list[list[int]]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received = time.perf_counter_ns()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if not head.startswith(b"POST"):  # perfbench's pre-connect GET: answer at once, keep the connection
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    continue
                body = json.loads(await reader.readexactly(length))
                tokens = int(body.get("max_tokens") or 16)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                times = [received]
                for k in range(tokens):
                    due = received + ttft_ns + k * itl_ns
                    delay = due - time.perf_counter_ns()
                    if delay > 0:
                        await asyncio.sleep(delay / 1e9)
                    event = b'data: {"choices":[{"index":0,"delta":{"content":" w"},"finish_reason":null}]}\n\n'
                    if k == tokens - 1:
                        usage = json.dumps({"prompt_tokens": 2, "completion_tokens": tokens}).encode()
                        event = b'data: {"choices":[{"index":0,"delta":{"content":" w"},"finish_reason":"length"}],"usage":' + usage + b"}\n\ndata: [DONE]\n\n"
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    times.append(time.perf_counter_ns())  # when the event's bytes were handed to the socket
                writer.write(b"0\r\n\r\n")
                stamps.append(times)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def serve_main(port: int, ttft_ms: float, itl_ms: float, stamps_path: Path) -> None:
    stamps: list[list[int]] = []

    def dump(*_: object) -> None:
        stamps_path.write_text(json.dumps(stamps))
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    try:
        import uvloop  # the server should not be the bottleneck

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_serve(port, round(ttft_ms * 1e6), round(itl_ms * 1e6), stamps))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StampingServer:
    """The server above in its own process; ``stop()`` returns its stamps."""

    def __init__(self, ttft_ms: float, itl_ms: float) -> None:
        self.port = _free_port()
        self._stamps = Path(tempfile.mkstemp(suffix=".json")[1])
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--stamps", str(self._stamps)]
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the stamping server did not start")

    def stop(self) -> list[list[int]]:
        self._proc.send_signal(signal.SIGTERM)
        self._proc.wait(10)
        stamps = json.loads(self._stamps.read_text() or "[]")
        self._stamps.unlink()
        return stamps


# --- one measurement --------------------------------------------------------------------------------


def _engine_of(revision: str) -> ModuleType:
    source = subprocess.run(["git", "show", f"{revision}:perfbench/engine/engine.py"], capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "engine_head.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("engine_head", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["engine_head"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


async def _client(engine_module: ModuleType, url: str, concurrency: int, requests: int, tokens: int) -> dict[str, float | None]:
    api = get_adapter("openai-chat")
    body = api.build_body([Prompt("hello there", None, None)], model="m", max_tokens=tokens, extra={})
    records: list = []
    async with engine_module.make_session(concurrency, 600, 30) as session:
        target = engine_module.Target(url, api, {})
        engine = engine_module.Engine(session, target, [engine_module.PreparedRequest(body, 2)], records.append)
        warm = {"preconnect": concurrency} if "preconnect" in engine_module.StepPlan.__dataclass_fields__ else {}
        plan = engine_module.StepPlan(step=0, concurrency=concurrency, number=requests, duration_s=None, **warm)
        await engine.run_step(plan)
    step = summarize_step(records, concurrency=concurrency, rate_req_s=None, requests_expected=requests)
    assert step.requests_failed == 0, step.failure_reasons
    print(f"  client queue (scheduled -> send started) mean {step.queue_ms.mean:.2f} ms, p99 {step.queue_ms.p99:.2f} ms", flush=True)
    return {"latency_ms": step.latency_ms.mean, "latency_p99_ms": step.latency_ms.p99, "ttft_ms": step.ttft_ms.mean,
            "tpot_ms": step.tpot_ms.mean, "itl_ms": step.itl_ms.mean, "output_tok_s": step.output_throughput_tok_s,
            "output_wire_tok_s": getattr(step, "output_throughput_wire_tok_s", None) or step.output_throughput_tok_s}


def _server_view(stamps: list[list[int]]) -> dict[str, float]:
    latency = np.array([(t[-1] - t[0]) / 1e6 for t in stamps])
    ttft = np.array([(t[1] - t[0]) / 1e6 for t in stamps])
    tpot = np.array([(t[-1] - t[1]) / 1e6 / (len(t) - 2) for t in stamps if len(t) > 2])
    tokens = sum(len(t) - 1 for t in stamps)
    span_s = (max(t[-1] for t in stamps) - min(t[0] for t in stamps)) / 1e9
    return {"latency_ms": float(latency.mean()), "latency_p99_ms": float(np.percentile(latency, 99)), "ttft_ms": float(ttft.mean()),
            "tpot_ms": float(tpot.mean()), "itl_ms": float(tpot.mean()), "output_tok_s": tokens / span_s,
            "output_wire_tok_s": tokens / span_s}


def measure(engine_module: ModuleType, args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    server = StampingServer(args.ttft_ms, args.itl_ms)
    try:
        client = event_loop.run(_client(engine_module, f"http://127.0.0.1:{server.port}/v1/chat/completions", args.concurrency, args.requests, args.tokens))
    finally:
        stamps = server.stop()
    truth = _server_view(stamps)
    return {k: (client[k], truth[k], (client[k] / truth[k] - 1) * 100) for k in truth}  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stamps", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", metavar="REV", help="alternate with the engine of this git revision")
    args = parser.parse_args()
    if args.serve is not None:
        serve_main(args.serve, args.ttft_ms, args.itl_ms, args.stamps)
        return
    engines = {"now": engine_now}
    if args.compare:
        engines[args.compare] = _engine_of(args.compare)
    print(f"client loop: {event_loop.LOOP_NAME}; server: one event per write, ttft {args.ttft_ms} ms, itl {args.itl_ms} ms, {args.tokens} tokens; "
          f"client: concurrency {args.concurrency}, {args.requests} requests; {args.rounds} rounds")
    results: dict[str, list[dict[str, tuple[float, float, float]]]] = {name: [] for name in engines}
    for round_index in range(args.rounds):
        for name, module in engines.items():  # alternated, so both see the same machine
            results[name].append(measure(module, args))
            row = results[name][-1]
            print(f"round {round_index + 1} {name:>8}: " + "  ".join(f"{k} {v[2]:+.2f}%" for k, v in row.items()), flush=True)
    for name, rows in results.items():
        print(f"\n{name}: median error over {len(rows)} rounds (client vs server), and spread (min..max)")
        for key in rows[0]:
            errors = [r[key][2] for r in rows]
            client, server = np.median([r[key][0] for r in rows]), np.median([r[key][1] for r in rows])
            print(f"  {key:<15} client {client:10.3f}  server {server:10.3f}  diff {client - server:+9.3f}  "
                  f"error {np.median(errors):+6.2f}%  ({min(errors):+.2f} .. {max(errors):+.2f})")


if __name__ == "__main__":
    main()
