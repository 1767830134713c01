"""Multi-turn sessions: conversations of user turns, each turn sent with the whole history so far.

A session is one conversation: its user turns come from a conversations file or are synthetic
(``--turns``), and the assistant messages between them are the server's *actual* answers, so a
prompt grows as it would in production and prefix caches are exercised. Turn k+1 is due when
turn k's answer ended plus a think time (``--think-time``), which is its t0 (DESIGN's timing rule:
the scheduled time, so client lag shows as queue time).

Synthetic sessions never repeat: session s's conversation, its turns' lengths and its think times
are made from (seed, s) alone. A conversations file's conversations are taken in turn, cycled
when the run has more sessions than the file has conversations.

This module holds what a session sends; the engine (perfbench/engine/engine.py) runs sessions.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from perfbench.core.errors import ConfigError
from perfbench.workload.lengths import LengthDistribution
from perfbench.core.errors import BadValue
from perfbench.workload.lengths import DATASET_LENGTHS
from perfbench.workload.prompts import HUMAN_SPEAKERS, Prompt, SyntheticPrompts

MAX_TURNS = 1_000  # turns of one session, at most

_SYSTEM = ("system",)
_THINK_FORMS = "use seconds S, uniform:MIN-MAX or exponential:MEAN (e.g. 0, 2.5, uniform:1-3, exponential:2)"
_SECONDS = r"\s*(\d+(?:\.\d*)?|\.\d+)\s*"


@dataclass(frozen=True, slots=True)
class Conversation:
    """One session's script: what the user says, turn by turn (the answers come from the server)."""

    user_turns: tuple[Any, ...]  # each turn's user message content (a string, or a list of content parts)
    system: tuple[dict, ...] = ()  # messages before the first turn (a system prompt), sent with every turn
    max_tokens: tuple[int | None, ...] = ()  # each turn's exact output length (--output-tokens), else empty


