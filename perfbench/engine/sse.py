"""Incremental server-sent-events parser: bytes in, events out (no I/O, no aiohttp).

Follows the WHATWG "event stream interpretation" rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):

- a line ends in ``\\n``, ``\\r\\n`` or ``\\r``; a ``\\r`` that ends one chunk may be the first
  half of a ``\\r\\n`` split across two reads, so the parser remembers to drop a leading ``\\n``;
- a line starting with ``:`` is a comment (keep-alive) and ignored;
- ``field: value`` — one optional space after the colon is removed; a line without a colon is a
  field with an empty value; ``data`` lines are joined with ``\\n``; ``event`` sets the type;
  ``id``, ``retry`` and unknown fields are ignored;
- a blank line dispatches the event, unless it has no ``data`` line;
- one UTF-8 byte-order mark at the very start of the stream is skipped.

``data`` stays bytes: decoding JSON is the API adapter's job, and so is ``[DONE]``.
The shape follows httpx's incremental decoders: ``feed`` per read, ``flush`` at end of stream.
An event is returned by the ``feed`` call whose bytes complete it, so the caller can stamp it
with that read's time. This is the engine's per-package hot path: work is done per line with
C-level ``bytes`` methods, never per byte.
"""

from __future__ import annotations

from typing import NamedTuple

_BOM = b"\xef\xbb\xbf"


class SSEEvent(NamedTuple):
    """One dispatched event."""

    data: bytes  # the data lines joined with b"\n"
    event: str | None  # the `event` field; None for the default "message" type


# NamedTuple's generated __new__ is Python code; tuple.__new__ builds the same object at a
# third of the cost, which matters once per package.
_new_event = tuple.__new__


class SSEParser:
    """Turns a stream's chunks into events; one parser per stream."""

    __slots__ = ("_partial", "_skip_lf", "_at_start", "_data", "_event")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._partial: list[bytes] = []  # pieces of the current, unterminated line
        self._skip_lf = False  # the last chunk ended in "\r": a leading "\n" is its other half
        self._at_start = True  # a BOM may still come (fewer than 3 bytes seen)
        self._data: list[bytes] = []  # data lines of the event being built
        self._event: str | None = None  # event type of the event being built

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Parse one chunk; return the events it completed (blank-line terminated)."""
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._at_start:
            chunk = self._strip_bom(chunk)
        if not chunk:
            return []
        # Only the part up to the last line end is parsed now; the rest waits for more bytes.
        end = chunk.rfind(b"\n")
        end = max(end, chunk.rfind(b"\r", end + 1))  # only the tail after the last "\n" is searched
        if end < 0:
            self._partial.append(chunk)
            return []
        if end == len(chunk) - 1:
            complete = chunk
            if chunk[end] == 13:  # b"\r"
                self._skip_lf = True
            rest = None
        else:
            complete = chunk[: end + 1]
            rest = chunk[end + 1 :]
        if self._partial:
            complete = b"".join(self._partial) + complete
            self._partial.clear()
        if rest is not None:
            self._partial.append(rest)
        return self._lines(complete.splitlines())

    def flush(self) -> list[SSEEvent]:
        """End of stream: the pending event without its blank line, if it has data.

        WHATWG discards such an event; servers that close right after their last event's data
        line are common enough that perfbench keeps it. An unterminated last line counts as a line.
        """
        lines = [b"".join(self._partial)] if self._partial else []
        lines.append(b"")  # the missing blank line
        events = self._lines(lines)
        self._reset()  # a flushed parser is ready for a new stream
        return events

    def _strip_bom(self, chunk: bytes) -> bytes:
        """Drop a leading UTF-8 BOM, which may itself arrive split across chunks."""
        head = b"".join(self._partial) + chunk if self._partial else chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._partial = [head] if head else []
            return b""
        self._partial.clear()
        self._at_start = False
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        """Apply complete lines (without their line ends) to the event being built."""
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if not line:  # blank line: dispatch
                if data:
                    events.append(_new_event(SSEEvent, (b"\n".join(data), self._event)))
                    data = self._data = []
                self._event = None
                continue
            # The common case first: "data: {json}".
            if line[:6] == b"data: ":
                data.append(line[6:])
                continue
            colon = line.find(b":")
            if colon == 0:  # comment, e.g. a keep-alive
                continue
            if colon < 0:
                name, value = line, b""
            else:
                name = line[:colon]
                value = line[colon + 2 :] if line[colon + 1 : colon + 2] == b" " else line[colon + 1 :]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace") or None
            # id, retry and unknown fields: nothing perfbench needs.
        return events


class RecordedEvents(NamedTuple):
    """The events of a whole recorded stream."""

    data: list[bytes]  # each event's data
    types: list[str | None] | None  # each event's type; None when every event has the default type
    completed_by: list[int]  # index of the chunk whose bytes completed each event


def parse_recorded(chunks: list[bytes]) -> RecordedEvents:
    """Parse a whole recorded stream, as feeding its chunks one by one to an ``SSEParser`` (then ``flush``) would.

    This lets the engine's read loop be just "stamp the read, keep the bytes". The common shape —
    nothing but ``data: …`` lines each followed by a blank line, with ``\n`` endings — is checked
    and split with a few whole-stream operations; anything else goes through ``SSEParser``.
    """
    stream = b"".join(chunks)
    if stream.startswith(b"data: ") and stream.endswith(b"\n\n") and b"\r" not in stream:
        data = stream[6:-2].split(b"\n\ndata: ")
        # No piece holding a "\n" means every "\n" of the stream is a line end or a blank line
        # from the split's separators: each event is exactly one `data: ` line. (Joining then
        # searching costs a tenth of counting the stream's "\n".)
        if b"\n" not in b"".join(data):
            return RecordedEvents(data, None, _completing_chunks(chunks, len(data)))
    parser = SSEParser()
    events: list[SSEEvent] = []
    completed: list[int] = []
    for index, chunk in enumerate(chunks):
        new = parser.feed(chunk)
        events.extend(new)
        completed.extend([index] * len(new))
    tail = parser.flush()
    events.extend(tail)
    completed.extend([len(chunks) - 1] * len(tail))
    return RecordedEvents([e.data for e in events], [e.event for e in events], completed)


def _completing_chunks(chunks: list[bytes], events: int) -> list[int]:
    """For a stream of the common shape, the index of the chunk that completed each event.

    Event k ends at the stream's (2k + 2)-th "\n" (its line end, then its blank line), so the
    events completed once chunk c is in are half the "\n" counted so far.
    """
    if len(chunks) == 1:
        return [0] * events
    completed_by: list[int] = []
    newlines = 0
    for index, chunk in enumerate(chunks):
        newlines += chunk.count(b"\n")
        completed_by += [index] * (newlines // 2 - len(completed_by))
    return completed_by
