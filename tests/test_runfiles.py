"""perfbench.results.runfiles: the one writer and reader of a run's files; and the exports made from them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from perfbench.core.errors import ConfigError
from perfbench.results.runfiles import iter_request_lines, read_records, read_request_lines, read_summary
from run_fixtures import StepSpec, write_run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", [StepSpec(requests=5)])


def _lines(run_dir: Path) -> list[str]:
    return (run_dir / "requests.jsonl").read_text().splitlines(keepends=True)


def test_reads_what_a_run_wrote(run_dir: Path) -> None:
    assert read_summary(run_dir)["steps"][0]["concurrency"] == 4
    lines = read_request_lines(run_dir)
    assert lines == [json.loads(line) for line in _lines(run_dir)] and len(lines) == 5
    assert [r.index for r in read_records(run_dir)] == [line["index"] for line in lines]


def test_absent_requests_file_is_empty(tmp_path: Path) -> None:
    assert read_request_lines(tmp_path) == [] and read_records(tmp_path) == []


def test_torn_last_line_is_skipped_with_a_warning(run_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with (run_dir / "requests.jsonl").open("ab") as f:
        f.write(b'\n{"step": 0, "index": 5, "status": "o\xc3')  # killed mid-write, even mid-character
    with caplog.at_level(logging.WARNING):
        assert len(read_records(run_dir)) == 5 and len(read_request_lines(run_dir)) == 5
    assert "requests.jsonl:7: torn last line skipped" in caplog.text


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"step": 0, "ind\n', r"requests\.jsonl:3: not a JSON line"),
        ("[1, 2]\n", r"requests\.jsonl:3: not a JSON object"),
    ],
)
def test_a_bad_line_before_the_end_names_file_and_line(run_dir: Path, bad: str, message: str) -> None:
    lines = _lines(run_dir)
    (run_dir / "requests.jsonl").write_text("".join(lines[:2] + [bad] + lines[2:]))
    for reader in (read_records, read_request_lines):
        with pytest.raises(ConfigError, match=message) as err:
            reader(run_dir)
        assert "\n" not in str(err.value)


def test_a_json_line_that_is_no_record(run_dir: Path) -> None:
    lines = _lines(run_dir)
    (run_dir / "requests.jsonl").write_text("".join(lines[:1] + ["\n", '{"step": 0}\n'] + lines[1:]))
    assert len(list(iter_request_lines(run_dir))) == 6  # as dicts it reads
    with pytest.raises(ConfigError, match=r"requests\.jsonl:3: no field 'scheduled_s'; not a perfbench request record"):
        read_records(run_dir)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no summary.json in"),
        ("{", "cannot read"),
        ('{"schema": "x"}', "has no 'steps' list"),
    ],
)
def test_summary_errors_are_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "summary.json").write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        read_summary(tmp_path)
    assert "\n" not in str(err.value)


# --- reading a run back in chunks ------------------------------------------------------------


def _random_records(seed: int, count: int) -> list:
    """Records with perf_counter-sized absolute stamps, some failed, some warm-up, some with per-package tokens."""
    import random

    from perfbench.results.records import OK, TIMEOUT, RequestRecord, http_reason

    rng = random.Random(seed)
    base_ns = 7 * 10**14 + rng.randint(0, 10**12)  # about 8 days of uptime: large, like real perf_counter_ns
    records = []
    for index in range(count):
        t0 = base_ns + rng.randint(0, 3 * 10**11)  # due within 300 s of the run's start
        sent = t0 + rng.randint(0, 10**7)
        times = [sent + rng.randint(0, 10**9)]
        for _ in range(rng.randint(0, 6)):
            times.append(times[-1] + rng.randint(0, 10**8))
        status = rng.choice([OK, OK, OK, OK, TIMEOUT, http_reason(429)])
        if status != OK and rng.random() < 0.5:
            times = []
        tokens = tuple(rng.randint(0, 4) for _ in times) if rng.random() < 0.5 else ()
        records.append(RequestRecord(
            0, index, rng.random() < 0.05, status, 200 if status == OK else 429, None if status == OK else f"e{index % 3}",
            t0, sent, (times[-1] if times else sent) + rng.randint(0, 10**6), tuple(times), tokens,
            rng.choice([None, rng.randint(1, 2000)]), rng.randint(0, 40), "usage",
        ))  # fmt: skip
    return records


@pytest.mark.parametrize("seed", range(5))
def test_summary_read_back_in_chunks_equals_the_one_of_the_records_in_memory(tmp_path: Path, seed: int) -> None:
    # The run summarises from requests.jsonl, chunk by chunk, instead of holding every record:
    # every number must be exactly what summarize_step gives over the records themselves.
    from perfbench.metrics import StepAccumulator, summarize_step
    from perfbench.results.runfiles import RecordReader, iter_record_chunks
    from perfbench.report.requests_file import RecordWriter
    from perfbench.metrics.slo import parse_slos

    records = _random_records(seed, 2500)
    run_start_ns = min(r.scheduled_ns for r in records) - 12345
    writer = RecordWriter(tmp_path / "requests.jsonl", run_start_ns)
    for record in records:
        writer.write(record)
    writer.close()
    slos = parse_slos("ttft=600,tpot=20,itl=50,ttft_p99=900")
    kw = dict(concurrency=64, rate_req_s=None, requests_expected=2500, slos=slos)
    in_memory = json.dumps(summarize_step(records, **kw).to_dict())
    for chunks in (RecordReader(tmp_path / "requests.jsonl").chunks(size=97), iter_record_chunks(tmp_path, size=300)):
        accumulator = StepAccumulator()
        sizes = []
        for chunk in chunks:
            sizes.append(len(chunk))
            accumulator.add(chunk)
        assert len(sizes) > 1 and sum(sizes) == 2500
        assert json.dumps(accumulator.summary(**kw).to_dict()) == in_memory


def test_record_reader_goes_on_where_it_stopped_and_never_loses_the_summary(run_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    from perfbench.results.runfiles import RecordReader

    path = run_dir / "requests.jsonl"
    lines = _lines(run_dir)
    path.write_text("".join(lines[:2]) + lines[2][:30])  # the third line half written
    reader = RecordReader(path)
    assert [r.index for chunk in reader.chunks() for r in chunk] == [0, 1]
    assert list(reader.chunks()) == []  # nothing new: the half line is not consumed
    with path.open("a") as f:
        f.write(lines[2][30:] + '{"step": 0, "ind\n' + "".join(lines[3:]))  # a damaged line amid good ones
    with caplog.at_level(logging.WARNING):
        assert [r.index for chunk in reader.chunks(size=1) for r in chunk] == [2, 3, 4]
    assert "requests.jsonl:4: unreadable record skipped" in caplog.text
    assert list(RecordReader(run_dir / "absent.jsonl").chunks()) == []


def test_requests_parquet_is_written_in_row_groups_and_holds_every_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first 10,000 lines carry no error text and no input count, later ones do: one schema
    # for the whole file all the same, and the lines come back as written.
    pq = pytest.importorskip("pyarrow.parquet")
    from perfbench.report import tables as exports
    from perfbench.report.tables import write_requests_parquet
    from perfbench.results.runfiles import CHUNK_RECORDS, read_request_lines
    from perfbench.report.requests_file import RecordWriter

    monkeypatch.setattr(exports, "_PARQUET_LINES", 1000)
    monkeypatch.setattr(exports, "_PARQUET_ROW_GROUP", 5000)

    records = _random_records(7, CHUNK_RECORDS + 2500)
    import dataclasses

    records[:CHUNK_RECORDS] = [dataclasses.replace(r, error=None, input_tokens=None) for r in records[:CHUNK_RECORDS]]
    writer = RecordWriter(tmp_path / "requests.jsonl", run_start_ns=min(r.scheduled_ns for r in records))
    for record in records:
        writer.write(record)
    writer.close()
    path = write_requests_parquet(tmp_path)
    assert path == tmp_path / "requests.parquet"
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(k).num_rows for k in range(metadata.num_row_groups)] == [5000, 5000, 2500]
    table = pq.read_table(path)
    assert table.schema.field("error").type == "string" and table.schema.field("input_tokens").type == "int64"
    assert table.to_pylist() == read_request_lines(tmp_path)


def test_no_requests_no_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from perfbench.report.tables import write_requests_parquet

    assert write_requests_parquet(tmp_path) is None and not (tmp_path / "requests.parquet").exists()


def test_the_request_line_is_declared_once(tmp_path: Path) -> None:
    """requests.jsonl's fields (perfbench.results.records.REQUEST_LINE) are what the writer writes, in
    order, what the reader reads back (a record read back writes the same line) and what
    requests.parquet holds, with the declared types: session and turn in a session run too."""
    pq = pytest.importorskip("pyarrow.parquet")
    from perfbench.commands.main import main
    from perfbench.report.requests_file import request_line
    from perfbench.results.records import REQUEST_LINE
    from perfbench.results.runfiles import read_records, read_request_lines

    out = tmp_path / "sessions"
    assert main(["--mock", "ttft_ms=1,itl_ms=0", "--turns", "3", "-c", "2", "-n", "4", "--max-tokens", "3",
                 "--no-live", "--no-telemetry", "--no-plots", "--output-dir", str(out)]) == 0
    declared = [field.name for field in REQUEST_LINE]
    lines = read_request_lines(out)
    assert len(lines) == 12 and all(list(line) == declared for line in lines)
    assert [request_line(record, 0) for record in read_records(out)] == lines
    table = pq.read_table(out / "requests.parquet")
    arrow = {"int": "int64", "float": "double", "bool": "bool", "str": "string", "list[float]": "list<double>",
             "list[int]": "list<int64>"}

    def kind(t: Any) -> str:
        return f"list<{t.value_type}>" if hasattr(t, "value_type") else str(t)

    assert [(f.name, kind(f.type)) for f in table.schema] == [(field.name, arrow[field.type]) for field in REQUEST_LINE]
    assert table.column("session").to_pylist() == [line["session"] for line in lines]
    assert table.column("turn").to_pylist() == [line["turn"] for line in lines] and set(table.column("turn").to_pylist()) == {0, 1, 2}
