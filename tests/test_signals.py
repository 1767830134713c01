"""SIGTERM and SIGHUP act like Ctrl-C; a local server dies with perfbench, even a SIGKILLed one.

Real processes throughout: perfbench runs as a subprocess against the built-in mock, the tiny
transformers model or the stand-in vLLM (tests/fake_vllm); only processes started here are signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PERFBENCH = [sys.executable, "-m", "perfbench"]
FAKE_VLLM_DIR = Path(__file__).parent / "fake_vllm"
REPO = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's zombie may never be reaped in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc (every thread's list)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def interrupted_run_lines(out: Path, returncode: int, stderr: str, at_least: int) -> list[dict]:
    """The checks every interrupted run must pass (exit 130, a summary saying so that counts every
    finished line, no traceback); returns requests.jsonl's lines."""
    assert returncode == 130, stderr
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["steps"][0]["requests_completed"] == len(lines) >= at_least
    assert "Traceback" not in stderr
    return lines


def kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_keep_every_record_and_write_the_summary(sig, tmp_path):
    out = tmp_path / "run"
    run = subprocess.Popen(
        [*PERFBENCH, "--mock", "ttft_ms=5,itl_ms=50", "-c", "4", "-n", "10000", "--max-tokens", "10",
         "--no-live", "--no-plots", "--no-telemetry", "--output-dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: line_count(out / "requests.jsonl") >= 8, 60, "8 finished requests")
        run.send_signal(sig)
        time.sleep(0.01)
        run.send_signal(sig)  # an impatient second signal must not cost the summary
        stdout, stderr = run.communicate(timeout=30)
    finally:
        kill_if_alive(run.pid)
    interrupted_run_lines(out, run.returncode, stderr, at_least=8)
    assert f"Interrupted ({sig.name})" in stdout


def test_sigterm_stops_the_local_server_and_sigkill_does_not_orphan_it(tmp_path):
    """`perfbench --model`: SIGTERM -> summary, exit 130, server gone; SIGKILL -> the server dies too."""
    from tests.tiny_llama import shared_tiny_llama

    model = str(shared_tiny_llama())

    def start(out: Path) -> tuple[subprocess.Popen, int]:
        run = subprocess.Popen(
            [*PERFBENCH, "--model", model, "--device", "cpu", "--api", "openai-completions", "-c", "2", "-n", "100000",
             "--max-tokens", "4", "--no-live", "--no-plots", "--no-telemetry", "--output-dir", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(lambda: line_count(out / "requests.jsonl") >= 2 or run.poll() is not None, 180, "the run to start")
        assert run.poll() is None, run.communicate()
        found = children(run.pid)
        assert len(found) == 1 and alive(found[0]), f"perfbench's children: {found}"
        return run, found[0]

    run, server_pid = start(tmp_path / "term")
    try:
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=60)
        assert run.returncode == 130, stderr
        assert json.loads((tmp_path / "term" / "summary.json").read_text())["interrupted"] is True
        assert "Interrupted (SIGTERM)" in stdout, stdout
        assert not alive(server_pid), "the server outlived the run"
    finally:
        kill_if_alive(run.pid)
        kill_if_alive(server_pid)

    run, server_pid = start(tmp_path / "kill")
    try:
        run.kill()
        run.communicate(timeout=10)
        # The parent-death signal and the stdin pipe race: either may stop it (each is tested alone below).
        wait_until(lambda: not alive(server_pid), 15, f"the orphaned server {server_pid} to exit")
    finally:
        kill_if_alive(server_pid)


def test_sigterm_while_the_local_server_starts_stops_it_and_exits_130(tmp_path):
    """Before the run's loop (the server still loading), SIGTERM is a Ctrl-C too: the server is stopped, not orphaned."""
    from tests.tiny_llama import shared_tiny_llama

    run = subprocess.Popen(
        [*PERFBENCH, "--model", str(shared_tiny_llama()), "--device", "cpu", "-n", "1", "--no-live", "--no-plots",
         "--no-telemetry", "--output-dir", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    server_pid = None
    try:
        wait_until(lambda: bool(children(run.pid)) or run.poll() is not None, 60, "the server process")
        (server_pid,) = children(run.pid)
        run.send_signal(signal.SIGTERM)  # the server is still importing torch and loading the model
        _, stderr = run.communicate(timeout=60)
        assert run.returncode == 130, stderr
        assert "perfbench: interrupted" in stderr and "Traceback" not in stderr
        assert not alive(server_pid)
    finally:
        kill_if_alive(run.pid)
        if server_pid is not None:
            kill_if_alive(server_pid)


# A parent process for the lifetime tests: starts CHILD with stdin from fd 0 of its own, prints its pid, waits.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdin=0)
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = """
import os, sys, time
from perfbench.core.lifetime import exit_with_parent
exit_with_parent(os.getppid(), parent_death_signal={signal})
print("armed", flush=True)
time.sleep(120)
"""


def start_parent(child_code: str, stdin: int) -> tuple[subprocess.Popen, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, child_code], stdin=stdin, stdout=subprocess.PIPE, text=True, env=env)
    child_pid = int(parent.stdout.readline())
    time.sleep(1.0)  # let the child arm its watch (a too-early kill is covered by the ppid check)
    return parent, child_pid


def test_parent_death_signal_alone_stops_the_child():
    """The child's stdin pipe stays open (this test holds it), so only the kernel's signal can stop it."""
    read_end, write_end = os.pipe()
    parent = None
    try:
        parent, child_pid = start_parent(CHILD.format(signal=True), stdin=read_end)
        os.close(read_end)
        assert alive(child_pid)
        parent.kill()
        parent.wait(timeout=10)
        wait_until(lambda: not alive(child_pid), 10, "the child to die with its parent")
    finally:
        os.close(write_end)
        if parent is not None:
            kill_if_alive(parent.pid)
            kill_if_alive(child_pid)


def test_stdin_pipe_alone_stops_the_child():
    """No parent-death signal: EOF on the pipe from the dead parent is enough."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(signal=False)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert child.stdout.readline().strip() == "armed"
        child.stdin.close()  # what the kernel does to the write end when the parent dies
        child.wait(timeout=15)
        assert child.returncode == -signal.SIGTERM
    finally:
        kill_if_alive(child.pid)


def test_vllm_launcher_child_dies_with_a_sigkilled_parent(tmp_path):
    """The launched `vllm` (the stand-in) gets the parent-death signal through the preexec hook."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from perfbench.servers.local import start_local_server
        with start_local_server("m", engine="vllm", log_path=Path({str(tmp_path / 'server.log')!r}), startup_timeout_s=60) as server:
            print(server._process.pid, flush=True)
            time.sleep(120)
    """)
    path = os.pathsep.join([str(FAKE_VLLM_DIR), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONPATH": str(REPO)}
    for knob in ("START_DELAY_S", "CRASH", "IGNORE_SIGTERM", "WORKER_PID_FILE", "ARGS_FILE"):
        env.pop(f"FAKE_VLLM_{knob}", None)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    vllm_pid = None
    try:
        vllm_pid = int(parent.stdout.readline())
        assert alive(vllm_pid)
        parent.kill()
        parent.wait(timeout=10)
        wait_until(lambda: not alive(vllm_pid), 10, "the vllm child to die with its parent")
    finally:
        kill_if_alive(parent.pid)
        if vllm_pid is not None:
            kill_if_alive(vllm_pid)
