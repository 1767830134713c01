"""Tiny artefacts built locally for the tests: a byte-level BPE tokenizer (nothing downloaded).

``build_tiny_tokenizer(directory)`` trains a ~800-token byte-level BPE on deterministic text made
from a fixed word list, wraps it in ``transformers.PreTrainedTokenizerFast`` with bos/eos/pad
tokens and a Llama-like chat template, and saves it with ``save_pretrained``. Byte-level means
every string round-trips, so exact-length synthetic prompts can be tested on it. Other test
helpers (a tiny model) build on the saved directory.
"""

from __future__ import annotations

import random
from pathlib import Path

TINY_VOCAB_SIZE = 800
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"

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


def build_tiny_tokenizer(directory: Path) -> Path:
    """Train (or reuse) the tiny tokenizer in ``directory``; returns ``directory``.

    Cache-friendly: a directory that already holds ``tokenizer.json`` is returned at once.
    """
    directory = Path(directory)
    if (directory / "tokenizer.json").is_file():
        return directory
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # Like Llama: encode() with special tokens prepends BOS, so tests can tell the two modes apart.
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B", special_tokens=[(BOS_TOKEN, 1)]
            ),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=[PAD_TOKEN, BOS_TOKEN, EOS_TOKEN],  # ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    directory.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(directory))
    return directory
