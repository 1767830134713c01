"""What each request of a run sends: its prompts (a trace's, a prompts file's, synthetic ones) and
their bodies, encoded once before the run so the send path only writes bytes."""

from __future__ import annotations

from typing import Any

import numpy as np

from perfbench.apis import ApiAdapter
from perfbench.config import RunConfig
from perfbench.engine import PreparedRequest
from perfbench.lengths import LengthDistribution
from perfbench.option_values import DATASET_LENGTHS
from perfbench.prompts import Prompt, load_prompts, synthetic_prompts
from perfbench.sampling import sampling_body
from perfbench.tokens import Tokenizer, count_chat_tokens, count_prompt_tokens
from perfbench.trace import replay_of, trace_prompts

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


def load_workload(config: RunConfig, tokenizer: Tokenizer | None) -> list[Prompt]:
    """The prompts of the run: a trace's, a prompts file, or synthetic prompts of the requested lengths."""
    if config.trace:
        return trace_prompts(replay_of(config).rows, tokenizer=tokenizer, block_tokens=config.trace_block_tokens, seed=config.seed)
    if config.prompts:
        return load_prompts(config.prompts, sharegpt_output_lengths=config.output_tokens == DATASET_LENGTHS)
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
        extra: dict[str, Any] = {}
        if config.ignore_eos:
            extra["ignore_eos"] = True
        max_tokens = config.max_tokens or prompt.max_tokens or DEFAULT_MAX_TOKENS
        if lengths is not None and lengths[i] is not None:
            # An exact output length: the vLLM/SGLang/TGI-style fields that stop early EOS.
            max_tokens = int(lengths[i])
            extra.update(min_tokens=max_tokens, ignore_eos=True)
        extra.update(sampling_body(config))
        extra.update(config.extra_body)
        input_tokens = _input_tokens(api, batch_prompts, tokenizer)
        body = api.build_body(batch_prompts, model=config.model, max_tokens=max_tokens, extra=extra)
        requests.append(PreparedRequest(body=body, input_tokens=input_tokens, inputs=len(batch_prompts)))
    return requests


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
