"""Continuous batching for a Hugging Face causal LM: one thread, many sequences, shared forward passes.

``BatchGenerator`` owns a model and runs a loop in a dedicated thread. Each iteration it drops
cancelled and finished sequences, prefills newly submitted prompts (one left-padded forward pass
for the group) and merges them into the running batch, then runs ONE decode forward pass for every
running sequence. So requests join and leave between steps and concurrent requests share every
forward pass.

The running batch is one left-padded cache (perfbench/servers/kv_cache.py: buffers with spare
columns, so a decode step writes one column instead of copying the cache): all rows have the
same cache length, padding is masked out by a 2-D attention mask, and explicit ``position_ids``
keep each row's positions right. Joining pads the shorter cache on the left; leaving selects the
remaining rows and trims columns that have become padding for every row.

Each step's logits become tokens in ``Sampler`` (perfbench/servers/sampling.py), which applies the
model's generation config and each request's parameters.

Tokens go back to the caller through the ``emit`` callback given at submission, called on the
generator thread with a ``Delta``: one per token whose text is complete. Text is detokenised
incrementally (perfbench/servers/output_text.py), so a token that ends inside a UTF-8 character is
held back and reported with the token that completes it, and stop strings are held back until
they are ruled out, so they never leak into a stream. The EOS token that ends a sequence counts
as a token but adds no text (as in vLLM).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import inspect
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from perfbench.servers.output_text import OutputText
from perfbench.servers.sampling import GenerationDefaults, Sampler, SamplingParams, generation_defaults

__all__ = ["BatchGenerator", "Delta", "GenerationDefaults", "SamplingParams", "Sequence"]

logger = logging.getLogger(__name__)

FINISH_STOP = "stop"  # EOS or a stop string
FINISH_LENGTH = "length"  # max_tokens or the model's context length reached
FINISH_ERROR = "error"  # the forward pass failed (e.g. out of memory); Delta.error says why

_IDLE_TRIM_S = 0.25  # how long the generator waits with nothing to do before handing memory back


@dataclass(frozen=True, slots=True)
class Delta:
    """New output of one sequence since its previous Delta."""

    text: str  # new text (may be empty while a character or a possible stop string is incomplete)
    new_tokens: int  # tokens generated since the previous Delta
    completion_tokens: int  # tokens generated so far
    finish_reason: str | None  # None while running, else FINISH_*
    error: str | None = None  # set with FINISH_ERROR


@dataclass(eq=False)
class Sequence:
    """One request's generation state; mutated only by the generator thread (except ``cancelled``)."""

    prompt_ids: list[int]
    params: SamplingParams
    emit: Callable[[Delta], None]
    cancelled: bool = False  # set by the submitter; the loop drops the row before its next step
    generated_ids: list[int] = field(default_factory=list)
    rng: Any = None  # torch.Generator of a request with a seed, else None (the batch's shared draw)
    output: OutputText = field(init=False)  # the text so far and how much of it was sent
    pending_tokens: int = 0  # tokens generated but not yet reported in a Delta
    finished: bool = False

    def __post_init__(self) -> None:
        self.output = OutputText.after(self.prompt_ids)


