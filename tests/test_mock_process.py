"""The built-in demo's mock runs in a process of its own, so its timing shares no interpreter with the client."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from perfbench.commands.main import main
from perfbench.core.errors import TargetError
from perfbench.servers import mock as mock_module
from perfbench.servers.mock import MockConfig, MockProcess


def test_the_mock_process_serves_its_settings_and_is_gone_after() -> None:
    with MockProcess(MockConfig(ttft_ms=1, itl_ms=1, model="demo-model")) as mock:
        process = mock._process
        assert process is not None and process.pid != os.getpid()
        with urllib.request.urlopen(f"{mock.base_url}/v1/models", timeout=10) as answer:
            assert json.load(answer)["data"][0]["id"] == "demo-model"
    assert process.poll() is not None  # stopped, by its handle


def test_a_mock_that_cannot_start_is_a_one_line_target_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mock_module, "MOCK_START_TIMEOUT_S", 0.0)  # no time to print its URL
    with pytest.raises(TargetError, match="did not start"):
        with MockProcess(MockConfig()):
            pass


def test_a_simulated_run_uses_the_mock_in_its_own_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []

    class Recording(MockProcess):
        def __enter__(self) -> "Recording":
            super().__enter__()
            assert self._process is not None
            started.append(self._process.pid)
            return self

    monkeypatch.setattr(mock_module, "MockProcess", Recording)
    assert main(["-n", "4", "--max-tokens", "4", "--no-live", "--no-plots", "--no-telemetry",
                 "--output-dir", str(tmp_path / "r"), "--store", str(tmp_path / "s.db")]) == 0
    assert len(started) == 1 and started[0] != os.getpid()
    lines = (tmp_path / "r" / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line)["status"] == "ok" for line in lines)
