"""Trace replay: the schedule (offsets, speedup, window), the lengths, the shared prefixes, and the
refusals; end to end against the built-in mock, which keeps the bodies it received."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perfbench.commands.main import main
from perfbench.core.errors import ConfigError
from perfbench.servers.mock import MockConfig, MockInThread
from perfbench.workload.trace import parse_window, read_trace, trace_prompts

BLOCK = 8  # tokens per hash id in these traces: small prompts, same logic as 512
QUIET = ["--no-plots", "--no-live", "--no-telemetry"]

# (timestamp ms, input_length, output_length, hash_ids): two conversations sharing a system prompt
# (block 0), a later turn repeating its earlier turn's blocks, a row with a partial block, rows of one instant.
ROWS = [
    (2400, 20, 5, [0, 1, 2]),
    (0, 20, 4, [0, 1, 2]),
    (0, 30, 3, [0, 1, 3, 4]),
    (700, 12, 6, [0, 5]),
    (1300, 36, 2, [0, 1, 3, 4, 6]),
    (1300, 10, 3, [7]),
    (1900, 5, 4, [8]),
    (3100, 27, 5, [0, 1, 3, 4]),
]


def write_trace(path: Path, rows=ROWS) -> Path:
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": n, "output_length": m, "hash_ids": h}) + "\n"
                            for t, n, m, h in rows))
    return path


def by_time(rows=ROWS):
    return sorted(rows, key=lambda row: row[0])  # stable, as the reader sorts


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_offsets_follow_the_timestamps_with_speedup_and_window(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    whole = read_trace(path, block_tokens=BLOCK)
    assert whole.offsets_s == tuple(t / 1000 for t, *_ in by_time())
    assert [row.input_length for row in whole.rows] == [n for _, n, *_ in by_time()]
    fast = read_trace(path, speedup=4, window="1:3", block_tokens=BLOCK)
    kept = [row for row in by_time() if 1000 <= row[0] < 3000]  # END excluded
    assert fast.offsets_s == tuple((t - kept[0][0]) / 1000 / 4 for t, *_ in kept)
    assert read_trace(path, window=":1", block_tokens=BLOCK).offsets_s == (0.0, 0.0, 0.7)
    assert parse_window("60:") == (60.0, None) and parse_window(":30") == (0.0, 30.0)


def leading_ids(a, b) -> int:
    """How many leading hash ids two rows share."""
    k = 0
    while k < min(len(a[3]), len(b[3])) and a[3][k] == b[3][k]:
        k += 1
    return k


def shared_blocks(a, b) -> int:
    """How many leading hash ids two rows share as whole blocks of both."""
    return min(leading_ids(a, b), a[1] // BLOCK, b[1] // BLOCK)


def check_prefixes(rows, texts: list[str], head_of) -> None:
    """Rows sharing k leading blocks share their text up to those blocks' end, and not a block further."""
    for i in range(len(rows)):
        for j in range(len(rows)):
            k = shared_blocks(rows[i], rows[j])
            head = head_of(texts[i], k)
            assert texts[j].startswith(head), (i, j, k)
            common = len(os.path.commonprefix([texts[i], texts[j]]))
            if leading_ids(rows[i], rows[j]) < min(len(rows[i][3]), len(rows[j][3])):
                assert common < len(head_of(texts[i], k + 1)), (i, j, k)  # distinct blocks: distinct text


def test_rows_sharing_hash_ids_share_text_word_for_word_without_a_tokenizer(tmp_path: Path) -> None:
    trace = read_trace(write_trace(tmp_path / "t.jsonl"), block_tokens=BLOCK)
    prompts = trace_prompts(trace.rows, tokenizer=None, block_tokens=BLOCK, seed=3)
    texts = [p.text for p in prompts]
    assert [len(t.split()) for t in texts] == [n for _, n, *_ in by_time()]  # a word is the mock's token
    assert [p.max_tokens for p in prompts] == [m for _, _, m, _ in by_time()]
    check_prefixes(by_time(), texts, lambda text, k: " ".join(text.split()[: k * BLOCK]))
    again = trace_prompts(trace.rows, tokenizer=None, block_tokens=BLOCK, seed=3)
    assert [p.text for p in again] == texts  # same seed, same prompts
    other = trace_prompts(trace.rows, tokenizer=None, block_tokens=BLOCK, seed=4)
    assert other[0].text != texts[0]


@pytest.fixture(scope="module", params=["byte-level", "sentencepiece"])
def tokenizer(request, tmp_path_factory):
    from tiny_models import build_tiny_tokenizer

    from perfbench.workload.tokens import load_tokenizer

    directory = tmp_path_factory.mktemp(f"tok-{request.param}")
    return load_tokenizer(str(build_tiny_tokenizer(directory, style=request.param)))


