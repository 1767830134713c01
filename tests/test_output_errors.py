"""A full disk or a vanished output folder mid-run: one line, exit 2, every written line valid, a summary somewhere.

The CLI runs as a real subprocess against the built-in mock; the disk fills up through a real
file-size limit (RLIMIT_FSIZE: writes past it fail with EFBIG, after a short write, as on a full
disk) or, in-process, through an ``os.write`` that fails with ENOSPC for requests.jsonl only.
"""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfbench.commands.main import main
from perfbench.results.records import OK, RequestRecord
from perfbench.results.runfiles import OutputError, read_request_lines
from perfbench.report.requests_file import RecordWriter

PERFBENCH = [sys.executable, "-m", "perfbench"]
RUN_FLAGS = ["--no-live", "--no-plots", "--no-telemetry", "--max-tokens", "10"]
FSIZE_LIMIT_BYTES = 40_000  # requests.jsonl stops growing here; summary.json (a few KB) still fits


def record(index: int) -> RequestRecord:
    times = tuple(1_000_000 * (index + k) for k in range(1, 11))
    return RequestRecord(0, index, False, OK, 200, None, 0, 0, times[-1], times, (1,) * 10, 12, 10, "usage")


def lines_are_whole(path: Path) -> list[dict]:
    """Every line of ``path`` parses (no torn line anywhere, not even the last)."""
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_disk_full_mid_run_is_one_line_and_keeps_every_written_record(tmp_path):
    out = tmp_path / "run"

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT_BYTES, FSIZE_LIMIT_BYTES))

    result = subprocess.run(
        [*PERFBENCH, "--mock", "ttft_ms=1,itl_ms=1", "-c", "8", "-n", "5000", *RUN_FLAGS, "--output-dir", str(out)],
        capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("perfbench: error:")]
    assert errors == [
        "perfbench: error: cannot write requests.jsonl: File too large; free space or choose another --output-dir "
        f"(the summary of what finished is in {out / 'summary.json'})"
    ]
    lines = lines_are_whole(out / "requests.jsonl")
    assert 10 < len(lines) < 5000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["steps"][0]["requests_completed"] == len(lines)


def test_no_space_left_stops_the_run_without_a_crash(tmp_path, monkeypatch, capsys):
    """In-process: ENOSPC for requests.jsonl after 20 lines, half of the 21st written; the loop must not crash."""
    real_write = os.write
    lines_written = 0

    def write(fd: int, data: bytes) -> int:
        nonlocal lines_written
        if not os.readlink(f"/proc/self/fd/{fd}").endswith("requests.jsonl"):
            return real_write(fd, data)
        if lines_written == 20:
            real_write(fd, bytes(data)[: len(data) // 2])  # a torn line, as a nearly full disk leaves it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        lines_written += 1
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    out = tmp_path / "run"
    code = main(["--mock", "ttft_ms=1,itl_ms=1", "-c", "4", "-n", "2000", *RUN_FLAGS, "--output-dir", str(out)])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "perfbench: error: cannot write requests.jsonl: No space left on device; free space or choose another "
        f"--output-dir (the summary of what finished is in {out / 'summary.json'})"
    )
    assert len(lines_are_whole(out / "requests.jsonl")) == 20  # the torn half was cut off again
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["steps"][0]["requests_completed"] == 20


def test_record_writer_cuts_a_torn_line_and_writes_nothing_after_a_failure(tmp_path, monkeypatch):
    path = tmp_path / "requests.jsonl"
    writer = RecordWriter(path, run_start_ns=0)
    writer.write(record(0))
    real_write = os.write

    def torn_write(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data)[:7])  # part of the line reaches the file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", torn_write)
    with pytest.raises(OutputError, match=r"^cannot write requests.jsonl: No space left on device; free space"):
        writer.write(record(1))
    monkeypatch.setattr(os, "write", real_write)
    writer.write(record(2))  # after a failure nothing more is written: no line after a gap
    writer.close()
    assert [line["index"] for line in read_request_lines(tmp_path)] == [0]
    assert path.read_text().count("\n") == 1 and path.read_text().endswith("\n")


def test_a_vanished_output_dir_puts_the_summary_in_the_temp_dir(tmp_path):
    out = tmp_path / "run"
    run = subprocess.Popen(
        [*PERFBENCH, "--mock", "ttft_ms=5,itl_ms=50", "-c", "4", "-n", "10000", *RUN_FLAGS, "--output-dir", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    fallback = None
    try:
        deadline = time.monotonic() + 60
        while not (out / "requests.jsonl").exists() or not (out / "requests.jsonl").read_text().count("\n") >= 4:
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        shutil.rmtree(out)  # the folder is gone (a cleanup job, an unmounted disk)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=30)
        assert run.returncode == 2, stderr
        assert "Traceback" not in stderr
        match = re.fullmatch(
            r"perfbench: error: cannot write summary.json: No such file or directory; free space or choose another "
            r"--output-dir \(the summary of what finished is in (\S+)\)",
            stderr.strip(),
        )
        assert match, stderr
        fallback = Path(match.group(1)).parent
        assert json.loads(Path(match.group(1)).read_text())["interrupted"] is True
    finally:
        if run.poll() is None:
            run.kill()
        if fallback is not None:
            shutil.rmtree(fallback, ignore_errors=True)


def test_a_full_disk_while_writing_the_reports_is_one_line(tmp_path):
    """The records and summary fit (about 15 KB), the plots and report.html do not."""
    out = tmp_path / "run"

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))

    result = subprocess.run(
        [*PERFBENCH, "--mock", "ttft_ms=1,itl_ms=1", "-c", "2", "-n", "20", "--max-tokens", "10", "--no-live",
         "--no-telemetry", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "perfbench: error: cannot write an output file: File too large; free space or choose another --output-dir"
    ]
    assert len(lines_are_whole(out / "requests.jsonl")) == 20
    assert json.loads((out / "summary.json").read_text())["steps"][0]["requests_succeeded"] == 20