@dataclass(frozen=True, slots=True)
class ThinkTime:
    """Seconds between an answer's end and the next turn's due time."""

    kind: str  # "fixed", "uniform" or "exponential"
    low_s: float  # fixed: the value; uniform: MIN; exponential: 0
    high_s: float  # fixed: the value; uniform: MAX; exponential: the mean

    @classmethod
    def parse(cls, text: Any) -> ThinkTime:
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        if not isinstance(text, str):
            raise ConfigError(f"--think-time {text!r}: {_THINK_FORMS}")
        spec = text.strip().lower()
        if m := re.fullmatch(_SECONDS, spec):
            return cls("fixed", float(m[1]), float(m[1]))
        if m := re.fullmatch(rf"uniform:{_SECONDS}-{_SECONDS}", spec):
            low, high = float(m[1]), float(m[2])
            if high < low:
                raise ConfigError(f"--think-time {text}: MAX {high:g} is below MIN {low:g}; swap them")
            return cls("uniform", low, high)
        if m := re.fullmatch(rf"(?:exponential|exp):{_SECONDS}", spec):
            return cls("exponential", 0.0, float(m[1]))
        raise ConfigError(f"--think-time {text!r}: {_THINK_FORMS}")

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"{self.low_s:g}"
        if self.kind == "uniform":
            return f"uniform:{self.low_s:g}-{self.high_s:g}"
        return f"exponential:{self.high_s:g}"

    def sample_s(self, count: int, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "fixed":
            return np.full(count, self.low_s)
        if self.kind == "uniform":
            return rng.uniform(self.low_s, self.high_s, count)
        return rng.exponential(self.high_s, count)


def think_time_setting(value: Any) -> str:
    """A scenario's or flag's think time, checked, in its text form."""
    try:
        return str(ThinkTime.parse(value))
    except ConfigError as exc:
        raise BadValue(str(exc).removeprefix("--think-time ")) from None


# Settings a session run refuses: (key, flag, why).
_NOT_WITH_SESSIONS = (
    ("prompts", "--prompts", "sessions take their turns from --conversations or --turns"),
    ("trace", "--trace", "a trace replays single requests on its own schedule"),
    ("shared_prefix_tokens", "--shared-prefix-tokens", "a session's turns share its own history as their prefix"),
    ("prefix_groups", "--prefix-groups", "a session's turns share its own history as their prefix"),
    ("ray", "--ray", "sessions run in one process for now"),
)


def check_session_settings(settings: Mapping[str, Any], chat_input: bool, api: str) -> None:
    """Refuse session settings without sessions, and settings a session run cannot honour."""
    sessions = settings.get("turns") or settings.get("conversations")
    if not sessions:
        if settings.get("think_time") is not None:
            raise ConfigError("--think-time paces the turns of a session; add --turns N or --conversations FILE, or drop --think-time")
        return
    if settings.get("turns") and settings.get("conversations"):
        raise ConfigError("--turns and --conversations both set the sessions' turns; give one of them")
    if not chat_input:
        raise ConfigError(f"multi-turn sessions send a chat history, which {api} does not take; "
                          "use --api openai-chat or openai-responses")
    for key, flag, why in _NOT_WITH_SESSIONS:
        if settings.get(key) not in (None, 0, False):
            raise ConfigError(f"{flag} does not combine with sessions ({why}); drop {flag}")
    workers = settings.get("workers")
    if workers not in (None, 1):
        raise ConfigError("sessions run in one process for now: drop --workers (or set it to 1)")
    if settings.get("conversations") and settings.get("input_tokens"):
        raise ConfigError("--input-tokens shapes synthetic turns, but --conversations gives the turns; drop --input-tokens")
    if settings.get("output_tokens") == DATASET_LENGTHS:
        raise ConfigError("--output-tokens dataset takes lengths from --prompts, which sessions do not use; give a length or drop it")
    turns = settings.get("turns")
    if turns:
        high = LengthDistribution.parse(str(turns), name="--turns").high
        if high is None or high > MAX_TURNS:
            raise ConfigError(f"--turns {turns} can exceed {MAX_TURNS} turns; give a bounded distribution (normal:M,S,MIN,MAX)")


# --------------------------------------------------------------------------- conversations files


def load_conversations(path: str | Path) -> list[Conversation]:
    """A conversations file: JSONL (one conversation a line) or a JSON list of them.

    A conversation is a list of user messages (``["Hi", "And then?"]``), an object with ``turns``
    (the same list), OpenAI-style ``messages`` (user turns taken in order, leading system
    messages kept; assistant messages dropped: the server's own answers replace them), or a
    ShareGPT entry (``conversations`` with ``from``/``value``: the human turns).
    """
    path = Path(path).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"conversations file {path} does not exist; check --conversations") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read conversations file {path} ({exc}); check --conversations") from None
    entries: list[tuple[Any, str]] = []
    stripped = content.lstrip()
    whole: Any = None
    if stripped.startswith("["):
        try:
            whole = json.loads(content)
        except json.JSONDecodeError:
            whole = None  # maybe JSONL whose first line is a list
    if isinstance(whole, list) and whole and all(isinstance(turn, str) for turn in whole):
        entries = [(whole, str(path))]  # one conversation: a list of user turns
    elif isinstance(whole, list):
        entries = [(entry, f"{path}: entry {i}") for i, entry in enumerate(whole, start=1)]
    else:
        for lineno, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append((json.loads(line), f"{path}:{lineno}"))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{lineno}: bad JSON ({exc.msg} at column {exc.colno}); "
                                  "write one conversation per line") from None
    conversations = [conversation_of(entry, where) for entry, where in entries]
    if not conversations:
        raise ConfigError(f"conversations file {path} holds no conversation; add one per line, e.g. [\"Hi\", \"Tell me more\"]")
    return conversations


