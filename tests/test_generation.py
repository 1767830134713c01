"""BatchGenerator on the tiny random Llama: exact lengths, EOS rules, stop strings, seeds, batching, detokenising."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from perfbench.servers.generation import FINISH_LENGTH, FINISH_STOP, BatchGenerator, Delta, SamplingParams
from perfbench.servers.output_text import OutputText
from perfbench.servers.sampling import GenerationDefaults, generation_defaults
from tests.tiny_llama import PROMPT, SUPPRESSED_DEFAULTS, multi_eos_llama, suppressed_eos_llama

GREEDY = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
PROMPTS = ["the model server", "a b c d e f g h i j k l m n o p", "x", "benchmark the queue throughput of a river"]


def run(gen: BatchGenerator, prompts: list[str], params: SamplingParams, timeout_s: float = 30) -> list[list[Delta]]:
    """Submit all prompts at once; wait for every one to finish."""
    outputs: list[list[Delta]] = [[] for _ in prompts]
    done = threading.Semaphore(0)

    def emitter(i: int):
        def emit(delta: Delta) -> None:
            outputs[i].append(delta)
            if delta.finish_reason is not None:
                done.release()

        return emit

    for i, prompt in enumerate(prompts):
        gen.submit(gen.tokenizer.encode(prompt), params, emitter(i))
    for _ in prompts:
        assert done.acquire(timeout=timeout_s), "generation did not finish in time"
    return outputs


def text_of(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas)


def test_exact_max_tokens_with_ignore_eos(generator):
    [out] = run(generator, ["hello"], replace(GREEDY, max_tokens=37))
    assert sum(d.new_tokens for d in out) == 37
    assert out[-1].completion_tokens == 37 and out[-1].finish_reason == FINISH_LENGTH
    assert all(d.finish_reason is None for d in out[:-1])


def test_batched_greedy_matches_one_at_a_time_and_hf_generate(generator, loaded):
    import torch

    alone = [text_of(run(generator, [p], GREEDY)[0]) for p in PROMPTS]
    together = [text_of(out) for out in run(generator, PROMPTS, GREEDY)]
    assert together == alone  # left padding and re-batching change nothing
    ids = loaded.tokenizer.encode(PROMPTS[1])
    ref = loaded.model.generate(
        torch.tensor([ids]), max_new_tokens=24, min_new_tokens=24, do_sample=False, pad_token_id=0
    )
    assert loaded.tokenizer.decode(ref[0, len(ids) :], skip_special_tokens=True) == alone[1]


def test_requests_share_decode_steps(generator):
    outs = run(generator, PROMPTS * 2, replace(GREEDY, max_tokens=32))
    assert all(out[-1].completion_tokens == 32 for out in outs)
    # One at a time would need 8 * 31 decode steps; shared, about 31 plus a few for late joiners.
    assert generator.decode_steps < 8 * 31 / 3
    assert generator.max_rows_seen >= 4


def test_seed_reproducible_and_greedy_deterministic(generator):
    sampled = SamplingParams(max_tokens=20, temperature=1.0, top_p=0.9, seed=7, ignore_eos=True)
    first = text_of(run(generator, ["the model"], sampled)[0])
    again = text_of(run(generator, ["the model"], sampled)[0])
    other = text_of(run(generator, ["the model"], replace(sampled, seed=8))[0])
    assert first == again and first != other
    greedy = [text_of(run(generator, ["the model"], GREEDY)[0]) for _ in range(2)]
    assert greedy[0] == greedy[1]


def test_eos_stops_unless_min_tokens_or_ignore_eos(loaded):
    probe_gen = BatchGenerator(loaded.model, loaded.tokenizer)
    probe_gen.start()
    try:
        [probe] = run(probe_gen, ["the model"], replace(GREEDY, max_tokens=1))
    finally:
        probe_gen.stop()
    first_token = loaded.tokenizer.encode(probe[0].text, add_special_tokens=False)[0]
    # A generator whose EOS is the greedy first token.
    gen = BatchGenerator(loaded.model, loaded.tokenizer, defaults=GenerationDefaults(eos_token_ids=(first_token,)))
    gen.start()
    try:
        [stopped] = run(gen, ["the model"], replace(GREEDY, ignore_eos=False))
        assert stopped[-1].finish_reason == FINISH_STOP and stopped[-1].completion_tokens == 1
        assert text_of(stopped) == ""  # the EOS token counts but adds no text
        [at_least] = run(gen, ["the model"], replace(GREEDY, ignore_eos=False, min_tokens=5, max_tokens=8))
        assert at_least[-1].completion_tokens >= 5
        [exact] = run(gen, ["the model"], replace(GREEDY, ignore_eos=False, min_tokens=8, max_tokens=8))
        assert exact[-1].completion_tokens == 8 and exact[-1].finish_reason == FINISH_LENGTH
        [ignored] = run(gen, ["the model"], replace(GREEDY, max_tokens=8))
        assert ignored[-1].completion_tokens == 8 and ignored[-1].finish_reason == FINISH_LENGTH
    finally:
        gen.stop()


def test_stop_string_cuts_text_and_never_leaks(generator):
    full = text_of(run(generator, ["the model server"], replace(GREEDY, max_tokens=30))[0])
    stop = full[10:13]
    expected = full[: full.find(stop)]
    [out] = run(generator, ["the model server"], replace(GREEDY, max_tokens=30, stop=("zzzz-never", stop)))
    assert text_of(out) == expected
    assert out[-1].finish_reason == FINISH_STOP
    assert all(stop not in d.text for d in out)


def test_cancel_frees_the_slot(generator):
    started = threading.Event()
    seq = generator.submit([1, 5, 6], replace(GREEDY, max_tokens=900), lambda d: started.set())
    assert started.wait(10)
    BatchGenerator.cancel(seq)
    for _ in range(200):
        if generator.running == 0:
            break
        threading.Event().wait(0.02)
    assert generator.running == 0
    assert len(seq.generated_ids) < 900


def test_incremental_detokenising_never_splits_a_character(generator):
    tokenizer = generator.tokenizer
    text = "Héllo wörld — 日本語のテキスト 🚀🚀 naïve café"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text) // 2  # byte-level pieces: many characters span several tokens
    output = OutputText.after([1])
    deltas = [output.add(tokenizer, token, final=i == len(ids) - 1) for i, token in enumerate(ids)]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


@pytest.fixture(scope="module")
def suppressed():
    """The tiny Llama whose generation_config.json suppresses EOS and byte fragments (tests/tiny_llama.py)."""
    from perfbench.servers.transformers_server import load_model

    return load_model(str(suppressed_eos_llama()), device="cpu")


@pytest.fixture(scope="module")
def multi_eos():
    from perfbench.servers.transformers_server import load_model

    return load_model(str(multi_eos_llama()), device="cpu")


@pytest.fixture
def started():
    """Start generators for a test and stop them after it."""
    generators = []

    def start(loaded, **kwargs) -> BatchGenerator:
        gen = BatchGenerator(loaded.model, loaded.tokenizer, **kwargs)
        gen.start()
        generators.append(gen)
        return gen

    yield start
    for gen in generators:
        gen.stop()


def file_config(loaded) -> dict:
    import json
    from pathlib import Path

    return json.loads((Path(loaded.model.name_or_path) / "generation_config.json").read_text())


def test_generation_defaults_are_the_files(loaded, suppressed, multi_eos):
    config = file_config(suppressed)
    defaults = generation_defaults(suppressed.model, suppressed.tokenizer)
    assert defaults.suppress_token_ids == tuple(config["suppress_tokens"])
    assert defaults.begin_suppress_token_ids == tuple(config["begin_suppress_tokens"])
    assert (defaults.temperature, defaults.top_k, defaults.top_p, defaults.repetition_penalty, defaults.max_new_tokens) == (
        0.7, 40, 0.95, 1.1, 48) == tuple(SUPPRESSED_DEFAULTS[k] for k in ("temperature", "top_k", "top_p", "repetition_penalty", "max_new_tokens"))  # fmt: skip
    multi = generation_defaults(multi_eos.model, multi_eos.tokenizer)
    assert multi.eos_token_ids == tuple(file_config(multi_eos)["eos_token_id"]) and len(multi.eos_token_ids) == 2
    assert multi.temperature == 0.0  # do_sample: false means greedy unless the request asks otherwise
    # A file that is silent: the OpenAI defaults.
    assert generation_defaults(loaded.model, loaded.tokenizer) == GenerationDefaults(eos_token_ids=(2,))


def test_greedy_matches_hf_generate_under_the_files_processors(suppressed, started):
    """Suppressed tokens, begin-suppressed tokens and the repetition penalty act as in transformers' generate."""
    import torch

    gen = started(suppressed)
    config = file_config(suppressed)
    [out] = run(gen, [PROMPT], SamplingParams(max_tokens=40, temperature=0.0, repetition_penalty=1.1))
    assert out[-1].completion_tokens == 40 and out[-1].finish_reason == FINISH_LENGTH  # EOS is suppressed
    ids = suppressed.tokenizer.encode(PROMPT)
    ref = suppressed.model.generate(torch.tensor([ids]), max_new_tokens=40, do_sample=False)[0, len(ids) :].tolist()
    assert text_of(out) == suppressed.tokenizer.decode(ref)
    assert ref[0] not in config["begin_suppress_tokens"] and not set(ref) & set(config["suppress_tokens"])
    # Without the penalty the output differs, so the comparison above checked it.
    [plain] = run(gen, [PROMPT], SamplingParams(max_tokens=40, temperature=0.0))
    assert text_of(plain) != text_of(out)


