"""The run's event loop: uvloop when installed, asyncio otherwise; summary.json says which ran."""

from __future__ import annotations

import json

import pytest

from perfbench.engine import event_loop
from perfbench.commands.main import main


def test_the_summary_names_the_loop_that_ran(tmp_path):
    pytest.importorskip("uvloop")
    assert main(["-c", "2", "-n", "4", "--max-tokens", "4", "--no-plots", "--no-live", "--no-telemetry",
                 "--output-dir", str(tmp_path / "r"), "--store", str(tmp_path / "s.db")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["environment"]["event_loop"].startswith("uvloop ")


def test_without_uvloop_the_plain_asyncio_loop_runs(monkeypatch):
    import asyncio

    monkeypatch.setattr(event_loop, "_new_loop", None)

    async def loop_type() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(loop_type()).startswith("asyncio")


def test_with_uvloop_the_run_is_on_uvloop():
    pytest.importorskip("uvloop")
    import asyncio

    async def loop_type() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert event_loop.run(loop_type()).startswith("uvloop")


def test_threads_hand_the_gil_back_to_the_loop_quickly_while_it_runs_and_as_before_after() -> None:
    import sys

    before = sys.getswitchinterval()

    async def interval() -> float:
        return sys.getswitchinterval()

    assert event_loop.run(interval()) == event_loop.GIL_SWITCH_INTERVAL_S < before
    assert sys.getswitchinterval() == before
