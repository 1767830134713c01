"""What a run sends: synthetic prompts never repeat, however long the run; a prompts file, dataset
or conversations file shorter than the run is cycled, and summary.json's ``workload`` and the
terminal say so. Runs against the real mock on 127.0.0.1, which keeps every body it received."""

from __future__ import annotations

import json
from pathlib import Path

from perfbench.apis import get_adapter
from perfbench.benchmark.prepare import prepare_workload
from perfbench.commands.main import main
from perfbench.config.run_config import config_from_settings
from perfbench.report.terminal import prompts_repeated
from perfbench.servers.mock import MockConfig, MockInThread
from perfbench.workload.lengths import LengthDistribution
from perfbench.workload.prompts import SyntheticPrompts
from perfbench.workload.sessions import SyntheticConversations

QUIET = ["--no-live", "--no-plots", "--no-telemetry", "--no-preflight"]
URL = "http://127.0.0.1:9/v1/chat/completions"


def _contents(settings: dict, numbers: range, api: str = "openai-chat") -> list:
    url = URL.replace("/v1/chat/completions", get_adapter(api).path)
    requests = prepare_workload(config_from_settings({"url": url, **settings}), get_adapter(api), None).requests
    bodies = [json.loads(requests.get(n).body) for n in numbers]
    return [body["messages"][-1]["content"] if "messages" in body else body["input"] for body in bodies]


def test_synthetic_requests_never_repeat_past_the_old_cycles() -> None:
    # A duration-bound closed loop used to cycle 1,024 prompts; any run 10,000.
    for settings, numbers in (({"concurrency": "8", "duration_s": 60, "input_tokens": "12"}, range(2100)),
                              ({"concurrency": "8,16", "number": "6000", "input_tokens": "12"}, range(9500, 10500)),
                              ({"rate": "50", "duration_s": 10, "input_tokens": "12"}, range(1500))):
        texts = _contents(settings, numbers)
        assert len(set(texts)) == len(texts), settings
    far = _contents({"concurrency": "1", "number": "20000", "input_tokens": "12"}, range(0, 30_000, 10_000))
    assert len(set(far)) == 3  # request 10,000 is not request 0 again


def test_an_embeddings_batch_takes_the_next_prompts() -> None:
    batches = _contents({"concurrency": "1", "number": "3", "batch_size": 4,
                         "input_tokens": "6"}, range(3), api="openai-embeddings")
    flat = [text for batch in batches for text in batch]
    assert [len(batch) for batch in batches] == [4, 4, 4] and len(set(flat)) == 12
    assert flat == [p.text for p in (SyntheticPrompts(LengthDistribution.fixed(6), tokenizer=None)[k] for k in range(12))]


def test_synthetic_sessions_never_repeat() -> None:
    made = SyntheticConversations(LengthDistribution.uniform(1, 4), SyntheticPrompts(LengthDistribution.fixed(8), tokenizer=None))
    turns = [turn for number in range(1100) for turn in made[number].user_turns]  # past the 1,024 they used to cycle
    assert len(set(turns)) == len(turns) and {made.turn_count(n) for n in range(1100)} == {1, 2, 3, 4}
    assert [len(made[n].user_turns) for n in (5, 2000, 5)] == [made.turn_count(n) for n in (5, 2000, 5)]


def test_a_short_prompts_file_is_cycled_and_the_summary_and_terminal_say_so(tmp_path: Path, capsys) -> None:
    prompts = tmp_path / "three.txt"
    prompts.write_text("first prompt\nsecond prompt\nthird prompt\n")
    out = tmp_path / "run"
    with MockInThread(MockConfig(ttft_ms=1, itl_ms=0, output_tokens=2)) as mock:
        mock.server.keep_bodies = True
        assert main(["--url", mock.base_url, "--prompts", str(prompts), "-c", "2,3", "-n", "6,4", "--warmup", "2",
                     *QUIET, "--output-dir", str(out)]) == 0
        sent = [json.loads(entry.body)["messages"][-1]["content"] for entry in mock.server.log]
    assert sorted(sent) == sorted(["first prompt", "second prompt", "third prompt"] * 4)  # 12 requests, 3 prompts
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workload"] == {"prompts_source": "file", "distinct_prompts": 3, "max_repeats": 4}
    printed = capsys.readouterr().out
    assert printed.count("Prompts repeated") == 1 and "3 distinct prompts (file), some 4 times" in " ".join(printed.split())


def test_a_synthetic_run_reports_every_prompt_distinct_and_no_warning(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    with MockInThread(MockConfig(ttft_ms=1, itl_ms=0, output_tokens=2)) as mock:
        mock.server.keep_bodies = True
        assert main(["--url", mock.base_url, "-c", "2", "--duration", "0.5", "--warmup", "3", "--input-tokens", "10",
                     *QUIET, "--output-dir", str(out)]) == 0
        sent = [json.loads(entry.body)["messages"][-1]["content"] for entry in mock.server.log]
    summary = json.loads((out / "summary.json").read_text())
    assert len(set(sent)) == len(sent) > 3
    assert summary["workload"] == {"prompts_source": "synthetic", "distinct_prompts": len(sent), "max_repeats": 1}
    assert "Prompts repeated" not in capsys.readouterr().out


def test_a_conversations_file_shorter_than_the_run_is_cycled_turn_by_turn(tmp_path: Path) -> None:
    conversations = tmp_path / "c.jsonl"
    conversations.write_text('["hello there", "and then?"]\n["just once"]\n')
    out = tmp_path / "run"
    with MockInThread(MockConfig(ttft_ms=1, itl_ms=0, output_tokens=2)) as mock:
        assert main(["--url", mock.base_url, "--conversations", str(conversations), "-c", "2", "-n", "5",
                     *QUIET, "--output-dir", str(out)]) == 0
    # Sessions 0-4 take conversations 0, 1, 0, 1, 0: its 3 user turns, sent 3, 3 and 2 times.
    assert json.loads((out / "summary.json").read_text())["workload"] == \
        {"prompts_source": "conversations", "distinct_prompts": 3, "max_repeats": 3}


def test_the_terminals_warning_only_when_a_prompt_repeated() -> None:
    assert prompts_repeated({"workload": {"prompts_source": "dataset", "distinct_prompts": 1200, "max_repeats": 2}}) == (
        "Prompts repeated: the run sent 1,200 distinct prompts (dataset), some 2 times; a prefix-caching server answers "
        "a repeat from its cache. Give more prompts, or synthetic ones (--input-tokens), which never repeat.")
    assert prompts_repeated({"workload": {"prompts_source": "synthetic", "distinct_prompts": 9, "max_repeats": 1}}) is None
    assert prompts_repeated({}) is None  # a summary of an earlier version
