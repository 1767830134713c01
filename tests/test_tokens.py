"""Token counting with the tiny local tokenizer; load errors; no transformers import at module import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny_models import BOS_TOKEN, build_tiny_tokenizer

from perfbench.core.errors import ConfigError
from perfbench.workload.tokens import (
    FileTokenizer,
    HFTokenizer,
    Tokenizer,
    count_chat_tokens,
    count_prompt_tokens,
    load_tokenizer,
    message_text,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"))


BOS_ID = 1  # tiny_models puts <pad>, <s>, </s> first


def _hf(directory: Path) -> HFTokenizer:
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(str(directory), local_files_only=True), str(directory))


@pytest.fixture(scope="module", params=["file", "transformers"])
def tok(request, tok_dir):
    """The same tiny tokenizer through both loaders: tokenizer.json alone, and AutoTokenizer."""
    if request.param == "file":
        t = load_tokenizer(str(tok_dir))
        assert isinstance(t, FileTokenizer)
        return t
    return _hf(tok_dir)


def test_loaded_tokenizer_satisfies_protocol(tok):
    assert isinstance(tok, Tokenizer)


def test_count_excludes_special_tokens(tok):
    text = "the model server"
    ids = tok.encode(text)
    assert tok.count(text) == len(ids) > 0
    assert BOS_ID not in ids
    # The tiny tokenizer adds BOS like Llama does; counting text must not include it.
    assert tok.encode(text, add_special_tokens=True) == [BOS_ID, *ids]
    assert count_prompt_tokens(tok, text) == len(ids) + 1


def test_encode_decode_round_trip(tok):
    text = "Explain the queue latency (1990): 42 tokens, é 漢字!"
    assert tok.decode(tok.encode(text)) == text
    assert tok.count("") == 0


def test_count_is_not_a_word_count(tok):
    # Rare words split into several tokens; common ones are one token each.
    assert tok.count(" the the the") == 3
    assert tok.count("xylophone") > 1


def test_chat_tokens_use_the_template(tok):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a token?"}]
    # The template writes BOS as text; the ids must hold exactly one BOS, at the start.
    ids = tok.encode_chat(messages)
    assert ids[0] == BOS_ID and ids.count(BOS_ID) == 1
    assert tok.decode(ids).startswith("<<SYS>>\nBe brief.\n<</SYS>>\n\n[INST] What is a token? [/INST]")
    assert count_chat_tokens(tok, messages) == len(ids)
    assert count_chat_tokens(tok, messages) > tok.count("Be brief.") + tok.count("What is a token?")


def test_chat_tokens_without_template_join_contents(tok):
    class Plain:
        def count(self, text):
            return len(text.split())

        def encode(self, text):
            return list(range(self.count(text)))

        def decode(self, ids):
            return " ".join("w" for _ in ids)

    messages = [{"role": "system", "content": "one two"}, {"role": "user", "content": "three four five"}]
    assert count_chat_tokens(Plain(), messages) == 5
    assert count_prompt_tokens(Plain(), "a b c") == 3


def test_message_text_content_parts():
    assert message_text({"role": "user", "content": "hi"}) == "hi"
    assert message_text({"role": "assistant", "content": None}) == ""
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "b"}]
    assert message_text({"role": "user", "content": parts}) == "ab"


@pytest.mark.parametrize("style", ["byte-level", "sentencepiece"])
def test_file_loader_matches_transformers(tmp_path, style):
    directory = build_tiny_tokenizer(tmp_path, style=style)
    fast, hf = load_tokenizer(str(directory)), _hf(directory)
    assert isinstance(fast, FileTokenizer)
    texts = ["", "the model server", " Explain the queue latency (1990): 42 tokens, é!", "a\n\nb  c", BOS_TOKEN + " x"]
    for text in texts:
        for special in (False, True):
            assert fast.encode(text, add_special_tokens=special) == hf.encode(text, add_special_tokens=special)
        ids = fast.encode(text)
        assert fast.decode(ids) == hf.decode(ids)
        assert count_prompt_tokens(fast, text) == count_prompt_tokens(hf, text)
    chats = [
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a token?"}],
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}],
    ]
    for messages in chats:
        assert fast.encode_chat(messages) == hf.encode_chat(messages)


def test_corrupt_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"^cannot load tokenizer .*\(.*\); pass a directory with valid tokenizer files$"):
        load_tokenizer(str(tmp_path))


@pytest.mark.parametrize("name", ["/nonexistent/tokenizer-dir", "no-such-org/no-such-model"])
def test_not_found_is_one_line_config_error(name):
    with pytest.raises(ConfigError) as e:
        load_tokenizer(name)
    msg = str(e.value)
    assert msg == (f"tokenizer {name!r} not found locally; pass a directory with tokenizer files (--tokenizer PATH)")


def test_empty_directory_is_not_found(tmp_path):
    with pytest.raises(ConfigError, match="not found locally; pass a directory with tokenizer files"):
        load_tokenizer(str(tmp_path))


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_import_does_not_import_transformers():
    r = _run(
        """
        import sys
        import perfbench.workload.tokens, perfbench.workload.prompts, perfbench.workload.lengths
        heavy = [m for m in ("transformers", "torch", "tokenizers") if m in sys.modules]
        print(heavy)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_client_run_with_tokenizer_does_not_import_torch(tok_dir):
    r = _run(
        f"""
        import sys
        from perfbench.workload.tokens import count_chat_tokens, load_tokenizer
        t = load_tokenizer({str(tok_dir)!r})
        n = count_chat_tokens(t, [{{"role": "user", "content": "hello there"}}]) + t.count("hello")
        print(n > 0, "torch" in sys.modules)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False"]


def test_missing_transformers_names_the_install_command():
    r = _run(
        """
        import sys
        sys.modules["transformers"] = None  # makes `import transformers` raise ImportError
        from perfbench.core.errors import ConfigError
        from perfbench.workload.tokens import load_tokenizer
        try:
            load_tokenizer("anything")
        except ConfigError as e:
            print(e)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "--tokenizer needs the transformers package; install it with: pip install 'perfbench[transformers]'"