def test_every_token_of_the_suppressed_model_is_one_delta(suppressed, started):
    gen = started(suppressed)
    sampled = SamplingParams(max_tokens=64, temperature=1.0, top_k=40, top_p=0.95)
    outs = run(gen, PROMPTS * 2, sampled)
    for out in outs:
        assert [d.new_tokens for d in out] == [1] * 64 and all(d.text and "\ufffd" not in d.text for d in out)
        assert out[-1].finish_reason == FINISH_LENGTH


def test_multi_id_eos_stops_at_either_id(multi_eos, started):
    gen = started(multi_eos)
    _, second_eos = file_config(multi_eos)["eos_token_id"]
    [free] = run(gen, [PROMPT], replace(GREEDY, max_tokens=16))  # ignore_eos: the plain greedy output
    ids = multi_eos.tokenizer.encode(text_of(free), add_special_tokens=False)
    stop_at = ids.index(second_eos)
    [stopped] = run(gen, [PROMPT], replace(GREEDY, max_tokens=16, ignore_eos=False))
    assert stopped[-1].finish_reason == FINISH_STOP and stopped[-1].completion_tokens == stop_at + 1
    assert text_of(stopped) == multi_eos.tokenizer.decode(ids[:stop_at])  # the EOS token adds no text
    [longer] = run(gen, [PROMPT], replace(GREEDY, max_tokens=16, ignore_eos=False, min_tokens=stop_at + 3))
    assert longer[-1].completion_tokens >= stop_at + 3


