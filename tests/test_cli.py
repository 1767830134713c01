"""The command line end to end: real runs against the mock on 127.0.0.1, files, errors, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfbench.commands.main import main
from perfbench.servers.mock import MockConfig, MockInThread
from tests.mock_client import free_port, mock_process

PERFBENCH = [sys.executable, "-m", "perfbench"]


@pytest.fixture(scope="module")
def mock_url():
    with MockInThread(MockConfig(ttft_ms=10, itl_ms=2)) as mock:
        yield mock.base_url


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_cli(*args: str) -> int:
    return main([*args, "--no-plots", "--no-live", "--no-telemetry"])


def test_chat_run_writes_every_file(mock_url, tmp_path, capsys):
    out = tmp_path / "run"
    code = run_cli("--url", f"{mock_url}/v1/chat/completions", "--model", "m", "-c", "4", "-n", "20", "--max-tokens", "16", "--output-dir", str(out))
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"] == "perfbench.summary/1"
    assert summary["target"] == {"url": f"{mock_url}/v1/chat/completions", "api": "openai-chat", "model": "m", "simulated": False}
    [step] = summary["steps"]
    assert (step["concurrency"], step["requests_expected"], step["requests_succeeded"], step["requests_failed"]) == (4, 20, 20, 0)
    assert step["output_tokens_per_request"]["mean"] == 16
    lines = read_lines(out / "requests.jsonl")
    assert len(lines) == 20 and all(line["status"] == "ok" and line["packages"] == 16 for line in lines)
    assert (out / "summary.csv").read_text().splitlines()[0].startswith("concurrency,")
    pyarrow_parquet = pytest.importorskip("pyarrow.parquet")  # written by a child interpreter (finish._exports)
    assert pyarrow_parquet.read_table(out / "requests.parquet").num_rows == 20
    shown = capsys.readouterr().out
    assert "TTFT" in shown and "Output throughput" in shown and "SIMULATED" not in shown


def test_base_url_with_completions_api_and_a_ladder(mock_url, tmp_path):
    out = tmp_path / "run"
    assert run_cli("--url", mock_url, "--api", "openai-completions", "-c", "1,3", "-n", "4,9", "--max-tokens", "4", "--output-dir", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target"]["url"].endswith("/v1/completions")
    assert [(s["concurrency"], s["requests_succeeded"]) for s in summary["steps"]] == [(1, 4), (3, 9)]
    assert len(read_lines(out / "requests.jsonl")) == 13


def test_rate_duration_and_warmup(mock_url, tmp_path):
    out = tmp_path / "run"
    assert run_cli("--url", f"{mock_url}/v1", "--rate", "40", "--duration", "1", "--warmup", "3", "--max-tokens", "4",
                   "--output-dir", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    [step] = summary["steps"]
    assert step["rate_req_s"] == 40
    lines = read_lines(out / "requests.jsonl")
    assert sum(line["warmup"] for line in lines) == 3
    assert step["requests_completed"] == len(lines) - 3 == step["latency_ms"]["count"]
    assert 20 <= step["requests_completed"] <= 70  # about 40 in one second


def test_simulated_run_is_labelled(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("-c", "4", "-n", "8", "--max-tokens", "8", "--output-dir", str(out)) == 0
    assert json.loads((out / "summary.json").read_text())["target"]["simulated"] is True
    assert "SIMULATED" in capsys.readouterr().out


def test_api_key_never_lands_in_outputs(mock_url, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-secret-0042")
    out = tmp_path / "run"
    assert main(["--url", mock_url, "-n", "3", "--max-tokens", "4", "--header", "X-Api-Key: hdr-secret-77", "--no-live",
                 "--api-key", "sk-flag-secret-0099", "--output-dir", str(out), "--debug"]) == 0  # with plots, report, history
    shown = capsys.readouterr()
    history = Path(os.environ["XDG_DATA_HOME"]) / "perfbench" / "history.sqlite"
    files = [p for p in out.rglob("*") if p.is_file()] + [history]
    assert history.exists() and len(files) > 4
    for secret in ("sk-env-secret-0042", "sk-flag-secret-0099", "hdr-secret-77"):
        assert secret not in shown.out + shown.err
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


def test_sends_the_key_as_a_bearer_token(tmp_path):
    from perfbench.servers.mock import MockServer

    from aiohttp import web

    seen: list[str | None] = []
    server = MockServer(MockConfig(ttft_ms=1, itl_ms=1))

    @web.middleware
    async def capture(request, handler):
        if request.method == "POST":  # the step's requests and the pre-flight; not the pre-connects
            seen.append(request.headers.get("Authorization"))
        return await handler(request)

    server.app.middlewares.append(capture)
    # MockInThread builds its own server; run this one on a thread the same way
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    base = asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        assert run_cli("--url", base, "-n", "2", "--max-tokens", "2", "--api-key", "sk-abc", "--output-dir", str(tmp_path / "r")) == 0
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    assert seen == ["Bearer sk-abc"] * 3  # the pre-flight request and the two of the step


def cli(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*PERFBENCH, *args], capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.parametrize(
    "args, fix",
    [
        (["--concurrency", "x"], "comma-separated"),
        (["--url", "localhost:8000"], "http"),
        (["--prompts", "/nonexistent/prompts.txt"], "prompts"),
        (["--no-such-flag"], "--help"),
        (["--slo", "ttft=fast"], "slo"),
        (["--rate", "1", "--number", "2", "--duration", "3"], "give one of them"),
        (["--tokenizer", "/nonexistent/tok"], "tokenizer"),
        (["--extra-body", "{bad"], "JSON"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, fix, tmp_path):
    result = cli(*args, "--output-dir", str(tmp_path / "r"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfbench: error:"), result.stderr
    assert fix.lower() in lines[0].lower()
    assert "Traceback" not in result.stderr


def test_unreachable_target_exits_3_quickly(tmp_path):
    port = free_port()
    start = time.monotonic()
    result = cli("--url", f"http://127.0.0.1:{port}", "-n", "5", "--output-dir", str(tmp_path / "r"))
    assert result.returncode == 3
    assert time.monotonic() - start < 15
    assert "cannot reach 127.0.0.1" in result.stderr and "Traceback" not in result.stderr


def test_help_is_fast_and_lists_subcommands():
    start = time.monotonic()
    result = cli("--help")
    assert result.returncode == 0 and time.monotonic() - start < 5
    for word in ("--url", "--concurrency", "--rate", "--slo", "perfbench mock", "perfbench compare"):
        assert word in result.stdout


def test_client_run_imports_neither_torch_nor_vllm(mock_url, tmp_path):
    code = (
        "import sys; from perfbench.commands.main import main; "
        f"rc = main(['--url', {mock_url!r}, '-n', '2', '--max-tokens', '2', '--no-live', '--no-plots', '--no-telemetry', '--output-dir', {str(tmp_path / 'r')!r}]); "
        "assert rc == 0, rc; bad = [m for m in ('torch', 'vllm', 'transformers') if m in sys.modules]; assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_ctrl_c_keeps_every_finished_record(tmp_path):
    with mock_process("--ttft-ms", "5", "--itl-ms", "10") as mock:
        out = tmp_path / "run"
        run = subprocess.Popen([*PERFBENCH, "--url", mock.base_url, "-c", "4", "-n", "10000", "--max-tokens", "10",
                                "--no-live", "--no-plots", "--no-telemetry", "--output-dir", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        jsonl = out / "requests.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 20):
            time.sleep(0.1)
        run.send_signal(signal.SIGINT)
        time.sleep(0.01)
        run.send_signal(signal.SIGINT)  # an impatient second Ctrl-C must not cost the summary
        stdout, stderr = run.communicate(timeout=30)
    assert run.returncode == 130, stderr
    lines = read_lines(out / "requests.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert len(lines) >= 20
    assert summary["steps"][0]["requests_completed"] == len(lines)
    assert "Traceback" not in stderr


def test_nightly_flow_baseline_regression_junit_history_and_report(tmp_path, capsys):
    """Run, record, run again against a slower server: exit 1, JUnit failure, report with the comparison."""
    import xml.etree.ElementTree as ET

    store = str(tmp_path / "history.sqlite")
    common = ["-c", "4", "-n", "40", "--max-tokens", "12", "--no-live", "--no-telemetry", "--store", store, "--tag", "suite=nightly"]
    with MockInThread(MockConfig(ttft_ms=20, itl_ms=2)) as fast:
        assert main(["--url", fast.base_url, *common, "--output-dir", str(tmp_path / "base")]) == 0
        port = int(fast.base_url.rsplit(":", 1)[1])  # the slower build is served at the same address: the same target
    assert (tmp_path / "base" / "report.html").exists() and list((tmp_path / "base" / "plots").glob("*.png"))
    with MockInThread(MockConfig(ttft_ms=40, itl_ms=4), port=port) as slow:
        code = main(["--url", slow.base_url, *common, "--baseline", "tag:suite=nightly", "--junit", str(tmp_path / "junit.xml"),
                     "--output-dir", str(tmp_path / "new")])
    assert code == 1
    assert "Regression" in capsys.readouterr().out
    failures = ET.parse(tmp_path / "junit.xml").getroot().iter("failure")
    assert any(True for _ in failures)
    assert "ttft" in (tmp_path / "new" / "report.html").read_text().lower()
    assert json.loads((tmp_path / "new" / "comparison.json").read_text())["regressed"] is True
    # both runs are in the history; the same server twice does not regress
    from perfbench.results.store import RunStore

    assert len(RunStore(Path(store)).list_runs(tag={"suite": "nightly"})) == 2
    result = cli("history", "--store", store, env={**os.environ, "COLUMNS": "250"})
    assert result.returncode == 0 and result.stdout.count("suite=nightly") == 2, result.stdout
    with MockInThread(MockConfig(ttft_ms=40, itl_ms=4), port=port) as slow:
        assert main(["--url", slow.base_url, *common, "--baseline", str(tmp_path / "new"), "--threshold", "ttft_ms.p50=+30%,tpot_ms.p50=+30%",
                     "--output-dir", str(tmp_path / "again")]) == 0


def test_bad_baseline_fails_before_the_run(tmp_path):
    result = cli("--url", "http://127.0.0.1:9", "--baseline", "20200101T000000Z-nosuch", "--store", str(tmp_path / "h.sqlite"), "--output-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "requests.jsonl").exists()


def test_mock_settings_shape_the_simulated_server(tmp_path):
    out = tmp_path / "run"
    assert run_cli("--mock", "ttft_ms=120,itl_ms=1,tokens_per_package=2", "-c", "2", "-n", "4", "--max-tokens", "8", "--output-dir", str(out)) == 0
    [step] = json.loads((out / "summary.json").read_text())["steps"]
    assert step["ttft_ms"]["min"] >= 115
    assert step["packages_per_request"]["mean"] == 4


@pytest.mark.parametrize("value, match", [("capacity", "key=value"), ("speed=3", "speed")])
def test_bad_mock_settings(value, match, tmp_path):
    result = cli("--mock", value, "--output-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and match in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_mock_settings_need_the_built_in_mock(tmp_path):
    result = cli("--url", "http://127.0.0.1:9", "--mock", "capacity=2", "--output-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and "--mock" in result.stderr


def test_flags_replace_the_scenario_step_bound(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("load: {concurrency: [2], number: 1000}\nmock: {ttft_ms: 1, itl_ms: 1}\nworkload: {max_tokens: 4}\n")
    out = tmp_path / "run"
    assert run_cli("--scenario", str(scenario), "--duration", "0.5", "--output-dir", str(out)) == 0
    [step] = json.loads((out / "summary.json").read_text())["steps"]
    assert step["concurrency"] == 2 and 0 < step["requests_completed"] < 1000


def test_nightly_job_compares_with_the_last_good_run(tmp_path):
    """The README's nightly recipe: first night no baseline yet, then compare with the last passing run."""
    from perfbench.results.store import RunStore

    store = str(tmp_path / "h.sqlite")
    # generous limits: only the 2x slower build must regress, whatever else the machine is doing
    nightly = ["-c", "2", "-n", "30", "--max-tokens", "8", "--tag", "suite=nightly", "--baseline", "tag:suite=nightly,check=pass",
               "--store", store, "--threshold", "ttft_ms.p50=+30%,tpot_ms.p50=+30%"]
    assert run_cli("--mock", "ttft_ms=20,itl_ms=2", *nightly, "--output-dir", str(tmp_path / "n1")) == 0  # no baseline yet
    assert run_cli("--mock", "ttft_ms=20,itl_ms=2", *nightly, "--output-dir", str(tmp_path / "n2")) == 0
    assert run_cli("--mock", "ttft_ms=40,itl_ms=4", *nightly, "--output-dir", str(tmp_path / "n3")) == 1  # slower build
    assert run_cli("--mock", "ttft_ms=20,itl_ms=2", *nightly, "--output-dir", str(tmp_path / "n4")) == 0  # vs n2, not n3
    runs = {r.run_dir.name: r.tags["check"] for r in RunStore(Path(store)).list_runs()}
    assert runs == {"n1": "pass", "n2": "pass", "n3": "fail", "n4": "pass"}
    assert json.loads((tmp_path / "n4" / "comparison.json").read_text())["base_dir"].endswith("n2")


