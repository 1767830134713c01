"""Request k of a run from its source: built ahead of need within a bounded window, the same
request k in every process, a step's known requests built before its clock."""

from __future__ import annotations

import asyncio
import pickle

from perfbench.apis import get_adapter
from perfbench.engine.engine import Engine, step_numbers
from perfbench.engine.plan import PreparedRequest, StepPlan, Target
from perfbench.engine.request_source import BuiltAhead, CycledRequests


class Bodies:
    """Request k's body says k (and is ``size`` bytes long); counts what it built."""

    def __init__(self, size: int = 10) -> None:
        self.size = size
        self.built: list[int] = []

    def __call__(self, number: int) -> PreparedRequest:
        self.built.append(number)
        return PreparedRequest(str(number).encode().ljust(self.size), None)


def test_every_request_is_its_build_whether_built_ahead_or_not() -> None:
    source = BuiltAhead(Bodies(), window_bodies=8)
    source.expect(range(100, 200, 2))
    assert source.ready == 8  # the window, before the phase's clock
    taken = [source.get(n).body.strip() for n in (100, 102, 7, 150, 104)]  # 7 and 150: off or past the window
    assert taken == [b"100", b"102", b"7", b"150", b"104"]


def test_the_window_is_bounded_in_bodies_and_bytes() -> None:
    bodies = Bodies(size=1000)
    source = BuiltAhead(bodies, window_bodies=50, window_bytes=10_000)
    source.expect(range(0, 2**62))  # a duration-bound step: endless
    assert source.ready == 10  # 10 bodies of 1,000 bytes fill the bytes bound first
    assert bodies.built == list(range(10))


def test_keep_ahead_refills_the_window_as_requests_are_taken() -> None:
    bodies = Bodies()

    async def phase() -> list[int]:
        source = BuiltAhead(bodies, window_bodies=16)
        source.expect(range(0, 2**62))
        feeder = asyncio.ensure_future(source.keep_ahead())
        levels = []
        for number in range(1000):
            assert source.get(number).body.strip() == str(number).encode()
            await asyncio.sleep(0)  # the sends' turns: the builder's come between them
            levels.append(source.ready)
        feeder.cancel()
        return levels

    levels = asyncio.run(phase())
    assert max(levels) <= 16 and min(levels[100:]) >= 7  # never more than the window, and never run dry
    # Each number built once (the window never ran dry, so none was built on the send path)
    assert sorted(bodies.built) == sorted(set(bodies.built)) and len(bodies.built) <= 1000 + 16


def test_a_finite_phase_builds_nothing_past_its_end() -> None:
    bodies = Bodies()

    async def phase() -> None:
        source = BuiltAhead(bodies, window_bodies=4)
        source.expect(range(10, 30))
        feeder = asyncio.ensure_future(source.keep_ahead())
        for number in range(10, 30):
            source.get(number)
            await asyncio.sleep(0)
        await asyncio.wait_for(feeder, 5)  # ends by itself: nothing is left to build

    asyncio.run(phase())
    assert sorted(bodies.built) == list(range(10, 30))


def test_a_source_travels_to_a_worker_without_its_window() -> None:
    source = BuiltAhead(Bodies(), window_bodies=8)
    source.expect(range(8))
    copy = pickle.loads(pickle.dumps(source))
    assert copy.ready == 0 and source.ready == 8
    assert copy.get(5).body == source.get(5).body


def test_a_list_of_requests_cycles() -> None:
    source = CycledRequests([PreparedRequest(b"a", 1), PreparedRequest(b"b", 1)])
    assert [source.get(n).body for n in range(5)] == [b"a", b"b", b"a", b"b", b"a"]


def test_a_steps_known_requests_are_built_before_its_clock() -> None:
    bodies = Bodies()
    source = BuiltAhead(bodies)
    engine = Engine(None, Target("http://127.0.0.1:9/", get_adapter("openai-chat"), {}), source, lambda r: None)  # type: ignore[arg-type]
    asyncio.run(engine.prepare(StepPlan(step=1, concurrency=4, number=300, duration_s=None, request_base=40)))
    assert source.ready == 300 and sorted(bodies.built) == list(range(40, 340))


def test_the_numbers_of_a_step_and_of_its_slices() -> None:
    assert step_numbers(StepPlan(step=0, concurrency=4, number=5, duration_s=None, request_base=7)) == range(7, 12)
    closed_slice = StepPlan(step=0, concurrency=2, number=3, duration_s=None, request_base=10, first_index=4)
    assert list(step_numbers(closed_slice)) == [14, 15, 16]
    interleaved = StepPlan(step=0, concurrency=2, number=None, duration_s=1.0, first_index=1, index_stride=3)
    assert step_numbers(interleaved)[:3] == range(1, 10, 3) and len(step_numbers(interleaved)) > 10**12
    open_slice = StepPlan(step=0, concurrency=9, number=10, duration_s=None, rate_req_s=5.0, request_base=100,
                          arrival_slice=1, arrival_slices=3)
    assert list(step_numbers(open_slice)) == [101, 104, 107]
    trace = StepPlan(step=0, concurrency=9, number=None, duration_s=None, offsets_s=(0.0, 0.5, 1.0))
    assert list(step_numbers(trace)) == [0, 1, 2]
