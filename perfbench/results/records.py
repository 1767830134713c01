"""The per-request record: the one data structure between the engine and everything after it.

Records carry absolute ``time.perf_counter_ns()`` stamps so that records from several
workers sharing one start time merge by concatenation. ``to_json`` turns a record into the
``requests.jsonl`` line defined in DESIGN.md, with times relative to the run's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Failure reasons (a record's ``status`` is "ok" or one of these).
OK = "ok"
ERROR_EVENT = "error_event"  # the stream carried an error object
TIMEOUT = "timeout"  # --timeout (total) or the connect timeout expired
CUT_STREAM = "cut_stream"  # the connection closed before the body was complete
CONNECT_ERROR = "connect_error"  # no connection could be made
BAD_RESPONSE = "bad_response"  # 2xx but not an SSE stream, or unparseable events
NO_OUTPUT = "no_output"  # the stream ended without a single output token
RESPONSE_TOO_LARGE = "response_too_large"  # past --max-response-bytes, or one line/event past its bound
WORKER_LOST = "worker_lost"  # the worker process (or Ray actor) sending the request died before it finished


def http_reason(status: int) -> str:
    """The failure reason of a non-2xx answer: ``http_404``, ``http_429``, ``http_500`` ..."""
    return f"http_{status}"

# Where a record's token counts came from.
TOKENS_FROM_USAGE = "usage"  # the server's `usage` object
TOKENS_FROM_TOKENIZER = "tokenizer"  # counted locally with --tokenizer
TOKENS_FROM_PACKAGES = "packages"  # neither available: one token per output package assumed


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """Everything measured about one request. Times are absolute perf_counter_ns."""

    step: int  # index of the load step (0-based)
    index: int  # index of the request within its step
    warmup: bool  # warm-up requests are written but excluded from statistics
    status: str  # "ok" or a failure reason above
    http_status: int | None  # HTTP status code, None when no answer came
    error: str | None  # one-line description of the failure, None when ok
    scheduled_ns: int  # t0: when the request was due (absolute deadline or slot freed)
    sent_ns: int  # when the engine started sending it (sent - scheduled = queue time)
    end_ns: int  # when the stream ended, failed or timed out
    package_times_ns: tuple[int, ...]  # arrival of each package that carries output
    package_tokens: tuple[int, ...]  # output tokens carried by each of those packages
    input_tokens: int | None  # prompt tokens (usage, else tokenizer), None if unknown
    output_tokens: int | None  # generated tokens (usage, else tokenizer, else packages)
    token_source: str | None  # TOKENS_FROM_* naming where output_tokens came from
    finish_reason: str | None = None  # why the server ended the answer ("stop", "length", ...), None when it did not say
    session: int | None = None  # multi-turn runs: the session (conversation instance) this request is a turn of
    turn: int | None = None  # multi-turn runs: the turn's index in its session, 0-based
    request_bytes: int | None = None  # the request body's size as sent (images included), None when not known

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def queue_ns(self) -> int:
        """Client lag: how long after its due time the request actually left."""
        return self.sent_ns - self.scheduled_ns

    def to_json(self, run_start_ns: int) -> dict[str, Any]:
        """The requests.jsonl line's measured fields (DESIGN.md), times relative to ``run_start_ns``.

        The derived ``ttft_ms`` and ``latency_ms`` are added by the writer from perfbench.metrics,
        where each metric is defined once.
        """
        t0 = self.scheduled_ns
        times = self.package_times_ns
        return {
            "step": self.step,
            "index": self.index,
            "warmup": self.warmup,
            "status": self.status,
            "http_status": self.http_status,
            "error": self.error,
            "scheduled_s": (t0 - run_start_ns) / 1e9,
            "sent_s": (self.sent_ns - run_start_ns) / 1e9,
            "end_s": (self.end_ns - run_start_ns) / 1e9,
            "request_bytes": self.request_bytes,
            "queue_ms": self.queue_ns / 1e6,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "token_source": self.token_source,
            "packages": len(times),
            "package_times_ms": [(t - t0) / 1e6 for t in times],
            "package_tokens": list(self.package_tokens),
            "finish_reason": self.finish_reason,
            **({"session": self.session, "turn": self.turn} if self.session is not None else {}),
        }

    @classmethod
    def from_json(cls, line: dict[str, Any], run_start_ns: int = 0) -> "RequestRecord":
        """Inverse of ``to_json`` (to the nanosecond's rounding): reports re-read files."""
        t0 = run_start_ns + round(line["scheduled_s"] * 1e9)
        return cls(
            step=line["step"],
            index=line["index"],
            warmup=line.get("warmup", False),
            status=line["status"],
            http_status=line.get("http_status"),
            error=line.get("error"),
            scheduled_ns=t0,
            sent_ns=run_start_ns + round(line["sent_s"] * 1e9),
            end_ns=run_start_ns + round(line["end_s"] * 1e9),
            package_times_ns=tuple(t0 + round(ms * 1e6) for ms in line["package_times_ms"]),
            package_tokens=tuple(line.get("package_tokens") or ()),
            input_tokens=line.get("input_tokens"),
            output_tokens=line.get("output_tokens"),
            token_source=line.get("token_source"),
            finish_reason=line.get("finish_reason"),
            request_bytes=line.get("request_bytes"),
            session=line.get("session"),
            turn=line.get("turn"),
        )
