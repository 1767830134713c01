"""Does perfbench's memory stay flat through a long open-loop run? A soak against `perfbench mock`.

The mock runs in its own process (zero delays, a few tokens per request); perfbench runs as a
subprocess exactly as a user would: an open-loop step at ``--rate`` requests/s for ``--minutes``
(``perfbench --url URL --rate R --duration S --no-live``, synthetic prompts, which never repeat, so
each body is built anew). Every ``--sample-s`` seconds we read perfbench's resident memory from
/proc/PID/status (VmRSS; psutil is not a dependency) and how many requests finished (the lines of
requests.jsonl). Reported: RSS at the start, the middle and the end of the step, the slope of a
least-squares line through the step's samples after its first tenth (MB per 10 minutes: what an
hour-long run would add), the requests sent and the achieved rate, and the peak over the whole
process life, summary and report included (the kernel's ru_maxrss from wait4).

Before the open loop kept only its requests in flight, it held every request's Task to the end of
the step (~740 B each: 2.6 GB for an hour at 1,000 req/s); this soak is what shows such growth.

Run:   python benchmarks/memory_soak.py                          # 30 minutes at 500 req/s
Smoke: python benchmarks/memory_soak.py --minutes 1
Exit status 1 when the perfbench run failed, the client fell behind its schedule (queue time p99
above 100 ms: then RSS grows with the backlog and says nothing of a leak), or the slope is above
--max-slope-mb when given.
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

from perfbench.servers.mock import MockConfig, MockProcess

SKIP_SHARE = 0.10  # the first tenth of the step is start-up (allocator, connections): left out of the slope
BEHIND_QUEUE_MS = 100.0  # a queue-time p99 above this: the client could not keep the rate


def rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` in MB; None once it is gone."""
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


def slope_mb_per_10min(samples: list[tuple[float, int, float]]) -> float | None:
    """The least-squares slope of RSS (MB) over time through ``samples`` (s, requests, MB), per 10 minutes."""
    if len(samples) < 3:
        return None
    ts = [t for t, _, _ in samples]
    ys = [rss for _, _, rss in samples]
    t_mean, y_mean = sum(ts) / len(ts), sum(ys) / len(ys)
    spread = sum((t - t_mean) ** 2 for t in ts)
    if spread == 0:
        return None
    return sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys)) / spread * 600