class BatchGenerator:
    """Continuous-batching generation loop for one model, run in its own thread."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 64,
        max_prefill_tokens: int = 8192,
        max_model_len: int | None = None,
        defaults: GenerationDefaults | None = None,
    ) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.max_batch_size = max_batch_size
        self.max_prefill_tokens = max_prefill_tokens
        self.max_model_len = max_model_len or _model_max_len(model)
        self.defaults = defaults or generation_defaults(model, tokenizer)
        self.eos_token_ids = frozenset(self.defaults.eos_token_ids)
        self.sampler = Sampler(torch, self.defaults, self.device)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # transformers 5 renamed the forward argument `past_key_values` to `cache`; support both.
        forward_args = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"
        self.forward_passes = 0  # prefill + decode passes run so far (tests check sharing)
        self.decode_steps = 0
        self.max_rows_seen = 0  # largest batch a decode step ran with
        # /metrics counters, written by the generator thread only.
        self.prompt_tokens_total = 0  # prompt tokens prefilled
        self.generation_tokens_total = 0  # tokens generated (EOS included)
        self.cache_tokens = 0  # KV-cache slots held: rows x columns, left padding included
        self._waiting: deque[Sequence] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # The running batch (row i of every tensor belongs to self._rows[i]).
        self._rows: list[Sequence] = []
        self._cache: Any = None
        self._mask: Any = None  # [B, T] long, 0 = padding
        self._next_pos: Any = None  # [B] position of the next input token
        self._last_ids: Any = None  # [B] the token to feed next

    # -- submitter side (any thread) ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="perfbench-generate", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def submit(self, prompt_ids: list[int], params: SamplingParams, emit: Callable[[Delta], None]) -> Sequence:
        """Queue a prompt; ``emit`` is called on the generator thread with each Delta."""
        seq = Sequence(prompt_ids=list(prompt_ids), params=params, emit=emit)
        with self._wake:
            self._waiting.append(seq)
            self._wake.notify()
        return seq

    @staticmethod
    def cancel(seq: Sequence) -> None:
        """Stop generating for ``seq``; its row is freed before the next step. No more Deltas."""
        seq.cancelled = True

    @property
    def running(self) -> int:
        """Batch slots held (a finished or cancelled row holds its slot until the next step)."""
        return len(self._rows)

    @property
    def running_requests(self) -> int:
        """Rows still generating: the /metrics gauge."""
        return sum(not (seq.finished or seq.cancelled) for seq in list(self._rows))

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def cache_capacity_tokens(self) -> int:
        """The most KV-cache slots the batch can hold (every row at the context length)."""
        return self.max_batch_size * self.max_model_len

    # -- generator thread -----------------------------------------------------------------------

    def _run(self) -> None:
        with self._torch.inference_mode():
            while True:
                with self._wake:
                    trimmed = False
                    while not self._stopping and not self._rows and not self._waiting:
                        # Idle for a moment (not between two requests of a closed loop): trim once.
                        if not self._wake.wait(timeout=None if trimmed else _IDLE_TRIM_S):
                            _release_free_memory()
                            trimmed = True
                    if self._stopping:
                        return
                    new = self._admit()
                try:
                    self._drop_done()
                    if new:
                        self._prefill(new)
                    if self._rows:
                        self._decode_step()
                except Exception as exc:  # noqa: BLE001 - fail the requests, keep serving
                    logger.exception("generation step failed")
                    self._fail_all(new, f"generation failed: {type(exc).__name__}: {exc}")

    def _admit(self) -> list[Sequence]:
        """Take waiting sequences while slots and the prefill token budget allow (lock held)."""
        free = self.max_batch_size - len(self._rows)
        new: list[Sequence] = []
        longest = 0
        while self._waiting and len(new) < free:
            seq = self._waiting[0]
            if seq.cancelled:
                self._waiting.popleft()
                continue
            longest_if = max(longest, len(seq.prompt_ids))
            if new and longest_if * (len(new) + 1) > self.max_prefill_tokens:
                break
            self._waiting.popleft()
            longest = longest_if
            new.append(seq)
        return new

    def _fail_all(self, new: list[Sequence], message: str) -> None:
        for seq in {*self._rows, *new}:
            if not seq.finished and not seq.cancelled:
                seq.finished = True
                seq.emit(Delta("", 0, len(seq.generated_ids), FINISH_ERROR, message))
        self._clear_batch()

    def _clear_batch(self) -> None:
        self._rows, self._cache, self._mask, self._next_pos, self._last_ids = [], None, None, None, None
        self.cache_tokens = 0

    def _drop_done(self) -> None:
        from perfbench.servers import kv_cache

        keep = [i for i, seq in enumerate(self._rows) if not (seq.finished or seq.cancelled)]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._clear_batch()
            return
        torch = self._torch
        index = torch.tensor(keep, device=self.device)
        self._rows = [self._rows[i] for i in keep]
        self._mask = self._mask.index_select(0, index)
        self._next_pos = self._next_pos.index_select(0, index)
        self._last_ids = self._last_ids.index_select(0, index)
        # Columns that are padding in every remaining row (a long sequence left) are dead weight.
        first_used = int(self._mask.any(dim=0).nonzero()[0])
        kv_cache.select_rows(self._cache, index, first_used)
        self._mask = self._mask[:, first_used:]
        self.cache_tokens = self._mask.numel()

    def _prefill(self, new: list[Sequence]) -> None:
        from perfbench.servers import kv_cache

        torch = self._torch
        longest = max(len(s.prompt_ids) for s in new)
        ids = torch.full((len(new), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(new), longest), dtype=torch.long)
        for row, seq in enumerate(new):
            n = len(seq.prompt_ids)
            ids[row, longest - n :] = torch.tensor(seq.prompt_ids, dtype=torch.long)
            mask[row, longest - n :] = 1
            seq.rng = self.sampler.seeded_rng(seq.params.seed) if seq.params.seed is not None else None
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = kv_cache.new_cache()
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
            **{self._cache_arg: cache},
        )  # fmt: skip
        self.forward_passes += 1
        self.prompt_tokens_total += sum(len(s.prompt_ids) for s in new)
        tokens = self.sampler(out.logits[:, -1, :], new, first=True)
        del out  # the prompt's logits and hidden states, before the batch's cache grows
        next_pos = mask.sum(-1)
        self._merge(new, kv_cache.adopt(cache), mask, next_pos, tokens)
        self._accept(new, tokens)

    def _merge(self, new: list[Sequence], cache: Any, mask: Any, next_pos: Any, tokens: Any) -> None:
        from perfbench.servers import kv_cache

        torch = self._torch
        if not self._rows:
            self._rows, self._cache, self._mask, self._next_pos, self._last_ids = list(new), cache, mask, next_pos, tokens
            return
        width = max(self._mask.shape[1], mask.shape[1])

        def pad_left(t: Any) -> Any:
            missing = width - t.shape[1]
            return t if missing == 0 else torch.cat([t.new_zeros((t.shape[0], missing)), t], dim=1)

        kv_cache.merge(self._cache, cache, width)
        self._mask = torch.cat([pad_left(self._mask), pad_left(mask)], dim=0)
        self._next_pos = torch.cat([self._next_pos, next_pos])
        self._last_ids = torch.cat([self._last_ids, tokens])
        self._rows.extend(new)
        self.cache_tokens = self._mask.numel()

    def _decode_step(self) -> None:
        torch = self._torch
        batch = len(self._rows)
        self._mask = torch.cat([self._mask, self._mask.new_ones((batch, 1))], dim=1)
        out = self.model(
            input_ids=self._last_ids[:, None],
            attention_mask=self._mask,
            position_ids=self._next_pos[:, None],
            use_cache=True,
            **{self._cache_arg: self._cache},
        )
        self.forward_passes += 1
        self.decode_steps += 1
        self.max_rows_seen = max(self.max_rows_seen, batch)
        self._next_pos = self._next_pos + 1
        self.cache_tokens = self._mask.numel()
        tokens = self.sampler(out.logits[:, -1, :], self._rows, first=False)
        self._last_ids = tokens
        self._accept(self._rows, tokens)

    def _accept(self, rows: list[Sequence], tokens: Any) -> None:
        for seq, token in zip(rows, tokens.tolist()):
            if seq.finished or seq.cancelled:
                continue
            seq.generated_ids.append(token)
            seq.pending_tokens += 1
            self.generation_tokens_total += 1
            finish = self._finish_reason(seq, token)
            ended_by_eos = finish == FINISH_STOP  # its text is not part of the output
            seq.output.add(self.tokenizer, None if ended_by_eos else token, final=finish is not None)
            stops = seq.params.stop if len(seq.generated_ids) >= seq.params.min_tokens else ()
            if stops and seq.output.cut_at_stop(stops):
                finish = FINISH_STOP
            self._emit(seq, finish, stops)

    def _finish_reason(self, seq: Sequence, token: int) -> str | None:
        params = seq.params
        count = len(seq.generated_ids)
        if token in self.eos_token_ids and not params.ignore_eos and count >= params.min_tokens:
            return FINISH_STOP
        if count >= params.max_tokens or len(seq.prompt_ids) + count >= self.max_model_len:
            return FINISH_LENGTH
        return None

    def _emit(self, seq: Sequence, finish: str | None, stops: tuple[str, ...]) -> None:
        text = seq.output.take(stops if finish is None else (), final=finish is not None)
        if text is None:
            return  # nothing to say yet; the tokens are reported with the next text
        if finish is not None:
            seq.finished = True
        seq.emit(Delta(text, seq.pending_tokens, len(seq.generated_ids), finish))
        seq.pending_tokens = 0


def _release_free_memory() -> None:
    """Hand the heap's free pages back to the OS while the generator is idle.

    Tensors of ever-changing sizes come and go at every step; glibc keeps freed blocks in its
    arenas, so without this the RSS after a load stays near the load's peak and drifts with the
    mix of sizes it has seen. Trimming only when idle costs no step any time.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


_LIBC = _load_libc()


def _model_max_len(model: Any) -> int:
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(getattr(text_config, "max_position_embeddings", None) or 4096)