def conversation_of(entry: Any, where: str) -> Conversation:
    """One conversation from a file entry (see ``load_conversations``)."""
    if isinstance(entry, Mapping):
        for key in ("turns", "messages", "conversations"):
            if key in entry:
                entry = entry[key]
                break
        else:
            raise ConfigError(f'{where}: a conversation needs "turns", "messages" or "conversations"; '
                              'or write the user turns as a list, e.g. ["Hi", "Tell me more"]')
    if not isinstance(entry, list) or not entry:
        raise ConfigError(f"{where}: a conversation is a non-empty list of turns, got {entry!r:.60}")
    system: list[dict] = []
    turns: list[Any] = []
    for j, turn in enumerate(entry, start=1):
        if isinstance(turn, str):
            if turn.strip():
                turns.append(turn)
            continue
        if not isinstance(turn, Mapping):
            raise ConfigError(f"{where}, turn {j}: expected a string or a message object, got {turn!r:.60}")
        speaker = turn.get("role", turn.get("from"))
        text = turn.get("content", turn.get("value"))
        if not isinstance(speaker, str) or not isinstance(text, (str, list)):
            raise ConfigError(f'{where}, turn {j}: a message needs "role" and "content" (or "from" and "value"), '
                              f"got {turn!r:.60}")
        speaker = speaker.lower()
        if speaker in _SYSTEM and not turns:
            system.append({"role": "system", "content": text})
        elif speaker in HUMAN_SPEAKERS and (not isinstance(text, str) or text.strip()):
            turns.append(text)
    if not turns:
        raise ConfigError(f"{where}: the conversation has no user turn; give at least one")
    if len(turns) > MAX_TURNS:
        raise ConfigError(f"{where}: {len(turns)} turns, above {MAX_TURNS}; split the conversation")
    return Conversation(tuple(turns), tuple(system))


# Random streams of one --seed beside the prompts' (prompts.py): sessions' turn counts, think times.
_TURNS_STREAM = 3
_THINK_STREAM = 4
_TURN_BLOCK = 1024  # sessions whose turn counts are drawn together (a step's expected requests add up many)
_CACHED_SESSIONS = 4096  # synthetic conversations and think times kept made, most recent first


class SyntheticConversations:
    """Session ``s``'s conversation, made from ``(seed, s)`` alone: its number of turns drawn from
    ``turns``, turn ``j`` being synthetic prompt ``s * MAX_TURNS + j`` of ``prompts`` (its own
    words and lengths, and output length when ``prompts`` has ``output_tokens``), so no session
    repeats another's turns however many a run has."""

    def __init__(self, turns: LengthDistribution, prompts: SyntheticPrompts) -> None:
        self.turns = turns
        self.prompts = prompts
        self._block: tuple[int, list[int]] = (-1, [])  # the turn counts of the block last asked for

    def turn_count(self, number: int) -> int:
        block = number // _TURN_BLOCK
        if self._block[0] != block:
            rng = np.random.default_rng((self.prompts.seed, _TURNS_STREAM, block))
            self._block = (block, [min(int(n), MAX_TURNS) for n in self.turns.sample(_TURN_BLOCK, rng)])
        return self._block[1][number % _TURN_BLOCK]

    def __getitem__(self, number: int) -> Conversation:
        prompts = [self.prompts[number * MAX_TURNS + turn] for turn in range(self.turn_count(number))]
        lengths = tuple(p.max_tokens for p in prompts if p.max_tokens is not None)
        return Conversation(tuple(p.text for p in prompts), (), lengths)


