"""Multi-turn sessions (--turns, --conversations, --think-time) against the real mock on 127.0.0.1.

The mock keeps every request body it received and its answers are known from its own log (the
words of request i are ``token_text(seed, i, ...)``), so the tests prove that each turn carried
the server's actual earlier answers, not made-up ones.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from perfbench.commands.main import main
from perfbench.servers.mock import MockConfig, MockInThread
from perfbench.servers.mock_wire import token_text
from perfbench.workload.sessions import ThinkTime, load_conversations

QUIET = ["--no-plots", "--no-live", "--no-telemetry", "--no-preflight"]
FAST = MockConfig(ttft_ms=5, itl_ms=1)


def lines_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def run_against_mock(tmp_path: Path, *flags: str, config: MockConfig = FAST) -> tuple[int, Path, list]:
    out = tmp_path / "run"
    with MockInThread(config) as mock:
        mock.server.keep_bodies = True
        code = main(["--url", f"{mock.base_url}/v1/chat/completions", *flags, "--output-dir", str(out), *QUIET])
        log = list(mock.server.log)
    return code, out, log


def answer_of(entry, seed: int = 0) -> str:
    """What the mock wrote as request ``entry``'s answer (its own log says how many tokens)."""
    return token_text(seed, entry.index, 0, entry.completion_tokens).decode()


