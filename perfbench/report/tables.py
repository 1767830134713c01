"""Exports of a run's files for other tools: summary.csv (spreadsheets) and requests.parquet (pandas, Spark, DuckDB).

They are conveniences made from the run-file format (``perfbench.results.runfiles``), never read back by perfbench.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from perfbench.metrics import STATISTICS
from perfbench.results.records import REQUEST_LINE_TYPES
from perfbench.results.runfiles import iter_request_line_chunks, output_error, write_summary

log = logging.getLogger(__name__)

SUMMARY_CSV_FILE = "summary.csv"
PARQUET_FILE = "requests.parquet"


def write_summary_files(run_dir: Path, summary: Mapping[str, Any]) -> None:
    """summary.json and, beside it, summary.csv (one row per step, stats flattened): what a run
    writes when it ends. OutputError when a file cannot be written."""
    write_summary(run_dir, summary)
    try:
        write_summary_csv(run_dir / SUMMARY_CSV_FILE, summary["steps"])
    except OSError as exc:
        raise output_error(SUMMARY_CSV_FILE, exc) from None


def flatten_step(step: Mapping[str, Any]) -> dict[str, Any]:
    """A STEP as one flat row: ``ttft_ms`` stats become ``ttft_ms_mean``, ``ttft_ms_p99``, ...; an object
    holding objects is flattened under its name (``client``: ``client_loop_lag_ms_p99``, ``client_verdict``)."""
    row: dict[str, Any] = {}
    for key, value in step.items():
        if isinstance(value, Mapping) and "p50" in value:
            for stat in STATISTICS:
                row[f"{key}_{stat}"] = value.get(stat)
        elif isinstance(value, Mapping) and any(isinstance(v, Mapping) for v in value.values()):
            row.update((f"{key}_{name}", v) for name, v in flatten_step(value).items())
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


_PARQUET_LINES = 2_000  # lines converted at once
_PARQUET_ROW_GROUP = 50_000  # rows per row group


def write_requests_parquet(run_dir: Path) -> Path | None:
    """requests.parquet: requests.jsonl as a table for pandas/Spark/DuckDB users.

    Written only when pyarrow is installed (``pip install 'perfbench[parquet]'``); returns the
    path, or None without pyarrow. Package times stay one list column per request. Lines are
    converted _PARQUET_LINES at a time (as dicts they are the costly part) and written in row
    groups of _PARQUET_ROW_GROUP rows, so a million-request run is never in memory at once.
    A line that does not fit the table is logged and the file left out (it is a convenience).
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None

    # requests.jsonl's declared types (REQUEST_LINE) as Arrow's, so every chunk of a long run is written
    # with one schema (a chunk whose errors are all null must not make `error` a null column).
    arrow_types = {"int": pa.int64(), "bool": pa.bool_(), "str": pa.string(), "float": pa.float64(),
                   "list[float]": pa.list_(pa.float64()), "list[int]": pa.list_(pa.int64())}  # fmt: skip
    path = run_dir / PARQUET_FILE
    writer = None
    batches: list[Any] = []  # converted lines not yet written: columnar, a fraction of their dicts' size
    try:
        for chunk in iter_request_line_chunks(run_dir, _PARQUET_LINES):
            if writer is None:
                # Declared fields typed; any other (a newer file's) as the first chunk shows it (all null: text).
                fields = []
                for name in dict.fromkeys(key for line in chunk for key in line):
                    if name in REQUEST_LINE_TYPES:
                        fields.append(pa.field(name, arrow_types[REQUEST_LINE_TYPES[name]]))
                    else:
                        inferred = pa.array([line.get(name) for line in chunk]).type
                        fields.append(pa.field(name, pa.string() if pa.types.is_null(inferred) else inferred))
                writer = pq.ParquetWriter(path, pa.schema(fields))
            batches.append(pa.RecordBatch.from_pylist(chunk, schema=writer.schema))
            if sum(batch.num_rows for batch in batches) >= _PARQUET_ROW_GROUP:
                writer.write_table(pa.Table.from_batches(batches), row_group_size=_PARQUET_ROW_GROUP)
                batches = []
        if batches:
            writer.write_table(pa.Table.from_batches(batches), row_group_size=_PARQUET_ROW_GROUP)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        log.warning("requests.parquet not written: a line does not fit its table (%s)", exc)
        if writer is not None:
            writer.close()
        path.unlink(missing_ok=True)
        return None
    finally:
        if writer is not None:
            writer.close()  # idempotent; also when requests.jsonl turns out damaged (ConfigError goes on up)
    return path if writer is not None else None  # no lines: no table
