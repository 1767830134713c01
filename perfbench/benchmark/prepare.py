"""What each request of a run sends: its prompts (a trace's, a prompts file's, synthetic ones) and
their bodies, encoded once before the run so the send path only writes bytes."""

from __future__ import annotations

from typing import Any

import numpy as np

from perfbench.apis import ApiAdapter
from perfbench.config.run_config import RunConfig
from perfbench.engine.plan import PreparedRequest
from perfbench.workload.images import request_images, with_images
from perfbench.workload.lengths import LengthDistribution
from perfbench.workload.lengths import DATASET_LENGTHS
from perfbench.workload.prompts import Prompt, load_prompts, synthetic_prompts
from perfbench.workload.sampling import sampling_body
from perfbench.workload.sessions import (
    SessionWorkload, load_conversations, session_workload, synthetic_conversations, with_output_lengths,
)
from perfbench.workload.tokens import Tokenizer, count_chat_tokens, count_prompt_tokens
from perfbench.workload.trace import Trace, read_trace, trace_prompts

DEFAULT_INPUT_TOKENS = "fixed:128"  # synthetic prompt length when no prompts are given
DEFAULT_MAX_TOKENS = 128  # output cap when neither --max-tokens nor --output-tokens is given
MAX_DISTINCT_PROMPTS = 10_000  # more requests than this reuse prompts cyclically
UNKNOWN_COUNT_PROMPTS = 1024  # prompts made for a duration-bound closed-loop step (count unknown)


def _total_requests(config: RunConfig) -> int:
    total = config.warmup
    for step in config.steps:
        if step.number is not None:
            total += step.number
        elif step.rate_req_s is not None and config.duration_s:
            total += int(step.rate_req_s * config.duration_s * 1.2) + 1
        else:
            total += UNKNOWN_COUNT_PROMPTS
    return max(1, min(total, MAX_DISTINCT_PROMPTS))


def prepare_workload(config: RunConfig, api: ApiAdapter, tokenizer: Tokenizer | None) -> tuple[list[PreparedRequest], SessionWorkload | None]:
    """Everything the run sends, made before it starts: the encoded requests, or the sessions (then
    the one request is the pre-flight's: the first turn of the first conversation)."""
    sessions = load_sessions(config, api, tokenizer)
    if sessions is None:
        return prepare_requests(config, api, load_workload(config, tokenizer), tokenizer), None
    conversation = sessions.conversation(0)
    body, input_tokens = sessions.body(0, 0, [*conversation.system, {"role": "user", "content": conversation.user_turns[0]}])
    return [PreparedRequest(body=body, input_tokens=input_tokens)], sessions


def load_workload(config: RunConfig, tokenizer: Tokenizer | None) -> list[Prompt]:
    """The prompts of the run: a trace's, a prompts file, or synthetic prompts of the requested lengths."""
    if config.trace:
        return trace_prompts(replay_of(config).rows, tokenizer=tokenizer, block_tokens=config.trace_block_tokens, seed=config.seed)
    if config.prompts:
        return load_prompts(config.prompts, sharegpt_output_lengths=config.output_tokens == DATASET_LENGTHS)
    if config.dataset:  # --dataset: as many rows as the run sends, offline
        from perfbench.workload.datasets_loader import load_dataset_prompts

        return load_dataset_prompts(config.dataset, column=config.dataset_prompt_column, split=config.dataset_split,
                                    limit=_total_requests(config), output_lengths=config.output_tokens == DATASET_LENGTHS)
    return synthetic_prompts(
        _total_requests(config),
        LengthDistribution.parse(config.input_tokens or DEFAULT_INPUT_TOKENS),
        tokenizer=tokenizer,
        seed=config.seed,
        shared_prefix_tokens=config.shared_prefix_tokens,
        prefix_groups=config.prefix_groups,
    )


def prepare_requests(config: RunConfig, api: ApiAdapter, prompts: list[Prompt], tokenizer: Tokenizer | None) -> list[PreparedRequest]:
    """Encode every request body before the run, so the send path only writes bytes."""
    count = len(prompts) if config.prompts or config.trace else min(len(prompts), MAX_DISTINCT_PROMPTS)
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
    if config.conversations:
        conversations = load_conversations(config.conversations)
    else:
        conversations = synthetic_conversations(
            _total_requests(config), LengthDistribution.parse(config.turns),
            LengthDistribution.parse(config.input_tokens or DEFAULT_INPUT_TOKENS), tokenizer=tokenizer, seed=config.seed)
    if config.output_tokens:
        conversations = with_output_lengths(conversations, LengthDistribution.parse(config.output_tokens), config.seed)

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
