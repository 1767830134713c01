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


def parse_recorded(chunks: list[bytes]) -> tuple[list[SSEEvent], list[int]]:
    """Parse a whole recorded stream: its events, and for each the index of the chunk that completed it.

    Gives exactly what feeding the chunks one by one to an ``SSEParser`` (then ``flush``) gives,
    so the engine can keep its read loop to "append the bytes, stamp the read" and parse once the
    stream is over. The common shape — ``data: …`` lines, each followed by a blank line, ``\\n``
    endings, maybe comments — is split in one pass; anything else goes through ``SSEParser``.
    """
    stream = b"".join(chunks)
    if b"\r" not in stream and stream.endswith(b"\n\n") and not stream.startswith(_BOM):
        fast = _parse_simple(stream, chunks)
        if fast is not None:
            return fast
    parser = SSEParser()
    events: list[SSEEvent] = []
    completed_by: list[int] = []
    for index, chunk in enumerate(chunks):
        new = parser.feed(chunk)
        events.extend(new)
        completed_by.extend([index] * len(new))
    tail = parser.flush()
    events.extend(tail)
    completed_by.extend([len(chunks) - 1] * len(tail))
    return events, completed_by


def _parse_simple(stream: bytes, chunks: list[bytes]) -> tuple[list[SSEEvent], list[int]] | None:
    """The one-pass path; None when the stream holds anything but single-line data events and comments."""
    events: list[SSEEvent] = []
    completed_by: list[int] = []
    chunk_ends = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        chunk_ends.append(total)
    chunk_index = 0
    position = 0  # where the current piece starts in `stream`
    pieces = stream.split(b"\n\n")
    pieces.pop()  # the empty piece after the final blank line
    for piece in pieces:
        position += len(piece) + 2
        if piece[:6] == b"data: ":
            data = piece[6:]
        elif piece[:1] == b":":
            if b"\n" in piece:
                return None
            continue  # a comment, e.g. a keep-alive
        elif piece[:5] == b"data:":
            data = piece[5:]
        else:
            return None
        if b"\n" in data:
            return None
        # The blank line's "\n" (byte position - 1) dispatches the event: find the chunk holding it.
        while chunk_ends[chunk_index] < position:
            chunk_index += 1
        events.append(_new_event(SSEEvent, (data, None)))
        completed_by.append(chunk_index)
    return events, completed_by
