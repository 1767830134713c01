"""An ended request, as it was read (bytes and the stamp of each read), turned into its record.

This is the work the engine keeps off its read path: splitting the reads into events, the API
adapter's interpretation, token counts, and every check of what a server may send. Whatever
the bytes are, the result is a record, never an exception.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Sequence

from perfbench.results import records as R
from perfbench.apis import StreamContent
from perfbench.results.records import RequestRecord
from perfbench.core.redact import excerpt
from perfbench.engine.sse import RecordedEvents, parse_recorded
from perfbench.workload.tokens import Tokenizer

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from perfbench.engine.plan import PreparedRequest, Target

DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class Exchange(NamedTuple):
    """One ended request as it was read, before its bytes are interpreted."""

    step: int
    index: int
    warmup: bool
    scheduled_ns: int
    sent_ns: int
    end_ns: int
    http_status: int | None
    failure: tuple[str, str] | None  # a failure seen while reading (HTTP status, timeout, cut, too large)
    stream: "ReadStream"
    request: "PreparedRequest"


@dataclass(slots=True)
class ReadStream:
    """One response body as it was read: each read's bytes and when it returned."""

    chunks: list[bytes] = field(default_factory=list)
    read_ns: list[int] = field(default_factory=list)
    encoding: str = "identity"  # Content-Encoding of the body
    whole_body: bool = False  # a JSON answer (read whole), not an SSE stream

    def decode(self, max_bytes: int) -> tuple[str, str] | None:
        """Decompress the reads in place, each into what it completed; a failure when the body is bad or too large."""
        decoder = zlib.decompressobj(DECODERS[self.encoding])
        total = 0
        try:
            for i, chunk in enumerate(self.chunks):
                self.chunks[i] = piece = decoder.decompress(chunk, max_bytes - total + 1)
                total += len(piece)
                if total > max_bytes or decoder.unconsumed_tail:
                    return too_large(max_bytes, max_bytes, True)
        except zlib.error as exc:
            return (R.BAD_RESPONSE, f"the {self.encoding} body does not decode: {exc}")
        return None


def too_large(max_response_bytes: int, line_limit: int, whole: bool) -> tuple[str, str]:
    if whole:
        return (R.RESPONSE_TOO_LARGE, f"response cut past {max_response_bytes} bytes (--max-response-bytes)")
    return (R.RESPONSE_TOO_LARGE, f"response cut: one line ran past {line_limit} bytes without a line end")


FINISH_REASON_CHARS = 40  # a server's finish reason, at most: it goes on every line of requests.jsonl


def error_text(body: bytes, location: str | None) -> str:
    """The server's own words from an error answer: its JSON message when there is one, else the text
    (and where a redirect's location points).

    Not shortened here: the record's error is cut once, secrets masked first (redact.excerpt).
    The body comes last, so a body cut by the read bound ends the text, where excerpt looks
    for a secret's beginning left by a cut."""
    text = one_line(body)
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        err = obj.get("error")
        message = (err.get("message") if isinstance(err, dict) else err) or obj.get("message") or obj.get("detail")
        if isinstance(message, list):  # FastAPI validation errors: a list of {"msg", "loc"}
            message = "; ".join(str(m.get("msg", m)) if isinstance(m, dict) else str(m) for m in message)
        if message:
            text = one_line(str(message).encode())
    return f"redirect to {one_line(location.encode())}: {text}" if location else text


def is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def is_event_stream(content_type: str) -> bool:
    # Some servers omit the header; treat a missing one as a stream and let the parser judge.
    return not content_type or content_type.split(";")[0].strip().lower() == "text/event-stream"


def one_line(body: bytes) -> str:
    """``body`` as text on one line (runs of whitespace as one space), whole: only ``redact.excerpt`` cuts."""
    return " ".join(body.decode("utf-8", "replace").split())


