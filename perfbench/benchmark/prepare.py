"""What each request of a run sends: its prompts (a trace's, a prompts file's, a dataset's,
synthetic ones) and their bodies, encoded before they are due so the send path only writes bytes.

A prompts file, a dataset and a trace are encoded whole before the run and cycled when the run is
longer. Synthetic prompts never repeat: request k's is made from (seed, k), its body built ahead
of need (perfbench/engine/request_source.py: ~40 µs per 128-word chat body, 0.5 ms with a
tokenizer's exact lengths, so never on the send path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from perfbench.apis import ApiAdapter
from perfbench.config.run_config import RunConfig
from perfbench.engine.plan import PreparedRequest
from perfbench.engine.request_source import BuiltAhead, CycledRequests, RequestSource
from perfbench.workload.images import MAX_DISTINCT_IMAGES, request_images, with_images
from perfbench.workload.lengths import LengthDistribution
from perfbench.workload.lengths import DATASET_LENGTHS
from perfbench.workload.prompts import Prompt, SyntheticPrompts, load_prompts
from perfbench.workload.sampling import sampling_body
from perfbench.workload.sessions import (
    SessionWorkload, SyntheticConversations, load_conversations, session_workload, with_output_lengths,
)
from perfbench.workload.tokens import Tokenizer, count_chat_tokens, count_prompt_tokens
from perfbench.workload.trace import Trace, read_trace, trace_prompts

DEFAULT_INPUT_TOKENS = "fixed:128"  # synthetic prompt length when no prompts are given
DEFAULT_MAX_TOKENS = 128  # output cap when neither --max-tokens nor --output-tokens is given
MAX_DATASET_ROWS = 10_000  # rows of a --dataset read for a run, at most (a longer run cycles them)

SYNTHETIC, FILE, DATASET, TRACE, CONVERSATIONS = "synthetic", "file", "dataset", "trace", "conversations"


@dataclass(frozen=True)
class Workload:
    """What the run sends, ready before it starts."""

    requests: RequestSource  # request k of the run; with sessions only the pre-flight's (the first turn of the first session)
    sessions: SessionWorkload | None  # the multi-turn sessions, or None for single requests
    prompts_source: str  # SYNTHETIC, FILE, DATASET, TRACE or CONVERSATIONS (summary.json's workload.prompts_source)
    cycle: int | None  # distinct requests (or a file's user turns) before they repeat; None: synthetic, never


def _run_requests(config: RunConfig) -> int | None:
    """Requests the run sends, warm-up included, when its steps say (None: a duration-bound closed loop)."""
    total = config.warmup
    for step in config.steps:
        if step.number is not None:
            total += step.number
        elif step.rate_req_s is not None and config.duration_s:
            total += int(step.rate_req_s * config.duration_s * 1.2) + 1
        else:
            return None
    return max(1, total)


def prepare_workload(config: RunConfig, api: ApiAdapter, tokenizer: Tokenizer | None) -> Workload:
    """Everything the run sends: the requests (a file's, a dataset's or a trace's encoded now; synthetic
    ones built as they come due), or the sessions."""
    sessions = load_sessions(config, api, tokenizer)
    if sessions is not None:
        conversation = sessions.conversation(0)
        body, input_tokens = sessions.body(0, 0, [*conversation.system, {"role": "user", "content": conversation.user_turns[0]}])
        cycle = sessions.file_turns
        return Workload(CycledRequests([PreparedRequest(body=body, input_tokens=input_tokens)]), sessions,
                        SYNTHETIC if cycle is None else CONVERSATIONS, cycle)
    if config.trace or config.prompts or config.dataset:
        requests = prepare_requests(config, api, load_workload(config, tokenizer), tokenizer)
        source = TRACE if config.trace else FILE if config.prompts else DATASET
        return Workload(CycledRequests(requests), None, source, len(requests))
    builder = SyntheticRequests(config, api, tokenizer, synthetic_prompt_maker(config, tokenizer))
    return Workload(BuiltAhead(builder), None, SYNTHETIC, None)


def load_workload(config: RunConfig, tokenizer: Tokenizer | None) -> list[Prompt]:
    """The prompts of a trace, a prompts file or a dataset (synthetic prompts: ``synthetic_prompt_maker``)."""
    if config.trace:
        return trace_prompts(replay_of(config).rows, tokenizer=tokenizer, block_tokens=config.trace_block_tokens, seed=config.seed)
    if config.prompts:
        return load_prompts(config.prompts, sharegpt_output_lengths=config.output_tokens == DATASET_LENGTHS)
    assert config.dataset
    from perfbench.workload.datasets_loader import load_dataset_prompts  # as many rows as the run sends, offline

    return load_dataset_prompts(config.dataset, column=config.dataset_prompt_column, split=config.dataset_split,
                                limit=min(_run_requests(config) or MAX_DATASET_ROWS, MAX_DATASET_ROWS),
                                output_lengths=config.output_tokens == DATASET_LENGTHS)


def synthetic_prompt_maker(config: RunConfig, tokenizer: Tokenizer | None) -> SyntheticPrompts:
    """The run's synthetic prompts of the requested lengths: prompt k made from (seed, k)."""
    output = config.output_tokens
    return SyntheticPrompts(
        LengthDistribution.parse(config.input_tokens or DEFAULT_INPUT_TOKENS),
        tokenizer=tokenizer,
        seed=config.seed,
        shared_prefix_tokens=config.shared_prefix_tokens,
        prefix_groups=config.prefix_groups,
        output_tokens=LengthDistribution.parse(output) if output and output != DATASET_LENGTHS else None,
    )


