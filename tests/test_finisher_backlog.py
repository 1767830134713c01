"""The engine's finisher: ended requests wait for their records in a bounded backlog (memory never grows with the run)."""

from __future__ import annotations

from perfbench import engine


async def test_requests_ending_faster_than_they_are_finished_never_pile_up():
    finished: list[int] = []
    finisher = engine._Finisher(finished.append)
    for k in range(10 * engine.MAX_FINISH_BACKLOG):  # no await in between: the finisher task never ran
        finisher.put(k)  # type: ignore[arg-type]  (only queued and handed back here)
        assert len(finisher._queue) <= engine.MAX_FINISH_BACKLOG
    assert finished == list(range(len(finished))) and len(finished) >= 9 * engine.MAX_FINISH_BACKLOG  # in order
    await finisher.drain()
    assert finished == list(range(10 * engine.MAX_FINISH_BACKLOG))  # every one, once
