"""The run-file format: what a run directory holds, written and read back only here.

    summary.json     the run's numbers (DESIGN.md's schema), written whole at the end
    requests.jsonl   one line per request, appended as requests finish
    telemetry.jsonl  GPU and server samples taken during the run
    comparison.json  the check against a baseline, when the run had one

The reports, ``perfbench compare``, the finishing stages and the run store read these files
only through the readers here, so they are the one hand-over between a run and everything that
looks at it later, and a damaged file is reported the same way everywhere. This module sits
below all of them: it imports nothing from the reports, compare, finish or the CLI. Exports made
from these files (summary.csv, requests.parquet) are not the format: see ``perfbench.report.tables``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, TypeVar

from perfbench.core.errors import ConfigError
from perfbench.results.records import RequestRecord

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
REQUESTS_FILE = "requests.jsonl"
TELEMETRY_FILE = "telemetry.jsonl"
COMPARISON_FILE = "comparison.json"
SUMMARY_SCHEMA = "perfbench.summary/1"
COMPARISON_SCHEMA = "perfbench.comparison/1"
CHUNK_RECORDS = 10_000  # records per chunk when a whole requests.jsonl is read: a few MB of objects at a time
T = TypeVar("T")


# Errors that mean "this disk takes no more": full, over quota, over the file-size limit, read-only.
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


class OutputError(ConfigError):
    """A run's file cannot be written (disk full, read-only or vanished folder): exit 2, one line."""


def output_error(name: str, exc: OSError) -> OutputError:
    """The one-line message for a failed write of ``name``, naming the fix."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OutputError(f"cannot write {name}: {reason}; free space or choose another --output-dir")


# --- requests.jsonl ----------------------------------------------------------------------------


def iter_request_lines(run_dir: Path) -> Iterator[dict[str, Any]]:
    """requests.jsonl's lines as dicts, in file order; nothing when the file is absent.

    A torn last line (a run killed while writing it) is skipped with a warning. An unreadable
    line anywhere else means the file is damaged: ConfigError naming ``file:line``.
    """
    return (line for _, line in _numbered_lines(Path(run_dir) / REQUESTS_FILE))


def read_request_lines(run_dir: Path) -> list[dict[str, Any]]:
    """All of ``iter_request_lines``."""
    return list(iter_request_lines(run_dir))


def iter_request_line_chunks(run_dir: Path, size: int = CHUNK_RECORDS) -> Iterator[list[dict[str, Any]]]:
    """``iter_request_lines`` in lists of up to ``size`` lines."""
    return _chunks(iter_request_lines(run_dir), size)


def iter_records(run_dir: Path) -> Iterator[RequestRecord]:
    """requests.jsonl's records, times relative to the run's start (run_start_ns = 0).

    Torn last line and damaged lines as in ``iter_request_lines``; a JSON line that is not a
    request record is a ConfigError naming ``file:line``.
    """
    path = Path(run_dir) / REQUESTS_FILE
    for number, line in _numbered_lines(path):
        try:
            yield RequestRecord.from_json(line)
        except KeyError as exc:
            raise ConfigError(f"{path}:{number}: no field {exc}; not a perfbench request record") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}:{number}: {exc}; not a perfbench request record") from None


def read_records(run_dir: Path) -> list[RequestRecord]:
    """All of ``iter_records``."""
    return list(iter_records(run_dir))


def iter_record_chunks(run_dir: Path, size: int = CHUNK_RECORDS) -> Iterator[list[RequestRecord]]:
    """``iter_records`` in lists of up to ``size`` records, so a reader of a million-request run
    holds one chunk of record objects at a time, not the run."""
    return _chunks(iter_records(run_dir), size)


class RecordReader:
    """A run's own requests.jsonl read back while it grows: each ``chunks`` call goes on where
    the last one stopped, so the run summarises a step from its file instead of holding records.

    A line not yet ended by a newline is left for the next call. Unlike ``iter_records`` an
    unreadable line is skipped with a warning: a damaged line must not cost the run its summary.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0  # bytes read: the end of the last whole line
        self._line_number = 0  # lines read

    def chunks(self, size: int = CHUNK_RECORDS) -> Iterator[list[RequestRecord]]:
        """The records appended since the last call, in lists of up to ``size``, in file order."""
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(self._offset)
            chunk: list[RequestRecord] = []
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # still being written (or torn): not consumed
                self._offset += len(raw)
                self._line_number += 1
                if not raw.strip():
                    continue
                try:
                    chunk.append(RequestRecord.from_json(json.loads(raw)))
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    log.warning("%s:%d: unreadable record skipped (%s)", self.path, self._line_number, exc)
                    continue
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk


