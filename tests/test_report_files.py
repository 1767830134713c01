"""perfbench.report.files: the one reader of summary.json and requests.jsonl."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from perfbench.errors import ConfigError
from perfbench.report.files import iter_request_lines, read_records, read_request_lines, read_summary
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
