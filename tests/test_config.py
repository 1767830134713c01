"""Config validation: URL forms, ladders, and one-line errors that name the fix."""

import pytest

from perfbench.config.run_config import LoadStep, build_steps, config_from_settings, resolve_url
from perfbench.core.errors import ConfigError


@pytest.mark.parametrize(
    "url, api, expected",
    [
        ("http://127.0.0.1:8000/v1/chat/completions", None, ("http://127.0.0.1:8000/v1/chat/completions", "openai-chat")),
        ("http://127.0.0.1:8000/v1/completions", None, ("http://127.0.0.1:8000/v1/completions", "openai-completions")),
        ("http://127.0.0.1:8000", None, ("http://127.0.0.1:8000/v1/chat/completions", "openai-chat")),
        ("http://127.0.0.1:8000/v1/", "openai-completions", ("http://127.0.0.1:8000/v1/completions", "openai-completions")),
        ("https://h.example/prefix/v1", "openai-chat", ("https://h.example/prefix/v1/chat/completions", "openai-chat")),
        ("http://h/openai/v1/chat/completions/", None, ("http://h/openai/v1/chat/completions", "openai-chat")),
        ("http://h:1/v1/completions?api-version=2", None, ("http://h:1/v1/completions?api-version=2", "openai-completions")),
    ],
)
def test_resolve_url_full_and_base_forms(url, api, expected):
    assert resolve_url(url, api) == expected


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://h/x", "http://", "http://h:notaport/v1"])
def test_malformed_urls_name_the_fix(url):
    with pytest.raises(ConfigError, match="--url") as info:
        resolve_url(url, None)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["http://h/v1/chat/completion", "http://h/v1/chat", "http://h/prefix", "http://h/v1/completions/x", "http://h/v2"]
)
def test_unknown_endpoint_paths_are_refused_never_rewritten(url):
    """A typo must not become a base URL with the API path appended (every request a 404)."""
    with pytest.raises(ConfigError, match="not an endpoint perfbench knows") as info:
        resolve_url(url, None)
    assert "/v1/chat/completions" in str(info.value) and "/v1/completions" in str(info.value)


def test_url_and_api_disagree():
    with pytest.raises(ConfigError, match="drop --api"):
        resolve_url("http://h/v1/completions", "openai-chat")


def test_ladder_pairs_numbers_with_concurrencies():
    steps = build_steps([1, 4, 16], [50, 200, 800], None, None)
    assert steps == (LoadStep(1, 50, None), LoadStep(4, 200, None), LoadStep(16, 800, None))


def test_one_number_applies_to_every_step():
    assert [s.number for s in build_steps([1, 4], [10], None, None)] == [10, 10]


def test_rate_ladder_uses_concurrency_as_cap():
    steps = build_steps([8], None, [1.0, 2.0], 30.0)
    assert steps == (LoadStep(8, None, 1.0), LoadStep(8, None, 2.0))


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"concurrency": "1,2", "number": "1,2,3"}, "--number has 3 values"),
        ({"concurrency": "0"}, "positive"),
        ({"concurrency": "a"}, "comma-separated"),
        ({"number": "10", "duration_s": 5.0}, "give one of them"),
        ({"timeout_s": -1.0}, "--timeout"),
        ({"search": "concurrency"}, "step-limit SLOs"),
        ({"slo": "ttf=5"}, "ttft"),
        ({"api": "grpc"}, "--api"),
        ({"prompts": "x.txt", "input_tokens": "5"}, "give one of them"),
        ({"input_tokens": "lots"}, "."),
    ],
)
def test_bad_settings_raise_one_line_config_errors(settings, match):
    with pytest.raises(ConfigError, match=match) as info:
        config_from_settings(settings)
    assert "\n" not in str(info.value)


def test_public_dict_drops_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-123")
    config = config_from_settings({"url": "http://127.0.0.1:1", "headers": ["Authorization: Bearer sk-hdr-456", "X-Team: a"]})
    assert config.api_key == "sk-from-env-123"
    text = repr(config.public_dict())
    assert "sk-from-env-123" not in text and "sk-hdr-456" not in text
    assert config.public_dict()["headers"] == {"Authorization": "<redacted>", "X-Team": "<redacted>"}


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"duration_s": float("nan")}, "finite"),
        ({"timeout_s": float("inf")}, "finite"),
        ({"rate": "nan"}, "finite"),
        ({"rate": "1e400"}, "finite"),
        ({"ramp_up_s": 5.0}, "add --rate"),
        ({"burstiness": 0.5, "concurrency": "4"}, "add --rate"),
        ({"rate": "2", "arrivals": "constant", "burstiness": 2.0}, "drop it"),
        ({"prompts": "p.txt", "shared_prefix_tokens": 8}, "drop --prompts"),
        ({"url": "http://127.0.0.1:1", "engine": "vllm"}, "drop --url"),
        ({"search_max": 10.0}, "add --search"),
        ({"search": "rate", "slo": "ttft_p99=100", "search_start": 100.0, "search_max": 10.0}, "lower the start"),
        ({"max_failure_rate": 2.0}, "--max-failure-rate"),
    ],
)
def test_settings_that_would_do_nothing_or_break_are_refused(settings, match):
    with pytest.raises(ConfigError, match=match) as info:
        config_from_settings(settings)
    assert "\n" not in str(info.value)


def test_rate_search_is_uncapped_unless_concurrency_is_given():
    uncapped = config_from_settings({"search": "rate", "slo": "ttft_p99=100"})
    assert uncapped.steps[0].concurrency is None
    capped = config_from_settings({"search": "rate", "slo": "ttft_p99=100", "concurrency": "8"})
    assert capped.steps[0].concurrency == 8