def with_output_lengths(conversations: list[Conversation], lengths: LengthDistribution, seed: int) -> list[Conversation]:
    """Each turn given an exact output length drawn from ``lengths`` (--output-tokens)."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for conversation in conversations:
        drawn = lengths.sample(len(conversation.user_turns), rng)
        out.append(Conversation(conversation.user_turns, conversation.system, tuple(int(n) for n in drawn)))
    return out


# --------------------------------------------------------------------------- what the engine runs


BodyBuilder = Callable[[Prompt, int | None], tuple[bytes, int | None]]  # (messages as a Prompt, exact length) -> (body, input tokens)


class SessionWorkload:
    """The sessions of a run: what session ``number`` says (synthetic conversations that never
    repeat, or a file's in turn), its think times, and how a turn's body is built."""

    def __init__(self, conversations: Sequence[Conversation] | SyntheticConversations, think: ThinkTime, seed: int,
                 build: BodyBuilder) -> None:
        self.conversations = conversations
        self.think = think
        self.seed = seed
        self.build = build
        self._made: OrderedDict[int, tuple[Conversation, tuple[float, ...]]] = OrderedDict()  # number -> (script, think s)
        self._first_turns: list[int] = []  # a file's conversations: where each one's turns start, counted over all of them
        if not isinstance(conversations, SyntheticConversations):
            total = 0
            for conversation in conversations:
                self._first_turns.append(total)
                total += len(conversation.user_turns)

    @property
    def file_turns(self) -> int | None:
        """A file's conversations: their user turns, all counted (``prompt_key`` numbers them); None: synthetic."""
        if isinstance(self.conversations, SyntheticConversations):
            return None
        return sum(len(conversation.user_turns) for conversation in self.conversations)

    def _script(self, number: int) -> tuple[Conversation, tuple[float, ...]]:
        made = self._made.get(number)
        if made is None:
            if isinstance(self.conversations, SyntheticConversations):
                conversation = self.conversations[number]
            else:
                conversation = self.conversations[number % len(self.conversations)]
            rng = np.random.default_rng((self.seed, _THINK_STREAM, number))  # each session its own pauses
            made = (conversation, tuple(self.think.sample_s(len(conversation.user_turns), rng).tolist()))
            self._made[number] = made
            if len(self._made) > _CACHED_SESSIONS:
                self._made.popitem(last=False)
        else:
            self._made.move_to_end(number)
        return made

    def conversation(self, number: int) -> Conversation:
        """Session ``number``'s script."""
        return self._script(number)[0]

    def turn_count(self, number: int) -> int:
        """User turns of session ``number`` (without making a synthetic one's text)."""
        if isinstance(self.conversations, SyntheticConversations):
            return self.conversations.turn_count(number)
        return len(self.conversations[number % len(self.conversations)].user_turns)

    def think_ns(self, number: int, turn: int) -> int:
        """The pause before turn ``turn`` (>= 1) of session ``number``."""
        return round(self._script(number)[1][turn] * 1e9)

    def turns(self, first: int, count: int) -> int:
        """Requests that sessions ``first .. first+count-1`` send when every turn succeeds."""
        return sum(self.turn_count(first + k) for k in range(count))

    def prompt_key(self, number: int, turn: int) -> int | None:
        """Which of a file's user turns turn ``turn`` of session ``number`` sends (numbered over the
        whole file); None for synthetic sessions, whose turns are all their own."""
        if not self._first_turns:
            return None
        return self._first_turns[number % len(self._first_turns)] + turn

    def body(self, number: int, turn: int, history: Sequence[dict]) -> tuple[bytes, int | None]:
        """Turn ``turn`` of session ``number``'s body (``history`` ends with this turn's user message)."""
        conversation = self.conversation(number)
        exact = conversation.max_tokens[turn] if conversation.max_tokens else None
        return self.build(Prompt(None, tuple(history), None), exact)


def session_workload(conversations: Sequence[Conversation] | SyntheticConversations, think_time: str | None, seed: int,
                     build: BodyBuilder) -> SessionWorkload:
    """The run's sessions; each session's think times are drawn from (seed, session) (same seed, same pauses)."""
    return SessionWorkload(conversations, ThinkTime.parse(think_time or "0"), seed, build)
