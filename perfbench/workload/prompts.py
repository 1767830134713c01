"""Prompt sources: prompt files (text lines, JSONL, ShareGPT JSON) and synthetic prompts.

File formats, told apart by extension (``.txt``, ``.jsonl``, ``.json``) or else by content:
- plain text: one prompt per non-empty line, taken literally (no escapes);
- JSONL: one object per line with a ``"prompt"`` (or ``"text"``) string or a ``"messages"`` list,
  optionally ``"max_tokens"``;
- JSON: a list of such objects or strings, or ShareGPT conversations
  (``{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", ...}]}``), whose first
  human turn is the prompt. Conversations without a human turn are skipped, as peers do.

Synthetic prompts are random words from a fixed English list, prompt k of a run made from
(seed, k) alone, so none repeats however long the run. With a tokenizer each prompt has
*exactly* the sampled number of tokens (counted without special tokens, see tokens.py). Without
one, the length is a word count, so ``input_tokens`` is None: approximate for a real model, exact
for the built-in mock, which counts words.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from perfbench.core.errors import ConfigError
from perfbench.workload.lengths import LengthDistribution
from perfbench.workload.tokens import Tokenizer, message_text

log = logging.getLogger(__name__)

WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
    """
    time year people way day man thing woman life child world school state family student group country
    problem hand part place case week company system program question work government number night point
    home water room mother area money story fact month lot right study book eye job word business issue
    side kind head house service friend father power hour game line end member law car city community name
    president team minute idea kid body information back parent face others level office door health person
    art war history party result change morning reason research girl guy moment air teacher force education
    foot boy age policy music market sense nation plan college interest death experience effect use class
    control care field development role effort rate heart drug show leader light voice wife police mind price
    report decision son view relationship town road arm difference value building action model season society
    tax director position player record paper space ground form event official matter center couple site
    project activity star table need court oil situation cost industry figure street image phone data picture
    practice piece land product doctor wall patient worker news test movie north love support technology step
    baby computer type attention film tree source organization hair window evidence population site river
    mountain language science network engine garden ocean island forest village kitchen letter summer winter
    be have do say go can get would make know will think take see come could want look give find tell ask
    seem feel try leave call keep let begin help talk turn start show hear play run move like live believe
    hold bring happen write provide sit stand lose pay meet include continue set learn lead understand watch
    follow stop create speak read allow add spend grow open walk win offer remember consider appear buy wait
    serve die send expect build stay fall cut reach kill remain suggest raise pass sell require decide pull
    other new good high old great big small large national young different long little important political
    bad white real best right social only public sure low early able human local late hard major better
    economic strong possible whole free military true federal international full special easy clear recent
    certain personal open red difficult available likely short single medical current wrong private past
    foreign fine common poor natural significant similar hot dead central happy serious ready simple left
    physical general environmental financial blue democratic dark various entire close legal religious cold
    final main green nice huge popular traditional cultural quickly often never always really almost again
    also still already however together perhaps usually probably certainly finally simply suddenly rather
    the a of and to in for on with at by from about into over after under between through during without
    before against among across behind beyond within along around because while although since unless
    """.split()
    )
)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt to send, from a file or synthetic."""

    text: str | None  # the prompt as plain text (completions API; chat sends it as one user message)
    messages: tuple[dict, ...] | None  # chat messages, when the source has them (then text is None)
    input_tokens: int | None  # exact prompt length in tokens (no special tokens) when known
    max_tokens: int | None = None  # per-prompt output length, when the source or --output-tokens gives one

    @property
    def completion_text(self) -> str:
        """The prompt for the completions API: the text, or the message contents joined."""
        if self.text is not None:
            return self.text
        return "\n\n".join(message_text(m) for m in self.messages or ())

    @property
    def chat_messages(self) -> tuple[dict, ...]:
        """The prompt for the chat API: the messages, or the text as one user message."""
        if self.messages is not None:
            return self.messages
        return ({"role": "user", "content": self.text or ""},)


# --------------------------------------------------------------------------- files


