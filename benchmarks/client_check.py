"""Does the client's self-check tell a starved client from a relaxed one? Counted over real runs.

Each run is the real command line (``python -m perfbench``) against ``perfbench mock`` (TTFT 5 ms,
2 ms a token) started in its own process. Two groups, the same load (closed loop, 32 in flight,
400 requests of 32 tokens: about a third of a core for the client alone):

- relaxed: the client alone on its core;
- starved: the client pinned to one core shared with ``--hogs`` busy-looping processes, so it gets
  less of the core than that load needs (a saturated client machine: what made peers report their
  client's ceiling as the server's).

The mock runs on the other cores where there are any, so only the client is starved. Every run's
step must come out ``ok`` (relaxed) or ``client_bound`` (starved); the script prints how many were
flagged in each group and each run's loop lag p99, CPU, queue p99 and reasons. Exit status 0 when
every run was judged as its group expects, else 1.

Run it on an otherwise quiet machine (other load makes relaxed runs truly client-bound):

    python benchmarks/client_check.py [--runs 10] [--hogs 3] [--core 0] [--concurrency 32] [--number 400]

Smoke runs on a shared 2-core box, not a measurement: at load ~3.6 from other jobs relaxed runs had
lag p99 3.5-3.8 ms and CPU 37 % (ok), starved ones (3 hogs) lag p99 78-109 ms (client_bound); at load
~5 a relaxed run was itself starved by the other jobs (lag p99 11.5 ms, client_bound, rightly).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

MAX_TOKENS = "32"
MOCK = ["--ttft-ms", "5", "--itl-ms", "2"]
RUN_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cores: set[int]) -> Any:
    """A preexec_fn pinning the child to ``cores`` (nothing where affinity is not supported)."""
    def pin() -> None:
        if cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, cores)
    return pin


@contextmanager
def mock_process(cores: set[int]) -> Iterator[str]:
    """``perfbench mock`` in its own process, on ``cores``; its base URL once it accepts connections."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "perfbench", "mock", "--port", str(port), *MOCK],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(cores))  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the mock server did not start")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """End a process this script started, by its handle."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def hogs(count: int, core: int) -> Iterator[None]:
    """``count`` processes busy-looping on ``core`` for as long as the block runs (at most RUN_TIMEOUT_S)."""
    loop = f"import time\nend = time.monotonic() + {RUN_TIMEOUT_S}\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", loop], preexec_fn=pinned({core})) for _ in range(count)]
    try:
        time.sleep(0.2)  # running before the client starts
        yield
    finally:
        for proc in procs:
            stop(proc)


def one_run(url: str, out: Path, core: int, load: list[str]) -> dict[str, Any]:
    """One CLI run pinned to ``core``; its step's ``client`` object, with the step's queue p99."""
    command = [sys.executable, "-m", "perfbench", "--url", url, "--model", "m", *load, "--no-plots", "--no-live",
               "--no-telemetry", "--output-dir", str(out), "--store", str(out.parent / "store.sqlite")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, preexec_fn=pinned({core}))
    if done.returncode != 0:
        raise SystemExit(f"perfbench exited {done.returncode}: {done.stderr.strip()[-500:]}")
    [step] = json.loads((out / "summary.json").read_text())["steps"]
    return {**step["client"], "queue_p99_ms": step["queue_ms"]["p99"]}


def describe_run(client: dict[str, Any]) -> str:
    lag = client["loop_lag_ms"]["p99"]
    return (f"{client['verdict']:12s} lag p99 {lag if lag is not None else float('nan'):7.2f} ms  "
            f"cpu {client['cpu_utilization']:5.0%}  queue p99 {client['queue_p99_ms']:7.2f} ms  "
            f"same-read {client['same_read_share'] or 0:4.0%}  {'; '.join(client['reasons'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per group (default 10)")
    parser.add_argument("--hogs", type=int, default=3, help="busy processes sharing the starved client's core (default 3)")
    parser.add_argument("--core", type=int, default=0, help="the core the client runs on (default 0)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight, both groups (default 32)")
    parser.add_argument("--number", type=int, default=400, help="requests per run (default 400)")
    args = parser.parse_args()
    load = ["-c", str(args.concurrency), "-n", str(args.number), "--max-tokens", MAX_TOKENS]
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    mock_cores = (cores - {args.core}) or cores  # the mock away from the client's core where there is another
    expected = {"relaxed": "ok", "starved": "client_bound"}
    results: dict[str, list[dict[str, Any]]] = {group: [] for group in expected}
    with tempfile.TemporaryDirectory(prefix="perfbench-client-check-") as tmp, mock_process(mock_cores) as url:
        for group in expected:
            print(f"{group}: {args.runs} runs, client on core {args.core}"
                  + (f" with {args.hogs} busy processes" if group == "starved" else ""), flush=True)
            for run in range(args.runs):
                out = Path(tmp) / f"{group}{run}"
                if group == "starved":
                    with hogs(args.hogs, args.core):
                        client = one_run(url, out, args.core, load)
                else:
                    client = one_run(url, out, args.core, load)
                results[group].append(client)
                print(f"  {run + 1:2d}  {describe_run(client)}", flush=True)
    print()
    right = True
    for group, verdict in expected.items():
        flagged = sum(client["verdict"] == "client_bound" for client in results[group])
        print(f"{group:8s} flagged client_bound: {flagged} of {len(results[group])} (expected: every run {verdict})")
        right &= all(client["verdict"] == verdict for client in results[group])
    return 0 if right else 1


if __name__ == "__main__":
    sys.exit(main())
