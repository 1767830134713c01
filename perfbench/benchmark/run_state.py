"""What a run has produced so far (counts, the steps' summaries).

Held apart from the run itself so an interrupted ``asyncio.run`` leaves it intact: the summary of
what finished is always written from here.
"""

from __future__ import annotations

from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

from perfbench.config.run_config import LoadStep, RunConfig
from perfbench.metrics import StepAccumulator, StepSummary
from perfbench.results.client_reading import ClientReading
from perfbench.results.records import CONNECT_ERROR, WORKER_LOST, RequestRecord
from perfbench.results.runfiles import RecordReader


class PromptTally:
    """Which prompts the run sent, and how often (summary.json's ``workload``).

    A prompts file's, a dataset's or a trace's requests, and a conversations file's user turns, are
    counted each in one slot of a compact array (``cycle`` of them: the run cycles through them);
    synthetic prompts never repeat, so they are only counted. Request ``k`` of the run is
    ``index`` for a warm-up record, else its step's first request number plus ``index``.
    """

    def __init__(self, source: str, cycle: int | None, session_key: Callable[[int, int], int | None] | None = None) -> None:
        self.source = source  # prepare.py's SYNTHETIC, FILE, DATASET, TRACE or CONVERSATIONS
        self._counts = array("q", bytes(8 * cycle)) if cycle else None  # sends of each of the source's prompts
        self._session_key = session_key  # a session turn's prompt (SessionWorkload.prompt_key)
        self._step_first: dict[int, int] = {}  # {step: the run's request number of its index 0}
        self.sent = 0  # records counted (a request a lost worker never reported is not)

    def step_starts(self, step: int, first_number: int) -> None:
        self._step_first[step] = first_number

    def add(self, record: RequestRecord) -> None:
        if record.status == WORKER_LOST:
            return  # never known to have left
        self.sent += 1
        counts = self._counts
        if counts is None:
            return
        if record.session is not None and self._session_key is not None:
            key = self._session_key(record.session, record.turn or 0)
        else:
            key = record.index + (0 if record.warmup else self._step_first.get(record.step, 0))
        if key is not None:
            counts[key % len(counts)] += 1

    def to_dict(self) -> dict[str, Any]:
        """``{"prompts_source", "distinct_prompts", "max_repeats"}`` of what was counted so far."""
        if self._counts is None:
            distinct, repeats = self.sent, min(self.sent, 1)
        else:
            distinct, repeats = len(self._counts) - self._counts.count(0), max(self._counts, default=0)
        return {"prompts_source": self.source, "distinct_prompts": distinct, "max_repeats": repeats}


@dataclass
class RunState:
    """What a run has produced so far; survives an interrupted ``asyncio.run``.

    It holds no record: records are in requests.jsonl as they finish, and a step is summarised
    from there in chunks (``reader``), so memory does not grow with the number of finished requests.
    """

    reader: RecordReader  # the run's requests.jsonl, read back as it grows
    flush_records: Callable[[], None] = lambda: None  # writes the lines the writer still holds (it batches per loop turn)
    steps: list[tuple[int, LoadStep, int | None]] = field(default_factory=list)  # (step index, load, expected)
    search: dict[str, Any] | None = None
    stopped_early: str | None = None
    finished: Counter[int] = field(default_factory=Counter)  # {step: records finished, warm-up included}
    unreachable: Counter[int] = field(default_factory=Counter)  # {step: records that failed to connect}
    output_tokens: int = 0  # output tokens of succeeded non-warm-up requests (telemetry's per-token figures)
    summaries: dict[int, StepSummary] = field(default_factory=dict)  # steps summarised once all their requests finished
    pending: dict[int, StepAccumulator] = field(default_factory=dict)  # records read back, per step not yet summarised
    workers: list[dict[str, Any]] = field(default_factory=list)  # a pool's workers (summary.json "workers"): where, clock offset, lost
    transport: str | None = None  # the HTTP transport that ran ("lean", "aiohttp"): summary.json environment.transport
    transport_reason: str | None = None  # why it was not the lean one
    client: dict[int, tuple[ClientReading, ...]] = field(default_factory=dict)  # {step: the engine's readings of itself}
    prompts: PromptTally | None = None  # which prompts were sent, how often (summary.json "workload")

    def add(self, record: RequestRecord) -> None:
        """Count a finished record (the sink calls this; the record itself goes to requests.jsonl)."""
        self.finished[record.step] += 1
        if record.status == CONNECT_ERROR:
            self.unreachable[record.step] += 1
        if record.ok and not record.warmup:
            self.output_tokens += record.output_tokens or 0
        if self.prompts is not None:
            self.prompts.add(record)

    def all_unreachable(self, step: int) -> bool:
        """Every record of ``step`` failed to connect."""
        return self.finished[step] > 0 and self.unreachable[step] == self.finished[step]

    def read_back(self) -> None:
        """Fold the records written since the last call into their steps' accumulators."""
        self.flush_records()
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
        client_readings=state.client.get(index),
    )
    state.summaries[index] = summary
    return summary


def summarize(config: RunConfig, state: RunState) -> list[StepSummary]:
    """Every step's summary: those that finished as summarised then, an interrupted one from what finished."""
    return [summarize_step(config, state, index, load, expected) for index, load, expected in state.steps]
