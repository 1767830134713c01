"""One token per row from one step's logits, with the model's generation config and each request's parameters.

``GenerationDefaults`` is what the model's ``generation_config.json`` says: its EOS ids (one or a
list), ``suppress_tokens`` (never generated), ``begin_suppress_tokens`` (not as the first token),
and the defaults a request that does not set them gets: ``do_sample`` (``false`` means greedy, as
in transformers), ``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``,
``max_new_tokens``. Where the file is silent, the OpenAI defaults hold (sampling at temperature
1, no top-k, top-p or penalty), as vLLM does; a request's own values always win.

``Sampler`` applies them in transformers' order: the repetition penalty, EOS masked until
``min_tokens``, suppressed tokens, then (sampled rows only) temperature, top-k and top-p, and one
draw per row. The draw is the exponential race (the argmax of p / Exp(1) noise, as vLLM draws),
so rows without a seed share one batched draw, and a seeded row's noise comes from its own
generator: the same seed and prompt give the same output whatever else is in the batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol, Sequence


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """What one request asks of generation (OpenAI/vLLM request fields)."""

    max_tokens: int  # exact number of tokens unless EOS or a stop string comes first
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling mass, 1 = off
    top_k: int = 0  # keep the k most likely tokens, 0 = off
    repetition_penalty: float = 1.0  # transformers' rule for every prompt or output token; 1 = off
    seed: int | None = None  # per-request RNG seed; same seed + same prompt = same output
    stop: tuple[str, ...] = ()  # stop strings; the text ends before the first one found
    ignore_eos: bool = False  # keep generating past EOS (fixed-length benchmarks)
    min_tokens: int = 0  # EOS and stop strings are ignored until this many tokens


@dataclass(frozen=True, slots=True)
class GenerationDefaults:
    """The model's generation config as the server applies it (see the module docstring)."""

    eos_token_ids: tuple[int, ...] = ()  # generation config's and tokenizer's, merged
    suppress_token_ids: tuple[int, ...] = ()  # never generated
    begin_suppress_token_ids: tuple[int, ...] = ()  # never the first generated token
    temperature: float = 1.0  # 0 when the file says do_sample: false
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_new_tokens: int | None = None  # a request's max_tokens when it sends none (else the room left)


def _ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    return tuple(int(i) for i in value)


def generation_defaults(model: Any, tokenizer: Any) -> GenerationDefaults:
    """The defaults of ``model.generation_config`` (read from generation_config.json by from_pretrained).

    transformers 5 leaves every field the file does not set at None, so None means "silent".
    """
    config = getattr(model, "generation_config", None)

    def get(name: str) -> Any:
        return getattr(config, name, None)

    eos = sorted({*_ids(get("eos_token_id")), *_ids(tokenizer.eos_token_id)})
    greedy = get("do_sample") is False
    temperature = get("temperature")
    return GenerationDefaults(
        eos_token_ids=tuple(eos),
        suppress_token_ids=_ids(get("suppress_tokens")),
        begin_suppress_token_ids=_ids(get("begin_suppress_tokens")),
        temperature=0.0 if greedy else float(temperature if temperature is not None else 1.0),
        top_p=float(get("top_p") if get("top_p") is not None else 1.0),
        top_k=int(get("top_k") or 0),
        repetition_penalty=float(get("repetition_penalty") or 1.0),
        max_new_tokens=int(get("max_new_tokens")) if get("max_new_tokens") else None,
    )


class Row(Protocol):
    """What the sampler reads of a sequence."""

    params: SamplingParams
    prompt_ids: list[int]
    generated_ids: list[int]
    rng: Any  # torch.Generator for a seeded request, else None


