"""What the engine measured of the client itself during one step, one reading per process: the
hand-over from the engine to perfbench.metrics beside the request records (DESIGN.md, "The client
checks itself"). Raw measurements only; statistics and the verdict are computed in metrics/.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ClientReading:
    """One client process during one step's load (warm-up and connection set-up excluded)."""

    cpu_s: float  # CPU seconds the process used (every thread, user + system)
    wall_s: float  # the step's wall time in this process, s
    loop_lag_ns: array = field(default_factory=lambda: array("q"))  # how late each tick of a periodic timer ran on the process's event loop, ns
    worker: int | None = None  # the worker's number; None: the run's own process (the engine itself, or a worker pool's parent)

    @property
    def cpu_utilization(self) -> float | None:
        """CPU seconds over wall seconds: 1.0 is one core kept busy; None without a wall time."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else None
