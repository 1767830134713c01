"""How exact is perfbench under load, and what does it cost? Measured through the real run path.

Three processes per measurement, on this machine:

- a **stamping server** (``--serve``): OpenAI chat streaming that writes ONE SSE EVENT PER WRITE, as
  real inference servers do. Each request's first token is due ``--ttft-ms`` after it arrived, then
  one token every ``--itl-ms``, at absolute deadlines. It stamps each request's arrival and each
  event's write (``time.perf_counter_ns``: one monotonic clock for every process on Linux) and
  dumps the stamps when stopped. Its stamps are the truth.
- the **client under test**: the ``perfbench`` command itself (``--url ... -c C -n N``, files,
  telemetry and the live display on: ``TTY_COMPATIBLE=1`` makes rich draw it into a pipe), whose
  numbers are read back from its requests.jsonl; optionally also the ``perfbench`` of another
  source tree (``--baseline-tree DIR``, e.g. a checkout of an earlier commit), alternated with it.
- a **bare reference client** (``--bare``): plain asyncio streams, one keep-alive connection per
  slot, per-read stamps, its own chunk and event splitting, nothing else. What it adds is the least
  any Python client pays on this machine.

Each client runs closed loop at ``--concurrency`` for ``--requests`` requests of ``--tokens`` tokens
against a fresh server; rounds alternate the clients' order. Errors are the client's mean minus
the server's mean (TTFT in ms; latency, TPOT and output throughput in %), per round; the summary
gives the median and the range over rounds.

``--cpu`` measures the client's CPU instead (user + system seconds of the whole command, read
from the kernel when it exits) against a server with no delays: two request counts at one token
and at ``--tokens`` tokens, so start-up and the finishing stages cancel out and what is left is
the cost per request (send, read, record, file line) and per package.

Run:
    python benchmarks/accuracy.py --concurrency 256 --itl-ms 5 --tokens 256 --requests 1024 --rounds 3
    python benchmarks/accuracy.py --concurrency 1024 --itl-ms 20 --tokens 128 --requests 2048 --rounds 3
    python benchmarks/accuracy.py --concurrency 32 --itl-ms 5 --tokens 64 --requests 512 --rounds 5
    python benchmarks/accuracy.py --cpu --tokens 64 --baseline-tree /tmp/perfbench-before
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
EVENT = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" w"},"finish_reason":null}]}\n\n'


# --- the stamping server -------------------------------------------------------------------------


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
                body = await reader.readexactly(length) if length else b"{}"
                if not head.startswith(b"POST"):  # a pre-connect GET: answered at once, connection kept
                    writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    continue
                tokens = int(json.loads(body).get("max_tokens") or 16)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                times = [received]
                for k in range(tokens):
                    due = received + ttft_ns + k * itl_ns
                    delay = due - time.perf_counter_ns()
                    if delay > 0:
                        await asyncio.sleep(delay / 1e9)
                    event = EVENT
                    if k == tokens - 1:
                        usage = b'{"prompt_tokens":2,"completion_tokens":%d}' % tokens
                        event = EVENT.replace(b'"finish_reason":null}]}', b'"finish_reason":"length"}],"usage":' + usage + b"}") + b"data: [DONE]\n\n"
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    times.append(time.perf_counter_ns())  # when the event's bytes went to the socket
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
    """The server above in its own process; ``stop()`` returns its stamps, one list per request."""

    def __init__(self, ttft_ms: float, itl_ms: float, scratch: Path) -> None:
        self.port = _free_port()
        self._stamps = scratch / f"stamps-{self.port}.json"
        self._proc = subprocess.Popen([sys.executable, str(HERE), "--serve", str(self.port), "--ttft-ms", str(ttft_ms),
                                       "--itl-ms", str(itl_ms), "--stamps", str(self._stamps)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self._proc.kill()
        raise SystemExit("the stamping server did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def stop(self) -> list[list[int]]:
        self._proc.send_signal(signal.SIGTERM)  # the server this script started, by its handle
        self._proc.wait(20)
        return json.loads(self._stamps.read_text() or "[]")


# --- the bare reference client -------------------------------------------------------------------


async def _bare(port: int, concurrency: int, requests: int, tokens: int) -> list[list[float]]:
    body = json.dumps({"model": "m", "stream": True, "max_tokens": tokens,
                       "messages": [{"role": "user", "content": "hello there"}]}).encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    clock = time.perf_counter_ns
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    results: list[list[float]] = []
    claimed = 0
    start = clock()

    async def slot(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal claimed
        due = start
        while claimed < requests:
            claimed += 1
            t0 = due
            writer.write(request)
            package_times: list[int] = []
            seen = b""
            while True:
                data = await reader.read(65536)
                now = clock()
                if not data:
                    raise ConnectionError("closed")
                seen = seen[-8:] + data
                package_times += [now] * data.count(b"data: {")  # every event of this server carries a token
                if b"0\r\n\r\n" in seen:
                    break
            results.append([t0, package_times[0], package_times[-1], len(package_times)])
            due = package_times[-1]

    await asyncio.gather(*(slot(r, w) for r, w in connections))
    for _, writer in connections:
        writer.close()
    return results


def bare_main(port: int, concurrency: int, requests: int, tokens: int, out: Path) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.write_text(json.dumps(asyncio.run(_bare(port, concurrency, requests, tokens))))


# --- one measurement -----------------------------------------------------------------------------


def _run_child(command: list[str], env: dict[str, str] | None = None) -> float:
    """Run a client to its end; its CPU seconds (user + system), from the kernel."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=1800)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _perfbench(tree: Path, url: str, args: argparse.Namespace, requests: int, tokens: int, out: Path) -> tuple[list[list[float]], float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "TTY_COMPATIBLE": "1", "COLUMNS": "100",
           "XDG_DATA_HOME": str(out.parent / "xdg")}  # its history store stays out of the user's home
    command = [sys.executable, "-m", "perfbench", "--url", url, "--model", "m", "-c", str(args.concurrency),
               "-n", str(requests), "--max-tokens", str(tokens), "--no-preflight", "--output-dir", str(out)]
    cpu_s = _run_child(command, env)
    rows = []
    for line in (out / "requests.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["status"] != "ok":
            raise SystemExit(f"perfbench: a request failed: {r['status']} {r.get('error')}")
        t0 = r["scheduled_s"] * 1e9
        times = r["package_times_ms"]
        rows.append([t0, t0 + times[0] * 1e6, t0 + times[-1] * 1e6, r["output_tokens"]])
    return rows, cpu_s


def _bare_client(url: str, args: argparse.Namespace, requests: int, tokens: int, out: Path) -> tuple[list[list[float]], float]:
    port = url.split(":")[2].split("/")[0]
    cpu_s = _run_child([sys.executable, str(HERE), "--bare", port, "--concurrency", str(args.concurrency),
                        "--requests", str(requests), "--tokens", str(tokens), "--out", str(out)])
    return json.loads(out.read_text()), cpu_s


def _view(rows: list[list[float]]) -> dict[str, float]:
    """Means of (t0, t_first, t_last, tokens) rows: TTFT, latency, TPOT (ms), output tok/s."""
    a = np.array(rows, dtype=np.float64)
    t0, first, last, tokens = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    many = tokens >= 2
    return {"ttft_ms": float(np.mean(first - t0) / 1e6), "latency_ms": float(np.mean(last - t0) / 1e6),
            "tpot_ms": float(np.mean((last - first)[many] / (tokens[many] - 1)) / 1e6),
            "output_tok_s": float(tokens.sum() / ((last.max() - t0.min()) / 1e9))}


def _server_rows(stamps: list[list[int]]) -> list[list[float]]:
    return [[t[0], t[1], t[-1], len(t) - 1] for t in stamps]


def accuracy(args: argparse.Namespace, clients: dict[str, Any], scratch: Path) -> None:
    print(f"server: one event per write, TTFT {args.ttft_ms} ms, ITL {args.itl_ms} ms, {args.tokens} tokens; "
          f"clients: closed loop, concurrency {args.concurrency}, {args.requests} requests; {args.rounds} rounds", flush=True)
    errors: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    for round_index in range(args.rounds):
        order = list(clients) if round_index % 2 == 0 else list(reversed(clients))
        for name in order:
            server = StampingServer(args.ttft_ms, args.itl_ms, scratch)
            try:
                rows, _ = clients[name](server.url, args, args.requests, args.tokens, scratch / f"{name}-{round_index}")
            finally:
                stamps = server.stop()
            client, truth = _view(rows), _view(_server_rows(stamps))
            if len(rows) != args.requests or len(stamps) != args.requests:
                raise SystemExit(f"{name}: {len(rows)} records, {len(stamps)} served, {args.requests} asked")
            error = {"ttft_ms": client["ttft_ms"] - truth["ttft_ms"],
                     **{k: (client[k] / truth[k] - 1) * 100 for k in ("latency_ms", "tpot_ms", "output_tok_s")}}
            errors[name].append(error)
            print(f"round {round_index + 1} {name:>10}: TTFT {error['ttft_ms']:+8.2f} ms  latency {error['latency_ms']:+6.2f} %  "
                  f"TPOT {error['tpot_ms']:+6.2f} %  output tok/s {error['output_tok_s']:+6.2f} %   "
                  f"(server: TTFT {truth['ttft_ms']:.2f} ms, latency {truth['latency_ms']:.1f} ms)", flush=True)
    print(f"\nmedian error over {args.rounds} rounds (min .. max):")
    for name, rows in errors.items():
        cells = []
        for key, unit in (("ttft_ms", " ms"), ("latency_ms", " %"), ("tpot_ms", " %"), ("output_tok_s", " %")):
            values = [r[key] for r in rows]
            cells.append(f"{key.removesuffix('_ms').removesuffix('_tok_s')} {np.median(values):+.2f}{unit} "
                         f"({min(values):+.2f} .. {max(values):+.2f})")
        print(f"  {name:>10}: " + "   ".join(cells))


def cpu(args: argparse.Namespace, clients: dict[str, Any], scratch: Path) -> None:
    small, large = args.requests, args.requests * 5
    print(f"server: no delays, one event per write; clients: closed loop, concurrency {args.concurrency}; "
          f"CPU of the whole client command at {small} and {large} requests, 1 and {args.tokens} tokens; {args.rounds} rounds", flush=True)
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    for round_index in range(args.rounds):
        order = list(clients) if round_index % 2 == 0 else list(reversed(clients))
        for name in order:
            cpu_s = {}
            for requests in (small, large):
                for tokens in (1, args.tokens):
                    server = StampingServer(0.0, 0.0, scratch)
                    try:
                        _, cpu_s[requests, tokens] = clients[name](server.url, args, requests, tokens, scratch / f"{name}-{round_index}-{requests}-{tokens}")
                    finally:
                        server.stop()
            per_request_us = (cpu_s[large, 1] - cpu_s[small, 1]) / (large - small) * 1e6
            per_package_us = ((cpu_s[large, args.tokens] - cpu_s[small, args.tokens]) / (large - small) * 1e6 - per_request_us) / (args.tokens - 1)
            found[name].append((per_request_us, per_package_us))
            print(f"round {round_index + 1} {name:>10}: {per_request_us:7.1f} us per request (1 package) + {per_package_us:5.2f} us per further package", flush=True)
    print(f"\nmedian over {args.rounds} rounds (min .. max):")
    for name, rows in found.items():
        fixed, per_package = [r[0] for r in rows], [r[1] for r in rows]
        print(f"  {name:>10}: {np.median(fixed):7.1f} us per request ({min(fixed):.1f} .. {max(fixed):.1f}) "
              f"+ {np.median(per_package):.2f} us per package ({min(per_package):.2f} .. {max(per_package):.2f}); "
              f"per million packages of {args.tokens}-token answers: {(np.median(fixed) / args.tokens + np.median(per_package)):.2f} CPU s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stamps", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--requests", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="measure the client's CPU per request and per package instead")
    parser.add_argument("--baseline-tree", type=Path, metavar="DIR", help="also run the perfbench of this source tree, alternated")
    parser.add_argument("--no-bare", action="store_true", help="leave the bare reference client out")
    args = parser.parse_args()
    if args.serve is not None:
        serve_main(args.serve, args.ttft_ms, args.itl_ms, args.stamps)
        return
    if args.bare is not None:
        bare_main(args.bare, args.concurrency, args.requests, args.tokens, args.out)
        return
    clients: dict[str, Any] = {"perfbench": lambda *a: _perfbench(REPO, *a)}
    if args.baseline_tree:
        clients["baseline"] = lambda *a: _perfbench(args.baseline_tree.resolve(), *a)
    if not args.no_bare:
        clients["bare"] = _bare_client
    scratch = Path(tempfile.mkdtemp(prefix="perfbench-accuracy-"))
    try:
        (cpu if args.cpu else accuracy)(args, clients, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