def _numbered_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line; see ``iter_request_lines``."""
    try:
        f = path.open("rb")  # bytes: bad UTF-8 is then a JSON error of its line
    except FileNotFoundError:
        return
    with f:
        torn: tuple[int, str] | None = None  # an unreadable line: fatal unless nothing follows it
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            if torn is not None:
                raise ConfigError(f"{path}:{torn[0]}: {torn[1]}; the file is damaged, remove that line or rerun")
            try:
                line = json.loads(raw)
            except ValueError as exc:
                torn = (number, f"not a JSON line ({exc})")
                continue
            if not isinstance(line, dict):
                raise ConfigError(f"{path}:{number}: not a JSON object; the file is damaged, remove that line or rerun")
            yield number, line
    if torn is not None:
        log.warning("%s:%d: torn last line skipped (the run stopped while writing it)", path, torn[0])


def _chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of up to ``size``."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# --- summary.json ------------------------------------------------------------------------------


def write_summary(run_dir: Path, summary: Mapping[str, Any]) -> None:
    """summary.json (the schema of DESIGN.md), whole or not at all (written aside, then renamed).

    OutputError when it cannot be written.
    """
    tmp = run_dir / f"{SUMMARY_FILE}.tmp"
    try:
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(run_dir / SUMMARY_FILE)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise output_error(SUMMARY_FILE, exc) from None


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run directory's summary.json; ConfigError (one line) when it is missing or not a perfbench summary."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no {SUMMARY_FILE} in {run_dir}; pass a run directory written by perfbench") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; pass an intact run directory") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("steps"), list):
        raise ConfigError(f"{path} has no 'steps' list; pass a run directory written by perfbench")
    return summary


def step_metric(step: Mapping[str, Any], metric: str) -> float | None:
    """A STEP's value for ``metric``: a field (``output_throughput_tok_s``) or a stat (``ttft_ms.p99``).

    None when the step lacks it or it is not a finite number.
    """
    name, _, stat = metric.partition(".")
    value = step.get(name)
    if stat:
        value = value.get(stat) if isinstance(value, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def step_label(step: Mapping[str, Any]) -> str:
    """A STEP's one name wherever a step is shown (terminal, report.html, plots, compare, JUnit, history):
    ``c=8`` closed loop, ``rate=4/s`` open loop, ``rate=4/s cap=8`` open loop with a concurrency cap."""
    rate, concurrency = step.get("rate_req_s"), step.get("concurrency")
    if not isinstance(rate, (int, float)):
        return f"c={concurrency}"
    return f"rate={rate:g}/s" if concurrency is None else f"rate={rate:g}/s cap={concurrency}"


# --- telemetry.jsonl ---------------------------------------------------------------------------


def write_telemetry(path: Path, samples: Iterable[Mapping[str, Any]]) -> None:
    """telemetry.jsonl: one sample a line, ``t_s`` seconds since the run's start (requests.jsonl's clock)."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for sample in samples:
            fh.write(json.dumps(sample) + "\n")


def read_telemetry(run_dir: Path) -> list[dict[str, Any]]:
    """telemetry.jsonl's samples; none when absent; torn or odd lines skipped."""
    path = Path(run_dir) / TELEMETRY_FILE
    if not path.exists():
        return []
    samples = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                sample = json.loads(line)
            except ValueError:
                continue
            if isinstance(sample, dict) and isinstance(sample.get("t_s"), (int, float)):
                samples.append(sample)
    return samples


# --- comparison.json ---------------------------------------------------------------------------


def write_comparison(path: Path, comparison: Mapping[str, Any]) -> None:
    """A comparison (``Comparison.to_dict()``) as JSON: a run's comparison.json, or ``compare --json FILE``."""
    Path(path).write_text(json.dumps(comparison, indent=2) + "\n", encoding="utf-8")


def read_comparison(path: Path) -> dict[str, Any] | None:
    """A comparison written by ``write_comparison``; None when absent, ConfigError when unreadable."""
    try:
        comparison = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(comparison, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return comparison