class AnswerReader:
    """Builds the record of each ended request to one target."""

    def __init__(self, target: "Target", tokenizer: Tokenizer | None = None) -> None:
        self.target = target
        self.tokenizer = tokenizer
        self._finish_reasons: dict[str, str | None] = {}  # a server's finish reason -> as recorded (they repeat: "stop")

    def record(self, exchange: Exchange) -> RequestRecord:
        """Every outcome becomes a record, whatever the server sent."""
        return self.record_and_text(exchange)[0]

    def record_and_text(self, exchange: Exchange, *, session: int | None = None, turn: int | None = None) -> tuple[RequestRecord, str]:
        """The record and the answer's output text (a session's next turn sends it back as history)."""
        try:
            return self._interpret(exchange, session, turn)
        except Exception as exc:  # noqa: BLE001 - kept broad: a bug of ours must cost one request, never the run
            log.debug("interpreting request %d of step %d failed", exchange.index, exchange.step, exc_info=True)
            failure = (R.BAD_RESPONSE, f"perfbench could not interpret this answer ({type(exc).__name__}: {exc}); please report it")
            return self._interpret(exchange._replace(failure=failure, stream=ReadStream()), session, turn)

    def _interpret(self, exchange: Exchange, session: int | None, turn: int | None) -> tuple[RequestRecord, str]:
        step, index, warmup, scheduled_ns, sent_ns, end_ns, http_status, failure, stream, request = exchange
        api = self.target.api
        events: RecordedEvents | None = None
        content = StreamContent()
        if stream.chunks:
            decode_failure = stream.decode(self.target.max_response_bytes) if stream.encoding in DECODERS else None
            failure = failure or decode_failure
            if decode_failure is None and stream.whole_body:
                content = api.interpret_body(b"".join(stream.chunks))
                # A whole answer arrives with its last byte: any output it holds is one package, then.
                events = RecordedEvents([], None, [len(stream.chunks) - 1])
            elif decode_failure is None:
                events = parse_recorded(stream.chunks)
                content = api.interpret_events(events.data, events.types)
        if failure is None:
            if content.error is not None:
                failure = (R.ERROR_EVENT, f"error event: {content.error}")
            elif content.invalid is not None:
                failure = (R.BAD_RESPONSE, f"unexpected event: {content.invalid}")
            elif content.malformed is not None:
                failure = (R.BAD_RESPONSE, f"event is not JSON: {content.malformed}")
            elif content.items is not None and content.items != request.inputs:
                failure = (R.BAD_RESPONSE, f"{content.items} embeddings in the answer for {request.inputs} inputs")
            elif api.produces_output and not content.output_events:
                failure = (R.NO_OUTPUT, "the answer ended without output tokens")
            elif not api.produces_output and not content.saw_done:
                failure = (R.NO_OUTPUT, "the answer was empty")
        package_times = tuple([stream.read_ns[events.completed_by[i]] for i in content.output_events]) if events else ()
        output_tokens, source = self._output_tokens(content)
        # The server's words, cut once and with the run's secrets masked before the cut.
        error = excerpt(failure[1], self.target.secrets) if failure else None
        finish_reason = self._finish_reason(content.finish_reason) if content.finish_reason else None
        record = RequestRecord(
            step=step,
            index=index,
            warmup=warmup,
            status=failure[0] if failure else R.OK,
            http_status=http_status,
            error=error,
            scheduled_ns=scheduled_ns,
            sent_ns=sent_ns,
            end_ns=end_ns,
            package_times_ns=package_times,
            package_tokens=self._package_tokens(output_tokens, content),
            input_tokens=content.prompt_tokens if content.prompt_tokens is not None else request.input_tokens,
            output_tokens=output_tokens,
            token_source=source,
            finish_reason=finish_reason,
            request_bytes=len(request.body),
            session=session,
            turn=turn,
        )
        return record, "".join(content.output_text) if session is not None else ""

    def _finish_reason(self, said: str) -> str | None:
        """The server's finish reason as recorded: shortened, secrets masked (``excerpt``); remembered, as
        the same few words end every answer (a server naming a new one each time fills no more than 256)."""
        known = self._finish_reasons.get(said, "")
        if known != "":
            return known
        shown = excerpt(said, self.target.secrets, FINISH_REASON_CHARS) or None
        if len(self._finish_reasons) < 256:
            self._finish_reasons[said] = shown
        return shown

    def _package_tokens(self, output_tokens: int | None, content: StreamContent) -> tuple[int, ...]:
        if not output_tokens:
            return ()
        packages = len(content.output_events)
        if output_tokens == packages or self.tokenizer is None:
            return split_tokens(output_tokens, packages)
        return split_tokens(output_tokens, packages, [self.tokenizer.count(text) for text in content.output_text])

    def _output_tokens(self, content: StreamContent) -> tuple[int | None, str | None]:
        # A usage of 0 beside output that arrived is no count of it: counted here instead, as without usage.
        if content.completion_tokens is not None and (content.completion_tokens or not content.output_events):
            return content.completion_tokens, R.TOKENS_FROM_USAGE
        if not content.output_events:
            return None, None
        if self.tokenizer is not None:
            return self.tokenizer.count("".join(content.output_text)), R.TOKENS_FROM_TOKENIZER
        return len(content.output_events), R.TOKENS_FROM_PACKAGES


def split_tokens(total: int, packages: int, weights: Sequence[int] | None = None) -> tuple[int, ...]:
    """Share a request's ``total`` output tokens among its ``packages``, for ITL.

    One token per package when the counts match (the common case). Otherwise each package gets at
    least one and the rest is shared by ``weights`` (each package's own token count from a
    tokenizer) or, without them, evenly, earlier packages taking the remainder: a server sending
    k tokens per package gets k each (its last package may carry fewer). Shares are whole
    numbers by largest remainder, so they add up to ``total``.
    """
    if packages == 0:
        return ()
    if total == packages:
        return (1,) * packages
    if total < packages:
        # More packages than tokens (e.g. usage counted without reasoning): one each, the rest none.
        return tuple(1 if i < total else 0 for i in range(packages))
    spare = total - packages
    extra_weights = [max(w - 1, 0) for w in weights or ()]  # tokens beyond each package's guaranteed one
    if not any(extra_weights):
        base, extra = divmod(spare, packages)
        return tuple(1 + base + (1 if i < extra else 0) for i in range(packages))
    weight_sum = sum(extra_weights)
    shares = [spare * w / weight_sum for w in extra_weights]
    whole = [int(share) for share in shares]
    for i in sorted(range(packages), key=lambda i: whole[i] - shares[i])[: spare - sum(whole)]:
        whole[i] += 1
    return tuple(1 + w for w in whole)
