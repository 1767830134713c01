"""--temperature, --top-p, --top-k: sent only when given, in every generating API's body, recorded in
summary.json's config; refused for embeddings and beside the same key in --extra-body."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perfbench.commands.main import main
from perfbench.servers.mock import MockConfig, MockInThread

QUIET = ["--no-plots", "--no-live", "--no-telemetry", "--no-preflight"]
SAMPLING = ["--temperature", "0.7", "--top-p", "0.9", "--top-k", "40"]


@pytest.fixture(scope="module")
def mock():
    with MockInThread(MockConfig(ttft_ms=1, itl_ms=1)) as server:
        server.server.keep_bodies = True
        yield server


def run(mock, tmp_path: Path, api_path: str, *flags: str) -> tuple[list[dict], dict]:
    mock.server.log.clear()
    out = tmp_path / "run"
    assert main(["--url", mock.base_url + api_path, "-n", "3", "-c", "1", "--max-tokens", "2", "--output-dir", str(out),
                 *flags, *QUIET]) == 0
    return [json.loads(entry.body) for entry in mock.server.log], json.loads((out / "summary.json").read_text())["config"]


@pytest.mark.parametrize("api_path", ["/v1/chat/completions", "/v1/completions", "/v1/responses"])
def test_sent_in_every_body_and_recorded(mock, tmp_path: Path, api_path: str) -> None:
    bodies, config = run(mock, tmp_path, api_path, *SAMPLING)
    assert len(bodies) == 3
    assert all((b["temperature"], b["top_p"], b["top_k"]) == (0.7, 0.9, 40) for b in bodies)
    assert (config["temperature"], config["top_p"], config["top_k"]) == (0.7, 0.9, 40)


def test_not_sent_when_not_given(mock, tmp_path: Path) -> None:
    bodies, config = run(mock, tmp_path, "/v1/chat/completions", "--top-k", "-1")
    assert all("temperature" not in b and "top_p" not in b and b["top_k"] == -1 for b in bodies)
    assert (config["temperature"], config["top_p"], config["top_k"]) == (None, None, -1)


@pytest.mark.parametrize("flags, message", [
    (["--url", "http://127.0.0.1:9/v1/embeddings", "--temperature", "0"], "--temperature shapes sampled output, but openai-embeddings"),
    (["--top-p", "0.5", "--extra-body", '{"top_p": 0.5}'], "--top-p and --extra-body both set 'top_p'; keep one of them"),
    (["--temperature", "1", "--extra-body", '{"temperature": 0}'], "--temperature and --extra-body both set"),
    (["--top-p", "1.5"], "--top-p 1.5 is out of range"),
    (["--top-p", "0"], "--top-p 0 is out of range"),
    (["--top-k", "-2"], "--top-k -2 is out of range"),
    (["--top-k", "2.5"], "invalid int value"),
    (["--temperature", "-0.1"], "--temperature -0.1 is out of range"),
    (["--temperature", "nan"], "--temperature nan is not a finite number"),
])
def test_refused_in_one_line(capsys, flags: list[str], message: str) -> None:
    if "--url" not in flags:
        flags = ["--url", "http://127.0.0.1:9/v1", *flags]
    assert main([*flags, *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
