"""Per-node clocks that never mix: every interval is measured inside one process, on its own
``perf_counter_ns``; only whole records move from one clock's base to another's.

Each process takes an ``Anchor``: its wall clock and its perf counter read together. Machines'
perf counters have unrelated zero points, their wall clocks agree (NTP) to well under a
millisecond, so the anchors give each worker's constant offset to the driver's perf counter.
A shared start is handed over as wall-clock time and turned into each worker's own perf counter;
a worker's records are shifted by its offset, every stamp alike, so no interval changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from perfbench.engine.plan import StepPlan
from perfbench.results.records import RequestRecord

_ANCHOR_READS = 5  # reads of the pair; the tightest one is kept (a preempted read would skew the anchor)


@dataclass(frozen=True)
class Anchor:
    """One process's wall clock and perf counter, read at the same moment (both in ns)."""

    wall_ns: int
    perf_ns: int

    @classmethod
    def now(cls) -> "Anchor":
        best: tuple[int, int, int] | None = None
        for _ in range(_ANCHOR_READS):
            before = time.time_ns()
            perf = time.perf_counter_ns()
            after = time.time_ns()
            if best is None or after - before < best[0]:
                best = (after - before, (before + after) // 2, perf)
        assert best is not None
        return cls(wall_ns=best[1], perf_ns=best[2])

    def to_wall(self, perf_ns: int) -> int:
        return perf_ns - self.perf_ns + self.wall_ns

    def to_perf(self, wall_ns: int) -> int:
        return wall_ns - self.wall_ns + self.perf_ns

    def offset_to(self, base: "Anchor") -> int:
        """What to add to this clock's perf stamps to put them on ``base``'s perf counter."""
        return (self.wall_ns - self.perf_ns) - (base.wall_ns - base.perf_ns)


def shift_record(record: RequestRecord, offset_ns: int) -> RequestRecord:
    """``record`` with every stamp moved by ``offset_ns`` (its intervals unchanged)."""
    if not offset_ns:
        return record
    return replace(
        record,
        scheduled_ns=record.scheduled_ns + offset_ns,
        sent_ns=record.sent_ns + offset_ns,
        end_ns=record.end_ns + offset_ns,
        package_times_ns=tuple(t + offset_ns for t in record.package_times_ns),
    )


def start_as_wall(plan: StepPlan, driver: Anchor) -> tuple[StepPlan, int | None]:
    """The driver's side: a slice whose shared start is on the driver's perf counter, as (plan without it, wall-clock start)."""
    if plan.start_ns is None:
        return plan, None
    return replace(plan, start_ns=None), driver.to_wall(plan.start_ns)


def start_on_own_clock(plan: StepPlan, start_wall_ns: int | None, own: Anchor) -> StepPlan:
    """The worker's side: the slice with the shared wall-clock start on this process's perf counter."""
    if start_wall_ns is None:
        return plan
    return replace(plan, start_ns=own.to_perf(start_wall_ns))