def load_prompts(path: str | Path, *, sharegpt_output_lengths: bool = False) -> list[Prompt]:
    """Read a prompts file (format by extension, else by content).

    Args:
        sharegpt_output_lengths: for ShareGPT files, set each prompt's ``max_tokens`` to the word
            count of the first answer (a hint for output length; words, not tokens).

    Raises:
        ConfigError: the file is missing, unreadable, empty or malformed; the message names the
            file and line (or entry) and how to fix it.
    """
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"prompts file {path} not found; check the path given to --prompts") from None
    except UnicodeDecodeError:
        raise ConfigError(f"prompts file {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"cannot read prompts file {path} ({e.strerror or e}); check the path and its permissions") from None
    stripped = content.lstrip()
    suffix = path.suffix.lower()
    if not stripped:
        prompts: list[Prompt] = []
    elif suffix == ".jsonl" or (suffix not in (".json", ".txt") and stripped[0] == "{"):
        prompts = _load_jsonl(path, content)
    elif suffix == ".json" or (suffix != ".txt" and stripped[0] == "["):
        prompts = _load_json(path, content, sharegpt_output_lengths)
    else:
        prompts = [Prompt(line, None, None) for line in content.splitlines() if line.strip()]
    if not prompts:
        raise ConfigError(
            f"prompts file {path} has no prompts; write one prompt per line (.txt) "
            f'or one JSON object per line like {{"prompt": "..."}} (.jsonl)'
        )
    return prompts


def _load_jsonl(path: Path, content: str) -> list[Prompt]:
    prompts = []
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"{path}:{lineno}: bad JSON ({e.msg} at column {e.colno}); write one JSON object per line"
            ) from None
        prompts.append(prompt_record(obj, f"{path}:{lineno}"))
    return prompts


def _load_json(path: Path, content: str, sharegpt_output_lengths: bool) -> list[Prompt]:
    try:
        doc = json.loads(content)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and content.lstrip().startswith("{"):
            return _load_jsonl(path, content)  # JSONL saved with a .json name
        raise ConfigError(f"{path}:{e.lineno}: bad JSON ({e.msg} at column {e.colno}); fix the JSON syntax") from None
    if not isinstance(doc, list):
        raise ConfigError(
            f"{path}: expected a JSON list of prompts or ShareGPT conversations, got {type(doc).__name__}; "
            "wrap the entries in [...] or use JSONL"
        )
    prompts = []
    skipped = 0
    for i, entry in enumerate(doc, start=1):
        where = f"{path}: entry {i}"
        if isinstance(entry, str) and entry.strip():
            prompts.append(Prompt(entry, None, None))
        elif isinstance(entry, Mapping) and "conversations" in entry:
            prompt = _sharegpt(entry["conversations"], where, sharegpt_output_lengths)
            skipped += prompt is None
            if prompt is not None:
                prompts.append(prompt)
        else:
            prompts.append(prompt_record(entry, where))
    if skipped:
        log.info("%s: skipped %d conversations without a human turn", path, skipped)
    return prompts


def prompt_record(obj: Any, where: str) -> Prompt:
    """One JSONL line or JSON entry: {"prompt"|"text": str} or {"messages": [...]}, optional max_tokens."""
    fields = '"prompt" (or "text") string or a "messages" list'
    if not isinstance(obj, Mapping):
        raise ConfigError(f'{where}: expected a JSON object with a {fields}, e.g. {{"prompt": "Hello"}}')
    max_tokens = obj.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ConfigError(f'{where}: "max_tokens" must be an integer >= 1, got {max_tokens!r}; fix or remove it')
    if "messages" in obj:
        return Prompt(None, _messages(obj["messages"], where), None, max_tokens)
    for key in ("prompt", "text"):
        if key in obj:
            text = obj[key]
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f'{where}: "{key}" must be a non-empty string, got {text!r}; fix the value')
            return Prompt(text, None, None, max_tokens)
    raise ConfigError(f'{where}: no prompt field; give each entry a {fields}, e.g. {{"prompt": "Hello"}}')


def _messages(value: Any, where: str) -> tuple[dict, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f'{where}: "messages" must be a non-empty list of {{"role": ..., "content": ...}} objects')
    for j, m in enumerate(value, start=1):
        if not (
            isinstance(m, Mapping)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), (str, list))
        ):
            raise ConfigError(
                f'{where}: message {j} needs a "role" string and a "content" string or list, got {m!r:.80}; fix the message'
            )
    return tuple(dict(m) for m in value)


HUMAN_SPEAKERS = ("human", "user")  # ShareGPT and chat speakers of a prompt (also read by sessions and datasets)
ASSISTANT_SPEAKERS = ("gpt", "assistant", "chatgpt", "bard", "model")


