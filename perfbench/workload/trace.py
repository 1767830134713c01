"""Trace replay (``--trace FILE``): recorded requests sent again on their own schedule.

A trace is JSONL, one request a line, in one of two forms:

- Mooncake style: ``{"timestamp": 3052, "input_length": 7234, "output_length": 794, "hash_ids": [0, 28, 29]}``.
  Each hash id stands for one block of ``--trace-block-tokens`` tokens (default 512), in order;
  equal ids get identical text, so requests that shared a prefix in production (and a server's
  prefix cache) share it here byte for byte. Tokens past the row's blocks are its own.
- plain: ``{"timestamp": 0, "prompt": "..."}`` or ``{"timestamp": 0, "messages": [...]}``, with an
  optional ``output_length`` (or ``max_tokens``).

Times: ``timestamp`` is milliseconds. Rows are replayed in timestamp order; the first replayed
row is due at once, every other at its distance from the first divided by ``--trace-speedup``,
as absolute deadlines from one start (so lag shows as queue time, never as a shifted schedule).
``--trace-window START:END`` keeps the rows from START to END seconds after the trace's
earliest timestamp (END excluded; either end may be left out).

Lengths: ``output_length`` becomes the request's exact output length (max_tokens = min_tokens,
ignore_eos). With a tokenizer a Mooncake prompt is exactly ``input_length`` tokens, counted
without special tokens as synthetic prompts are (a chat template adds its own); each block is
exactly a block's tokens alone, and the row's last part is fitted so the whole is exact. Without a
tokenizer a token is a word: exact for the built-in mock, which counts whitespace words, and
shorter than asked for a real model (whose tokenizer makes more than one token of many words).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from perfbench.core.errors import BadValue, ConfigError, shown_text
from perfbench.workload.lengths import MAX_TOKENS_PER_REQUEST
from perfbench.workload.prompts import Prompt, exact_text, prompt_record, word_stream
from perfbench.workload.tokens import Tokenizer

DEFAULT_BLOCK_TOKENS = 512  # Mooncake's block size
_WINDOW_FORMS = "give START:END in seconds of the trace, e.g. 60:120 (60: for the rest, :30 for the first 30 s)"
_ROW_EXAMPLE = '{"timestamp": 0, "input_length": 512, "output_length": 64} or {"timestamp": 0, "prompt": "..."}'


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One request of a trace, as read."""

    where: str  # "FILE:LINE", for messages
    timestamp_ms: float
    input_length: int | None  # Mooncake rows: the prompt's length in tokens
    output_length: int | None  # the answer's exact length; None: --max-tokens or the default
    hash_ids: tuple[int, ...] = ()  # Mooncake rows: the prompt's blocks, in order
    prompt: Prompt | None = None  # plain rows: the prompt given


@dataclass(frozen=True, slots=True)
class Trace:
    """The rows to replay, in time order, and when each is due (seconds from the step's start)."""

    rows: tuple[TraceRow, ...]
    offsets_s: tuple[float, ...]

    @property
    def rate_req_s(self) -> float:
        """The mean arrival rate, for the step's label (all rows at one instant: the row count)."""
        span = self.offsets_s[-1]
        return (len(self.rows) - 1) / span if span > 0 else float(len(self.rows))


def parse_window(text: str) -> tuple[float, float | None]:
    """``"60:120"`` -> (60.0, 120.0); ``"60:"`` -> (60.0, None); ``":30"`` -> (0.0, 30.0)."""
    start_text, sep, end_text = str(text).partition(":")
    try:
        start = float(start_text) if start_text.strip() else 0.0
        end = float(end_text) if end_text.strip() else None
    except ValueError:
        start, end = math.nan, None
    if not sep or not math.isfinite(start) or start < 0 or (end is not None and not (math.isfinite(end) and end > start)):
        raise ConfigError(f"--trace-window {shown_text(str(text))}: {_WINDOW_FORMS}, with END above START")
    return start, end


def window_setting(value: Any) -> str:
    """The option table's reader: "START:END", or a YAML list [START, END] -> "START:END"."""
    if isinstance(value, list) and len(value) == 2:
        value = ":".join("" if v is None else f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "?"
                         for v in value)
    if not isinstance(value, str):  # YAML reads an unquoted 1:30 as the number 90
        raise BadValue(f'expected "START:END" in quotes or [START, END], got {value!r}; {_WINDOW_FORMS}')
    try:
        parse_window(value)
    except ConfigError as exc:
        raise BadValue(str(exc).removeprefix("--trace-window ")) from None
    return value


