"""Output files: requests.jsonl written as requests finish, summary.json and summary.csv at the end.

The reports and ``perfbench compare`` read these files back, so they are the only hand-over
between a run and everything that looks at it later.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from perfbench.records import RequestRecord

SUMMARY_SCHEMA = "perfbench.summary/1"
STATS_FIELDS = ("count", "mean", "std", "min", "p50", "p90", "p95", "p99", "max")


class RecordWriter:
    """Appends one requests.jsonl line per finished request, flushed at once (a crash keeps it)."""

    def __init__(self, path: Path, run_start_ns: int) -> None:
        self.path = path
        self._run_start_ns = run_start_ns
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: RequestRecord) -> None:
        self._file.write(json.dumps(record.to_json(self._run_start_ns), separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_records(run_dir: Path) -> list[RequestRecord]:
    """Records of a run directory, with times relative to its start (run_start_ns = 0)."""
    return list(iter_records(run_dir / "requests.jsonl"))


def iter_records(path: Path) -> Iterator[RequestRecord]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield RequestRecord.from_json(json.loads(line))


def write_summary(run_dir: Path, summary: Mapping[str, Any]) -> None:
    """summary.json (the schema of DESIGN.md) and summary.csv (one row per step, stats flattened)."""
    tmp = run_dir / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(run_dir / "summary.json")
    write_summary_csv(run_dir / "summary.csv", summary["steps"])


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def flatten_step(step: Mapping[str, Any]) -> dict[str, Any]:
    """A STEP as one flat row: ``ttft_ms`` stats become ``ttft_ms_mean``, ``ttft_ms_p99``, ..."""
    row: dict[str, Any] = {}
    for key, value in step.items():
        if isinstance(value, Mapping) and "p50" in value:
            for stat in STATS_FIELDS:
                row[f"{key}_{stat}"] = value.get(stat)
        elif isinstance(value, Mapping):
            row[key] = ";".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            row[key] = json.dumps(value, separators=(",", ":"))
        else:
            row[key] = value
    return row


def write_summary_csv(path: Path, steps: Sequence[Mapping[str, Any]]) -> None:
    rows = [flatten_step(s) for s in steps]
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
