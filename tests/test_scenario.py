"""Scenario files: the flat settings they produce, the errors they raise, and the shipped examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfbench.core.errors import ConfigError
from perfbench.config.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_scenario_maps_to_cli_dest_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: ladder
seed: 7
description: anything
target:
  url: http://127.0.0.1:8000/v1
  api: openai-completions
  model: m
  headers: {X-Team: infra, X-Debug: true}
  timeout_s: 30
  engine_args: ["--max-model-len", 4096]
load: {concurrency: [1, 4, 16], number: [10, 20, 40], warmup: 3}
workload:
  input_tokens: {uniform: {min: 64, max: 256}}
  output_tokens: {normal: {mean: 128, std: 32}}
  max_tokens: 300
  shared_prefix: {tokens: 256, groups: 4}
slo: {ttft_p99: 500, tpot_p99: 50, latency: 8000}
stop: {max_failure_rate: 0.1}
output: {dir: out, tags: {gpu: h100}, baseline: last-good, thresholds: {ttft_ms.p99: +10%}}
""",
    )
    assert load_scenario(path) == {
        "name": "ladder",
        "seed": 7,
        "url": "http://127.0.0.1:8000/v1",
        "api": "openai-completions",
        "model": "m",
        "headers": {"X-Team": "infra", "X-Debug": "true"},
        "timeout_s": 30.0,
        "engine_args": "--max-model-len 4096",
        "concurrency": [1, 4, 16],
        "number": [10, 20, 40],
        "warmup": 3,
        "input_tokens": "uniform:64-256",
        "output_tokens": "normal:128,32",
        "max_tokens": 300,
        "shared_prefix_tokens": 256,
        "prefix_groups": 4,
        "slo": "latency=8000,ttft_p99=500,tpot_p99=50",
        "max_failure_rate": 0.1,
        "output_dir": "out",
        "tags": {"gpu": "h100"},
        "baseline": "last-good",
        "thresholds": "ttft_ms.p99=+10%",
    }


def test_rate_ladder_and_search_keys(tmp_path: Path) -> None:
    rate = write(tmp_path, "load: {rate: [0.5, 2], duration_s: 5, burstiness: 0.5, ramp_up_s: 1, concurrency: 64}")
    assert load_scenario(rate) == {
        "name": "s",  # the file's stem when no name is given
        "rate": [0.5, 2.0],
        "duration_s": 5.0,
        "burstiness": 0.5,
        "ramp_up_s": 1.0,
        "concurrency": [64],
    }
    search = write(tmp_path, "load: {search: concurrency, start: 2, max: 64, precision: 0.05, number: 50}\nslo: ttft_p99=300")
    assert load_scenario(search) == {
        "name": "s",
        "search": "concurrency",
        "search_start": 2.0,
        "search_max": 64.0,
        "search_precision": 0.05,
        "number": [50],
        "slo": "ttft_p99=300",
    }


def test_only_given_settings_are_returned(tmp_path: Path) -> None:
    assert load_scenario(write(tmp_path, "")) == {"name": "s"}
    assert load_scenario(write(tmp_path, "load:\nworkload:\n")) == {"name": "s"}


def test_comma_string_lists_and_length_shorthands(tmp_path: Path) -> None:
    path = write(tmp_path, 'load: {concurrency: "1,4,16"}\nworkload: {input_tokens: {fixed: 100}, output_tokens: "uniform:1-9"}')
    settings = load_scenario(path)
    assert settings["concurrency"] == [1, 4, 16]
    assert settings["input_tokens"] == "fixed:100"
    assert settings["output_tokens"] == "uniform:1-9"