def read_trace(path: str | Path, *, speedup: float = 1.0, window: str | None = None,
               block_tokens: int = DEFAULT_BLOCK_TOKENS) -> Trace:
    """The rows of ``path`` to replay and their due times.

    Raises:
        ConfigError: the file is missing or unreadable, a line is bad (named by file and line), or
            the window holds no row.
    """
    path = Path(path).expanduser()
    try:
        stat = path.stat()
        if not path.is_file():  # /dev/zero or a FIFO would be read forever
            raise ConfigError(f"--trace {path} is not a regular file; pass a JSONL trace")
    except FileNotFoundError:
        raise ConfigError(f"trace file {path} not found; check the path given to --trace") from None
    except OSError as exc:
        raise ConfigError(f"cannot read trace file {path} ({exc.strerror}); check the path and its permissions") from None
    # Read once per file version: the config (the step's size) and the run (prompts, schedule) both ask.
    return _read(str(path), stat.st_mtime_ns, stat.st_size, speedup, window, block_tokens)


@functools.lru_cache(maxsize=4)
def _read(path: str, _mtime_ns: int, _size: int, speedup: float, window: str | None, block_tokens: int) -> Trace:
    try:
        with open(path, encoding="utf-8") as fh:
            rows = [_row(line, f"{path}:{number}", block_tokens) for number, line in enumerate(fh, start=1) if line.strip()]
    except UnicodeDecodeError:
        raise ConfigError(f"trace file {path} is not UTF-8 text; save it as UTF-8 JSONL") from None
    except OSError as exc:
        raise ConfigError(f"cannot read trace file {path} ({exc.strerror}); check the path and its permissions") from None
    if not rows:
        raise ConfigError(f"trace file {path} has no rows; write one JSON object per line like {_ROW_EXAMPLE}")
    rows.sort(key=lambda row: row.timestamp_ms)  # stable: rows of one instant keep the file's order
    earliest = rows[0].timestamp_ms
    if window is not None:
        start, end = parse_window(window)
        kept = [row for row in rows if start * 1000 <= row.timestamp_ms - earliest and (end is None or row.timestamp_ms - earliest < end * 1000)]
        if not kept:
            span_s = (rows[-1].timestamp_ms - earliest) / 1000
            raise ConfigError(f"trace file {path} has no rows in --trace-window {window} (its rows span 0-{span_s:g} s); "
                              "choose a window inside it")
        rows = kept
    first = rows[0].timestamp_ms
    return Trace(rows=tuple(rows), offsets_s=tuple((row.timestamp_ms - first) / 1000 / speedup for row in rows))


def _row(line: str, where: str, block_tokens: int) -> TraceRow:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ConfigError(f"{where}: bad JSON ({getattr(exc, 'msg', exc)}); write one JSON object per line like {_ROW_EXAMPLE}") from None
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{where}: expected a JSON object like {_ROW_EXAMPLE}")
    stamp = obj.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp) or stamp < 0:
        raise ConfigError(f'{where}: "timestamp" must be milliseconds >= 0, got {shown_text(repr(stamp))}; give each row one')
    output = _length(obj, "output_length", where)
    if any(key in obj for key in ("prompt", "text", "messages")):
        prompt = prompt_record(obj, where)
        return TraceRow(where, float(stamp), None, output if output is not None else prompt.max_tokens, prompt=prompt)
    length = _length(obj, "input_length", where)
    if length is None:
        raise ConfigError(f'{where}: no "input_length" and no "prompt" or "messages"; give each row one of them')
    hash_ids = obj.get("hash_ids", [])
    if not isinstance(hash_ids, list) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 0 for h in hash_ids):
        raise ConfigError(f'{where}: "hash_ids" must be a list of whole numbers >= 0, got {shown_text(repr(hash_ids))}')
    if len(hash_ids) > math.ceil(length / block_tokens):
        raise ConfigError(f"{where}: {len(hash_ids)} hash_ids of {block_tokens} tokens do not fit in input_length {length}; "
                          "set --trace-block-tokens to the trace's block size")
    return TraceRow(where, float(stamp), length, output, tuple(hash_ids))


