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


async def test_the_backlog_is_bounded_by_the_answer_bytes_it_holds_too(monkeypatch):
    from perfbench.engine.answers import Exchange, ReadStream

    monkeypatch.setattr(finisher_module, "MAX_FINISH_BACKLOG_BYTES", 10 * 1000)
    finished: list[int] = []
    finisher = finisher_module.Finisher(lambda ended: finished.append(ended.index))
    for k in range(100):  # each holds 1,000 bytes: at most 10 wait
        finisher.put(Exchange(0, k, False, 0, 0, 0, 200, None, ReadStream(chunks=[b"x" * 600, b"y" * 400]), None))  # type: ignore[arg-type]
        assert len(finisher._queue) <= 10 and finisher._queued_bytes <= 10 * 1000
    await finisher.drain()
    assert finished == list(range(100)) and finisher._queued_bytes == 0
