"""The local-server launcher against a stand-in `vllm` on PATH (tests/fake_vllm/vllm, running the mock server)."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from perfbench.core.errors import ConfigError, TargetError
from perfbench.servers.local import start_local_server
from perfbench.servers.serve import main as serve_main
from perfbench.servers.vllm_launcher import vllm_command

FAKE_VLLM_DIR = Path(__file__).parent / "fake_vllm"


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    """Put the fake `vllm` first on PATH (with this Python's bin dir next, for its `python3`)."""
    path = os.pathsep.join([str(FAKE_VLLM_DIR), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    monkeypatch.setenv("PATH", path)
    for knob in ("START_DELAY_S", "CRASH", "IGNORE_SIGTERM", "WORKER_PID_FILE", "ARGS_FILE"):
        monkeypatch.delenv(f"FAKE_VLLM_{knob}", raising=False)
    monkeypatch.setenv("FAKE_VLLM_ARGS_FILE", str(tmp_path / "argv.json"))
    monkeypatch.setenv("FAKE_VLLM_WORKER_PID_FILE", str(tmp_path / "worker.pid"))
    return tmp_path


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)


def test_slow_start_is_awaited_with_progress_and_stopped_without_orphans(fake_vllm, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_START_DELAY_S", "2.5")
    progress: list[str] = []
    started = time.monotonic()
    with start_local_server(
        "org/some-model", engine="vllm", log_path=fake_vllm / "logs" / "server.log",
        engine_args="--max-model-len 512 --served-model-name 'a b'", startup_timeout_s=30, on_progress=progress.append,
    ) as server:  # fmt: skip
        assert time.monotonic() - started >= 2.5
        assert get_json(server.base_url + "/v1/models")["data"]
        leader = server._process.pid
        worker = int((fake_vllm / "worker.pid").read_text())
        assert alive(leader) and alive(worker)
    port = server.base_url.rsplit(":", 1)[1]
    argv = json.loads((fake_vllm / "argv.json").read_text())
    assert argv == ["serve", "org/some-model", "--host", "127.0.0.1", "--port", port,
                    "--max-model-len", "512", "--served-model-name", "a b"]  # fmt: skip
    assert server.engine == "vllm" and server.model_name == "a b"  # the served name, as /v1/models lists it
    assert any("Loading safetensors" in line for line in progress)
    assert not alive(leader) and not alive(worker)


def test_crash_at_start_fails_with_the_log_tail(fake_vllm, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_CRASH", "1")
    with pytest.raises(TargetError) as err:
        with start_local_server("m", engine="vllm", log_path=fake_vllm / "server.log", startup_timeout_s=30):
            pytest.fail("the server must not be yielded")
    message = str(err.value)
    assert "exited with code 1" in message and "CUDA out of memory (fake)" in message
    assert not alive(int((fake_vllm / "worker.pid").read_text()))


def test_start_timeout_kills_the_server(fake_vllm, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_START_DELAY_S", "60")
    started = time.monotonic()
    with pytest.raises(TargetError, match=r"not ready after 1\.5 s(.|\n)*Loading safetensors"):
        with start_local_server("m", engine="vllm", log_path=fake_vllm / "server.log", startup_timeout_s=1.5):
            pass
    assert time.monotonic() - started < 15
    assert not alive(int((fake_vllm / "worker.pid").read_text()))


def test_sigterm_ignored_means_sigkill_and_ctrl_c_still_stops(fake_vllm, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_IGNORE_SIGTERM", "1")
    with pytest.raises(KeyboardInterrupt):
        with start_local_server("m", engine="vllm", log_path=fake_vllm / "server.log", startup_timeout_s=30) as server:
            server.stop_grace_s = 0.5
            leader = server._process.pid
            raise KeyboardInterrupt
    worker = int((fake_vllm / "worker.pid").read_text())
    assert not alive(leader) and not alive(worker)


def test_vllm_missing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"pip install 'perfbench\[vllm\]'"):
        with start_local_server("m", engine="vllm", log_path=tmp_path / "server.log"):
            pass
    with pytest.raises(ConfigError, match="install it with"):
        serve_main(["--model", "m", "--engine", "vllm"])


def test_bad_arguments_are_config_errors(fake_vllm):
    with pytest.raises(ConfigError, match="must not set --port"):
        vllm_command("m", host="127.0.0.1", port=1, engine_args="--port 9")
    with pytest.raises(ConfigError, match="cannot be split"):
        vllm_command("m", host="127.0.0.1", port=1, engine_args="--x 'unclosed")
    for argv, fragment in [
        (["--model", "m", "--engine", "tgi"], "invalid choice"),
        (["--engine", "vllm"], "--model"),
        (["--model", "m", "--port", "70000"], "not a TCP port"),
        (["--model", "m", "--device", "gpu"], "--device"),
        (["--model", "m", "--max-batch-size", "0"], "at least 1"),
        (["--model", "m", "--engine-args", "--x 1"], "--engine-args is for --engine vllm"),
    ]:
        with pytest.raises(ConfigError, match=fragment) as err:
            serve_main(argv)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not one of"):
        with start_local_server("m", engine="tgi", log_path=fake_vllm / "server.log"):
            pass