def _sharegpt(turns: Any, where: str, output_lengths: bool) -> Prompt | None:
    """First human turn as the prompt; None when there is none."""
    if not isinstance(turns, list):
        raise ConfigError(f'{where}: "conversations" must be a list of {{"from": ..., "value": ...}} turns')
    for j, turn in enumerate(turns):
        speaker, text = _turn(turn, f"{where}, turn {j + 1}")
        if speaker in HUMAN_SPEAKERS and text.strip():
            max_tokens = None
            if output_lengths:
                later = (_turn(t, f"{where}, turn {k + 1}") for k, t in enumerate(turns[j + 1 :], start=j + 1))
                answer = next((t for s, t in later if s in ASSISTANT_SPEAKERS), "")
                max_tokens = len(answer.split()) or None
            return Prompt(text, None, None, max_tokens)
    return None


def _turn(turn: Any, where: str) -> tuple[str, str]:
    """(speaker, text) of a ShareGPT turn; accepts {"from", "value"} and {"role", "content"}."""
    if isinstance(turn, Mapping):
        speaker = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        if isinstance(speaker, str) and isinstance(text, str):
            return speaker.lower(), text
    raise ConfigError(f'{where}: a ShareGPT turn needs "from" and "value" strings, got {turn!r:.80}; fix the turn')


# --------------------------------------------------------------------------- synthetic


# Separate random streams of one --seed: a request's prompt, a shared prefix (each stream keyed by
# its number as well, so prompt k is made from (seed, k) alone).
_PROMPT_STREAM = 0
_PREFIX_STREAM = 1
_PROMPT_BLOCK_STREAM = 2
PROMPT_BLOCK = 256  # synthetic prompts (in words) made at once


class SyntheticPrompts:
    """The run's synthetic prompts: prompt ``k`` is made from ``(seed, k)`` alone, so no two requests
    of a run send the same prompt however long it runs, and any process makes the same prompt ``k``.

    Each prompt's length is drawn from ``input_tokens`` (and its ``max_tokens`` from
    ``output_tokens`` when given) with its own random stream, then filled with random words: with
    ``tokenizer`` exactly its length in tokens, without in words (``input_tokens`` is then None).
    Prompt ``k`` belongs to group ``k % prefix_groups`` and starts with that group's
    ``shared_prefix_tokens``-token prefix (for prefix-cache studies); its total length stays exact,
    and the rest is its own, so prompts share nothing by accident.

    Raises:
        ConfigError: a prompt could be no longer than the shared prefix, or bad settings.
    """

    def __init__(self, input_tokens: LengthDistribution, *, tokenizer: Tokenizer | None, seed: int = 0,
                 shared_prefix_tokens: int = 0, prefix_groups: int = 1,
                 output_tokens: LengthDistribution | None = None) -> None:
        if prefix_groups < 1 or shared_prefix_tokens < 0 or seed < 0:
            raise ConfigError(
                f"bad synthetic prompt settings (seed={seed}, prefix_groups={prefix_groups}, "
                f"shared_prefix_tokens={shared_prefix_tokens}); use seed >= 0, groups >= 1, prefix >= 0"
            )
        if shared_prefix_tokens and input_tokens.low <= shared_prefix_tokens:
            raise ConfigError(
                f"input length {input_tokens} can be {input_tokens.low} tokens, not more than the shared prefix "
                f"of {shared_prefix_tokens}; raise the input length (or its minimum, normal:MEAN,STD,MIN) or shorten the prefix"
            )
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.tokenizer = tokenizer
        self.seed = seed
        self.shared_prefix_tokens = shared_prefix_tokens
        self.prefix_groups = prefix_groups
        self._prefixes: dict[int, str] = {}  # group -> its prefix, made on first use
        self._block: tuple[int, list[Prompt]] | None = None  # the last block of prompts made (they are asked for in order)

    def __getitem__(self, k: int) -> Prompt:
        if self.tokenizer is not None:  # exact token lengths: one prompt at a time (the tokenizer is the cost)
            rng = np.random.default_rng((self.seed, _PROMPT_STREAM, k))
            length, max_tokens = self._lengths(1, rng)
            head = self._prefix(k % self.prefix_groups) if self.shared_prefix_tokens else ""
            return Prompt(exact_text(self.tokenizer, head, word_stream(rng), length[0]), None, length[0], max_tokens[0])
        block, at = divmod(k, PROMPT_BLOCK)
        if self._block is None or self._block[0] != block:
            self._block = (block, self._make_block(block))
        return self._block[1][at]

    def _lengths(self, n: int, rng: np.random.Generator) -> tuple[list[int], list[int | None]]:
        lengths = self.input_tokens.sample(n, rng).tolist()
        max_tokens = self.output_tokens.sample(n, rng).tolist() if self.output_tokens is not None else [None] * n
        return lengths, max_tokens

    def _make_block(self, block: int) -> list[Prompt]:
        """Prompts ``block * PROMPT_BLOCK`` onwards, in words, from one random stream of their own: a
        numpy generator costs more to seed than a prompt costs to draw, so a block shares one."""
        rng = np.random.default_rng((self.seed, _PROMPT_BLOCK_STREAM, block))
        lengths, max_tokens = self._lengths(PROMPT_BLOCK, rng)
        first = block * PROMPT_BLOCK
        heads = [self._prefix((first + i) % self.prefix_groups) if self.shared_prefix_tokens else "" for i in range(PROMPT_BLOCK)]
        own = [length - len(head.split()) for length, head in zip(lengths, heads)]
        words = list(map(WORDS.__getitem__, rng.integers(0, len(WORDS), sum(own)).tolist()))
        prompts, at = [], 0
        for head, count, max_out in zip(heads, own, max_tokens):
            text = " ".join(words[at:at + count])
            at += count
            prompts.append(Prompt(f"{head} {text}" if head else text, None, None, max_out))
        return prompts

    def _prefix(self, group: int) -> str:
        if group not in self._prefixes:
            words = word_stream(np.random.default_rng((self.seed, _PREFIX_STREAM, group)))
            self._prefixes[group] = exact_text(self.tokenizer, "", words, self.shared_prefix_tokens)
        return self._prefixes[group]


