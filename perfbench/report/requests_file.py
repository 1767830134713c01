"""requests.jsonl as the run writes it: one line per finished request, appended in batches of at
most one event-loop turn, so the loop that stamps reads spends the least on files and a crash
keeps every line but those of the turn it died in.

The format and its readers are perfbench.results.runfiles'; each line adds the request's TTFT and
latency as perfbench.metrics defines them (computed for the whole batch at once, never with a
one-record numpy build), which is why the writer sits above both.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import orjson

from perfbench.results.records import REQUEST_LINE, RequestRecord
from perfbench.results.runfiles import OutputError, output_error

MAX_BATCH_RECORDS = 4096  # a batch is written at once past this many records, without waiting for the turn's end


def request_lines(records: Sequence[RequestRecord], run_start_ns: int) -> list[dict[str, Any]]:
    """requests.jsonl's lines for records (REQUEST_LINE): their fields, then the derived ones (TTFT and
    latency) as perfbench.metrics defines them, computed for all the records at once."""
    from perfbench.metrics import requests_times_ms  # numpy: not for the CLI's start, which imports finish and so this

    lines = [record.to_json(run_start_ns) for record in records]
    derived = requests_times_ms(records)
    for name in (field.name for field in REQUEST_LINE if field.write is None):
        for line, value in zip(lines, derived[name]):
            line[name] = value
    return lines


def request_line(record: RequestRecord, run_start_ns: int) -> dict[str, Any]:
    """The line of one record (see request_lines)."""
    return request_lines([record], run_start_ns)[0]


def encode_lines(lines: Sequence[dict[str, Any]]) -> bytes:
    """JSON lines, compact, UTF-8."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


class RecordWriter:
    """Appends the lines of finished requests to requests.jsonl, a batch per event-loop turn, one write each.

    ``write`` queues a record; inside a running event loop the queue is written once the loop has
    run the turn's other callbacks (reads are stamped first), elsewhere at once. A failed write
    (disk full, I/O error) cuts the file back to its last whole line where the system allows and
    writes nothing more, so every line before stays valid; the OutputError is raised by the call
    that wrote (``write`` outside a loop, ``flush``, ``close``) or, for a write deferred to the
    loop, handed to ``on_failure``.
    """

    def __init__(self, path: Path, run_start_ns: int, on_failure: Callable[[OutputError], None] | None = None) -> None:
        self.path = path
        self._run_start_ns = run_start_ns
        self._on_failure = on_failure
        self._pending: list[RequestRecord] = []
        self._flush_scheduled = False
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            raise output_error(path.name, exc) from None
        self._good_bytes = os.fstat(self._fd).st_size  # file size after the last whole line
        self.failed = False

    def write(self, record: RequestRecord) -> None:
        if self.failed or self._fd is None:
            return
        self._pending.append(record)
        if len(self._pending) >= MAX_BATCH_RECORDS:
            self.flush()
            return
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop here (a worker's sending thread, a test): the line goes now
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
        self._flush_scheduled = False
        try:
            self.flush()
        except OutputError as exc:
            if self._on_failure is None:
                raise
            self._on_failure(exc)

    def flush(self) -> None:
        """Write every queued line now."""
        records, self._pending = self._pending, []
        if not records or self.failed or self._fd is None:
            return
        data = encode_lines(request_lines(records, self._run_start_ns))
        try:
            view = memoryview(data)
            while view:  # one write in practice; a short write (disk nearly full) continues the same batch
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.failed = True
            try:
                os.ftruncate(self._fd, self._good_bytes)  # drop the torn part; needs no free space
            except OSError:
                pass  # e.g. a pipe or /dev/full: the torn line is the last one, which readers skip
            raise output_error(self.path.name, exc) from None
        self._good_bytes += len(data)

    def close(self) -> None:
        """Write what is queued, then close the file."""
        try:
            self.flush()
        finally:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)
