"""--ray: the workers as Ray actors, for real, on a local Ray instance bound to 127.0.0.1 (no mock of Ray).

Ray's start is slow on a small machine, so this module starts one instance (``ray_local``) for
its in-process tests, and one run of the CLI starts (and must stop) an instance of its own. Skipped
only when Ray is not installed (CI installs the ``[ray]`` extra). The clock arithmetic is
checked on its own with fake anchors: on one machine every process shares one clock, so a run
could not tell a missing shift.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from perfbench.commands.main import main
from perfbench.engine.plan import StepPlan
from perfbench.results.records import RequestRecord
from perfbench.servers.mock import MockConfig, MockInThread
from perfbench.workers.clocks import Anchor, shift_record, start_as_wall, start_on_own_clock
from perfbench.workers.ray_actors import RayTransport, died_because, to_driver_clock
from tests.test_signals import kill_if_alive, line_count, wait_until
from tests.test_workers import kill_worker_0_mid_step, long_requests

QUIET = ["--no-live", "--no-plots", "--no-telemetry"]
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install -e '.[ray]')")


# --- the clocks, with fake anchors --------------------------------------------------------------

DRIVER = Anchor(wall_ns=1_700_000_000_000_000_000, perf_ns=5_000_000_000)
ACTOR = Anchor(wall_ns=1_700_000_000_000_250_000, perf_ns=987_654_321_000)  # another machine: another zero point


def _record(t0: int) -> RequestRecord:
    return RequestRecord(step=0, index=3, warmup=False, status="ok", http_status=200, error=None, scheduled_ns=t0,
                         sent_ns=t0 + 1_000, end_ns=t0 + 90_000_000, package_times_ns=(t0 + 20_000_000, t0 + 90_000_000),
                         package_tokens=(1, 1), input_tokens=4, output_tokens=2, token_source="usage")


def test_a_shared_start_and_an_actors_records_land_on_the_drivers_clock() -> None:
    start_ns = DRIVER.perf_ns + 40_000_000  # the driver's shared start, 40 ms after its anchor
    plan, wall = start_as_wall(StepPlan(step=0, concurrency=1, number=1, duration_s=None, start_ns=start_ns), DRIVER)
    assert plan.start_ns is None and wall == DRIVER.wall_ns + 40_000_000
    own = start_on_own_clock(plan, wall, ACTOR)
    assert own.start_ns == ACTOR.perf_ns + 40_000_000 - 250_000  # the actor's wall clock reads 250 µs ahead
    offset = ACTOR.offset_to(DRIVER)
    # A request the actor scheduled at the shared start, on its own perf counter ...
    kind, (records, sent, in_flight) = to_driver_clock(("records", ([_record(own.start_ns)], 7, 2)), offset)
    (moved,) = records
    assert (kind, sent, in_flight) == ("records", 7, 2)
    assert moved.scheduled_ns == start_ns  # ... is at the shared start on the driver's
    original = _record(own.start_ns)
    assert moved.end_ns - moved.scheduled_ns == original.end_ns - original.scheduled_ns  # intervals unchanged
    assert [t - moved.scheduled_ns for t in moved.package_times_ns] == [t - original.scheduled_ns for t in original.package_times_ns]
    assert moved.sent_ns - moved.scheduled_ns == 1_000
    assert to_driver_clock(("done", 5), offset) == ("done", 5)
    assert shift_record(original, 0) is original
    assert DRIVER.offset_to(DRIVER) == 0


def test_an_anchor_reads_both_clocks_together() -> None:
    anchor = Anchor.now()
    assert abs(anchor.to_wall(time.perf_counter_ns()) - time.time_ns()) < 5_000_000


# --- without Ray ------------------------------------------------------------------------------------


def test_without_ray_installed_ray_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as where it is not installed
    assert main(["--url", "http://127.0.0.1:9/v1", "--ray", *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["perfbench: error: --ray needs Ray, an optional extra: pip install 'perfbench[ray]'"]


@needs_ray
def test_a_ray_address_where_nothing_listens_is_one_line_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.monotonic()
    assert main(["--mock", "ttft_ms=1", "-c", "1", "-n", "2", "--ray", f"127.0.0.1:{port}", *QUIET,
                 "--output-dir", str(tmp_path / "run")]) == 3
    assert time.monotonic() - started < 30  # Ray alone would retry for minutes
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"perfbench: error: --ray 127.0.0.1:{port}: nothing answers there (Connection refused); "
                   "check the address and that the cluster is up"]


def test_ray_is_imported_only_for_ray() -> None:
    code = ("import sys, perfbench.commands.main, perfbench.benchmark.runner, perfbench.workers, perfbench.workers.ray_actors; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


# --- a real local Ray instance ----------------------------------------------------------------------


def _ray_processes(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@needs_ray
def test_the_cli_starts_a_local_ray_instance_on_loopback_stops_on_sigterm_and_stops_ray(tmp_path: Path) -> None:
    # First in the module: its instance runs while the module's own is not up yet.
    ray_tmp = tempfile.mkdtemp(prefix="pbray")  # short: Ray's socket paths must fit in 107 bytes
    out = tmp_path / "run"
    argv = ["--mock", "ttft_ms=5,itl_ms=40", "-c", "4", "-n", "10000", "--max-tokens", "10", "--ray", *QUIET, "--output-dir", str(out)]
    # Asked before the interpreter exits: Ray's own exit hook would stop the instance anyway, and hide a run that did not.
    code = (f"import sys; from perfbench.commands.main import main; rc = main({argv!r}); import ray; "
            "print('still connected' if ray.is_initialized() else 'disconnected'); sys.exit(rc)")
    run = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "RAY_TMPDIR": ray_tmp})
    try:
        wait_until(lambda: line_count(out / "requests.jsonl") >= 4 or run.poll() is not None, 120, "4 finished requests")
        assert run.poll() is None, run.communicate()
        run.send_signal(signal.SIGTERM)  # Ray's driver has a SIGTERM handler of its own that kills at once
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 130, stderr[-3000:]
        assert "Traceback" not in stderr and "SIGTERM received" not in stderr
        assert stdout.splitlines()[-1] == "disconnected"
        summary = json.loads((out / "summary.json").read_text())
        lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
        assert summary["interrupted"] is True and summary["steps"][0]["requests_completed"] == len(lines) >= 4
        assert all(line["status"] == "ok" for line in lines), {line["status"] for line in lines}
        (worker,) = summary["workers"]  # no --workers: one actor per node, and a local instance has one
        assert worker["transport"] == "ray" and worker["node_ip"] == "127.0.0.1" and worker["lost"] is None
        deadline = time.monotonic() + 20
        while _ray_processes(ray_tmp) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _ray_processes(ray_tmp) == [], "the run's Ray instance outlived it"
    finally:
        kill_if_alive(run.pid)
        for pid in _ray_processes(ray_tmp):  # only what this test's run started (its processes name the temp dir)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    if not HAS_RAY:
        pytest.skip("ray is not installed (pip install -e '.[ray]')")
    from perfbench.workers.ray_actors import connect

    ray, started = connect("local", cpus=2)
    assert started
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with MockInThread(MockConfig(ttft_ms=20, itl_ms=2, output_tokens=8)) as mock:
        yield mock.base_url


def _run(tmp_path: Path, name: str, *flags: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out = tmp_path / name
    assert main([*flags, *QUIET, "--output-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    return summary, [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]


def test_ray_actors_send_the_requests_one_process_sends(ray_local: Any, tmp_path: Path, mock_url: str) -> None:
    flags = ["--url", mock_url, "-c", "4,8", "-n", "24,40", "--warmup", "4", "--input-tokens", "uniform:10-90", "--seed", "3"]
    shapes = {}
    for name, extra in (("one", []), ("ray", ["--ray", "local", "--workers", "2"])):
        summary, lines = _run(tmp_path, name, *flags, *extra)
        steps = summary["steps"]
        assert [s["requests_completed"] for s in steps] == [24, 40] and [s["requests_failed"] for s in steps] == [0, 0]
        assert len(lines) == 4 + 24 + 40
        assert all(19 <= s["ttft_ms"]["p50"] < 80 for s in steps), [s["ttft_ms"] for s in steps]
        for client in (s["client"] for s in steps):  # each worker measured itself; its reading came back with its reply
            assert len(client["workers_cpu_utilization"]) == (2 if name == "ray" else 0)
            assert client["loop_lag_ms"]["count"] > 0  # every worker's timer samples, pooled
            assert client["cpu_utilization"] >= max(client["workers_cpu_utilization"], default=0.0)  # the busiest process
        # The prompt follows from the index: same indexes, same prompt lengths, whichever actor sent them.
        shapes[name] = sorted((line["step"], line["warmup"], line["index"], line["input_tokens"], line["output_tokens"])
                              for line in lines)
    assert shapes["one"] == shapes["ray"]
    workers = summary["workers"]
    assert [w["worker"] for w in workers] == [0, 1] and len({w["pid"] for w in workers}) == 2
    assert all(w["transport"] == "ray" and w["node_ip"] == "127.0.0.1" and w["lost"] is None for w in workers)
    assert all(abs(w["clock_offset_ns"]) < 1_000_000 for w in workers), workers  # one machine: one clock, within the anchor's error


def test_a_ray_actor_killed_mid_step_is_reported_and_the_step_finishes(ray_local: Any, mock_url: str) -> None:
    why, errors = kill_worker_0_mid_step(RayTransport("local", 2, long_requests(mock_url)),
                                         lambda pool: ray_local.kill(pool.transport.actors[0]))
    assert why == "the Ray actor died: it was killed by `ray.kill`"
    assert errors[0].startswith("Ray actor 0 (node 127.0.0.1, pid ") and errors[0].endswith(f"finished: {why}")


def test_an_actors_death_reads_as_one_line() -> None:
    text = "The actor died unexpectedly before finishing this task.\n\tclass_name: RayWorker\n\tpid: 7\n" \
           "The actor is dead because it was killed by `ray.kill`."
    assert died_because(RuntimeError(text)) == "the Ray actor died: it was killed by `ray.kill`"
    assert died_because(RuntimeError("node lost\nmore")) == "the Ray actor died (node lost)"