def synthetic_prompts(
    count: int,
    input_tokens: LengthDistribution,
    *,
    tokenizer: Tokenizer | None,
    seed: int = 0,
    shared_prefix_tokens: int = 0,
    prefix_groups: int = 1,
    output_tokens: LengthDistribution | None = None,
) -> list[Prompt]:
    """The first ``count`` prompts of ``SyntheticPrompts`` with these settings (same seed, same prompts).

    Raises:
        ConfigError: a prompt could be no longer than the shared prefix, or bad counts.
    """
    if count < 0:
        raise ConfigError(f"bad synthetic prompt count {count}; use count >= 0")
    prompts = SyntheticPrompts(input_tokens, tokenizer=tokenizer, seed=seed, shared_prefix_tokens=shared_prefix_tokens,
                               prefix_groups=prefix_groups, output_tokens=output_tokens)
    return [prompts[k] for k in range(count)]


def word_stream(rng: np.random.Generator) -> Iterator[str]:
    """An endless seeded stream of words from WORDS."""
    while True:
        yield from (WORDS[i] for i in rng.integers(0, len(WORDS), size=256))


def _take(words: Iterator[str], n: int) -> str:
    return " ".join(next(words) for _ in range(n))


_MAX_ATTEMPTS = 4  # fresh word pools tried before the last resort


def exact_text(tokenizer: Tokenizer | None, head: str, words: Iterator[str], target: int) -> str:
    """``head`` followed by random words, exactly ``target`` tokens long (words without a tokenizer).

    Tokens do not add up across a cut (decoding ids and re-encoding can merge or split them), so
    the cut point is moved by the miss until the re-encoded count is exact.
    """
    sep = " " if head else ""
    if tokenizer is None:
        return head + sep + _take(words, target - len(head.split()))
    need = target - (tokenizer.count(head) if head else 0)
    below = head  # the longest text found that is still short of the target
    below_n = target - need
    for _ in range(_MAX_ATTEMPTS):
        pool = tokenizer.encode(_take(words, need + 8))
        while len(pool) < need + 8:  # almost every word is >= 1 token, but be sure
            pool = tokenizer.encode(tokenizer.decode(pool) + " " + _take(words, need + 8))
        tried: set[int] = set()
        k = need
        # Converges in one or two steps; the neighbourhood scan catches oscillation at a cut.
        candidates = [need + d for d in sorted(range(-8, 9), key=abs)]
        while k not in tried and 0 < k <= len(pool):
            tried.add(k)
            text = head + sep + tokenizer.decode(pool[:k])
            n = tokenizer.count(text)
            if n == target:
                return text
            if below_n < n < target:
                below, below_n = text, n
            k += target - n
            if k in tried or not 0 < k <= len(pool):
                k = next((c for c in candidates if c not in tried and 0 < c <= len(pool)), k)
    # Last resort, for tokenizers whose pieces span word ends (a lone "▁" token, "the▁"): end the
    # best short text with one word in another form.
    for word in WORDS:
        for ending in (word, word.capitalize(), word + " ", word.capitalize() + " "):
            text = below + (" " if below else "") + ending
            if tokenizer.count(text) == target:
                return text
    raise ConfigError(
        f"could not build a prompt of exactly {target} tokens with this tokenizer; "
        "use --prompts FILE instead of synthetic prompts"
    )
