"""A step's schedule as slices that share one start time: pure functions of a StepPlan.

Closed loop, the concurrency (and a request count) is divided and each slice takes a contiguous
range of indexes (a duration-bound one takes every n-th); open loop, every slice computes the
whole schedule and sends every n-th arrival, so the merged arrivals are exactly the requested
process. A request's prompt follows from its index, as in one process.
"""

from __future__ import annotations

from dataclasses import replace
from typing import AbstractSet, Sequence

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


def unfinished(plan: StepPlan | None, warmup_phase: bool, seen: AbstractSet[tuple[bool, int]], in_flight: int) -> list[tuple[bool, int]]:
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
        sent = [index for warmup, index in seen if not warmup]
        after = max(sent) + plan.index_stride if sent else plan.first_index
        wanted = [(False, after + k * plan.index_stride) for k in range(in_flight)]
    return [pair for pair in wanted if pair not in seen]