def test_top_k_and_top_p_narrow_the_draw(loaded, started):
    gen = started(loaded)
    greedy = text_of(run(gen, [PROMPT], GREEDY)[0])
    hot = replace(GREEDY, temperature=5.0)
    assert text_of(run(gen, [PROMPT], replace(hot, top_k=1))[0]) == greedy
    assert text_of(run(gen, [PROMPT], replace(hot, top_p=1e-6))[0]) == greedy
    assert text_of(run(gen, [PROMPT], replace(hot, seed=1))[0]) != greedy  # at 5.0 the draw wanders


def test_the_kv_cache_grows_in_place():
    """A decode step writes one column into the layer's buffer; it is copied only when full (every GROW_COLUMNS steps)."""
    import torch

    from perfbench.servers.kv_cache import GROW_COLUMNS, GrowingLayer

    keys, values = torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    layer = GrowingLayer(keys, values)
    buffer = layer._key_buffer.data_ptr()
    steps = [(torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4)) for _ in range(GROW_COLUMNS + 1)]
    for i, (k, v) in enumerate(steps):
        got_keys, got_values = layer.update(k, v)
        assert (layer._key_buffer.data_ptr() == buffer) == (i < GROW_COLUMNS)
    assert torch.equal(got_keys, torch.cat([keys, *(k for k, _ in steps)], dim=-2))
    assert torch.equal(got_values, torch.cat([values, *(v for _, v in steps)], dim=-2))
