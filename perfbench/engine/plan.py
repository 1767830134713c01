"""What the engine is given: the requests to send (encoded), where to send them, and each step's plan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from perfbench.apis import ApiAdapter
from perfbench.workload.schedule import arrival_offsets_s

DEFAULT_MAX_RESPONSE_BYTES = 64 * 2**20  # --max-response-bytes


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A ready-made request: the body is encoded before the run so the send path stays short."""

    body: bytes  # the JSON body, encoded
    input_tokens: int | None  # prompt tokens when known before sending (tokenizer / synthetic)
    inputs: int = 1  # prompts the body carries (embeddings: --batch-size); the answer must match


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go and how to read what comes back."""

    url: str  # the full endpoint URL
    api: ApiAdapter  # builds bodies, interprets events
    headers: dict[str, str]  # sent with every request (Authorization included; never logged)
    secrets: tuple[str, ...] = ()  # replaced by *** in every error text (redact.run_secrets)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES  # past this a response is cut and failed
    insecure: bool = False  # https: no certificate check (--insecure)
    ca_cert: str | None = None  # https: trust the CAs in this PEM file instead of the system's (--ca-cert)


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One load step. Either ``number`` or ``duration_s`` bounds it."""

    step: int  # index of the step in the run
    concurrency: int  # closed loop: requests in flight; open loop: the cap
    number: int | None  # requests to send
    duration_s: float | None  # or: stop sending new requests after this long
    rate_req_s: float | None = None  # None: closed loop; else the open-loop mean rate
    arrivals: str = "poisson"  # open loop: "poisson" (gamma with burstiness) or "constant"
    burstiness: float = 1.0  # gamma shape for open-loop intervals; 1 = Poisson
    ramp_up_s: float = 0.0  # open loop: linear rate ramp-up
    warmup: int = 0  # requests sent first, marked warm-up, excluded from statistics
    seed: int = 0  # arrival-time seed
    preconnect: int = 0  # connections to open before the step's clock starts (0: none)
    # One slice of a step split across worker processes (perfbench/workers.py); the defaults are the whole step.
    start_ns: int | None = None  # the step's clock start shared by every slice (perf_counter_ns); None: when it starts
    request_base: int = 0  # the run's request number of index 0: prompts are chosen by it, as in one process
    first_index: int = 0  # closed loop: this slice's indexes are first_index + k * index_stride
    index_stride: int = 1
    warmup_first_index: int = 0  # the slice's first warm-up index (warm-up requests use prompts from 0)
    arrival_slice: int = 0  # open loop: this slice sends arrivals arrival_slice::arrival_slices of the schedule
    arrival_slices: int = 1
    offsets_s: tuple[float, ...] | None = None  # open loop: these due times (a trace's) instead of generated ones

    def arrival_offsets_s(self) -> Sequence[float] | None:
        """Open loop: every arrival's due time, s from the step's start (a trace's own, else the rate's
        schedule; the same in every slice, so it is computed, not sent); None for a closed loop. The
        one place a step's schedule is made: the engine sends by it, a worker pool counts what a lost
        slice still owed by it."""
        if self.offsets_s is not None:
            return self.offsets_s
        if self.rate_req_s is None:
            return None
        return arrival_offsets_s(
            rate_req_s=self.rate_req_s, count=self.number, duration_s=None if self.number is not None else self.duration_s,
            arrivals=self.arrivals, burstiness=self.burstiness, ramp_up_s=self.ramp_up_s, seed=self.seed,
        )

    def arrival_indexes(self, arrivals: int) -> range:
        """Which of a schedule's ``arrivals`` this slice sends: every ``arrival_slices``-th from ``arrival_slice``."""
        return range(self.arrival_slice, arrivals, self.arrival_slices)
