"""One benchmark run: prepare the requests, drive the engine step by step, summarise, write files.

The stages stay apart: this module wires config -> schedule/engine -> records -> metrics -> files.
Records reach requests.jsonl the moment they finish; summary.json is written from whatever
finished, also after Ctrl-C or a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import datetime as dt
import logging
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from perfbench.core.version import __version__
from perfbench.engine import event_loop
from perfbench.apis import get_adapter
from perfbench.config.run_config import LoadStep, RunConfig, safe_name
from perfbench.engine.engine import UNCAPPED, Engine
from perfbench.engine.plan import StepPlan, Target
from perfbench.engine.request_source import RequestSource
from perfbench.engine.live import LiveCounters
from perfbench.engine.transport_factory import make_transport
from perfbench.core.errors import ConfigError, TargetError
from perfbench.core.limits import OPEN_FILES_MARGIN, ensure_open_files
from perfbench.metrics import DURATIONS, StepSummary
from perfbench.benchmark.preflight import check_reachable, preflight
from perfbench.results.records import RequestRecord
from perfbench.core.redact import redact_url, run_secrets
from perfbench.report.tables import write_summary_files as write_summary
from perfbench.benchmark.run_state import PromptTally, RunState, summarize, summarize_step
from perfbench.results.runfiles import SUMMARY_SCHEMA, OutputError, RecordReader
from perfbench.report.requests_file import RecordWriter
from perfbench.workload.sessions import SessionWorkload
from perfbench.core.signals import CTRL_C, RunStopper, hold_signals, stop_on_signals
from perfbench.workload.tokens import Tokenizer
from perfbench.workers import WorkerPool, WorkerSetup, worker_pool
from perfbench.benchmark.prepare import prepare_workload, replay_of, request_headers

if TYPE_CHECKING:
    from perfbench.telemetry.sampler import TelemetrySampler

logger = logging.getLogger(__name__)


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
    """Before the run: room for every connection (see perfbench/core/limits.py); ConfigError when there is none."""
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


StepCallback = Callable[[StepSummary], None]


async def drive(
    config: RunConfig,
    target: Target,
    requests: RequestSource,
    state: RunState,
    sink: Callable[[RequestRecord], None],
    counters: LiveCounters,
    tokenizer: Tokenizer | None,
    on_step_start: Callable[[], None],
    on_step_done: StepCallback,
    sessions: SessionWorkload | None = None,
) -> None:
    """Run the ladder (or the max-load search) through one transport (its pool of connections)."""
    max_in_flight, _ = max_connections(config)
    async with contextlib.AsyncExitStack() as stack:
        transport = await stack.enter_async_context(make_transport(
            target, timeout_s=config.timeout_s, connect_timeout_s=config.connect_timeout_s, max_connections=max_in_flight))
        state.transport, state.transport_reason = transport.name, transport.reason
        engine: Engine | WorkerPool = Engine(transport, target, requests, sink, tokenizer=tokenizer, counters=counters,
                                             sessions=sessions)
        if config.preflight:
            await preflight(config, engine, requests.get(0))
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
            if state.prompts is not None:
                state.prompts.step_starts(index, consumed)
            state.steps.append((index, load, plan.number))  # an interrupted step keeps its planned count
            on_step_start()
            try:
                expected = await engine.run_step(plan)
            finally:  # an interrupted step keeps how far the client kept up too
                state.client[index] = engine.client_readings
            consumed += expected
            state.steps[-1] = (index, load, expected)
            summary = summarize_step(config, state, index, load, expected)
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
    from perfbench.benchmark.search import search_max_load

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
            "event_loop": event_loop.LOOP_NAME, "transport": state.transport,
        },
        "interrupted": interrupted,
        "stopped_early": state.stopped_early,
        "durations": DURATIONS,
        "steps": [s.to_dict() for s in steps],
    }
    if state.transport_reason:
        summary["environment"]["transport_reason"] = state.transport_reason
    if state.prompts is not None:
        summary["workload"] = state.prompts.to_dict()
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
    workload = prepare_workload(config, api, tokenizer)
    target = Target(
        url=endpoint_url, api=api, headers=request_headers(config, api),
        secrets=run_secrets(url=endpoint_url, api_key=config.api_key, headers=config.headers),
        max_response_bytes=config.max_response_bytes, insecure=config.insecure, ca_cert=config.ca_cert,
    )
    check_reachable(endpoint_url)
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    run_start_ns = time.perf_counter_ns()
    stopper = RunStopper()
    write_failures: list[OutputError] = []  # the first record that could not be written

    def write_failed(exc: OutputError) -> None:
        # Raised into the engine it would crash the loop: stop the run like an interrupt instead.
        write_failures.append(exc)
        stopper.stop(str(exc))

    writer = RecordWriter(run_dir / "requests.jsonl", run_start_ns, on_failure=write_failed)

    def flush_records() -> None:
        try:
            writer.flush()
        except OutputError as exc:
            write_failed(exc)

    state = RunState(reader=RecordReader(writer.path), flush_records=flush_records, prompts=PromptTally(
        workload.prompts_source, workload.cycle, workload.sessions.prompt_key if workload.sessions is not None else None))
    sampler: TelemetrySampler | None = None  # the run's telemetry, once started: written out with the summary

    def sink(record: RequestRecord) -> None:
        state.add(record)
        try:
            writer.write(record)
        except OutputError as exc:
            write_failed(exc)

    async def main() -> None:
        nonlocal sampler
        stopper.attach()
        load = drive(config, target, workload.requests, state, sink, counters, tokenizer, on_step_start, on_step_done,
                     workload.sessions)
        if telemetry is None:
            await load
            return
        async with telemetry(run_start_ns) as started:
            sampler = started
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
                try:
                    writer.close()  # the last batch's lines
                except OutputError as exc:
                    write_failed(exc)
                steps = summarize(config, state)
                extra: dict[str, Any] = {"run_start_unix_s": time.time() - (time.perf_counter_ns() - run_start_ns) / 1e9}
                if sampler is not None:
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
