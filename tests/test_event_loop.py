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
@pytest.mark.parametrize("plain_asyncio", [False, True], ids=["default-loop", "asyncio"])
def test_sleep_until_never_returns_before_the_deadline(monkeypatch, plain_asyncio):
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


def test_run_in_flight_raises_the_first_error_at_once_and_cancels_the_rest():
    import asyncio
    import time

    cancelled: list[str] = []

    async def hang(name: str) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def fail() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("a bug in a request")

    async def dispatch(start) -> None:
        start(hang("a"))
        start(fail())
        await asyncio.sleep(60)  # the next arrival is far off: the error must not wait for it
        start(hang("never"))

    async def main() -> float:
        began = time.monotonic()
        with pytest.raises(ValueError, match="a bug in a request"):
            await event_loop.run_in_flight(dispatch)
        return time.monotonic() - began

    assert event_loop.run(main()) < 5
    assert cancelled == ["a"]


def test_a_cancelled_run_in_flight_cancels_every_task_and_waits_for_them():
    import asyncio

    ended: list[str] = []

    async def request(name: str) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            ended.append(name)

    async def dispatch(start) -> None:
        for name in ("a", "b", "c"):
            start(request(name))
        await asyncio.sleep(60)

    async def main() -> None:
        running = asyncio.ensure_future(event_loop.run_in_flight(dispatch))
        await asyncio.sleep(0.05)
        running.cancel()  # Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await running
        assert sorted(ended) == ["a", "b", "c"]  # each ended before the cancelled caller returned

    event_loop.run(main())
