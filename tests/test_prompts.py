"""Prompt files (each format, each error), the sample files, and exact synthetic prompts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import build_tiny_tokenizer

from perfbench.core.errors import ConfigError
from perfbench.workload.lengths import LengthDistribution as LD
from perfbench.workload.prompts import WORDS, Prompt, SyntheticPrompts, load_prompts, synthetic_prompts
from perfbench.workload.tokens import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "prompts"


@pytest.fixture(scope="module", params=["byte-level", "sentencepiece"])
def tok(request, tmp_path_factory):
    """Both tiny tokenizers: byte-level (counts add up across words) and sentencepiece-like
    (pieces such as "the▁" span word ends, so a cut and re-encode changes the count)."""
    directory = tmp_path_factory.mktemp(f"tiny-{request.param}")
    return load_tokenizer(str(build_tiny_tokenizer(directory, style=request.param)))


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


# --------------------------------------------------------------------------- formats


def test_text_lines_literal_and_blank_lines_skipped(tmp_path):
    p = write(tmp_path, "p.txt", 'first\\nstill first\n\n   \n  second, spaced  \r\n{"not": "json"}\n')
    prompts = load_prompts(p)
    assert [x.text for x in prompts] == ['first\\nstill first', "  second, spaced  ", '{"not": "json"}']
    assert all(x.messages is None and x.input_tokens is None and x.max_tokens is None for x in prompts)


def test_jsonl_prompt_text_messages_and_max_tokens(tmp_path):
    lines = [
        {"prompt": "a"},
        {"text": "b", "max_tokens": 7},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "id": 3},
    ]
    p = write(tmp_path, "p.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    a, b, c = load_prompts(p)
    assert a == Prompt("a", None, None)
    assert b == Prompt("b", None, None, 7)
    assert c.text is None and c.messages == tuple(lines[2]["messages"])
    assert c.completion_text == "s\n\nu"
    assert a.chat_messages == ({"role": "user", "content": "a"},)
    assert c.chat_messages is c.messages


def test_format_sniffed_without_extension(tmp_path):
    assert load_prompts(write(tmp_path, "p", '{"prompt": "x"}\n{"prompt": "y"}\n'))[1].text == "y"
    assert load_prompts(write(tmp_path, "q", '["x", {"prompt": "y"}]'))[1].text == "y"
    assert load_prompts(write(tmp_path, "r", "just text\n"))[0].text == "just text"


def test_jsonl_saved_as_json_still_loads(tmp_path):
    p = write(tmp_path, "p.json", '{"prompt": "x"}\n{"prompt": "y"}\n')
    assert [x.text for x in load_prompts(p)] == ["x", "y"]


def test_sharegpt(tmp_path):
    data = [
        {"conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "one two three"}]},
        {"conversations": [{"from": "system", "value": "sys"}, {"from": "user", "value": "q2"}]},
        {"conversations": [{"from": "gpt", "value": "hello"}]},  # no human turn: skipped
        {"conversations": []},  # skipped
        {"conversations": [{"role": "user", "content": "q3"}, {"role": "assistant", "content": "a b"}]},
    ]
    p = write(tmp_path, "s.json", json.dumps(data))
    prompts = load_prompts(p)
    assert [(x.text, x.max_tokens) for x in prompts] == [("q1", None), ("q2", None), ("q3", None)]
    hinted = load_prompts(p, sharegpt_output_lengths=True)
    assert [(x.text, x.max_tokens) for x in hinted] == [("q1", 3), ("q2", None), ("q3", 2)]


# --------------------------------------------------------------------------- errors


def _error(path: Path, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        load_prompts(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    p = tmp_path / "nope.txt"
    assert _error(p) == f"prompts file {p} not found; check the path given to --prompts"


def test_directory_is_unreadable(tmp_path):
    msg = _error(tmp_path)
    assert msg.startswith(f"cannot read prompts file {tmp_path} (") and "check the path" in msg


def test_not_utf8(tmp_path):
    assert "is not UTF-8 text; save it as UTF-8" in _error(write(tmp_path, "p.txt", b"\xff\xfe\x00bad"))


@pytest.mark.parametrize("name, content", [("e.txt", ""), ("e.jsonl", "\n \n"), ("e.json", "[]")])
def test_empty(tmp_path, name, content):
    p = write(tmp_path, name, content)
    assert _error(p).startswith(f"prompts file {p} has no prompts; write one prompt per line")


def test_bad_jsonl_line_names_the_line(tmp_path):
    p = write(tmp_path, "p.jsonl", '{"prompt": "ok"}\n\n{"prompt": "broken}\n')
    msg = _error(p)
    assert msg.startswith(f"{p}:3: bad JSON (") and msg.endswith("write one JSON object per line")


def test_bad_json_names_the_line(tmp_path):
    p = write(tmp_path, "p.json", '[\n {"prompt": "a"},\n {"prompt": }\n]')
    assert _error(p).startswith(f"{p}:3: bad JSON (")


def test_no_prompt_field(tmp_path):
    p = write(tmp_path, "p.jsonl", '{"prompt": "ok"}\n{"question": "where?"}\n')
    assert _error(p) == f'{p}:2: no prompt field; give each entry a "prompt" (or "text") string or a "messages" list, e.g. {{"prompt": "Hello"}}'


@pytest.mark.parametrize(
    "line, fragment",
    [
        ('"just a string"', "expected a JSON object"),
        ('{"prompt": 5}', '"prompt" must be a non-empty string'),
        ('{"text": "  "}', '"text" must be a non-empty string'),
        ('{"messages": []}', '"messages" must be a non-empty list'),
        ('{"messages": [{"role": "user"}]}', 'message 1 needs a "role" string and a "content"'),
        ('{"prompt": "x", "max_tokens": 0}', '"max_tokens" must be an integer >= 1'),
    ],
)
def test_bad_records(tmp_path, line, fragment):
    p = write(tmp_path, "p.jsonl", '{"prompt": "ok"}\n' + line + "\n")
    msg = _error(p)
    assert msg.startswith(f"{p}:2: ") and fragment in msg


def test_json_not_a_list(tmp_path):
    p = write(tmp_path, "p.json", '{"prompt": "x"}')
    assert "expected a JSON list of prompts or ShareGPT conversations" in _error(p)


def test_bad_sharegpt_turn_names_the_entry(tmp_path):
    p = write(tmp_path, "p.json", json.dumps([{"conversations": [{"from": "human", "value": "q"}]}, {"conversations": [{"speaker": "x"}]}]))
    assert _error(p).startswith(f'{p}: entry 2, turn 1: a ShareGPT turn needs "from" and "value" strings')


def test_sharegpt_without_any_human_turn_is_empty(tmp_path):
    p = write(tmp_path, "p.json", json.dumps([{"conversations": [{"from": "gpt", "value": "hi"}]}]))
    assert "has no prompts" in _error(p)


# --------------------------------------------------------------------------- sample files


def test_sample_files_load():
    short = load_prompts(SAMPLES / "chat-short.txt")
    assert len(short) == 50 and len({p.text for p in short}) == 50
    chat = load_prompts(SAMPLES / "chat-messages.jsonl")
    assert len(chat) == 20
    assert all([m["role"] for m in p.messages] == ["system", "user"] for p in chat)
    long = load_prompts(SAMPLES / "long-context.jsonl")
    assert len(long) == 10
    assert all(1000 <= len(p.text.split()) <= 3000 and p.max_tokens == 256 for p in long)
    sharegpt = load_prompts(SAMPLES / "sharegpt-sample.json", sharegpt_output_lengths=True)
    assert len(sharegpt) == 20 and all(p.max_tokens and p.max_tokens > 5 for p in sharegpt)
    assert sum(f.stat().st_size for f in SAMPLES.iterdir()) < 200_000


def test_long_context_file_is_what_the_script_makes(tmp_path):
    script = (SAMPLES / "make_long_context.py").read_text()
    copy = write(tmp_path, "make_long_context.py", script.replace("parents[1]", f"parents[0] / {str(REPO)!r}"))
    subprocess.run([sys.executable, str(copy)], check=True, timeout=60, cwd=tmp_path)
    assert (tmp_path / "long-context.jsonl").read_bytes() == (SAMPLES / "long-context.jsonl").read_bytes(), (
        "prompts/long-context.jsonl is stale: run python prompts/make_long_context.py"
    )


# --------------------------------------------------------------------------- synthetic


LENGTHS = [*range(1, 130), *range(130, 2049, 37), 2047, 2048]


def test_synthetic_lengths_exact_with_tokenizer(tok):
    # One prompt per length, each from its own seed: many different cut points.
    for n in LENGTHS:
        (p,) = synthetic_prompts(1, LD.fixed(n), tokenizer=tok, seed=n)
        assert p.input_tokens == n
        assert tok.count(p.text) == n, (n, p.text)
        assert p.messages is None and p.max_tokens is None


def test_synthetic_distribution_exact_per_prompt(tok):
    prompts = synthetic_prompts(200, LD.uniform(1, 600), tokenizer=tok, seed=5)
    counts = np.array([tok.count(p.text) for p in prompts])
    assert (counts == np.array([p.input_tokens for p in prompts])).all()
    assert counts.min() < 100 and counts.max() > 500  # the distribution, not one length


def test_synthetic_without_tokenizer_counts_words():
    assert [len(p.text.split()) for p in synthetic_prompts(5, LD.fixed(37), tokenizer=None, seed=1)] == [37] * 5
    prompts = synthetic_prompts(200, LD.uniform(1, 50), tokenizer=None, seed=1)
    counts = [len(p.text.split()) for p in prompts]
    assert min(counts) >= 1 and max(counts) <= 50 and len(set(counts)) > 30  # each prompt draws its own length
    assert all(p.input_tokens is None for p in prompts)
    assert set(" ".join(p.text for p in prompts).split()) <= set(WORDS)


def test_synthetic_prompt_k_is_made_from_seed_and_k_alone(tok):
    # Any process makes prompt k without making the ones before it: workers send what one process sends.
    first = synthetic_prompts(30, LD.uniform(20, 200), tokenizer=tok, seed=4, output_tokens=LD.uniform(5, 50))
    made = SyntheticPrompts(LD.uniform(20, 200), tokenizer=tok, seed=4, output_tokens=LD.uniform(5, 50))
    assert [made[k] for k in (29, 3, 17)] == [first[29], first[3], first[17]]
    far = [made[k] for k in (10_000, 1_024, 10**9)]  # past the 10,000 (and 1,024) prompts that used to cycle
    assert all(tok.count(p.text) == p.input_tokens for p in far)  # exact lengths, however far into the run
    assert len({p.text for p in first + far}) == 33
    assert SyntheticPrompts(LD.uniform(20, 200), tokenizer=tok, seed=5)[3].text != first[3].text


def test_synthetic_prompts_never_repeat_in_a_long_run():
    made = SyntheticPrompts(LD.fixed(12), tokenizer=None, seed=0)
    texts = [made[k].text for k in range(12_000)]
    assert len(set(texts)) == 12_000  # no cycle at 1,024 or 10,000 prompts
    # ... nor a shared start: no two of the first 2,000 share their first 6 words
    assert len({" ".join(t.split()[:6]) for t in texts[:2000]}) == 2000


@pytest.mark.parametrize("with_tokenizer", [True, False])
def test_synthetic_seeded(tok, with_tokenizer):
    t = tok if with_tokenizer else None
    a = synthetic_prompts(10, LD.normal(100, 20), tokenizer=t, seed=3, output_tokens=LD.uniform(10, 90))
    b = synthetic_prompts(10, LD.normal(100, 20), tokenizer=t, seed=3, output_tokens=LD.uniform(10, 90))
    c = synthetic_prompts(10, LD.normal(100, 20), tokenizer=t, seed=4, output_tokens=LD.uniform(10, 90))
    assert a == b and a != c
    assert all(p.max_tokens is not None and 10 <= p.max_tokens <= 90 for p in a)


def test_synthetic_prompts_differ_from_the_start(tok):
    prompts = synthetic_prompts(50, LD.fixed(64), tokenizer=tok, seed=0)
    # No accidental prefix caching: vLLM caches whole 16-token blocks, and no two prompts share
    # their first block.
    assert len({tuple(tok.encode(p.text)[:16]) for p in prompts}) == 50


@pytest.mark.parametrize("groups", [1, 3])
def test_shared_prefix_exact(tok, groups):
    k = 100
    prompts = synthetic_prompts(12, LD.uniform(101, 400), tokenizer=tok, seed=9, shared_prefix_tokens=k, prefix_groups=groups)
    ids = [tok.encode(p.text) for p in prompts]
    assert [len(x) for x in ids] == [p.input_tokens for p in prompts]
    heads = [tuple(x[:k]) for x in ids]
    for i in range(12):
        assert heads[i] == heads[i % groups]  # same group: same k prefix token ids
    assert len(set(heads)) == groups  # different groups: different prefixes
    assert len({tuple(x[k:]) for x in ids}) == 12  # the rest is each prompt's own


def test_shared_prefix_without_tokenizer_in_words():
    prompts = synthetic_prompts(4, LD.fixed(10), tokenizer=None, seed=2, shared_prefix_tokens=6, prefix_groups=2)
    words = [p.text.split() for p in prompts]
    assert all(len(w) == 10 for w in words)
    assert words[0][:6] == words[2][:6] != words[1][:6] == words[3][:6]


def test_shared_prefix_must_leave_room():
    with pytest.raises(ConfigError, match=r"^input length uniform:50-200 can be 50 tokens, not more than the shared prefix of 50; "):
        synthetic_prompts(3, LD.uniform(50, 200), tokenizer=None, shared_prefix_tokens=50)
    with pytest.raises(ConfigError, match="normal:MEAN,STD,MIN"):
        synthetic_prompts(3, LD.normal(500, 10), tokenizer=None, shared_prefix_tokens=50)


def test_bad_synthetic_settings():
    with pytest.raises(ConfigError, match="use seed >= 0, groups >= 1, prefix >= 0"):
        synthetic_prompts(3, LD.fixed(5), tokenizer=None, prefix_groups=0)
    with pytest.raises(ConfigError, match="use count >= 0"):
        synthetic_prompts(-1, LD.fixed(5), tokenizer=None)
