"""A tiny random Llama saved with ``save_pretrained`` (nothing downloaded), for the server tests.

``build_tiny_llama(directory)`` puts the tiny byte-level BPE tokenizer (tests/tiny_models.py) and a
2-layer, 64-wide ``LlamaForCausalLM`` with random weights (fixed seed) in one directory, which
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load like any
Hugging Face model directory.

Two variants share its weights and differ in ``generation_config.json``, the file a server must honour:
``suppressed_eos_llama()`` suppresses EOS, BOS, padding and every byte-fragment token (so every token
decodes to complete text and every request runs to its length), suppresses the plain greedy first token
of ``PROMPT`` at the start, and sets sampling defaults; ``multi_eos_llama()`` is greedy by default and has
two EOS ids, the second a plain token its greedy output for ``PROMPT`` reaches after a few tokens.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from tests.tiny_models import build_tiny_tokenizer

TINY_LLAMA_SEED = 1234


def build_tiny_llama(directory: Path, *, max_position_embeddings: int = 1024) -> Path:
    """Build (or reuse) the tiny Llama model directory; returns ``directory``."""
    directory = Path(directory)
    if (directory / "config.json").is_file() and (directory / "tokenizer.json").is_file():
        return directory
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    build_tiny_tokenizer(directory)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(TINY_LLAMA_SEED)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(directory))
    return directory


@functools.lru_cache(maxsize=None)
def shared_tiny_llama() -> Path:
    """One tiny Llama directory per test process (several test modules share it); removed at exit."""
    directory = Path(tempfile.mkdtemp(prefix="perfbench-tiny-llama-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return build_tiny_llama(directory / "model")


PROMPT = "the model server"  # the prompt the variants' special tokens were chosen on
SUPPRESSED_DEFAULTS = {"do_sample": True, "temperature": 0.7, "top_k": 40, "top_p": 0.95, "repetition_penalty": 1.1,
                       "max_new_tokens": 48}  # fmt: skip


def _variant(name: str, generation_config: dict) -> Path:
    directory = shared_tiny_llama().parent / name
    if not directory.is_dir():
        shutil.copytree(shared_tiny_llama(), directory)
    base = json.loads((directory / "generation_config.json").read_text())
    (directory / "generation_config.json").write_text(json.dumps({**base, **generation_config}, indent=2))
    return directory


def _greedy_ids(directory: Path, max_new_tokens: int, suppress: list[int] | None = None) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(str(directory))
    ids = torch.tensor([tokenizer.encode(PROMPT)])
    out = model.generate(ids, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                         suppress_tokens=suppress, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return out[0, ids.shape[1] :].tolist()


def byte_fragment_ids(directory: Path) -> list[int]:
    """Tokens that are not complete UTF-8 on their own (byte-level pieces of a longer character)."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    return [i for i in range(len(tokenizer)) if "\ufffd" in tokenizer.decode([i])]


@functools.lru_cache(maxsize=None)
def suppressed_eos_llama() -> Path:
    """The tiny Llama whose generation config suppresses EOS and byte fragments (see the module docstring)."""
    base = shared_tiny_llama()
    suppress = sorted({0, 1, 2, *byte_fragment_ids(base)})  # pad, bos, eos: text-less tokens
    [first] = _greedy_ids(base, 1, suppress)
    return _variant("suppressed-eos", {**SUPPRESSED_DEFAULTS, "suppress_tokens": suppress, "begin_suppress_tokens": [first]})


@functools.lru_cache(maxsize=None)
def multi_eos_llama() -> Path:
    """The tiny Llama with ``eos_token_id: [2, X]`` and ``do_sample: false`` (see the module docstring)."""
    base = shared_tiny_llama()
    fragments = set(byte_fragment_ids(base))
    ids = _greedy_ids(base, 16)
    # X: the first plain token that appears at least three tokens in and not before.
    index = next(i for i in range(3, len(ids)) if ids[i] > 2 and ids[i] not in fragments and ids[i] not in ids[:i])
    return _variant("multi-eos", {"do_sample": False, "eos_token_id": [2, ids[index]]})
