"""The engine's finisher: ended requests wait for their records in a bounded backlog (memory never grows with the run)."""

from __future__ import annotations

from perfbench.engine import finisher as finisher_module


async def test_requests_ending_faster_than_they_are_finished_never_pile_up():
    finished: list[int] = []
    finisher = finisher_module.Finisher(finished.append)
    for k in range(10 * finisher_module.MAX_FINISH_BACKLOG):  # no await in between: the finisher task never ran
        finisher.put(k)  # type: ignore[arg-type]  (only queued and handed back here)
        assert len(finisher._queue) <= finisher_module.MAX_FINISH_BACKLOG
    assert finished == list(range(len(finished))) and len(finished) >= 9 * finisher_module.MAX_FINISH_BACKLOG  # in order
    await finisher.drain()
    assert finished == list(range(10 * finisher_module.MAX_FINISH_BACKLOG))  # every one, once