def soak(minutes: float, rate: float, concurrency: int | None, max_tokens: int, sample_s: float, keep: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="perfbench-soak-")) if keep is None else keep
    work.mkdir(parents=True, exist_ok=True)
    run_dir = work / "run"
    env = {**os.environ, "XDG_DATA_HOME": str(work / "xdg")}  # the run history goes to the soak's folder, not the user's
    duration_s = minutes * 60
    with MockProcess(MockConfig(ttft_ms=0, itl_ms=0)) as mock:
        url = mock.base_url
        command = [
            sys.executable, "-m", "perfbench", "--url", url, "--rate", f"{rate:g}", "--duration", f"{duration_s:g}",
            "--max-tokens", str(max_tokens), "--input-tokens", "fixed:16", "--no-live", "--no-plots",
            "--output-dir", str(run_dir),
            *(["--concurrency", str(concurrency)] if concurrency else []),
        ]  # fmt: skip
        print("perfbench:", " ".join(command[1:]), flush=True)
        started = time.monotonic()
        stderr_path = work / "perfbench.stderr"
        with stderr_path.open("wb") as stderr_file:  # a file, not a pipe: a chatty child never blocks on it
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr_file, env=env)
        counter = LineCounter(run_dir / "requests.jsonl")
        samples: list[tuple[float, int, float]] = []  # (s since the first request finished, requests done, RSS MB)
        first_done: float | None = None
        next_sample = started
        usage = None
        try:
            while True:
                # wait4, not poll(): reaping the child ourselves gives its peak RSS (ru_maxrss, KB) as the kernel counted it
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
                    break
                now = time.monotonic()
                if now - started > duration_s + 600:
                    raise SystemExit(f"perfbench did not finish within {duration_s + 600:.0f} s")
                if now >= next_sample:
                    next_sample += sample_s
                    done, rss = counter.update(), rss_mb(proc.pid)
                    if done and first_done is None:
                        first_done = now
                    if rss is not None and first_done is not None and now - first_done <= duration_s:
                        samples.append((now - first_done, done, rss))  # during the step only: not the summary after it
                time.sleep(min(0.5, sample_s))
        finally:
            if proc.returncode is None:
                proc.kill()  # the perfbench run this script started, by its handle
                proc.wait()
        wall_s = time.monotonic() - started
        stderr = stderr_path.read_text(errors="replace")
    summary_path = run_dir / "summary.json"
    steps = json.loads(summary_path.read_text())["steps"] if summary_path.exists() else []
    steady = [s for s in samples if s[0] >= SKIP_SHARE * duration_s]

    def at(share: float) -> dict | None:
        if not samples:
            return None
        t, done, rss = min(samples, key=lambda s: abs(s[0] - share * duration_s))
        return {"t_s": round(t, 1), "requests_done": done, "rss_mb": round(rss, 1)}

    slope = slope_mb_per_10min(steady)
    result = {
        "minutes": minutes,
        "rate_req_s": rate,
        "concurrency_cap": concurrency,
        "exit_code": proc.returncode,
        "wall_s": round(wall_s, 1),
        "requests": sum(s["requests_completed"] for s in steps),
        "succeeded": sum(s["requests_succeeded"] for s in steps),
        "achieved_rate_req_s": round(sum(s["requests_completed"] for s in steps) / duration_s, 1) if steps else None,
        "rss_start": at(0.0),
        "rss_middle": at(0.5),
        "rss_end": at(1.0),
        # A client behind its schedule holds a growing backlog: then RSS grows with it, and says nothing of a leak.
        "queue_ms_p99": steps[0]["queue_ms"]["p99"] if steps and steps[0].get("queue_ms") else None,
        "concurrency_achieved": steps[0].get("concurrency_achieved") if steps else None,
        "failed": sum(s["requests_failed"] for s in steps),
        "slope_mb_per_10min": round(slope, 2) if slope is not None else None,
        "samples_in_slope": len(steady),
        "peak_mb": round(usage.ru_maxrss / 1024, 1) if usage is not None else None,
        "run_dir": str(run_dir),
    }
    if proc.returncode != 0:
        result["stderr_tail"] = stderr[-2000:]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the open-loop step (default %(default)s)")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second (default %(default)s)")
    parser.add_argument("--concurrency", type=int, help="cap on requests in flight (default: none)")
    parser.add_argument("--max-tokens", type=int, default=4, help="output tokens per request (default %(default)s)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples (default %(default)s)")
    parser.add_argument("--max-slope-mb", type=float, help="fail when RSS grows faster than this per 10 minutes")
    parser.add_argument("--keep", type=Path, help="write the run here instead of a temp dir")
    args = parser.parse_args()
    result = soak(args.minutes, args.rate, args.concurrency, args.max_tokens, args.sample_s, args.keep)
    print(json.dumps(result, indent=2))
    rss = [result[k]["rss_mb"] if result[k] else None for k in ("rss_start", "rss_middle", "rss_end")]
    slope = result["slope_mb_per_10min"]
    print(f"RSS start / middle / end: {rss[0]} / {rss[1]} / {rss[2]} MB; slope {slope} MB per 10 min "
          f"({result['requests']} requests at {result['achieved_rate_req_s']} req/s; peak {result['peak_mb']} MB)")
    behind = (result["queue_ms_p99"] or 0) > BEHIND_QUEUE_MS
    if behind:
        print(f"The client fell behind (queue p99 {result['queue_ms_p99']:.0f} ms): RSS grew with its backlog of requests; "
              "lower --rate or use a quieter machine for a leak check.")
    failed = result["exit_code"] != 0 or behind or (
        args.max_slope_mb is not None and (slope is None or slope > args.max_slope_mb))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