def test_each_turn_sends_the_whole_history_with_the_servers_real_answers(tmp_path: Path) -> None:
    code, out, log = run_against_mock(tmp_path, "--turns", "3", "-c", "2", "-n", "4", "--max-tokens", "6", "--input-tokens", "8")
    assert code == 0
    bodies = [json.loads(entry.body) for entry in log]
    assert len(bodies) == 12
    by_history = {json.dumps(b["messages"]): entry for b, entry in zip(bodies, log)}
    users = defaultdict(int)
    for body in bodies:
        messages = body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2) + ["user"]
        users[len(messages) // 2 + 1] += 1
        if len(messages) > 1:
            # The turn before this one was sent with exactly this history, and the mock answered it with these words.
            earlier = by_history[json.dumps(messages[:-2])]
            assert messages[-2]["content"] == answer_of(earlier)
            assert earlier.index < log[bodies.index(body)].index
    assert users == {1: 4, 2: 4, 3: 4}

    lines = lines_of(out)
    assert sorted(line["index"] for line in lines) == list(range(12))  # unique indexes, none skipped
    by_session = defaultdict(list)
    for line in lines:
        by_session[line["session"]].append(line)
    assert sorted(by_session) == [0, 1, 2, 3]
    for turns in by_session.values():
        turns.sort(key=lambda line: line["turn"])
        assert [line["turn"] for line in turns] == [0, 1, 2]
        for before, after in zip(turns, turns[1:]):
            assert after["scheduled_s"] == pytest.approx(before["end_s"], abs=1e-6)  # t0 = previous end (no think time)
            assert after["input_tokens"] > before["input_tokens"]  # the prompt grows with the history


def test_concurrency_counts_sessions_in_flight_and_think_time_sets_each_turns_t0(tmp_path: Path) -> None:
    code, out, log = run_against_mock(tmp_path, "--turns", "2", "--think-time", "0.05", "-c", "2", "-n", "4", "--max-tokens", "4")
    assert code == 0
    lines = lines_of(out)
    assert len(lines) == 8
    # Two sessions in flight, each with one turn at a time: never more than 2 requests at the server at once.
    events = sorted([(e.received_ns, 1) for e in log] + [(e.finished_ns, -1) for e in log])
    assert max(np.cumsum([step for _, step in events])) <= 2
    by_session = defaultdict(dict)
    for line in lines:
        by_session[line["session"]][line["turn"]] = line
    for turns in by_session.values():
        assert turns[1]["scheduled_s"] - turns[0]["end_s"] == pytest.approx(0.05, abs=1e-6)
        assert turns[1]["sent_s"] >= turns[1]["scheduled_s"] - 0.002  # an event loop may wake a timer a clock tick early
    # A slot starts its next session when its previous one ended: sessions 2 and 3 begin at an end of 0 or 1.
    ends = {s: by_session[s][1]["end_s"] for s in (0, 1)}
    starts = sorted(by_session[s][0]["scheduled_s"] for s in (2, 3))
    assert starts == pytest.approx(sorted(ends.values()), abs=1e-6)


def test_open_loop_rate_is_of_new_sessions_and_a_failed_turn_ends_its_session(tmp_path: Path) -> None:
    config = MockConfig(ttft_ms=5, itl_ms=1, http_error_fraction=0.25)
    code, out, log = run_against_mock(tmp_path, "--turns", "3", "--rate", "20", "-n", "8", "--max-tokens", "4", config=config)
    assert code == 0  # failures are counted, not fatal
    lines = lines_of(out)
    first_turns = sorted((line for line in lines if line["turn"] == 0), key=lambda line: line["session"])
    assert len(first_turns) == 8  # one new session per arrival
    gaps = np.diff([line["scheduled_s"] for line in first_turns])
    assert (gaps >= 0).all() and 8 / (first_turns[-1]["scheduled_s"] - first_turns[0]["scheduled_s"] + np.mean(gaps)) < 60
    by_session = defaultdict(list)
    for line in lines:
        by_session[line["session"]].append(line)
    failed = 0
    for turns in by_session.values():
        turns.sort(key=lambda line: line["turn"])
        statuses = [line["status"] for line in turns]
        if "ok" not in statuses[-1:]:
            failed += 1
        assert all(s == "ok" for s in statuses[:-1])  # nothing is sent after a failed turn
        assert len(turns) == 3 or statuses[-1] != "ok"
    assert failed >= 1
    step = summary_of(out)["steps"][0]
    assert step["requests_completed"] == len(lines) == len(log)


def test_the_summary_has_ttft_and_input_tokens_by_turn_from_the_records(tmp_path: Path) -> None:
    code, out, _ = run_against_mock(tmp_path, "--turns", "uniform:2-4", "-c", "3", "-n", "6", "--max-tokens", "5",
                                    "--input-tokens", "8", "--seed", "3")
    assert code == 0
    lines = lines_of(out)
    [step] = summary_of(out)["steps"]
    by_turn = step["by_turn"]
    assert [t["turn"] for t in by_turn] == list(range(1, len(by_turn) + 1)) and len(by_turn) >= 2
    for entry in by_turn:
        mine = [line for line in lines if line["turn"] == entry["turn"] - 1]
        assert entry["requests_completed"] == len(mine) == entry["requests_succeeded"]
        assert entry["ttft_ms"]["mean"] == pytest.approx(np.mean([line["ttft_ms"] for line in mine]))
        assert entry["input_tokens_per_request"]["mean"] == pytest.approx(np.mean([line["input_tokens"] for line in mine]))
    means = [entry["input_tokens_per_request"]["mean"] for entry in by_turn]
    assert means == sorted(means) and means[0] < means[-1]
    assert step["requests_completed"] == len(lines)


def test_a_conversations_file_keeps_its_system_prompt_and_user_turns_only(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join([
        json.dumps({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "FROM THE FILE"}, {"role": "user", "content": "More"}]}),
        json.dumps({"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"},
                                      {"from": "human", "value": "Q2"}, {"from": "human", "value": "Q3"}]}),
        json.dumps(["one", "two"]),
    ]) + "\n")
    conversations = load_conversations(path)
    assert [c.user_turns for c in conversations] == [("Hi", "More"), ("Q1", "Q2", "Q3"), ("one", "two")]
    code, out, log = run_against_mock(tmp_path, "--conversations", str(path), "-c", "1", "-n", "3", "--max-tokens", "3")
    assert code == 0
    bodies = [json.loads(entry.body)["messages"] for entry in log]
    assert len(bodies) == 7
    assert bodies[0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert bodies[1][:2] == bodies[0] and bodies[1][2]["content"] == answer_of(log[0]) and bodies[1][3]["content"] == "More"
    assert not any("FROM THE FILE" in json.dumps(b) or "A1" == m.get("content") for b in bodies for m in b)
    assert [m["content"] for m in bodies[4] if m["role"] == "user"] == ["Q1", "Q2", "Q3"]


def test_the_shipped_scenario_runs_against_the_built_in_mock(tmp_path: Path, monkeypatch) -> None:
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(repo)  # as the README runs it
    out = tmp_path / "run"
    assert main(["--scenario", "scenarios/sessions.yaml", "--think-time", "0", "--output-dir", str(out), *QUIET]) == 0
    summary = summary_of(out)
    assert summary["target"]["simulated"] and [s["concurrency"] for s in summary["steps"]] == [2, 4]
    for step in summary["steps"]:
        assert step["requests_failed"] == 0 and step["by_turn"][0]["requests_completed"] == 8  # 8 sessions a step
    assert len({line["session"] for line in lines_of(out)}) == 16
    conversations = tmp_path / "conv"
    assert main(["--conversations", "prompts/sample-conversations.jsonl", "-c", "2", "-n", "5", "--max-tokens", "8",
                 "--output-dir", str(conversations), *QUIET]) == 0
    assert summary_of(conversations)["steps"][0]["requests_succeeded"] == 3 + 4 + 3 + 2 + 3


@pytest.mark.parametrize("flags, message", [
    (["--think-time", "1"], "--think-time paces the turns of a session; add --turns N or --conversations FILE"),
    (["--turns", "3", "--prompts", "prompts/chat-short.txt"], "--prompts does not combine with sessions"),
    (["--turns", "3", "--api", "openai-completions"], "multi-turn sessions send a chat history, which openai-completions"),
    (["--turns", "3", "--workers", "2"], "sessions run in one process for now: drop --workers"),
    (["--turns", "3", "--conversations", "prompts/sample-conversations.jsonl"], "--turns and --conversations both set"),
    (["--turns", "2", "--think-time", "soon"], "--think-time"),
    (["--turns", "2", "--think-time", "uniform:3-1"], "MAX 1 is below MIN 3"),
    (["--turns", "normal:3,2"], "--turns normal:3,2 can exceed 1000 turns"),
    (["--conversations", "prompts/sample-conversations.jsonl", "--input-tokens", "8"], "drop --input-tokens"),
])
def test_combinations_that_mean_nothing_are_one_line_errors(capsys, monkeypatch, flags: list[str], message: str) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    assert main(["--url", "http://127.0.0.1:9/v1", *flags, *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("text, error", [
    ('["a"]\n{"turns": 3}\n', ":2: a conversation is a non-empty list of turns"),
    ('{"messages": [{"role": "assistant", "content": "x"}]}\n', ":1: the conversation has no user turn"),
    ("not json\n", ":1: bad JSON"),
    ("", "holds no conversation"),
])
def test_a_bad_conversations_file_is_one_error_naming_the_line(tmp_path: Path, capsys, text: str, error: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(text)
    assert main(["--url", "http://127.0.0.1:9/v1/chat/completions", "--conversations", str(path), *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and error in err, err


def test_think_time_distributions_sample_what_they_say() -> None:
    rng = np.random.default_rng(0)
    assert (ThinkTime.parse("2.5").sample_s(3, rng) == 2.5).all()
    uniform = ThinkTime.parse("uniform:1-3").sample_s(2000, rng)
    assert uniform.min() >= 1 and uniform.max() <= 3 and abs(uniform.mean() - 2) < 0.1
    assert abs(ThinkTime.parse("exponential:2").sample_s(4000, rng).mean() - 2) < 0.15
    assert str(ThinkTime.parse(" Exp:2 ")) == "exponential:2" and str(ThinkTime.parse(0)) == "0"


def test_sessions_against_the_local_transformers_server(tmp_path: Path) -> None:
    """perfbench's own server: every turn succeeds and the prompt it counts grows with the real history."""
    from perfbench.servers.local import start_local_server
    from tests.tiny_llama import shared_tiny_llama

    out = tmp_path / "run"
    with start_local_server(str(shared_tiny_llama()), log_path=tmp_path / "server.log", device="cpu",
                            startup_timeout_s=120) as server:
        code = main(["--url", server.base_url + "/v1/chat/completions", "--model", server.model_name, "--turns", "3",
                     "-c", "2", "-n", "2", "--max-tokens", "6", "--input-tokens", "8", "--output-dir", str(out), *QUIET])
    assert code == 0
    lines = lines_of(out)
    assert [line["status"] for line in lines] == ["ok"] * 6
    by_session = defaultdict(dict)
    for line in lines:
        by_session[line["session"]][line["turn"]] = line
    for turns in by_session.values():
        # The server's usage: each turn's prompt holds the previous prompt, its 6-token answer and a new turn.
        assert turns[0]["input_tokens"] < turns[1]["input_tokens"] - 6 < turns[2]["input_tokens"] - 12
    assert [t["requests_succeeded"] for t in summary_of(out)["steps"][0]["by_turn"]] == [2, 2, 2]


def test_report_html_shows_the_turns_table_only_for_a_multi_turn_run(tmp_path: Path) -> None:
    from html.parser import HTMLParser

    from perfbench.report.html import write_html_report

    class Turns(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.inside, self.rows, self.cells = False, [], None

        def handle_starttag(self, tag, attrs):
            if tag == "section" and dict(attrs).get("id") == "turns":
                self.inside = True
            elif self.inside and tag == "tr":
                self.cells = []

        def handle_endtag(self, tag):
            if tag == "section":
                self.inside = False
            elif self.inside and tag == "tr" and self.cells is not None:
                self.rows.append(self.cells)
                self.cells = None

        def handle_data(self, data):
            if self.cells is not None and data.strip():
                self.cells.append(data.strip())

    code, out, _ = run_against_mock(tmp_path, "--turns", "3", "-c", "2", "-n", "2", "--max-tokens", "4")
    assert code == 0
    parser = Turns()
    parser.feed(write_html_report(out).read_text())
    by_turn = summary_of(out)["steps"][0]["by_turn"]
    assert [row[:2] for row in parser.rows[1:]] == [[str(t["turn"]), f"{t['requests_succeeded']} / {t['requests_completed']}"]
                                                   for t in by_turn] and len(by_turn) == 3
    single = tmp_path / "single"
    assert main(["-c", "1", "-n", "2", "--max-tokens", "4", "--output-dir", str(single), *QUIET]) == 0
    assert 'id="turns"' not in write_html_report(single).read_text()


def test_the_terminal_prints_the_turns_table_within_80_columns(tmp_path: Path) -> None:
    from rich.console import Console

    from perfbench.report.terminal import render_summary

    code, out, _ = run_against_mock(tmp_path, "--turns", "2", "-c", "2", "-n", "2", "--max-tokens", "4")
    assert code == 0
    console = Console(width=80, record=True)
    render_summary(console, summary_of(out))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    block = text[text.index("By turn, ms"):]
    rows = [line for line in block.splitlines() if line.startswith("│")][:2]
    assert [r.split("│")[1].strip() for r in rows] == ["1", "2"]
    assert [r.split("│")[2].strip() for r in rows] == ["2 / 2", "2 / 2"]
