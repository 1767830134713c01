"""One benchmark run: prepare the requests, drive the engine step by step, summarise, write files.

The stages stay apart: this module wires config -> schedule/engine -> records -> metrics -> files.
Records reach requests.jsonl the moment they finish; summary.json is written from whatever
finished, also after Ctrl-C or a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import datetime as dt
import logging
import platform
import socket
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

import numpy as np

from perfbench import __version__, event_loop
from perfbench.apis import ApiAdapter, get_adapter
from perfbench.config import LoadStep, RunConfig, safe_name
from perfbench.option_values import DATASET_LENGTHS
from perfbench.engine import UNCAPPED, Engine, LiveCounters, PreparedRequest, StepPlan, Target, make_session
from perfbench.errors import ConfigError, TargetError
from perfbench.lengths import LengthDistribution
from perfbench.limits import OPEN_FILES_MARGIN, ensure_open_files
from perfbench.metrics import DURATIONS, StepAccumulator, StepSummary
from perfbench.prompts import Prompt, load_prompts, synthetic_prompts
from perfbench.records import CONNECT_ERROR, RequestRecord
from perfbench.redact import redact_url, run_secrets
from perfbench.report.exports import write_summary_files as write_summary
from perfbench.sampling import sampling_body
from perfbench.trace import replay_of, trace_prompts
from perfbench.runfiles import SUMMARY_SCHEMA, OutputError, RecordReader, RecordWriter
from perfbench.signals import CTRL_C, RunStopper, hold_signals, stop_on_signals
from perfbench.tokens import Tokenizer, count_chat_tokens, count_prompt_tokens
from perfbench.workers import WorkerPool, WorkerSetup, worker_pool

logger = logging.getLogger(__name__)

DEFAULT_INPUT_TOKENS = "fixed:128"  # synthetic prompt length when no prompts are given
DEFAULT_MAX_TOKENS = 128  # output cap when neither --max-tokens nor --output-tokens is given
MAX_DISTINCT_PROMPTS = 10_000  # more requests than this reuse prompts cyclically
UNKNOWN_COUNT_PROMPTS = 1024  # prompts made for a duration-bound closed-loop step (count unknown)


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


def default_run_dir(config: RunConfig, label: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{stamp}-{safe_name(config.name or label)}"


def make_run_dir(path: Path) -> Path:
    if (path / "requests.jsonl").exists() or (path / "summary.json").exists():
        raise ConfigError(f"output dir {path} already holds a run; choose another --output-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output dir {path}: {exc.strerror}; choose another --output-dir") from None
    return path


def check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """Fail fast (exit 3) when nothing listens at the target's host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TargetError(f"cannot reach {parts.hostname}:{port} ({reason}); is the server running? check --url") from None


def _total_requests(config: RunConfig) -> int:
    total = config.warmup
    for step in config.steps:
        if step.number is not None:
            total += step.number
        elif step.rate_req_s is not None and config.duration_s:
            total += int(step.rate_req_s * config.duration_s * 1.2) + 1
        else:
            total += UNKNOWN_COUNT_PROMPTS
    return max(1, min(total, MAX_DISTINCT_PROMPTS))


def load_workload(config: RunConfig, tokenizer: Tokenizer | None) -> list[Prompt]:
    """The prompts of the run: a trace's, a prompts file, or synthetic prompts of the requested lengths."""
    if config.trace:
        return trace_prompts(replay_of(config).rows, tokenizer=tokenizer, block_tokens=config.trace_block_tokens, seed=config.seed)
    if config.prompts:
        return load_prompts(config.prompts, sharegpt_output_lengths=config.output_tokens == DATASET_LENGTHS)
    return synthetic_prompts(
        _total_requests(config),
        LengthDistribution.parse(config.input_tokens or DEFAULT_INPUT_TOKENS),
        tokenizer=tokenizer,
        seed=config.seed,
        shared_prefix_tokens=config.shared_prefix_tokens,
        prefix_groups=config.prefix_groups,
    )


