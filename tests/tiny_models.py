"""Tiny artefacts built locally for the tests: small BPE tokenizers (nothing downloaded).

``build_tiny_tokenizer(directory)`` trains a ~800-token byte-level BPE on deterministic text made
from a fixed word list, wraps it in ``transformers.PreTrainedTokenizerFast`` with bos/eos/pad
tokens and a Llama-like chat template, and saves it with ``save_pretrained``. Byte-level means
every string round-trips, so exact-length synthetic prompts can be tested on it. Other test
helpers (a tiny model) build on the saved directory.

``style="sentencepiece"`` builds a Llama-1/2-like variant instead: spaces become "▁", there is no
pre-tokenizer, so merges span word ends ("the▁") and token counts do not add up across a cut:
the hard case for exact-length prompts.
"""

from __future__ import annotations

import random
from pathlib import Path

TINY_VOCAB_SIZE = 800
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"  # sentencepiece style only: byte-level needs none

# Llama-2-like: system prompt folded into the first user turn, [INST] ... [/INST] markers.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}<<SYS>>\n{{ message['content'] }}\n<</SYS>>\n\n"
    "{% elif message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]"
    "{% elif message['role'] == 'assistant' %} {{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their been has when who will more no if "
    "out so said what up its about into than them can only other new some could time these two "
    "may then do first any my now such like our over man me even most made after also did many "
    "before must through back years where much your way well down should because each just those "
    "people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old year "
    "off come since against go came right used take three model server token request latency "
    "stream batch memory cache prompt answer question explain write summary history science river "
    "mountain city language number system network compute engine queue throughput benchmark"
).split()


def _corpus(seed: int = 0, lines: int = 2000) -> list[str]:
    """Deterministic training text: sentences of random words, with punctuation and digits."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 16))]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice([".", "?", "!", ",", ": 42.", " (1990)."]))
    return out


def build_tiny_tokenizer(directory: Path, *, style: str = "byte-level") -> Path:
    """Train (or reuse) the tiny tokenizer in ``directory``; returns ``directory``.

    ``style``: "byte-level" (GPT-2/Llama-3-like) or "sentencepiece" (Llama-2-like, see above).
    Cache-friendly: a directory that already holds ``tokenizer.json`` is returned at once.
    """
    directory = Path(directory)
    if (directory / "tokenizer.json").is_file():
        return directory
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    # Like Llama: encode() with special tokens prepends BOS, so tests can tell the two modes apart.
    add_bos = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B", special_tokens=[(BOS_TOKEN, 1)]
    )
    special_tokens = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN]  # ids 0, 1, 2
    if style == "byte-level":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=False), add_bos])
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif style == "sentencepiece":
        special_tokens.append(UNK_TOKEN)
        tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        tok.post_processor = add_bos
        alphabet = sorted(set("▁" + "".join(_WORDS) + "".join(_WORDS).upper() + ".,?!:()0123456789"))
    else:
        raise ValueError(f"unknown tokenizer style {style!r}; use 'byte-level' or 'sentencepiece'")
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=alphabet,
        max_token_length=12,  # without a pre-tokenizer, keep merges to word-sized pieces
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN if style == "sentencepiece" else None,
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(directory))
    return directory