def test_a_step_missing_its_slo_exits_1(mock_url, tmp_path):
    out = tmp_path / "run"
    assert run_cli("--url", mock_url, "-c", "1,2", "-n", "3", "--max-tokens", "4", "--slo", "ttft_p99=1000", "--output-dir", str(out)) == 0
    assert run_cli("--url", mock_url, "-n", "3", "--max-tokens", "4", "--slo", "ttft_p99=0.001", "--output-dir", str(tmp_path / "r2")) == 1


def test_token_counts_without_usage_are_flagged(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("--mock", "usage=none", "-n", "3", "--max-tokens", "4", "--output-dir", str(out)) == 0
    [step] = json.loads((out / "summary.json").read_text())["steps"]
    assert step["token_sources"] == {"packages": 3}
    assert "no token usage" in capsys.readouterr().out


def test_junit_holds_the_slo_checks_without_a_baseline(mock_url, tmp_path):
    import xml.etree.ElementTree as ET

    junit = tmp_path / "slo.xml"
    assert run_cli("--url", mock_url, "-c", "1,2", "-n", "3", "--max-tokens", "4", "--slo", "ttft_p99=0.001,tpot_p99=10000",
                   "--junit", str(junit), "--output-dir", str(tmp_path / "r")) == 1
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert len(cases) == 4  # two steps x two limits
    assert sum(1 for case in cases if case.find("failure") is not None) == 2


def test_a_baseline_of_another_ladder_is_exit_2_but_the_run_keeps_its_report(mock_url, tmp_path, capsys):
    assert run_cli("--url", mock_url, "-c", "3", "-n", "3", "--max-tokens", "4", "--output-dir", str(tmp_path / "a")) == 0
    code = main(["--url", mock_url, "-c", "5", "-n", "5", "--max-tokens", "4", "--no-live", "--no-telemetry",
                 "--baseline", str(tmp_path / "a"), "--allow-mismatch", "--output-dir", str(tmp_path / "b")])
    assert code == 2
    assert "no step of BASE matches" in capsys.readouterr().err
    assert (tmp_path / "b" / "report.html").exists() and (tmp_path / "b" / "summary.json").exists()


def test_requests_parquet_matches_the_jsonl(mock_url, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = tmp_path / "run"
    assert run_cli("--url", mock_url, "-c", "2", "-n", "6", "--max-tokens", "5", "--output-dir", str(out)) == 0
    table = pd.read_parquet(out / "requests.parquet")
    lines = read_lines(out / "requests.jsonl")
    assert len(table) == 6 and list(table["ttft_ms"]) == [line["ttft_ms"] for line in lines]
    assert [list(t) for t in table["package_times_ms"]] == [line["package_times_ms"] for line in lines]


def test_output_lengths_from_the_dataset(mock_url, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a b", "max_tokens": 3}\n{"prompt": "c d e", "max_tokens": 7}\n')
    out = tmp_path / "run"
    assert run_cli("--url", mock_url, "-n", "4", "--prompts", str(prompts), "--output-tokens", "dataset", "--output-dir", str(out)) == 0
    assert [line["output_tokens"] for line in read_lines(out / "requests.jsonl")] == [3, 7, 3, 7]
    result = cli("--url", mock_url, "--output-tokens", "dataset", "--output-dir", str(tmp_path / "r2"))
    assert result.returncode == 2 and "--prompts" in result.stderr