class SyntheticRequests:
    """Request k's body from synthetic prompts (a batch of ``--batch-size``: prompts k*b .. k*b+b-1),
    with the images of ``images[k % len(images)]`` under ``--images``: a pure function of k, so
    every process builds the same request k. Picklable, to reach worker processes."""

    def __init__(self, config: RunConfig, api: ApiAdapter, tokenizer: Tokenizer | None, prompts: SyntheticPrompts) -> None:
        self.config = config
        self.api = api
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.batch = config.batch_size if api.batched else 1
        # --images: made and encoded here, once, within their memory budget; requests take them in turn.
        self.images = request_images(config, _run_requests(config) or MAX_DISTINCT_IMAGES) if config.images else None

    def __call__(self, number: int) -> PreparedRequest:
        prompts = [self.prompts[number * self.batch + j] for j in range(self.batch)]
        if self.images is not None:
            prompts = [with_images(prompts[0], self.images[number % len(self.images)])]
        max_tokens, extra = _length_fields(self.config, None, prompts[0].max_tokens)
        # With images the server alone knows the prompt's tokens (an image's count is its own).
        input_tokens = _input_tokens(self.api, prompts, self.tokenizer) if self.images is None else None
        body = self.api.build_body(prompts, model=self.config.model, max_tokens=max_tokens, extra=extra)
        return PreparedRequest(body=body, input_tokens=input_tokens, inputs=len(prompts))


def prepare_requests(config: RunConfig, api: ApiAdapter, prompts: list[Prompt], tokenizer: Tokenizer | None) -> list[PreparedRequest]:
    """Encode a file's, a dataset's or a trace's requests before the run (one per prompt, cycled by the run)."""
    count = len(prompts)
    images = request_images(config, count) if config.images else None  # --images: made and encoded here, once
    if images is not None:
        count = len(images)  # as many as the images' memory budget allows; later requests reuse these in turn
    lengths = None
    if config.output_tokens == DATASET_LENGTHS or config.trace:
        lengths = [p.max_tokens for p in prompts[:count]]  # None where the file gives no length
    elif config.output_tokens:
        lengths = LengthDistribution.parse(config.output_tokens).sample(count, np.random.default_rng(config.seed + 1))
    requests = []
    batch = config.batch_size if api.batched else 1
    for i in range(count):
        prompt = prompts[i]
        batch_prompts = [prompts[(i * batch + j) % len(prompts)] for j in range(batch)] if batch > 1 else [prompt]
        if images is not None:
            batch_prompts = [with_images(prompt, images[i])]
        max_tokens, extra = _length_fields(config, prompt.max_tokens, lengths[i] if lengths is not None else None)
        # With images the server alone knows the prompt's tokens (an image's count is its own).
        input_tokens = _input_tokens(api, batch_prompts, tokenizer) if images is None else None
        body = api.build_body(batch_prompts, model=config.model, max_tokens=max_tokens, extra=extra)
        requests.append(PreparedRequest(body=body, input_tokens=input_tokens, inputs=len(batch_prompts)))
    return requests


def _length_fields(config: RunConfig, prompt_max_tokens: int | None, exact: Any) -> tuple[int, dict[str, Any]]:
    """A request's max_tokens and the body fields beside it (exact length, sampling, --extra-body)."""
    extra: dict[str, Any] = {}
    if config.ignore_eos:
        extra["ignore_eos"] = True
    max_tokens = config.max_tokens or prompt_max_tokens or DEFAULT_MAX_TOKENS
    if exact is not None:
        # An exact output length: the vLLM/SGLang/TGI-style fields that stop early EOS.
        max_tokens = int(exact)
        extra.update(min_tokens=max_tokens, ignore_eos=True)
    extra.update(sampling_body(config))
    extra.update(config.extra_body)
    return max_tokens, extra


def load_sessions(config: RunConfig, api: ApiAdapter, tokenizer: Tokenizer | None) -> SessionWorkload | None:
    """The run's multi-turn sessions (--turns or --conversations); None for a run of single requests."""
    if not config.turns and not config.conversations:
        return None
    conversations: list | SyntheticConversations
    if config.conversations:
        conversations = load_conversations(config.conversations)
        if config.output_tokens:
            conversations = with_output_lengths(conversations, LengthDistribution.parse(config.output_tokens), config.seed)
    else:  # synthetic: session s made from (seed, s), its turns' output lengths too
        conversations = SyntheticConversations(LengthDistribution.parse(config.turns), synthetic_prompt_maker(config, tokenizer))

    def build(history: Prompt, exact: int | None) -> tuple[bytes, int | None]:
        max_tokens, extra = _length_fields(config, None, exact)
        body = api.build_body([history], model=config.model, max_tokens=max_tokens, extra=extra)
        return body, _input_tokens(api, [history], tokenizer)

    return session_workload(conversations, config.think_time, config.seed, build)


def _input_tokens(api: ApiAdapter, prompts: list[Prompt], tokenizer: Tokenizer | None) -> int | None:
    """Prompt tokens of one request when known before sending (the server's usage replaces it)."""
    total = 0
    for prompt in prompts:
        tokens = prompt.input_tokens
        if tokens is None and tokenizer is not None:
            if prompt.messages and api.chat_input:
                tokens = count_chat_tokens(tokenizer, prompt.messages)
            else:
                tokens = count_prompt_tokens(tokenizer, prompt.completion_text)
        if tokens is None:
            return None
        total += tokens
    return total


def request_headers(config: RunConfig, api: ApiAdapter) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if api.streams else "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    headers.update(config.headers)
    return headers


def replay_of(config: RunConfig) -> Trace:
    """The trace a run config replays."""
    return read_trace(config.trace, speedup=config.trace_speedup, window=config.trace_window,
                      block_tokens=config.trace_block_tokens)
