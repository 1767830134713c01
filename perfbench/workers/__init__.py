"""Past one process: a step's schedule split into slices that share one start time, each slice
run by its own engine in a worker, records streamed back to the parent in batches and merged.

- ``slicing``: the pure split of a StepPlan (``split_step``).
- ``body``: what runs inside a worker (engine, phases, outbox), whichever transport carries it.
- ``pool``: the parent's side (``WorkerPool``): phases, shared start, record intake, lost workers.
- ``processes``: workers as local processes (``--workers N``).
- ``ray_actors``: workers as Ray actors across a cluster (``--ray [ADDRESS]``); Ray is imported
  only there, only when asked for.
- ``clocks``: wall-clock anchors that put every worker's records on the parent's perf counter.
"""

from __future__ import annotations

from typing import Callable

from perfbench.engine.live import LiveCounters
from perfbench.results.records import RequestRecord
from perfbench.workers.body import WorkerSetup
from perfbench.workers.pool import WorkerPool
from perfbench.workers.slicing import split_step

__all__ = ["WorkerPool", "WorkerSetup", "split_step", "worker_pool"]


def worker_pool(count: int, ray: str | None, setup: WorkerSetup, sink: Callable[[RequestRecord], None],
                counters: LiveCounters) -> WorkerPool:
    """The pool of ``count`` workers: local processes, or Ray actors at ``ray`` (``count`` 0: one per node)."""
    if ray is not None:
        from perfbench.workers.ray_actors import RayTransport

        return WorkerPool(RayTransport(ray, count, setup), sink, counters)
    from perfbench.workers.processes import ProcessTransport

    return WorkerPool(ProcessTransport(count, setup), sink, counters)
