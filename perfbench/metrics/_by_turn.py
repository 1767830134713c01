"""A multi-turn run's numbers by turn index: how TTFT, latency and the prompt grow as a session's history does.

Fed the same chunks as the step's accumulator; keeps per turn a column of each metric (from the
same column functions as the step's statistics, so a turn's TTFT is the step's TTFT restricted to
that turn) and the counts of requests that finished and succeeded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from perfbench.metrics._per_request import Columns
from perfbench.metrics._registry import METRICS_BY_KEY
from perfbench.metrics._stats import describe
from perfbench.results.records import RequestRecord

BY_TURN_METRICS = ("ttft_ms", "latency_ms", "input_tokens_per_request")  # summary.json "by_turn" statistics, in order


class TurnAccumulator:
    """Per turn index: finished and succeeded counts, and the columns of BY_TURN_METRICS."""

    def __init__(self) -> None:
        self.completed: Counter[int] = Counter()
        self.succeeded: Counter[int] = Counter()
        self._columns: dict[int, dict[str, list[np.ndarray]]] = {}

    def add(self, records: Sequence[RequestRecord], succeeded: Sequence[RequestRecord], columns: Columns | None) -> None:
        """``records``: the chunk's non-warm-up records; ``succeeded``: those that succeeded, whose columns are ``columns``."""
        for r in records:
            if r.turn is not None:
                self.completed[r.turn] += 1
        if columns is None or not succeeded or succeeded[0].turn is None:
            return
        turns = np.fromiter((r.turn for r in succeeded), dtype=np.int64, count=len(succeeded))
        values = {key: METRICS_BY_KEY[key].column(columns) for key in BY_TURN_METRICS}
        for turn in np.unique(turns).tolist():
            mask = turns == turn
            self.succeeded[turn] += int(mask.sum())
            kept = self._columns.setdefault(turn, {key: [] for key in BY_TURN_METRICS})
            for key in BY_TURN_METRICS:
                kept[key].append(values[key][mask])

    def summary(self) -> tuple[dict[str, Any], ...]:
        """summary.json's ``by_turn``: one object per turn index (1-based ``turn``), empty without sessions."""
        out = []
        for turn in sorted(self.completed):
            kept = self._columns.get(turn, {})
            entry: dict[str, Any] = {"turn": turn + 1, "requests_completed": self.completed[turn],
                                     "requests_succeeded": self.succeeded[turn]}
            for key in BY_TURN_METRICS:
                column = np.concatenate(kept[key]) if kept.get(key) else np.empty(0)
                entry[key] = describe(column).to_dict()
            out.append(entry)
        return tuple(out)
