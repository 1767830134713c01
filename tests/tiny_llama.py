"""A tiny random Llama saved with ``save_pretrained`` (nothing downloaded), for the server tests.

``build_tiny_llama(directory)`` puts the tiny byte-level BPE tokenizer (tests/tiny_models.py) and a
2-layer, 64-wide ``LlamaForCausalLM`` with random weights (fixed seed) in one directory, which
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load like any
Hugging Face model directory.
"""

from __future__ import annotations

import atexit
import functools
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
