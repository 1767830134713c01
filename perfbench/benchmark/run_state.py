"""What a run has produced so far (counts, the steps' summaries).

Held apart from the run itself so an interrupted ``asyncio.run`` leaves it intact: the summary of
what finished is always written from here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from perfbench.config.run_config import LoadStep, RunConfig
from perfbench.metrics import StepAccumulator, StepSummary
from perfbench.results.records import CONNECT_ERROR, RequestRecord
from perfbench.results.runfiles import RecordReader


@dataclass
class RunState:
    """What a run has produced so far; survives an interrupted ``asyncio.run``.

    It holds no record: records are in requests.jsonl as they finish, and a step is summarised
    from there in chunks (``reader``), so memory does not grow with the number of finished requests.
    """

    reader: RecordReader  # the run's requests.jsonl, read back as it grows
    steps: list[tuple[int, LoadStep, int | None]] = field(default_factory=list)  # (step index, load, expected)
    search: dict[str, Any] | None = None
    stopped_early: str | None = None
    finished: Counter[int] = field(default_factory=Counter)  # {step: records finished, warm-up included}
    unreachable: Counter[int] = field(default_factory=Counter)  # {step: records that failed to connect}
    output_tokens: int = 0  # output tokens of succeeded non-warm-up requests (telemetry's per-token figures)
    summaries: dict[int, StepSummary] = field(default_factory=dict)  # steps summarised once all their requests finished
    pending: dict[int, StepAccumulator] = field(default_factory=dict)  # records read back, per step not yet summarised
    workers: list[dict[str, Any]] = field(default_factory=list)  # a pool's workers (summary.json "workers"): where, clock offset, lost

    def add(self, record: RequestRecord) -> None:
        """Count a finished record (the sink calls this; the record itself goes to requests.jsonl)."""
        self.finished[record.step] += 1
        if record.status == CONNECT_ERROR:
            self.unreachable[record.step] += 1
        if record.ok and not record.warmup:
            self.output_tokens += record.output_tokens or 0

    def all_unreachable(self, step: int) -> bool:
        """Every record of ``step`` failed to connect."""
        return self.finished[step] > 0 and self.unreachable[step] == self.finished[step]

    def read_back(self) -> None:
        """Fold the records written since the last call into their steps' accumulators."""
        for chunk in self.reader.chunks():
            by_step: dict[int, list[RequestRecord]] = defaultdict(list)
            for record in chunk:
                by_step[record.step].append(record)
            for step, records in by_step.items():
                self.pending.setdefault(step, StepAccumulator()).add(records)


def summarize_step(config: RunConfig, state: RunState, index: int, load: LoadStep, expected: int | None) -> StepSummary:
    """Step ``index``'s summary from its records in requests.jsonl; kept, as a finished step gets no more."""
    if index in state.summaries:
        return state.summaries[index]
    state.read_back()
    accumulator = state.pending.pop(index, None) or StepAccumulator()
    summary = accumulator.summary(
        concurrency=load.concurrency, rate_req_s=load.rate_req_s,
        requests_expected=expected if expected is not None else state.finished[index], slos=config.slos,
    )
    state.summaries[index] = summary
    return summary


def summarize(config: RunConfig, state: RunState) -> list[StepSummary]:
    """Every step's summary: those that finished as summarised then, an interrupted one from what finished."""
    return [summarize_step(config, state, index, load, expected) for index, load, expected in state.steps]
