"""BatchGenerator on the tiny random Llama: exact lengths, EOS rules, stop strings, seeds, batching, detokenising."""

from __future__ import annotations

import threading
from dataclasses import replace


from perfbench.servers.generation import FINISH_LENGTH, FINISH_STOP, BatchGenerator, Delta, SamplingParams, Sequence

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


def test_eos_stops_unless_min_tokens_or_ignore_eos(generator):
    [probe] = run(generator, ["the model"], replace(GREEDY, max_tokens=1))
    first_token = generator.tokenizer.encode(probe[0].text, add_special_tokens=False)[0]
    generator.eos_token_ids = [first_token]  # make the greedy first token the model's EOS
    [stopped] = run(generator, ["the model"], replace(GREEDY, ignore_eos=False))
    assert stopped[-1].finish_reason == FINISH_STOP and stopped[-1].completion_tokens == 1
    [at_least] = run(generator, ["the model"], replace(GREEDY, ignore_eos=False, min_tokens=5, max_tokens=8))
    assert at_least[-1].completion_tokens >= 5
    [ignored] = run(generator, ["the model"], replace(GREEDY, max_tokens=8))
    assert ignored[-1].completion_tokens == 8 and ignored[-1].finish_reason == FINISH_LENGTH


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
    seq = Sequence(prompt_ids=[1], params=GREEDY, emit=lambda d: None)
    generator._init_sequence(seq)
    deltas = [generator._detokenise(seq, token, final=i == len(ids) - 1) for i, token in enumerate(ids)]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
