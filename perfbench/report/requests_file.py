"""requests.jsonl as the run writes it: one line per finished request, appended at once (a crash keeps it).

The format and its readers are perfbench.results.runfiles'; the line adds each request's TTFT and
latency as perfbench.metrics defines them, which is why the writer sits above both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from perfbench.results.records import REQUEST_LINE, RequestRecord
from perfbench.results.runfiles import output_error


def request_line(record: RequestRecord, run_start_ns: int) -> dict[str, Any]:
    """requests.jsonl's line for ``record`` (REQUEST_LINE): its fields, then the derived ones (TTFT and
    latency) as perfbench.metrics defines them."""
    from perfbench.metrics import request_times_ms  # numpy: not for the CLI's start, which imports finish and so this

    line = record.to_json(run_start_ns)
    derived = request_times_ms(record)
    line.update((field.name, derived[field.name]) for field in REQUEST_LINE if field.write is None)
    return line


class RecordWriter:
    """Appends one requests.jsonl line per finished request, each in one unbuffered write (a crash keeps it).

    A failed write (disk full, I/O error) raises OutputError once; the file is cut back to its last
    whole line where the system allows, and nothing more is written, so every line before the
    last stays valid.
    """

    def __init__(self, path: Path, run_start_ns: int) -> None:
        self.path = path
        self._run_start_ns = run_start_ns
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        except OSError as exc:
            raise output_error(path.name, exc) from None
        self._good_bytes = os.fstat(self._fd).st_size  # file size after the last whole line
        self.failed = False

    def write(self, record: RequestRecord) -> None:
        if self.failed or self._fd is None:
            return
        line = (json.dumps(request_line(record, self._run_start_ns), separators=(",", ":")) + "\n").encode("utf-8")
        try:
            view = memoryview(line)
            while view:  # one write in practice; a short write (disk nearly full) continues the same line
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.failed = True
            try:
                os.ftruncate(self._fd, self._good_bytes)  # drop the torn part; needs no free space
            except OSError:
                pass  # e.g. a pipe or /dev/full: the torn line is the last one, which readers skip
            raise output_error(self.path.name, exc) from None
        self._good_bytes += len(line)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