def test_with_a_tokenizer_prompts_are_exact_and_shared_blocks_are_byte_identical(tmp_path: Path, tokenizer) -> None:
    from perfbench.workload.trace import _Blocks

    block = BLOCK * 4  # longer blocks, so the fitting has room
    rows = by_time([(t, n * 4, m, h) for t, n, m, h in ROWS])
    trace = read_trace(write_trace(tmp_path / "t.jsonl", rows), block_tokens=block)
    prompts = trace_prompts(trace.rows, tokenizer=tokenizer, block_tokens=block, seed=5)
    assert [tokenizer.count(p.text) for p in prompts] == [p.input_tokens for p in prompts] == [n for _, n, *_ in rows]
    blocks = _Blocks(tokenizer, block, 5)
    shared = 0
    for i in range(len(rows)):
        for j in range(len(rows)):
            k = sum(1 for a, b in zip(rows[i][3], rows[j][3]) if a == b) if rows[i][3][0] == rows[j][3][0] else 0
            k = min(k, rows[i][1] // block, rows[j][1] // block)
            head = " ".join(blocks.text(h) for h in rows[i][3][:k])
            assert prompts[i].text.startswith(head) and prompts[j].text.startswith(head), (i, j, k)
            shared += k > 0 and i != j
    assert shared >= 10


def test_a_replay_against_the_mock_keeps_the_schedule_lengths_and_prefixes(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    out = tmp_path / "run"
    with MockInThread(MockConfig(ttft_ms=5, itl_ms=1)) as mock:
        mock.server.keep_bodies = True
        code = main(["--url", f"{mock.base_url}/v1/chat/completions", "--trace", str(path), "--trace-block-tokens", str(BLOCK),
                     "--trace-speedup", "2", "--trace-window", "0.5:", "--no-preflight", "--output-dir", str(out), *QUIET])
        log = list(mock.server.log)
    assert code == 0
    kept = [row for row in by_time() if row[0] >= 500]
    lines = sorted(read_lines(out / "requests.jsonl"), key=lambda line: line["index"])
    assert [line["status"] for line in lines] == ["ok"] * len(kept)
    first = lines[0]["scheduled_s"]
    for line, (t, n, m, _) in zip(lines, kept):
        due = (t - kept[0][0]) / 1000 / 2
        assert line["scheduled_s"] - first == pytest.approx(due, abs=1e-3)
        assert line["sent_s"] - first - due < 0.05  # sent on time (queue time shows any lag)
        assert (line["output_tokens"], line["input_tokens"]) == (m, n)  # the mock's usage: what it generated, words it read
    bodies = [json.loads(entry.body) for entry in log]
    assert sorted((b["max_tokens"], b["min_tokens"], b["ignore_eos"]) for b in bodies) == sorted((m, m, True) for _, _, m, _ in kept)
    received = {b["messages"][0]["content"]: b["max_tokens"] for b in bodies}
    built = trace_prompts(read_trace(path, window="0.5:", block_tokens=BLOCK).rows, tokenizer=None, block_tokens=BLOCK)
    assert received == {p.text: p.max_tokens for p in built}  # byte for byte what the builder made
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["trace"] == str(path) and summary["steps"][0]["requests_expected"] == len(kept)


def test_worker_processes_replay_the_same_schedule(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    out = tmp_path / "run"
    with MockInThread(MockConfig(ttft_ms=5, itl_ms=1)) as mock:
        assert main(["--url", mock.base_url, "--trace", str(path), "--trace-block-tokens", str(BLOCK), "--trace-speedup", "4",
                     "--workers", "2", "--output-dir", str(out), *QUIET]) == 0
    lines = sorted(read_lines(out / "requests.jsonl"), key=lambda line: line["index"])
    assert [line["index"] for line in lines] == list(range(len(ROWS)))
    first = lines[0]["scheduled_s"]
    for line, (t, *_) in zip(lines, by_time()):
        assert line["scheduled_s"] - first == pytest.approx(t / 4000, abs=2e-3)


def test_plain_rows_replay_their_own_prompts(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text('{"timestamp": 10, "prompt": "hello there", "output_length": 3}\n'
                    '{"timestamp": 0, "messages": [{"role": "user", "content": "hi"}]}\n')
    trace = read_trace(path)
    prompts = trace_prompts(trace.rows, tokenizer=None)
    assert trace.offsets_s == (0.0, 0.01)
    assert (prompts[0].messages[0]["content"], prompts[0].max_tokens) == ("hi", None)
    assert (prompts[1].text, prompts[1].max_tokens) == ("hello there", 3)


@pytest.mark.parametrize("line, message", [
    ("{not json", "t.jsonl:2: bad JSON"),
    ('{"timestamp": "soon", "input_length": 5}', 't.jsonl:2: "timestamp" must be milliseconds >= 0'),
    ('{"timestamp": -1, "input_length": 5}', 't.jsonl:2: "timestamp"'),
    ('{"timestamp": 1}', 't.jsonl:2: no "input_length" and no "prompt"'),
    ('{"timestamp": 1, "input_length": 0}', 't.jsonl:2: "input_length" must be a whole number'),
    ('{"timestamp": 1, "input_length": 5, "output_length": 2.5}', 't.jsonl:2: "output_length"'),
    ('{"timestamp": 1, "input_length": 5, "hash_ids": [1, -2]}', 't.jsonl:2: "hash_ids" must be a list'),
    ('{"timestamp": 1, "input_length": 9, "hash_ids": [1, 2, 3]}', "t.jsonl:2: 3 hash_ids of 8 tokens do not fit"),
    ('{"timestamp": 1, "prompt": ""}', 't.jsonl:2: "prompt" must be a non-empty string'),
    ("[1, 2]", "t.jsonl:2: expected a JSON object"),
])
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path: Path, capsys, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 4}\n' + line + "\n")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        read_trace(path, block_tokens=BLOCK)
    assert main(["--url", "http://127.0.0.1:9/v1", "--trace", str(path), "--trace-block-tokens", str(BLOCK), *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("flags, message", [
    (["--rate", "2"], "--rate does nothing with --trace"),
    (["-c", "1,4"], "give one value"),
    (["-n", "5"], "--number does nothing with --trace"),
    (["--duration", "5"], "--duration does nothing with --trace"),
    (["--prompts", "{trace}"], "--prompts does nothing with --trace"),
    (["--input-tokens", "64"], "--input-tokens does nothing with --trace"),
    (["--output-tokens", "64"], "--output-tokens does nothing with --trace"),
    (["--search", "rate", "--slo", "ttft_p99=500"], "--search does nothing with --trace"),
    (["--warmup", "2"], "--warmup does nothing with --trace"),
    (["--ramp-up", "2"], "--ramp-up does nothing with --trace"),
    (["--shared-prefix-tokens", "4"], "--shared-prefix-tokens does nothing with --trace"),
    (["--api", "openai-embeddings"], "--trace sets output lengths"),
    (["--trace-window", "5:1"], "--trace-window: '5:1': give START:END"),
    (["--trace-window", "90:"], "no rows in --trace-window 90:"),
    (["--trace-speedup", "0"], "--trace-speedup"),
])
def test_combinations_that_mean_nothing_are_refused(tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    path = write_trace(tmp_path / "t.jsonl")
    flags = [str(path) if flag == "{trace}" else flag for flag in flags]
    assert main(["--url", "http://127.0.0.1:9/v1", "--trace", str(path), "--trace-block-tokens", str(BLOCK), *flags, *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("flags", [["--trace-speedup", "2"], ["--trace-window", "0:5"], ["--trace-block-tokens", "64"]])
def test_trace_settings_without_a_trace_are_refused(capsys, flags: list[str]) -> None:
    assert main(["--url", "http://127.0.0.1:9/v1", *flags, *QUIET]) == 2
    assert f"{flags[0]} shapes a trace replay; add --trace FILE" in capsys.readouterr().err


def test_a_missing_trace_file_and_an_unquoted_window_in_a_scenario(tmp_path: Path, capsys) -> None:
    assert main(["--url", "http://127.0.0.1:9/v1", "--trace", str(tmp_path / "absent.jsonl"), *QUIET]) == 2
    assert "absent.jsonl not found; check the path given to --trace" in capsys.readouterr().err
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"workload: {{trace: {{file: {write_trace(tmp_path / 't.jsonl')}, window: 1:30}}}}\n")
    assert main(["--scenario", str(scenario), *QUIET]) == 2
    assert 'workload.trace.window: expected "START:END" in quotes' in capsys.readouterr().err


def test_the_shipped_scenario_replays_the_sample_trace_against_the_built_in_mock(tmp_path: Path, monkeypatch) -> None:
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(repo)  # as the README runs it
    out = tmp_path / "run"
    assert main(["--scenario", "scenarios/trace-replay.yaml", "--trace-speedup", "20", "--output-dir", str(out), *QUIET]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (repo / "prompts" / "sample-trace.jsonl").read_text().splitlines()]
    [step] = summary["steps"]
    assert summary["target"]["simulated"] and step["requests_succeeded"] == len(rows) == 36
    lines = sorted(read_lines(out / "requests.jsonl"), key=lambda line: line["index"])
    assert [line["output_tokens"] for line in lines] == [row["output_length"] for row in sorted(rows, key=lambda r: r["timestamp"])]
    assert lines[-1]["scheduled_s"] - lines[0]["scheduled_s"] == pytest.approx(rows[-1]["timestamp"] / 20000, abs=1e-3)