def _length(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_PER_REQUEST:
        raise ConfigError(f'{where}: "{key}" must be a whole number from 1 to {MAX_TOKENS_PER_REQUEST:,}, got {shown_text(repr(value))}')
    return value


class _Blocks:
    """Each hash id's block text, made once: equal ids, identical text."""

    def __init__(self, tokenizer: Tokenizer | None, block_tokens: int, seed: int) -> None:
        self.tokenizer, self.size, self.seed = tokenizer, block_tokens, seed
        self._texts: dict[int, str] = {}

    def words(self, hash_id: int) -> Iterator[str]:
        return word_stream(np.random.default_rng([self.seed, 0, hash_id]))

    def text(self, hash_id: int) -> str:
        if hash_id not in self._texts:
            self._texts[hash_id] = exact_text(self.tokenizer, "", self.words(hash_id), self.size)
        return self._texts[hash_id]

    def count(self, text: str) -> int:
        return self.tokenizer.count(text) if self.tokenizer is not None else len(text.split())


def trace_prompts(rows: Sequence[TraceRow], *, tokenizer: Tokenizer | None, block_tokens: int = DEFAULT_BLOCK_TOKENS,
                  seed: int = 0) -> list[Prompt]:
    """One prompt per row: a plain row's own, a Mooncake row's built from its blocks (module docstring)."""
    blocks = _Blocks(tokenizer, block_tokens, seed)
    prompts = []
    for index, row in enumerate(rows):
        if row.prompt is not None:
            prompts.append(replace(row.prompt, max_tokens=row.output_length))
        else:
            prompts.append(_built_prompt(row, index, blocks))
    return prompts


def _built_prompt(row: TraceRow, index: int, blocks: _Blocks) -> Prompt:
    target = row.input_length
    assert target is not None
    full = min(len(row.hash_ids), target // blocks.size)
    while True:
        head = " ".join(blocks.text(h) for h in row.hash_ids[:full])
        head_tokens = blocks.count(head)
        if head_tokens <= target or full == 0:
            break
        full -= 1  # tokens merged across a block's edge: the last whole block becomes the fitted part
    if head_tokens == target:
        text = head
    else:
        # A partial block starts as that block does; past the row's blocks, the words are the row's own.
        rest = blocks.words(row.hash_ids[full]) if full < len(row.hash_ids) else word_stream(
            np.random.default_rng([blocks.seed, 1, index]))
        text = exact_text(blocks.tokenizer, head, rest, target)
    return Prompt(text, None, target if blocks.tokenizer is not None else None, row.output_length)


# Settings a trace replaces, and what to do instead: (dest, flag, why).
_REPLACED = (
    ("rate", "--rate", "the trace's timestamps set the arrivals; --trace-speedup replays faster"),
    ("arrivals", "--arrivals", "the trace's timestamps set the arrivals"),
    ("burstiness", "--burstiness", "the trace's timestamps set the arrivals"),
    ("ramp_up_s", "--ramp-up", "the trace's timestamps set the arrivals"),
    ("number", "--number", "the trace's rows are the requests; --trace-window replays a slice"),
    ("duration_s", "--duration", "the trace's rows are the requests; --trace-window replays a slice"),
    ("search", "--search", "a trace is one fixed schedule, not a load to search"),
    ("max_failure_rate", "--max-failure-rate", "a trace is one step, not a ladder to stop"),
    ("warmup", "--warmup", "warm-up would send the trace's first rows twice and warm their prefix cache"),
    ("prompts", "--prompts", "the trace brings the prompts"),
    ("input_tokens", "--input-tokens", "the trace's input_length sets each prompt's length"),
    ("output_tokens", "--output-tokens", "the trace's output_length sets each answer's length"),
    ("shared_prefix_tokens", "--shared-prefix-tokens", "the trace's hash_ids set the shared prefixes"),
    ("prefix_groups", "--prefix-groups", "the trace's hash_ids set the shared prefixes"),
)
_TRACE_ONLY = (("trace_speedup", "--trace-speedup"), ("trace_window", "--trace-window"), ("trace_block_tokens", "--trace-block-tokens"))


def check_trace_settings(settings: Mapping[str, Any]) -> None:
    """Refuse settings a trace replay makes meaningless, and trace settings without a trace."""
    if not settings.get("trace"):
        for dest, flag in _TRACE_ONLY:
            if settings.get(dest) is not None:
                raise ConfigError(f"{flag} shapes a trace replay; add --trace FILE, or drop {flag}")
        return
    for dest, flag, why in _REPLACED:
        if settings.get(dest) not in (None, 0):
            raise ConfigError(f"{flag} does nothing with --trace ({why}); drop {flag}")


def replay_load(settings: Mapping[str, Any], concurrency: Sequence[int] | None) -> tuple[int | None, int, float]:
    """The one open-loop step of a trace run: (cap on requests in flight or None, rows, mean rate)."""
    if concurrency is not None and len(concurrency) > 1:
        raise ConfigError("--concurrency with --trace caps the requests in flight of its one step; give one value, or none")
    trace = read_trace(settings["trace"], speedup=settings.get("trace_speedup") or 1.0, window=settings.get("trace_window"),
                       block_tokens=settings.get("trace_block_tokens") or DEFAULT_BLOCK_TOKENS)
    return (concurrency[0] if concurrency else None), len(trace.rows), trace.rate_req_s
