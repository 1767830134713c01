"""The per-request record: the one data structure between the engine and everything after it.

Records carry absolute ``time.perf_counter_ns()`` stamps so that records from several
workers sharing one start time merge by concatenation. ``to_json`` turns a record into the
``requests.jsonl`` line defined in DESIGN.md and declared once here (``REQUEST_LINE``), with
times relative to the run's start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

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
        """The requests.jsonl line's measured fields (REQUEST_LINE), times relative to ``run_start_ns``.

        The derived ``ttft_ms`` and ``latency_ms`` are added by the writer from perfbench.metrics,
        where each metric is defined once.
        """
        line: dict[str, Any] = {}
        for field in REQUEST_LINE:
            if field.write is not None:
                value = field.write(self, run_start_ns)
                if value is not None or not field.optional:
                    line[field.name] = value
        return line

    @classmethod
    def from_json(cls, line: dict[str, Any], run_start_ns: int = 0) -> "RequestRecord":
        """Inverse of ``to_json`` (to the nanosecond's rounding): reports re-read files.

        KeyError for a missing required field; TypeError or ValueError for a value of the wrong kind.
        """
        t0 = run_start_ns + round(line["scheduled_s"] * 1e9)
        values = {}
        for field in REQUEST_LINE:
            if field.read is not None:
                value = line[field.name] if field.required else line.get(field.name)
                values[field.attribute or field.name] = field.read(value, run_start_ns, t0)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class LineField:
    """One field of a requests.jsonl line, and the requests.parquet column of the same name."""

    name: str  # its key in the line
    type: str  # its type, one of LINE_TYPES
    description: str  # what it holds, in one line
    write: Callable[[RequestRecord, int], Any] | None  # its value from (record, run start ns); None: the writer adds it
    read: Callable[[Any, int, int], Any] | None = None  # the record's value from (line value, run start ns, t0 ns); None: not read back
    attribute: str | None = None  # the RequestRecord field it is read into, when not ``name``
    required: bool = False  # a line without it is no request record
    optional: bool = False  # left out of a line where its value is None (session, turn: only in session runs)


LINE_TYPES = ("int", "float", "bool", "str", "list[float]", "list[int]")


def _attribute(name: str) -> Callable[[RequestRecord, int], Any]:
    return lambda record, run_start_ns: getattr(record, name)


def _as_is(value: Any, run_start_ns: int, t0: int) -> Any:
    return value


def _since_run_start_s(name: str) -> Callable[[RequestRecord, int], float]:
    return lambda record, run_start_ns: (getattr(record, name) - run_start_ns) / 1e9


def _run_clock_ns(seconds: float, run_start_ns: int, t0: int) -> int:
    return run_start_ns + round(seconds * 1e9)


# requests.jsonl, declared once (DESIGN.md "Output files"): the writer (``to_json``, and
# perfbench.report.requests_file for the derived fields), the reader (``from_json``, through
# perfbench.results.runfiles) and the requests.parquet export (perfbench.report.tables) read it.
REQUEST_LINE: tuple[LineField, ...] = (
    LineField("step", "int", "the load step, 0-based", _attribute("step"), _as_is, required=True),
    LineField("index", "int", "the request's index in its step", _attribute("index"), _as_is, required=True),
    LineField("warmup", "bool", "a warm-up request, counted in no statistic", _attribute("warmup"),
              lambda value, start, t0: bool(value)),
    LineField("status", "str", "ok, or the failure reason", _attribute("status"), _as_is, required=True),
    LineField("http_status", "int", "the HTTP status, null when no answer came", _attribute("http_status"), _as_is),
    LineField("error", "str", "one line on the failure, null when ok", _attribute("error"), _as_is),
    LineField("scheduled_s", "float", "t0, when the request was due, s since the run's start",
              _since_run_start_s("scheduled_ns"), _run_clock_ns, attribute="scheduled_ns", required=True),
    LineField("sent_s", "float", "when its first byte left, s since the run's start",
              _since_run_start_s("sent_ns"), _run_clock_ns, attribute="sent_ns", required=True),
    LineField("end_s", "float", "when it ended, failed or timed out, s since the run's start",
              _since_run_start_s("end_ns"), _run_clock_ns, attribute="end_ns", required=True),
    LineField("request_bytes", "int", "the body's size as sent (images included)", _attribute("request_bytes"), _as_is),
    LineField("queue_ms", "float", "sent - t0: the client's own lag", lambda record, start: record.queue_ns / 1e6),
    LineField("input_tokens", "int", "prompt tokens, null when unknown", _attribute("input_tokens"), _as_is),
    LineField("output_tokens", "int", "generated tokens", _attribute("output_tokens"), _as_is),
    LineField("token_source", "str", "where the token counts came from: usage, tokenizer or packages",
              _attribute("token_source"), _as_is),
    LineField("packages", "int", "output-carrying packages", lambda record, start: len(record.package_times_ns)),
    LineField("package_times_ms", "list[float]", "each output package's arrival, ms after t0",
              lambda record, start: [(t - record.scheduled_ns) / 1e6 for t in record.package_times_ns],
              lambda value, start, t0: tuple(t0 + round(ms * 1e6) for ms in value),
              attribute="package_times_ns", required=True),
    LineField("package_tokens", "list[int]", "output tokens each package carried", lambda record, start: list(record.package_tokens),
              lambda value, start, t0: tuple(value or ())),
    LineField("finish_reason", "str", "why the server ended the answer", _attribute("finish_reason"), _as_is),
    LineField("session", "int", "session runs: the session this request is a turn of", _attribute("session"), _as_is,
              optional=True),
    LineField("turn", "int", "session runs: the turn's index in its session, 0-based", _attribute("turn"), _as_is,
              optional=True),
    LineField("ttft_ms", "float", "TTFT (perfbench.metrics), null without output", None),
    LineField("latency_ms", "float", "latency (perfbench.metrics)", None),
)
REQUEST_LINE_TYPES: dict[str, str] = {field.name: field.type for field in REQUEST_LINE}  # name -> one of LINE_TYPES