class Sampler:
    """Turns ``[rows, vocab]`` logits into one token id per row (see the module docstring)."""

    def __init__(self, torch: Any, defaults: GenerationDefaults, device: Any) -> None:
        self._torch = torch
        self.defaults = defaults
        self.device = device
        self._eos = torch.tensor(defaults.eos_token_ids, dtype=torch.long, device=device)
        self._masks: dict[int, tuple[Any, Any]] = {}  # vocab size -> (suppress, begin-suppress) masks
        self.rng = torch.Generator(device=device)  # the unseeded rows' draws
        self.rng.manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)

    def seeded_rng(self, seed: int) -> Any:
        rng = self._torch.Generator(device=self.device)
        rng.manual_seed(seed)
        return rng

    def _suppress_masks(self, vocab: int) -> tuple[Any, Any]:
        masks = self._masks.get(vocab)
        if masks is None:
            masks = tuple(self._mask(ids, vocab) for ids in (self.defaults.suppress_token_ids, self.defaults.begin_suppress_token_ids))
            self._masks[vocab] = masks  # type: ignore[assignment]
        return masks  # type: ignore[return-value]

    def _mask(self, ids: tuple[int, ...], vocab: int) -> Any:
        ids = tuple(i for i in ids if 0 <= i < vocab)
        if not ids:
            return None
        mask = self._torch.zeros(vocab, dtype=self._torch.bool, device=self.device)
        mask[list(ids)] = True
        return mask

    def __call__(self, logits: Any, rows: Sequence[Row], *, first: bool) -> Any:
        """One token per row; ``first``: every row is choosing its first output token."""
        torch = self._torch
        logits = logits.float()
        for i, row in enumerate(rows):
            penalty = row.params.repetition_penalty
            if penalty != 1.0:
                seen = torch.tensor(row.prompt_ids + row.generated_ids, dtype=torch.long, device=logits.device)
                scores = logits[i, seen]
                logits[i, seen] = torch.where(scores < 0, scores * penalty, scores / penalty)
        early = [i for i, row in enumerate(rows) if len(row.generated_ids) < row.params.min_tokens]
        if early and len(self._eos):
            logits[torch.tensor(early, device=logits.device)[:, None], self._eos[None, :]] = float("-inf")
        suppress, begin_suppress = self._suppress_masks(logits.shape[-1])
        if suppress is not None:
            logits.masked_fill_(suppress, float("-inf"))
        if first and begin_suppress is not None:
            logits.masked_fill_(begin_suppress, float("-inf"))
        tokens = logits.argmax(dim=-1)
        sampled = [i for i, row in enumerate(rows) if row.params.temperature > 0]
        if sampled:
            chosen = self._draw(logits, [rows[i] for i in sampled], sampled)
            if len(sampled) == len(rows):
                return chosen
            tokens[torch.tensor(sampled, device=logits.device)] = chosen
        return tokens

    def _draw(self, logits: Any, rows: list[Row], index: list[int]) -> Any:
        torch = self._torch
        device = logits.device
        if len(index) < logits.shape[0]:
            logits = logits.index_select(0, torch.tensor(index, device=device))
        params = [row.params for row in rows]
        logits = logits / torch.tensor([p.temperature for p in params], device=device)[:, None]
        vocab = logits.shape[-1]
        top_ks = [min(p.top_k, vocab) if p.top_k > 0 else vocab for p in params]
        if min(top_ks) < vocab:
            largest = logits.topk(max(top_ks), dim=-1).values
            kth = largest.gather(-1, torch.tensor(top_ks, device=device)[:, None] - 1)
            kth[torch.tensor([k == vocab for k in top_ks], device=device)] = float("-inf")
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        top_ps = [p.top_p for p in params]
        if min(top_ps) < 1.0:
            probs = _top_p_filter(torch, probs, torch.tensor(top_ps, device=device))
        noise = torch.empty_like(probs).exponential_(generator=self.rng)
        for j, row in enumerate(rows):
            if row.rng is not None:
                noise[j].exponential_(generator=row.rng)
        return (probs / noise).argmax(dim=-1)


def _top_p_filter(torch: Any, probs: Any, top_ps: Any) -> Any:
    """Zero the tail of each row outside its top-p mass (the first token always stays)."""
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_ps[:, None]
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_probs)
