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


@pytest.mark.parametrize("plain_asyncio", [False, True], ids=["default-loop", "asyncio"])
def test_sleep_until_never_returns_before_the_deadline(monkeypatch, plain_asyncio):
    import asyncio
    import random
    import time

    if plain_asyncio:
        monkeypatch.setattr(event_loop, "_new_loop", None)

    async def lateness_ns() -> list[int]:
        rng, late = random.Random(1), []
        for _ in range(200):
            due_ns = time.perf_counter_ns() + rng.randrange(0, 3_000_000)
            await event_loop.sleep_until(due_ns)
            late.append(time.perf_counter_ns() - due_ns)
        return late

    late = event_loop.run(lateness_ns())
    assert min(late) >= 0
    assert sorted(late)[len(late) // 2] < 5_000_000  # and not by much (a generous bound for a busy machine)