def prepare_requests(config: RunConfig, api: ApiAdapter, prompts: list[Prompt], tokenizer: Tokenizer | None) -> list[PreparedRequest]:
    """Encode every request body before the run, so the send path only writes bytes."""
    count = len(prompts) if config.prompts or config.trace else min(len(prompts), MAX_DISTINCT_PROMPTS)
    lengths = None
    if config.output_tokens == DATASET_LENGTHS or config.trace:
        lengths = [p.max_tokens for p in prompts[:count]]  # None where the file gives no length
    elif config.output_tokens:
        lengths = LengthDistribution.parse(config.output_tokens).sample(count, np.random.default_rng(config.seed + 1))
    requests = []
    batch = config.batch_size if api.batched else 1
    for i in range(count):
        prompt = prompts[i]
        batch_prompts = [prompts[(i * batch + j) % len(prompts)] for j in range(batch)] if batch > 1 else [prompt]
        extra: dict[str, Any] = {}
        if config.ignore_eos:
            extra["ignore_eos"] = True
        max_tokens = config.max_tokens or prompt.max_tokens or DEFAULT_MAX_TOKENS
        if lengths is not None and lengths[i] is not None:
            # An exact output length: the vLLM/SGLang/TGI-style fields that stop early EOS.
            max_tokens = int(lengths[i])
            extra.update(min_tokens=max_tokens, ignore_eos=True)
        extra.update(sampling_body(config))
        extra.update(config.extra_body)
        input_tokens = _input_tokens(api, batch_prompts, tokenizer)
        body = api.build_body(batch_prompts, model=config.model, max_tokens=max_tokens, extra=extra)
        requests.append(PreparedRequest(body=body, input_tokens=input_tokens, inputs=len(batch_prompts)))
    return requests


def _input_tokens(api: ApiAdapter, prompts: list[Prompt], tokenizer: Tokenizer | None) -> int | None:
    """Prompt tokens of one request when known before sending (the server's usage replaces it)."""
    total = 0
    for prompt in prompts:
        tokens = prompt.input_tokens
        if tokens is None and tokenizer is not None:
            if prompt.messages and api.chat_input:
                tokens = count_chat_tokens(tokenizer, prompt.messages)
            else:
                tokens = count_prompt_tokens(tokenizer, prompt.completion_text)
        if tokens is None:
            return None
        total += tokens
    return total


def _headers(config: RunConfig, api: ApiAdapter) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if api.streams else "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    headers.update(config.headers)
    return headers


MAX_CONNECTIONS = 4096  # the connection pool's bound for uncapped steps


def max_connections(config: RunConfig) -> tuple[int, str | None]:
    """The connection pool's size for the run, and the flag that sets it ("--concurrency 2000").

    The flag is None when an open-loop step without a cap sets it: then MAX_CONNECTIONS is only
    what the pool allows, not what the run will use.
    """
    loads = [(s.concurrency, f"--concurrency {s.concurrency}") if s.concurrency else (MAX_CONNECTIONS, None) for s in config.steps]
    if config.search == "concurrency":
        loads.append((int(config.search_max), f"--search-max {config.search_max:g}"))
    size, flag = max(loads, key=lambda load: load[0])
    return min(size, MAX_CONNECTIONS), flag


def check_open_files(config: RunConfig) -> None:
    """Before the run: room for every connection (see perfbench/limits.py); ConfigError when there is none."""
    connections, flag = max_connections(config)
    per_connection = 2 if config.simulated else 1  # the built-in mock serves each connection in this process
    ensure_open_files(connections * per_connection + OPEN_FILES_MARGIN, what=flag)


def _plan(config: RunConfig, index: int, load: LoadStep, request_base: int) -> StepPlan:
    return StepPlan(
        step=index,
        concurrency=load.concurrency if load.concurrency is not None else UNCAPPED,
        number=load.number,
        duration_s=config.duration_s if load.number is None else None,
        rate_req_s=load.rate_req_s,
        arrivals=config.arrivals,
        burstiness=config.burstiness,
        ramp_up_s=config.ramp_up_s,
        warmup=config.warmup if index == 0 else 0,
        seed=config.seed + index,
        preconnect=_preconnections(config, load),
        request_base=request_base,
        offsets_s=replay_of(config).offsets_s if config.trace else None,
    )