def test_prompts_resolved_from_cwd_first_then_scenario_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scen_dir = tmp_path / "scen"
    scen_dir.mkdir()
    (scen_dir / "p.txt").write_text("hello\n")
    path = write(scen_dir, "workload: {prompts: p.txt}")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert load_scenario(path)["prompts"] == str(scen_dir / "p.txt")
    (cwd / "p.txt").write_text("from cwd\n")
    assert load_scenario(path)["prompts"] == "p.txt"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("load: {concurency: [1, 4]}", "load.concurency: unknown key; did you mean 'concurrency'?"),
        ("targt: {url: x}", "targt: unknown key; did you mean 'target'?"),
        ("load: [1, 2]", "load: expected a mapping, got a list"),
        ("load: {concurrency: 0}", "load.concurrency: item 0: 0 is out of range; use a value > 0"),
        ("load: {concurrency: [1, two]}", "load.concurrency: item 1: expected an integer"),
        ("load: {concurrency: 1.5}", "load.concurrency: item 0: expected an integer"),
        ("load: {number: true}", "load.number: item 0: expected an integer"),
        ("load: {warmup: -1}", "load.warmup: -1 is out of range; use a value >= 0"),
        ("load: {rate: []}", "load.rate: the list is empty"),
        ("load: {search: concurency}", "load.search: 'concurency' is not allowed; did you mean 'concurrency'?"),
        ("load: {search: rate, rate: [1, 2]}", "load.rate: a ladder cannot go with 'search: rate'"),
        ("load: {number: 10, duration_s: 5}", "load.duration_s: number and duration_s both bound a step; keep one"),
        ("load: {search: concurrency, start: 1.5}", "load.start: a concurrency search starts at a whole number"),
        ("load: {search: rate, start: 8, max: 2}", "load.max: 2 is below start 8; raise max"),
        ("load: {search: rate, precision: 0}", "load.precision: 0 is out of range; use a value > 0 and <= 1"),
        ("target: {api: grpc}", "target.api: 'grpc' is not allowed; use one of openai-chat, openai-completions"),
        ("target: {engine: vlm}", "target.engine: 'vlm' is not allowed; did you mean 'vllm'?"),
        ("target: {headers: [a]}", "target.headers: expected a mapping like {key: value}, got a list"),
        ("workload: {input_tokens: {gauss: 3}}", "workload.input_tokens: bad value {'gauss': 3}; use {fixed: N}"),
        ("workload: {input_tokens: {uniform: {min: 9, max: 3}}}", "token length range 9-3 is empty; put the smaller number first"),
        ("workload: {input_tokens: {normal: {mean: 9}}}", "workload.input_tokens: bad value {'normal': {'mean': 9}}; use"),
        ("workload: {input_tokens: 0}", "workload.input_tokens: 0: token length 0 is below 1"),
        ("workload: {shared_prefix: {tokens: 8, group: 2}}", "workload.shared_prefix.group: unknown key; did you mean 'groups'?"),
        ("workload: {prompts: nowhere.txt}", "workload.prompts: file 'nowhere.txt' not found"),
        ("slo: {ttft_p99: fast}", "slo: bad limit in 'ttft_p99: fast'; give a positive number"),
        ("slo: {ttft_p42x: 1}", "slo: unknown statistic 'p42x'"),
        ("slo: [1]", "slo: expected a mapping of limits in ms, got list"),
        ("stop: {max_failure_rate: 2}", "stop.max_failure_rate: 2 is out of range; use a value >= 0 and <= 1"),
        ("stop: {max_failures: 2}", "stop.max_failures: unknown key; did you mean 'max_failure_rate'?"),
        ("output: {thresholds: 3}", "output.thresholds: expected a mapping like"),
        ("seed: -3", "seed: -3 is out of range"),
        ("- a\n- b", "expected a mapping of sections"),
        ("load: {concurrency: [1, 4]", "not valid YAML at line"),
    ],
)
def test_bad_scenarios_name_file_key_and_fix(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    error = str(caught.value)
    assert error.startswith(f"{path}: "), error
    assert message in error
    assert "\n" not in error


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the scenario file"):
        load_scenario(tmp_path / "absent.yaml")


def test_shipped_scenarios_exist() -> None:
    names = {path.name for path in SHIPPED}
    assert {"chat-short.yaml", "long-context.yaml", "capacity-ladder.yaml", "max-load-search.yaml", "nightly.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenario_loads_and_targets_the_mock(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(path.parent.parent)  # as a user runs them: from the repository root
    settings = load_scenario(path)
    assert settings["name"] == path.stem
    assert "url" not in settings and "model" not in settings  # runs as-is against the built-in mock
    assert "# To run against a real server" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenario_builds_a_run_config(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perfbench.config.run_config import config_from_settings

    monkeypatch.chdir(path.parent.parent)
    config = config_from_settings(load_scenario(path))
    assert config.name == path.stem
    assert config.slos is not None and config.slos.step_limits  # every example judges its steps
    assert config.search or config.steps
