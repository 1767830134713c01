"""How perfbench scales with --workers: chunks/s, accuracy and CPU per process, 1 vs N workers.

The server is accuracy.py's stamping server in its own process: it writes ONE SSE EVENT PER
WRITE (as real inference servers do) at absolute deadlines and stamps every write. perfbench runs
as a user runs it (``python -m perfbench --url ... --workers N``), closed loop, and its figures
are compared with the server's stamps. Rounds alternate the worker counts, so each count sees the
same machine; the median round is reported with the spread (min..max).

Reported per worker count: client chunks/s (output packages / the step's duration), the server's
own chunks/s, the TPOT and TTFT error against the server's stamps, and the CPU seconds of the
parent and of each worker process (sampled from /proc while the run lasts).

Run: python benchmarks/scale_out.py [--workers 1,2] [--concurrency 256 --itl-ms 0 --tokens 256 --requests 2048] [--rounds 3]
On this project's 2-core machine the server, the parent and the workers share two cores: read the
figures as what one more process costs or buys *there*; on a machine with cores to spare, each
worker adds a core of its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("accuracy", HERE / "accuracy.py")
assert _spec and _spec.loader
accuracy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accuracy)

TICKS_S = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS_S  # utime + stime


def _workers(pid: int) -> list[int]:
    """perfbench's worker processes: its spawned children (not multiprocessing's resource tracker, nor the parquet export)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in command:
                found.append(child)
    return found


def one_run(args: argparse.Namespace, workers: int) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="perfbench-scale-"))
    server = accuracy.StampingServer(args.ttft_ms, args.itl_ms, out)
    try:
        run = subprocess.Popen(
            [sys.executable, "-m", "perfbench", "--url", f"http://127.0.0.1:{server.port}/v1/chat/completions", "--model", "m",
             "-c", str(args.concurrency), "-n", str(args.requests), "--max-tokens", str(args.tokens), "--workers", str(workers),
             "--no-live", "--no-plots", "--no-telemetry", "--no-preflight", "--output-dir", str(out / "run"),
             "--store", str(out / "store.sqlite")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        cpu: dict[int, float] = {}
        while run.poll() is None:  # the last sample of each process before it exits
            for pid in [run.pid, *_workers(run.pid)]:
                seconds = _cpu_s(pid)
                if seconds is not None:
                    cpu[pid] = seconds
            time.sleep(0.1)
        if run.returncode != 0:
            raise SystemExit(f"perfbench failed: {run.stderr.read() if run.stderr else ''}")
    finally:
        stamps = server.stop()
    step = json.loads((out / "run" / "summary.json").read_text())["steps"][0]
    truth = accuracy._view(accuracy._server_rows(stamps))
    span_s = (max(t[-1] for t in stamps) - min(t[0] for t in stamps)) / 1e9
    packages = step["packages_per_request"]["mean"] * step["requests_succeeded"]
    worker_cpu = sorted((s for pid, s in cpu.items() if pid != run.pid), reverse=True)
    return {
        "client_chunks_s": packages / step["duration_s"],
        "server_chunks_s": sum(len(t) - 1 for t in stamps) / span_s,
        "tpot_ms": step["tpot_ms"]["mean"],
        "server_tpot_ms": truth["tpot_ms"],
        "ttft_error_ms": step["ttft_ms"]["mean"] - truth["ttft_ms"],
        "latency_error_ms": step["latency_ms"]["mean"] - truth["latency_ms"],
        "parent_cpu_s": cpu.get(run.pid, float("nan")),
        "worker_cpu_s": worker_cpu,  # type: ignore[dict-item]
        "failed": step["requests_failed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--requests", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    print(f"server: one event per write, ttft {args.ttft_ms} ms, itl {args.itl_ms} ms, {args.tokens} tokens; "
          f"client: concurrency {args.concurrency}, {args.requests} requests; {args.rounds} rounds; load {os.getloadavg()[0]:.2f}")
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    for round_index in range(args.rounds):
        for n in counts:  # alternated: every count sees the same machine
            row = one_run(args, n)
            rows[n].append(row)
            print(f"round {round_index + 1} workers {n}: {row['client_chunks_s']:,.0f} chunks/s (server {row['server_chunks_s']:,.0f}), "
                  f"TPOT {row['tpot_ms']:.3f} ms (server {row['server_tpot_ms']:.3f}), TTFT {row['ttft_error_ms']:+.1f} ms, parent CPU {row['parent_cpu_s']:.2f} s, "
                  f"workers CPU {', '.join(f'{s:.2f}' for s in row['worker_cpu_s'])} s", flush=True)  # type: ignore[union-attr]
    print("\nmedian round (spread min..max):")
    for n, results in rows.items():
        def show(key: str, fmt: str) -> str:
            values = [r[key] for r in results]
            return f"{format(float(np.median(values)), fmt)} ({format(min(values), fmt)}..{format(max(values), fmt)})"

        print(f"  workers {n}: client chunks/s {show('client_chunks_s', ',.0f')}, server chunks/s {show('server_chunks_s', ',.0f')}, "
              f"TPOT ms {show('tpot_ms', '.3f')} vs server {show('server_tpot_ms', '.3f')}, TTFT error ms {show('ttft_error_ms', '+.1f')}, "
              f"latency error ms {show('latency_error_ms', '+.1f')}, parent CPU s {show('parent_cpu_s', '.2f')}, "
              f"worker CPU s {[round(float(np.median([r['worker_cpu_s'][i] for r in results])), 2) for i in range(len(results[0]['worker_cpu_s']))]}")


if __name__ == "__main__":
    main()