def _preconnections(config: RunConfig, load: LoadStep) -> int:
    """Connections a step opens before its clock: its concurrency; open loop, a second's arrivals (under the cap)."""
    if not config.preconnect:
        return 0
    wanted = load.concurrency if load.rate_req_s is None else math.ceil(load.rate_req_s)
    for bound in (load.concurrency, load.number):
        if bound is not None and wanted is not None:
            wanted = min(wanted, bound)
    return max(1, wanted or 1)


def _summarize_step(config: RunConfig, state: RunState, index: int, load: LoadStep, expected: int | None) -> StepSummary:
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
    return [_summarize_step(config, state, index, load, expected) for index, load, expected in state.steps]


def every_request_failed(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """When requests finished and not one of any step succeeded: the line saying why, naming the
    most common reason, its count and its first error text
    (``every request failed: http_404 (100): HTTP 404: no such model``); else None."""
    if not steps or any(step.get("requests_succeeded") for step in steps):
        return None
    counts: Counter[str] = Counter()
    for step in steps:
        counts.update(step.get("failure_reasons") or {})
    if not counts:
        return None  # nothing finished: nothing failed either
    reason, count = min(counts.items(), key=lambda item: (-item[1], item[0]))  # a tie: the first name
    text = next((s["failure_examples"][reason] for s in steps if (s.get("failure_examples") or {}).get(reason)), None)
    sample = f": {' '.join(str(text).split())}" if text else ""
    return f"every request failed: {reason} ({count}){sample}"


StepCallback = Callable[[StepSummary], None]


async def drive(
    config: RunConfig,
    target: Target,
    requests: list[PreparedRequest],
    state: RunState,
    sink: Callable[[RequestRecord], None],
    counters: LiveCounters,
    tokenizer: Tokenizer | None,
    on_step_start: Callable[[], None],
    on_step_done: StepCallback,
) -> None:
    """Run the ladder (or the max-load search) through one pooled session."""
    max_in_flight, _ = max_connections(config)
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(make_session(max_in_flight, config.timeout_s, config.connect_timeout_s))
        engine: Engine | WorkerPool = Engine(session, target, requests, sink, tokenizer=tokenizer, counters=counters)
        if config.preflight:
            await _preflight(config, engine, requests[0])
        if config.workers > 1 or config.ray is not None:  # the parent keeps the pre-flight, the records and the files
            setup = WorkerSetup(target=target, requests=requests, tokenizer=tokenizer, max_connections=max_in_flight,
                                timeout_s=config.timeout_s, connect_timeout_s=config.connect_timeout_s)
            pool = await stack.enter_async_context(worker_pool(config.workers, config.ray, setup, sink, counters))
            state.workers = pool.workers
            engine = pool

        consumed = config.warmup  # requests taken so far: the warm-up takes the first prompts

        async def run_load(index: int, load: LoadStep) -> StepSummary:
            nonlocal consumed
            plan = _plan(config, index, load, request_base=consumed)
            state.steps.append((index, load, plan.number))  # an interrupted step keeps its planned count
            on_step_start()
            expected = await engine.run_step(plan)
            consumed += expected
            state.steps[-1] = (index, load, expected)
            summary = _summarize_step(config, state, index, load, expected)
            on_step_done(summary)
            return summary

        if config.search:
            await _search(config, state, run_load)
            return
        for index, load in enumerate(config.steps):
            summary = await run_load(index, load)
            if state.all_unreachable(index):
                raise TargetError(f"every request of step {index + 1} failed to connect to {redact_url(target.url)}; is the server running?")
            if config.max_failure_rate is not None and summary.requests_completed:
                rate = summary.requests_failed / summary.requests_completed
                if rate > config.max_failure_rate:
                    state.stopped_early = f"step {index + 1} failed {rate:.0%} of its requests (limit {config.max_failure_rate:.0%})"
                    return


async def _search(config: RunConfig, state: RunState, run_load: Callable[[int, LoadStep], Any]) -> None:
    from perfbench.search import search_max_load

    assert config.search is not None
    base = config.steps[0]

    async def probe(load: float) -> StepSummary:
        if config.search == "concurrency":
            step = LoadStep(concurrency=int(load), number=base.number, rate_req_s=None)
        else:
            step = LoadStep(concurrency=base.concurrency, number=base.number, rate_req_s=float(load))
        return await run_load(len(state.steps), step)  # each probe is the run's next step

    result = await search_max_load(
        probe,
        dimension=config.search,
        start=config.search_start,
        max_load=config.search_max,
        precision=config.search_precision,
        passes=lambda summary: bool(summary.slo_passed),
    )
    state.search = result.to_dict()


async def _preflight(config: RunConfig, engine: Engine, request: PreparedRequest) -> None:
    """One real request before the first step's clock (counted nowhere); its failure is exit 3 at once."""
    record = await engine.preflight(dataclasses.replace(request, body=_short_body(request.body)))
    if not record.ok:
        raise TargetError(
            f"pre-flight request failed ({record.status}): {record.error}{_flag_hint(config, record.error or '')}; "
            "fix the target or the request, or skip this check with --no-preflight"
        )


PREFLIGHT_MAX_TOKENS = 8  # the pre-flight checks the answer's shape, not the server's speed


def _short_body(body: bytes) -> bytes:
    """``body`` asking for at most PREFLIGHT_MAX_TOKENS tokens (exact-length fields kept, so a server refusing them fails here)."""
    obj = json.loads(body)
    if isinstance(obj, dict):
        for key in ("max_tokens", "min_tokens", "max_output_tokens", "max_completion_tokens"):
            if isinstance(obj.get(key), int) and obj[key] > PREFLIGHT_MAX_TOKENS:
                obj[key] = PREFLIGHT_MAX_TOKENS
    return json.dumps(obj, ensure_ascii=False).encode()


def _flag_hint(config: RunConfig, error: str) -> str:
    """Which of the user's flags put the fields a server refused into the request."""
    flags = []
    if config.output_tokens and ("min_tokens" in error or "ignore_eos" in error):
        flags.append("--output-tokens (sends min_tokens and ignore_eos)")
    elif config.ignore_eos and "ignore_eos" in error:
        flags.append("--ignore-eos")
    flags += [f"--extra-body ({key})" for key in config.extra_body if key in error]
    return f" (sent by {', '.join(flags)})" if flags else ""


def build_summary(
    config: RunConfig,
    *,
    target_url: str,
    model: str | None,
    started_at: str,
    steps: list[StepSummary],
    state: RunState,
    interrupted: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA,
        "perfbench_version": __version__,
        "started_at": started_at,
        "target": {"url": redact_url(target_url), "api": config.api, "model": model, "simulated": config.simulated},
        "config": config.public_dict(),
        "environment": {
            "host": platform.node(), "python": platform.python_version(), "platform": platform.platform(),
            "event_loop": event_loop.LOOP_NAME,
        },
        "interrupted": interrupted,
        "stopped_early": state.stopped_early,
        "durations": DURATIONS,
        "steps": [s.to_dict() for s in steps],
    }
    if state.search is not None:
        summary["search"] = state.search
    if state.workers:
        summary["workers"] = state.workers
    summary.update(extra or {})
    return summary


@dataclass
class RunOutcome:
    summary: dict[str, Any]
    run_dir: Path
    interrupted: bool
    stopped_by: str | None = None  # what interrupted the run: "Ctrl-C", "SIGTERM", "SIGHUP"


def execute(
    config: RunConfig,
    *,
    endpoint_url: str,
    model: str | None,
    run_dir: Path,
    counters: LiveCounters,
    tokenizer: Tokenizer | None,
    on_step_start: Callable[[], None] = lambda: None,
    on_step_done: StepCallback = lambda s: None,
    telemetry: Any = None,
) -> RunOutcome:
    """Run the benchmark against ``endpoint_url``; files land in ``run_dir`` as it goes.

    ``telemetry`` is an optional factory ``(run_start_ns) -> async context manager`` sampling
    GPU/server metrics during the run; whatever it returns is asked for ``summary(tokens)`` and
    ``write(path)`` at the end.
    """
    api = get_adapter(config.api)
    prompts = load_workload(config, tokenizer)
    requests = prepare_requests(config, api, prompts, tokenizer)
    target = Target(
        url=endpoint_url, api=api, headers=_headers(config, api),
        secrets=run_secrets(url=endpoint_url, api_key=config.api_key, headers=config.headers),
        max_response_bytes=config.max_response_bytes,
    )
    check_reachable(endpoint_url)
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    run_start_ns = time.perf_counter_ns()
    writer = RecordWriter(run_dir / "requests.jsonl", run_start_ns)
    state = RunState(reader=RecordReader(writer.path))
    sampler_box: list[Any] = []

    stopper = RunStopper()
    write_failures: list[OutputError] = []  # the first record that could not be written

    def sink(record: RequestRecord) -> None:
        state.add(record)
        try:
            writer.write(record)
        except OutputError as exc:
            # Raised into the engine it would crash the loop: stop the run like an interrupt instead.
            write_failures.append(exc)
            stopper.stop(str(exc))

    async def main() -> None:
        stopper.attach()
        load = drive(config, target, requests, state, sink, counters, tokenizer, on_step_start, on_step_done)
        if telemetry is None:
            await load
            return
        async with telemetry(run_start_ns) as sampler:
            sampler_box.append(sampler)
            await load

    interrupted = False
    summary_dir: Path | None = run_dir
    summary_failure: OutputError | None = None
    with stop_on_signals(stopper):  # SIGTERM and SIGHUP: like Ctrl-C, not an instant death
        try:
            event_loop.run(main())
        except KeyboardInterrupt:
            interrupted = True
            stopper.stop(CTRL_C)  # only names the reason: the loop has ended
        except asyncio.CancelledError:
            if stopper.reason is None:
                raise
            interrupted = True
        finally:
            # A second signal must not cost the summary of what finished: hold them off while writing.
            with hold_signals():
                writer.close()
                steps = summarize(config, state)
                extra: dict[str, Any] = {"run_start_unix_s": time.time() - (time.perf_counter_ns() - run_start_ns) / 1e9}
                if sampler_box:
                    sampler = sampler_box[0]
                    try:
                        sampler.write(run_dir / "telemetry.jsonl")
                    except OSError as exc:
                        logger.warning("cannot write telemetry.jsonl (%s); the summary still holds its figures", exc.strerror)
                    extra["telemetry"] = sampler.summary(state.output_tokens)
                summary = build_summary(
                    config, target_url=endpoint_url, model=model, started_at=started_at, steps=steps, state=state,
                    interrupted=interrupted, extra=extra,
                )
                summary_dir, summary_failure = _write_summary_somewhere(run_dir, summary)
    failure = write_failures[0] if write_failures else summary_failure
    if failure is not None:
        where = f"the summary of what finished is in {summary_dir / 'summary.json'}" if summary_dir else "no summary could be written"
        raise OutputError(f"{failure} ({where})")
    return RunOutcome(summary=summary, run_dir=run_dir, interrupted=interrupted, stopped_by=stopper.reason if interrupted else None)


def _write_summary_somewhere(run_dir: Path, summary: dict[str, Any]) -> tuple[Path | None, OutputError | None]:
    """Write the summary into ``run_dir``, else into a new folder in the system's temp dir.

    Returns (where it went or None, the run dir's error or None): a full disk must not cost the
    figures of what finished.
    """
    try:
        write_summary(run_dir, summary)
        return run_dir, None
    except OutputError as exc:
        failure = exc
    try:
        fallback = Path(tempfile.mkdtemp(prefix="perfbench-summary-"))
        write_summary(fallback, summary)
    except (OSError, OutputError):
        return None, failure
    return fallback, failure
