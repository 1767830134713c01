"""A step's schedule as slices that share one start time: pure functions of a StepPlan.

Closed loop, the concurrency (and a request count) is divided and each slice takes a contiguous
range of indexes (a duration-bound one takes every n-th); open loop, every slice computes the
whole schedule and sends every n-th arrival, so the merged arrivals are exactly the requested
process. A request's prompt follows from its index, as in one process.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from perfbench.engine.plan import StepPlan

def _divide(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` in whole shares proportional to ``weights`` (largest remainder), adding up to ``total``."""
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    shares = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: shares[i] - exact[i])[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _ranges(counts: Sequence[int]) -> list[int]:
    """The first index of each of consecutive ranges of ``counts``."""
    firsts, first = [], 0
    for count in counts:
        firsts.append(first)
        first += count
    return firsts


def split_step(plan: StepPlan, slices: int) -> list[StepPlan]:
    """``plan`` as at most ``slices`` slices that together send what it sends (fewer when its concurrency is lower)."""
    count = max(1, min(slices, plan.concurrency))
    concurrency = _divide(plan.concurrency, [1] * count)
    warmup = _divide(plan.warmup, concurrency)
    warmup_first = _ranges(warmup)
    preconnect = [max(1, p) if plan.preconnect else 0 for p in _divide(plan.preconnect, concurrency)]
    if plan.rate_req_s is not None:
        return [
            replace(plan, concurrency=concurrency[i], warmup=warmup[i], warmup_first_index=warmup_first[i],
                    preconnect=preconnect[i], arrival_slice=i, arrival_slices=count)
            for i in range(count)
        ]
    if plan.number is None:  # bounded by duration: no count to divide, so the indexes interleave
        return [
            replace(plan, concurrency=concurrency[i], warmup=warmup[i], warmup_first_index=warmup_first[i],
                    preconnect=preconnect[i], first_index=i, index_stride=count)
            for i in range(count)
        ]
    number = _divide(plan.number, concurrency)
    first = _ranges(number)
    return [
        replace(plan, concurrency=concurrency[i], number=number[i], first_index=first[i], warmup=warmup[i],
                warmup_first_index=warmup_first[i], preconnect=preconnect[i])
        for i in range(count)
        if number[i] or warmup[i]
    ]


def slice_indexes(plan: StepPlan) -> range:
    """The arrival indexes an open-loop slice sends: its share of the plan's one schedule."""
    offsets = plan.arrival_offsets_s()
    assert offsets is not None, "an open-loop plan"
    return plan.arrival_indexes(len(offsets))


class _Lane:
    """The indexes ``first + k * stride`` seen, in memory for those seen out of order only: records end
    about in the order they were sent, so the leading run of positions seen is one number."""

    def __init__(self, first: int, stride: int) -> None:
        self.first, self.stride = first, stride
        self.run = 0  # positions 0 .. run-1 are all seen
        self.ahead: set[int] = set()  # positions seen past the run
        self.off_lane: set[int] = set()  # indexes seen that are not on the lane (none, in a well-formed slice)
        self.count = 0
        self.last = -1  # the highest index seen

    def _position(self, index: int) -> int | None:
        offset = index - self.first
        return offset // self.stride if offset >= 0 and offset % self.stride == 0 else None

    def add(self, index: int) -> None:
        if index in self:
            return
        self.count += 1
        self.last = max(self.last, index)
        position = self._position(index)
        if position is None:
            self.off_lane.add(index)
        elif position != self.run:
            self.ahead.add(position)
        else:
            self.run += 1
            while self.run in self.ahead:
                self.ahead.remove(self.run)
                self.run += 1

    def __contains__(self, index: int) -> bool:
        position = self._position(index)
        if position is None:
            return index in self.off_lane
        return position < self.run or position in self.ahead


class SeenIndexes:
    """The (warm-up, index) pairs of a slice's records so far, kept as counts: memory grows with the
    requests that ended out of order, not with the step (see ``_Lane``)."""

    def __init__(self, plan: StepPlan | None = None) -> None:
        self._warmup = _Lane(plan.warmup_first_index if plan else 0, 1)
        if plan is not None and plan.rate_req_s is not None:
            self._step = _Lane(plan.arrival_slice, plan.arrival_slices)
        else:
            self._step = _Lane(plan.first_index if plan else 0, plan.index_stride if plan else 1)

    def add(self, warmup: bool, index: int) -> None:
        (self._warmup if warmup else self._step).add(index)

    def __contains__(self, pair: tuple[bool, int]) -> bool:
        warmup, index = pair
        return index in (self._warmup if warmup else self._step)

    @property
    def step_records(self) -> int:
        """Records of the step itself (not of its warm-up)."""
        return self._step.count

    @property
    def last_step_index(self) -> int | None:
        return self._step.last if self._step.count else None

    @property
    def size(self) -> int:
        """Indexes held one by one (the rest are counted): what memory this takes grows with."""
        lanes = (self._warmup, self._step)
        return sum(len(lane.ahead) + len(lane.off_lane) for lane in lanes)


def unfinished(plan: StepPlan | None, warmup_phase: bool, seen: SeenIndexes, in_flight: int) -> list[tuple[bool, int]]:
    """The (warm-up, index) pairs of a slice that have no record among ``seen`` (a lost worker's).

    ``warmup_phase``: it died before the step's clock started, so the whole step is still owed;
    ``in_flight``: for a duration-bound step, which has no list of indexes, what it last said it had out.
    """
    if plan is None:
        return []
    if warmup_phase:
        wanted = [(True, plan.warmup_first_index + k) for k in range(plan.warmup)]
        if plan.rate_req_s is not None:
            wanted += [(False, i) for i in slice_indexes(plan)]
        elif plan.number is not None:
            wanted += [(False, plan.first_index + k * plan.index_stride) for k in range(plan.number)]
    elif plan.rate_req_s is not None:
        wanted = [(False, i) for i in slice_indexes(plan)]
    elif plan.number is not None:
        wanted = [(False, plan.first_index + k * plan.index_stride) for k in range(plan.number)]
    else:
        last = seen.last_step_index
        after = last + plan.index_stride if last is not None else plan.first_index
        wanted = [(False, after + k * plan.index_stride) for k in range(in_flight)]
    return [pair for pair in wanted if pair not in seen]
