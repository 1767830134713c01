"""The one option table: every flag can be set in a scenario and means the same there, every
scenario key has a flag (or is documented as file-only), and the run config has exactly the
table's fields."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from perfbench.commands.main import _settings, build_parser
from perfbench.config.run_config import RunConfig, config_from_settings
from perfbench.core.errors import ConfigError
from perfbench.config.options import COMMAND_LINE_ONLY, FILE_ONLY, OPTIONS
from perfbench.config.scenario import load_scenario
from tests.tls_certs import make_certificate

REPO = Path(__file__).resolve().parent.parent
URL = ["--url", "http://127.0.0.1:9/v1"]
LOCAL = ["--model", "org/model"]  # a hub name: a local server would be started (never here)
RATE = URL + ["--rate", "2"]
SEARCH = URL + ["--search", "concurrency", "--slo", "ttft_p99=500"]
TRACE = URL + ["--trace", "{trace}"]
IMAGES = URL + ["--images", "1"]
DATASET = URL + ["--dataset", "{dataset}"]
HTTPS = ["--url", "https://127.0.0.1:9/v1"]

# dest -> (context flags given on both sides, the option as flags, the option as scenario keys).
EXAMPLES: dict[str, tuple[list[str], list[str], dict[str, Any]]] = {
    "url": ([], ["--url", "http://127.0.0.1:9/v1"], {"target": {"url": "http://127.0.0.1:9/v1"}}),
    "api": (URL, ["--api", "openai-completions"], {"target": {"api": "openai-completions"}}),
    "model": (URL, ["--model", "m"], {"target": {"model": "m"}}),
    "engine": (LOCAL, ["--engine", "vllm"], {"target": {"engine": "vllm"}}),
    "engine_args": (LOCAL + ["--engine", "vllm"], ["--engine-args=--max-model-len 4096"],
                    {"target": {"engine_args": ["--max-model-len", 4096]}}),
    "device": (LOCAL, ["--device", "cpu"], {"target": {"device": "cpu"}}),
    "dtype": (LOCAL, ["--dtype", "float32"], {"target": {"dtype": "float32"}}),
    "max_batch_size": (LOCAL, ["--max-batch-size", "8"], {"target": {"max_batch_size": 8}}),
    "headers": (URL, ["--header", "X-Team: infra"], {"target": {"headers": {"X-Team": "infra"}}}),
    "api_key": (URL, ["--api-key", "sk-1"], {"target": {"api_key": "sk-1"}}),
    "tokenizer": (URL, ["--tokenizer", "tok"], {"target": {"tokenizer": "tok"}}),
    "timeout_s": (URL, ["--timeout", "30"], {"target": {"timeout_s": 30}}),
    "connect_timeout_s": (URL, ["--connect-timeout", "2.5"], {"target": {"connect_timeout_s": 2.5}}),
    "insecure": (HTTPS, ["--insecure"], {"target": {"insecure": True}}),
    "ca_cert": (HTTPS, ["--ca-cert", "{cacert}"], {"target": {"ca_cert": "{cacert}"}}),
    "max_response_bytes": (URL, ["--max-response-bytes", "1000"], {"target": {"max_response_bytes": 1000}}),
    "preflight": (URL, ["--no-preflight"], {"target": {"preflight": False}}),
    "concurrency": (URL, ["-c", "1,4"], {"load": {"concurrency": [1, 4]}}),
    "number": (URL, ["-n", "5"], {"load": {"number": 5}}),
    "rate": (URL, ["--rate", "2"], {"load": {"rate": 2}}),
    "duration_s": (URL, ["--duration", "5"], {"load": {"duration_s": 5}}),
    "warmup": (URL, ["--warmup", "2"], {"load": {"warmup": 2}}),
    "arrivals": (RATE, ["--arrivals", "constant"], {"load": {"arrivals": "constant"}}),
    "burstiness": (RATE, ["--burstiness", "0.5"], {"load": {"burstiness": 0.5}}),
    "ramp_up_s": (RATE, ["--ramp-up", "3"], {"load": {"ramp_up_s": 3}}),
    "preconnect": (URL, ["--no-preconnect"], {"load": {"preconnect": False}}),
    "workers": (URL, ["--workers", "2"], {"load": {"workers": 2}}),
    "ray": (URL, ["--ray", "auto"], {"load": {"ray": "auto"}}),
    "search": (URL + ["--slo", "ttft_p99=500"], ["--search", "rate"], {"load": {"search": "rate"}}),
    "search_start": (SEARCH, ["--search-start", "2"], {"load": {"start": 2}}),
    "search_max": (SEARCH, ["--search-max", "64"], {"load": {"max": 64}}),
    "search_precision": (SEARCH, ["--search-precision", "0.2"], {"load": {"precision": 0.2}}),
    "max_failure_rate": (URL, ["--max-failure-rate", "0.2"], {"stop": {"max_failure_rate": 0.2}}),
    "prompts": (URL, ["--prompts", "{prompts}"], {"workload": {"prompts": "{prompts}"}}),
    "input_tokens": (URL, ["--input-tokens", "uniform:64-256"], {"workload": {"input_tokens": {"uniform": {"min": 64, "max": 256}}}}),
    "output_tokens": (URL, ["--output-tokens", "128"], {"workload": {"output_tokens": 128}}),
    "max_tokens": (URL, ["--max-tokens", "64"], {"workload": {"max_tokens": 64}}),
    "batch_size": (["--url", "http://127.0.0.1:9/v1/embeddings"], ["--batch-size", "4"], {"workload": {"batch_size": 4}}),
    "ignore_eos": (URL, ["--ignore-eos"], {"workload": {"ignore_eos": True}}),
    "extra_body": (URL, ["--extra-body", '{"temperature": 0}'], {"workload": {"extra_body": {"temperature": 0}}}),
    "shared_prefix_tokens": (URL, ["--shared-prefix-tokens", "16"], {"workload": {"shared_prefix": {"tokens": 16}}}),
    "prefix_groups": (URL + ["--shared-prefix-tokens", "16"], ["--prefix-groups", "2"], {"workload": {"shared_prefix": {"groups": 2}}}),
    "images": (URL, ["--images", "2"], {"workload": {"images": {"count": 2}}}),
    "image_size": (IMAGES, ["--image-size", "64x64,128x96"], {"workload": {"images": {"size": ["64x64", "128x96"]}}}),
    "image_format": (IMAGES, ["--image-format", "jpeg"], {"workload": {"images": {"format": "jpeg"}}}),
    "image_dir": (IMAGES, ["--image-dir", "{images}"], {"workload": {"images": {"dir": "{images}"}}}),
    "dataset": (URL, ["--dataset", "{dataset}"], {"workload": {"dataset": {"source": "{dataset}"}}}),
    "dataset_prompt_column": (DATASET, ["--dataset-prompt-column", "question"], {"workload": {"dataset": {"prompt_column": "question"}}}),
    "dataset_split": (DATASET, ["--dataset-split", "train"], {"workload": {"dataset": {"split": "train"}}}),
    "trace": (URL, ["--trace", "{trace}"], {"workload": {"trace": {"file": "{trace}"}}}),
    "trace_speedup": (TRACE, ["--trace-speedup", "2"], {"workload": {"trace": {"speedup": 2}}}),
    "trace_window": (TRACE, ["--trace-window", "0:10"], {"workload": {"trace": {"window": [0, 10]}}}),
    "trace_block_tokens": (TRACE, ["--trace-block-tokens", "256"], {"workload": {"trace": {"block_tokens": 256}}}),
    "turns": (URL, ["--turns", "uniform:2-4"], {"workload": {"sessions": {"turns": {"uniform": [2, 4]}}}}),
    "conversations": (URL, ["--conversations", "{prompts}"], {"workload": {"sessions": {"conversations": "{prompts}"}}}),
    "think_time": (URL + ["--turns", "2"], ["--think-time", "uniform:1-3"], {"workload": {"sessions": {"think_time": "uniform:1-3"}}}),
    "temperature": (URL, ["--temperature", "0.7"], {"workload": {"sampling": {"temperature": 0.7}}}),
    "top_p": (URL, ["--top-p", "0.9"], {"workload": {"sampling": {"top_p": 0.9}}}),
    "top_k": (URL, ["--top-k", "40"], {"workload": {"sampling": {"top_k": 40}}}),
    "seed": (URL, ["--seed", "7"], {"seed": 7}),
    "slo": (URL, ["--slo", "ttft_p99=500,tpot=20"], {"slo": {"ttft_p99": 500, "tpot": 20}}),
    "output_dir": (URL, ["--output-dir", "out"], {"output": {"dir": "out"}}),
    "name": (URL, ["--name", "nightly"], {"name": "nightly"}),
    "tags": (URL, ["--tag", "gpu=h100"], {"output": {"tags": {"gpu": "h100"}}}),
    "baseline": (URL, ["--baseline", "runs/x"], {"output": {"baseline": "runs/x"}}),
    "allow_mismatch": (URL, ["--allow-mismatch"], {"output": {"allow_mismatch": True}}),
    "thresholds": (URL, ["--threshold", "ttft_ms.p99=+10%"], {"output": {"thresholds": {"ttft_ms.p99": "+10%"}}}),
    "store": (URL, ["--store", "runs.sqlite"], {"output": {"store": "runs.sqlite"}}),
    "junit": (URL, ["--junit", "checks.xml"], {"output": {"junit": "checks.xml"}}),
    "export": (URL, ["--export", "vllm"], {"output": {"export": ["vllm"]}}),
    "plots": (URL, ["--no-plots"], {"output": {"plots": False}}),
    "live": (URL, ["--no-live"], {"output": {"live": False}}),
    "metrics_url": (URL, ["--metrics-url", "http://127.0.0.1:9/metrics"], {"telemetry": {"metrics_url": "http://127.0.0.1:9/metrics"}}),
    "telemetry": (URL, ["--no-telemetry"], {"telemetry": {"enabled": False}}),
    "mock": ([], ["--mock", "capacity=8,itl_ms=5"], {"mock": {"capacity": 8, "itl_ms": 5}}),
}


def _fill(value: Any, prompts: str, placeholder: str = "{prompts}") -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, prompts, placeholder) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_fill(v, prompts, placeholder) for v in value)
    return prompts if value == placeholder else value


def _config(argv: list[str]) -> Any:
    return config_from_settings(_settings(build_parser().parse_args(argv)))


def test_every_option_has_a_flag_and_a_scenario_key_or_is_named_as_one_sided() -> None:
    for option in OPTIONS:
        if option.dest in COMMAND_LINE_ONLY:
            assert option.flags and option.key is None, option
        elif option.dest in FILE_ONLY:
            assert option.key and not option.flags, option
        else:
            assert option.flags and option.key, f"{option.dest} needs both a flag and a scenario key"
    assert len({o.dest for o in OPTIONS}) == len(OPTIONS)
    assert len({o.key for o in OPTIONS if o.key}) == len([o for o in OPTIONS if o.key])


def test_run_config_has_exactly_the_table_fields_plus_the_derived_ones() -> None:
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    assert fields == [o.dest for o in OPTIONS if o.config] + ["steps", "slos", "slo_text"]
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(RunConfig)}
    for option in OPTIONS:
        if option.config:
            assert defaults[option.dest] == option.default, option.dest


def test_every_settable_option_has_an_example_here() -> None:
    settable = {o.dest for o in OPTIONS} - COMMAND_LINE_ONLY - FILE_ONLY
    assert set(EXAMPLES) == settable


@pytest.mark.parametrize("dest", sorted(EXAMPLES))
def test_a_flag_and_its_scenario_key_give_the_same_run_config(dest: str, tmp_path: Path) -> None:
    if dest == "ray" and importlib.util.find_spec("ray") is None:  # found, not imported: Ray's import is slow
        pytest.skip("--ray without Ray installed is refused (tests/test_ray.py)")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello there\nhow are you\n")
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 1024, "hash_ids": [0, 1]}\n{"timestamp": 5, "input_length": 600}\n')
    images = tmp_path / "images"  # --image-dir: a folder with one PNG file
    images.mkdir()
    (images / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(8))
    dataset = tmp_path / "dataset.jsonl"  # --dataset: a local file
    dataset.write_text('{"question": "hello there"}\n')
    context, flags, keys = _fill(_fill(EXAMPLES[dest], str(prompts)), str(trace), "{trace}")
    context, flags, keys = _fill(_fill((context, flags, keys), str(images), "{images}"), str(dataset), "{dataset}")
    if dest == "ca_cert":  # --ca-cert: a real certificate (the file is loaded as the config is read)
        context, flags, keys = _fill((context, flags, keys), str(make_certificate(tmp_path).cert), "{cacert}")
    (tmp_path / "flag").mkdir()
    (tmp_path / "file").mkdir()
    empty = tmp_path / "flag" / "s.yaml"
    empty.write_text("")
    full = tmp_path / "file" / "s.yaml"
    full.write_text(yaml.safe_dump(keys))
    by_flag = _config(["--scenario", str(empty), *context, *flags])
    by_file = _config(["--scenario", str(full), *context])
    without = _config(["--scenario", str(empty), *context])
    assert dataclasses.asdict(by_flag) == dataclasses.asdict(by_file)
    assert dataclasses.asdict(by_flag) != dataclasses.asdict(without), f"the {dest} example changes nothing"


def test_a_flag_overrides_its_scenario_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("target: {timeout_s: 30}\nload: {arrivals: constant, rate: 2}\n")
    config = _config(["--scenario", str(path), *URL, "--timeout", "5"])
    assert (config.timeout_s, config.arrivals) == (5.0, "constant")


def test_a_file_number_and_a_flag_number_have_the_same_bounds(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("target: {timeout_s: -1}\n")
    with pytest.raises(ConfigError, match=r"target\.timeout_s: -1 is out of range; use a value > 0"):
        load_scenario(path)
    with pytest.raises(ConfigError, match=r"--timeout -1 is out of range; use a value > 0"):
        _config([*URL, "--timeout", "-1"])


def test_unknown_settings_are_refused_with_the_nearest_name() -> None:
    with pytest.raises(ConfigError, match="unknown setting 'timeout'; did you mean 'timeout_s'"):
        config_from_settings({"timeout": 5})
    with pytest.raises(ConfigError, match="unknown setting 'debug'"):
        config_from_settings({"debug": True})


def test_scenario_readme_shows_every_key() -> None:
    text = (REPO / "scenarios" / "README.md").read_text(encoding="utf-8")
    block = text[text.index("```yaml"):]
    for option in OPTIONS:
        if option.key:
            leaf = option.key.rsplit(".", 1)[-1]
            assert re.search(rf"^\s*#?\s*{re.escape(leaf)}:|[{{,]\s*{re.escape(leaf)}:", block, re.M), option.key
