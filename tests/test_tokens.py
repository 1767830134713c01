"""Token counting with the tiny local tokenizer; load errors; no transformers import at module import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny_models import build_tiny_tokenizer

from perfbench.errors import ConfigError
from perfbench.tokens import (
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


@pytest.fixture(scope="module")
def tok(tok_dir) -> HFTokenizer:
    t = load_tokenizer(str(tok_dir))
    assert isinstance(t, HFTokenizer)
    return t


def test_loaded_tokenizer_satisfies_protocol(tok):
    assert isinstance(tok, Tokenizer)


def test_count_excludes_special_tokens(tok):
    text = "the model server"
    ids = tok.encode(text)
    assert tok.count(text) == len(ids) > 0
    assert tok.hf.bos_token_id not in ids
    # The tiny tokenizer adds BOS like Llama does; counting text must not include it.
    assert tok.hf.encode(text) == [tok.hf.bos_token_id, *ids]
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
    rendered = tok.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<s><<SYS>>")
    # The template's BOS is a special token string; the ids must hold exactly one BOS.
    ids = tok.encode_chat(messages)
    assert ids.count(tok.hf.bos_token_id) == 1
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
        import perfbench.tokens, perfbench.prompts, perfbench.lengths
        heavy = [m for m in ("transformers", "torch", "tokenizers") if m in sys.modules]
        print(heavy)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_missing_transformers_names_the_install_command():
    r = _run(
        """
        import sys
        sys.modules["transformers"] = None  # makes `import transformers` raise ImportError
        from perfbench.errors import ConfigError
        from perfbench.tokens import load_tokenizer
        try:
            load_tokenizer("anything")
        except ConfigError as e:
            print(e)
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "--tokenizer needs the transformers package; install it with: pip install 'perfbench[transformers]'"
