"""Does perfbench's memory stay flat however many requests finish? A soak against `perfbench mock`.

The mock (its own process, zero delays, a few tokens per request) answers ``--requests`` short
requests; perfbench runs them as a subprocess exactly as a user would (``-c 64 --no-live``, with
summary, plots and report.html). Every 50 ms we read perfbench's resident memory from
/proc/PID/status (VmRSS) and how many requests finished (the lines of requests.jsonl). Reported:
RSS when 10 %, 50 % and 100 % of the requests had finished, and the peak over the whole process
life, summary, plots and report included (the kernel's ru_maxrss from wait4, so no spike between
samples is missed).

Targets (issue 10): flat within 20 MB after warm-up (10 % -> 100 %), peak <= 300 MB.

Run:   python benchmarks/memory_soak.py                      # the full 1,000,000 requests
Smoke: python benchmarks/memory_soak.py --requests 20000
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from client_overhead import mock_process  # the benchmarks share one way to start the mock (run from benchmarks/)

FLAT_LIMIT_MB = 20.0  # RSS growth allowed from 10 % to 100 % of the requests
PEAK_LIMIT_MB = 300.0  # RSS allowed at any time, summary, plots and report included
SAMPLE_S = 0.05  # how often RSS and progress are read
MARKS = (0.10, 0.50, 1.00)  # shares of the requests at which RSS is reported


def rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` in MB (psutil is not a dependency); None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class LineCounter:
    """Counts the lines of a growing file, reading only what was appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._offset = 0

    def update(self) -> int:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                while block := f.read(1 << 20):
                    self.lines += block.count(b"\n")
                    self._offset += len(block)
        except FileNotFoundError:
            pass
        return self.lines


def soak(requests: int, concurrency: int, max_tokens: int, timeout_s: float, keep: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="perfbench-soak-")) if keep is None else keep
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / "run"
    env = {**os.environ, "XDG_DATA_HOME": str(work / "xdg")}  # the run history goes to the soak's folder, not the user's
    with mock_process("--ttft-ms", "0", "--itl-ms", "0") as url:
        command = [
            sys.executable, "-m", "perfbench", "--url", url, "-c", str(concurrency), "-n", str(requests),
            "--max-tokens", str(max_tokens), "--input-tokens", "fixed:16", "--no-live", "--output-dir", str(run_dir),
        ]  # fmt: skip
        print("perfbench:", " ".join(command[1:]), flush=True)
        started = time.monotonic()
        stderr_path = work / "perfbench.stderr"
        with stderr_path.open("wb") as stderr_file:  # a file, not a pipe: a chatty child never blocks on it
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr_file, env=env)
        counter = LineCounter(run_dir / "requests.jsonl")
        at_mark: dict[float, dict] = {}
        samples: list[tuple[float, int, float]] = []  # (s since start, requests done, RSS MB)
        finished_s: float | None = None
        try:
            while True:
                # wait4, not poll(): reaping the child ourselves gives its peak RSS (ru_maxrss, KB) as the kernel counted it
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
                    break
                if time.monotonic() - started > timeout_s:
                    raise SystemExit(f"perfbench did not finish in {timeout_s:.0f} s")
                rss = rss_mb(proc.pid)
                done = counter.update()
                if rss is not None:
                    elapsed = time.monotonic() - started
                    samples.append((elapsed, done, rss))
                    for mark in MARKS:
                        if mark not in at_mark and done >= mark * requests:
                            at_mark[mark] = {"requests_done": done, "rss_mb": round(rss, 1), "t_s": round(elapsed, 1)}
                    if finished_s is None and done >= requests:
                        finished_s = elapsed
                time.sleep(SAMPLE_S)
        finally:
            if proc.returncode is None:
                proc.kill()  # the perfbench run this script started, by its handle
                proc.wait()
        wall_s = time.monotonic() - started
        stderr = stderr_path.read_text(errors="replace")
    exit_code = proc.returncode
    peak_mb = usage.ru_maxrss / 1024
    after = [s[2] for s in samples if finished_s is not None and s[0] >= finished_s]
    summary_path = run_dir / "summary.json"
    steps = json.loads(summary_path.read_text())["steps"] if summary_path.exists() else []
    result = {
        "requests": requests,
        "concurrency": concurrency,
        "max_tokens": max_tokens,
        "exit_code": exit_code,
        "wall_s": round(wall_s, 1),
        "requests_s": round(requests / finished_s, 1) if finished_s else None,
        "at": {f"{int(mark * 100)}%": at_mark.get(mark) for mark in MARKS},
        "growth_10_to_100_mb": (
            round(at_mark[1.0]["rss_mb"] - at_mark[0.1]["rss_mb"], 1) if 1.0 in at_mark and 0.1 in at_mark else None
        ),
        "peak_sampled_after_last_request_mb": round(max(after), 1) if after else None,
        # after the last request: summary, plots, report, parquet, history; the largest RSS of each 5 s
        "after_last_request_mb_per_5s": _per_window([s for s in samples if finished_s is not None and s[0] >= finished_s]),
        "peak_mb": round(peak_mb, 1),
        "succeeded": sum(s["requests_succeeded"] for s in steps),
        "files": sorted(p.name for p in run_dir.iterdir()) if run_dir.exists() else [],
        "run_dir": str(run_dir),
    }
    if exit_code != 0:
        result["stderr_tail"] = stderr[-2000:]
    return result


def _per_window(samples: list[tuple[float, int, float]], window_s: float = 5.0) -> list[float]:
    """The largest RSS (MB) of each ``window_s`` of ``samples``, in order."""
    if not samples:
        return []
    start = samples[0][0]
    peaks: dict[int, float] = {}
    for t, _, rss in samples:
        k = int((t - start) // window_s)
        peaks[k] = max(peaks.get(k, 0.0), rss)
    return [round(peaks[k], 1) for k in sorted(peaks)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests to run (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=4, help="output tokens per request (default %(default)s)")
    parser.add_argument("--timeout-s", type=float, default=3600, help="give up after this long (default %(default)s)")
    parser.add_argument("--keep", type=Path, help="write the run here instead of a temp dir")
    args = parser.parse_args()
    result = soak(args.requests, args.concurrency, args.max_tokens, args.timeout_s, args.keep)
    print(json.dumps(result, indent=2))
    growth, peak = result["growth_10_to_100_mb"], result["peak_mb"]
    ok = result["exit_code"] == 0 and growth is not None and growth <= FLAT_LIMIT_MB and peak <= PEAK_LIMIT_MB
    print(f"{'PASS' if ok else 'FAIL'}: growth 10%->100% {growth} MB (limit {FLAT_LIMIT_MB:g}), "
          f"peak {peak} MB (limit {PEAK_LIMIT_MB:g})")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
