"""Bad input, everywhere: one ``perfbench: error: ...`` line on stderr, exit 2, no traceback.

A table of hostile values for every flag of ``perfbench --help`` and of each subcommand
(negative, zero, NaN, inf, huge, empty, binary, non-UTF-8, paths that are files, folders,
missing or too long). Most rows run ``perfbench.commands.main.main`` in this process (fast); the network
check is replaced by a sentinel, so an input that was wrongly accepted fails its row with
"accepted" instead of starting a benchmark. A few rows run ``python -m perfbench`` for real.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from perfbench.commands import main as cli

REPO = Path(__file__).resolve().parent.parent
URL = "http://127.0.0.1:9/v1/chat/completions"  # never contacted: check_reachable is the sentinel
QUIET = ["--no-live", "--no-telemetry", "--no-plots"]


class Accepted(Exception):
    """The run got as far as contacting the target: the input under test was not refused."""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Hostile paths, keyed by the names the table uses as ``{name}``."""
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    one_byte = tmp_path / "one-byte.sqlite"
    one_byte.write_bytes(b"x")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    corrupt_store = tmp_path / "corrupt.sqlite"
    db = sqlite3.connect(corrupt_store)
    db.execute("CREATE TABLE runs (x)")
    db.commit()
    db.close()
    raw = corrupt_store.read_bytes()
    corrupt_store.write_bytes(raw[:100] + b"\xff" * (len(raw) - 100))  # a real header, garbage pages
    bad_summary = tmp_path / "bad-summary"
    bad_summary.mkdir()
    (bad_summary / "summary.json").write_bytes(bytes(range(256)))
    yaml_list = tmp_path / "list.yaml"
    yaml_list.write_text("- 1\n- 2\n")
    yaml_nan = tmp_path / "nan.yaml"
    yaml_nan.write_text("load:\n  rate: .nan\n")
    return {
        "binary": str(binary), "latin1": str(latin1), "one_byte": str(one_byte), "empty": str(empty),
        "file": str(a_file), "dir": str(folder), "missing": str(tmp_path / "missing"),
        "under_file": str(a_file / "x"), "long": str(tmp_path / ("n" * 300)), "corrupt_store": str(corrupt_store),
        "bad_summary": str(bad_summary), "yaml_list": str(yaml_list), "yaml_nan": str(yaml_nan),
        "tmp": str(tmp_path),
    }


# (flags after the target, text the one error line must contain). The target is URL unless the
# row gives its own --url or --model.
RUN_CASES: list[tuple[list[str], str]] = [
    # target
    (["--url", ""], "--url is empty"),
    (["--url", "   "], "--url is empty"),
    (["--url", "127.0.0.1:8000"], "--url"),
    (["--url", "ftp://h/v1"], "http(s)"),
    (["--url", "http://h:99999/v1"], "--url"),
    (["--url", "http://h:x/v1"], "--url"),
    (["--url", "http://127.0.0.1:8000/v1/chat/completion"], "/v1/chat/completions"),
    (["--url", "http://127.0.0.1:8000/v1/messages"], "/v1/completions"),
    (["--url", "http://127.0.0.1:8000/v1/chat"], "/v1/chat/completions"),
    (["--url", "http://127.0.0.1:8000/openai"], "not an endpoint perfbench knows"),
    (["--url", "http://127.0.0.1:8000/v1/chat/completions\r\nX: y"], "control characters"),
    (["--url", "http://127.0.0.1:8000/v1 x"], "whitespace"),
    (["--url", "http://h/v1/completions", "--api", "openai-chat"], "drop --api"),
    (["--api", "grpc"], "invalid choice"),
    (["--engine", "tgi"], "invalid choice"),
    (["--engine-args", "--x"], "--engine-args"),
    (["--device", "cuda"], "--device"),
    (["--model", "m", "--url", None, "--device", "tpu"], "--device"),
    (["--model", "m", "--url", None, "--dtype", "int3"], "--dtype"),
    (["--model", "m", "--url", None, "--max-batch-size", "0"], "--max-batch-size"),
    (["--model", "m", "--url", None, "--max-batch-size", "-3"], "--max-batch-size"),
    (["--model", ""], "--model is empty"),
    (["--model", "{missing}", "--url", None], "no such directory"),
    (["--header", "NoColon"], "--header"),
    (["--header", ": v"], "--header"),
    (["--header", "Bad Name: v"], "not a valid header name"),
    (["--header", "X-A\r\nEvil: v"], "--header"),
    (["--header", "X-A: v\r\nEvil: x"], "--header"),
    (["--header", "X-A: v\nEvil: x"], "--header"),
    (["--header", "X-A: v\x00"], "--header"),
    (["--header", "Content-Length: 5"], "Content-Length"),
    (["--header", "transfer-encoding: chunked"], "transfer-encoding"),
    (["--header", "Host: evil"], "Host"),
    (["--header", "Connection: close"], "Connection"),
    (["--api-key", "sk-a\nb"], "--api-key"),
    (["--api-key", "sk-a\rb"], "--api-key"),
    (["--api-key", "sk-a\x00b"], "--api-key"),
    (["--url", "http://u:pw@127.0.0.1:9/v1", "--api-key", "sk-1"], "keep one of them"),
    (["--url", "http://u:pw@127.0.0.1:9/v1", "--header", "authorization: Basic eA=="], "keep one of them"),
    (["--ca-cert", "{missing}"], "--ca-cert"),
    (["--ca-cert", "{dir}"], "--ca-cert"),
    (["--ca-cert", "{binary}"], "cannot load its certificates"),
    (["--ca-cert", "{empty}"], "cannot load its certificates"),
    (["--ca-cert", "{long}"], "--ca-cert"),
    (["--ca-cert", ""], "--ca-cert is empty"),
    (["--ca-cert", "{latin1}", "--insecure"], "keep one of them"),
    # load
    (["--concurrency", "0"], "positive"),
    (["--concurrency", "-1"], "positive"),
    (["--concurrency", "x"], "--concurrency"),
    (["--concurrency", ""], "--concurrency"),
    (["--concurrency", ","], "--concurrency"),
    (["--concurrency", "1e3"], "--concurrency"),
    (["--concurrency", "99999999999999999999"], "--concurrency"),
    (["--number", "0"], "positive"),
    (["--number", "-5"], "positive"),
    (["--number", "nan"], "--number"),
    (["--number", "99999999999999999999"], "--number"),
    (["--rate", "0"], "positive"),
    (["--rate", "nan"], "--rate"),
    (["--rate", "inf"], "--rate"),
    (["--rate", "-1"], "positive"),
    (["--rate", "1e300"], "--rate"),
    (["--duration", "0"], "--duration"),
    (["--duration", "nan"], "--duration"),
    (["--duration", "inf"], "--duration"),
    (["--duration", "1e300"], "--duration"),
    (["--duration", "x"], "invalid float"),
    (["--warmup", "-1"], "--warmup"),
    (["--warmup", "99999999999999999999"], "--warmup"),
    (["--arrivals", "burst"], "invalid choice"),
    (["--burstiness", "0", "--rate", "1"], "--burstiness"),
    (["--burstiness", "nan", "--rate", "1"], "--burstiness"),
    (["--burstiness", "2"], "add --rate"),
    (["--ramp-up", "-1", "--rate", "1"], "--ramp-up"),
    (["--ramp-up", "inf", "--rate", "1"], "--ramp-up"),
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "-1"], "--timeout"),
    (["--timeout", "nan"], "--timeout"),
    (["--timeout", "inf"], "--timeout"),
    (["--connect-timeout", "0"], "--connect-timeout"),
    (["--connect-timeout", "nan"], "--connect-timeout"),
    (["--max-response-bytes", "0"], "--max-response-bytes"),
    (["--max-response-bytes", "-1"], "--max-response-bytes"),
    (["--max-response-bytes", "1.5"], "invalid int"),
    (["--workers", "0"], "--workers"),
    (["--workers", "x"], "--workers"),
    (["--workers", "1.5"], "--workers"),
    (["--ray", "my cluster"], "--ray"),
    (["--ray", "ray://head"], "--ray"),
    (["--max-failure-rate", "-0.1"], "--max-failure-rate"),
    (["--max-failure-rate", "2"], "--max-failure-rate"),
    (["--max-failure-rate", "nan"], "--max-failure-rate"),
    (["--search", "latency"], "invalid choice"),
    (["--search", "concurrency", "--slo", "ttft_p99=500", "--rate", "2"], "--rate"),
    (["--search", "concurrency", "--slo", "ttft_p99=500", "--search-start", "0"], "--search-start"),
    (["--search", "concurrency", "--slo", "ttft_p99=500", "--search-start", "nan"], "--search-start"),
    (["--search", "concurrency", "--slo", "ttft_p99=500", "--search-max", "-1"], "--search-max"),
    (["--search", "concurrency", "--slo", "ttft_p99=500", "--search-precision", "0"], "--search-precision"),
    (["--search", "concurrency", "--slo", "ttft_p99=500", "--search-precision", "inf"], "--search-precision"),
    (["--search", "concurrency", "--slo", "ttft_p99=500", "--search-max", "1e300"], "--search-max"),
    (["--search", "concurrency"], "step-limit SLOs"),
    (["--search-max", "8"], "--search"),
    (["--search", "concurrency", "--slo", "ttft_p99=500", "--concurrency", "4"], "--concurrency does nothing"),
    (["--search", "rate", "--slo", "ttft_p99=500", "--rate", "4"], "--rate does nothing"),
    (["--search", "rate", "--slo", "ttft_p99=500", "--max-failure-rate", "0.5"], "--max-failure-rate"),
    (["--search", "rate", "--slo", "ttft_p99=500", "--number", "5,10"], "--number has 2 values"),
    (["--prefix-groups", "4"], "--shared-prefix-tokens"),
    (["--metrics-url", "http://127.0.0.1:9/metrics", "--no-telemetry"], "--no-telemetry"),
    # workload
    (["--prompts", "{missing}"], "not found"),
    (["--prompts", "{dir}"], "prompts"),
    (["--prompts", "{binary}"], "prompts"),
    (["--prompts", "{latin1}"], "UTF-8"),
    (["--prompts", "{empty}"], "prompts"),
    (["--input-tokens", "0"], "--input-tokens"),
    (["--input-tokens", "-5"], "--input-tokens"),
    (["--input-tokens", "nan"], "--input-tokens"),
    (["--input-tokens", "uniform:9-1"], "--input-tokens"),
    (["--input-tokens", "99999999999"], "--input-tokens"),
    (["--output-tokens", "0"], "--output-tokens"),
    (["--output-tokens", "inf"], "--output-tokens"),
    (["--output-tokens", "dataset"], "--prompts"),
    (["--max-tokens", "0"], "--max-tokens"),
    (["--max-tokens", "-1"], "--max-tokens"),
    (["--extra-body", "x"], "valid JSON"),
    (["--extra-body", "[1]"], "JSON object"),
    (["--extra-body", '{"stream": false}'], "stream"),
    (["--extra-body", '{"stream": "yes"}'], "stream"),
    (["--extra-body", '{"stream_options": {}}'], "include_usage"),
    (["--extra-body", '{"stream_options": {"include_usage": false}}'], "include_usage"),
    (["--extra-body", '{"stream_options": null}'], "include_usage"),
    (["--extra-body", '{"messages": []}'], "--prompts"),
    (["--extra-body", '{"prompt": "x"}'], "--prompts"),
    (["--extra-body", '{"model": "x"}'], "--model"),
    (["--extra-body", '{"temperature": NaN}'], "NaN"),
    (["--extra-body", '{"t": Infinity}'], "Infinity"),
    (["--shared-prefix-tokens", "-1"], "--shared-prefix-tokens"),
    (["--prefix-groups", "0"], "--prefix-groups"),
    (["--prefix-groups", "-2"], "--prefix-groups"),
    (["--tokenizer", "{missing}"], "tokenizer"),
    (["--tokenizer", "{file}"], "tokenizer"),
    (["--seed", "-1"], "--seed"),
    (["--seed", "x"], "invalid int"),
    (["--seed", "99999999999999999999999"], "--seed"),
    # checks and output
    (["--slo", "ttf=5"], "ttft"),
    (["--slo", "ttft=-1"], "slo"),
    (["--slo", "ttft=nan"], "slo"),
    (["--slo", "ttft=inf"], "slo"),
    (["--slo", ""], "--slo"),
    (["--scenario", "{missing}"], "scenario"),
    (["--scenario", "{dir}"], "scenario"),
    (["--scenario", "{binary}"], "scenario"),
    (["--scenario", "{latin1}"], "UTF-8"),
    (["--scenario", "{yaml_list}"], "mapping"),
    (["--scenario", "{yaml_nan}"], "load.rate"),
    (["--scenario", "/dev/zero"], "not a regular file"),
    (["--output-dir", "{file}"], "--output-dir"),
    (["--output-dir", "{under_file}"], "--output-dir"),
    (["--output-dir", "{long}"], "--output-dir"),
    (["--output-dir", ""], "--output-dir"),
    (["--name", ""], "--name"),
    (["--tag", "novalue"], "KEY=VALUE"),
    (["--tag", "=v"], "KEY=VALUE"),
    (["--baseline", "{missing}"], "does not exist"),
    (["--baseline", "{file}", "--store", "{tmp}/s.sqlite"], "baseline"),
    (["--baseline", "nosuchrunid", "--store", "{tmp}/s.sqlite"], "not in the run store"),
    (["--threshold", "bogus"], "threshold"),
    (["--threshold", "ttft_ms.p99=+nan%"], "threshold"),
    (["--threshold", "ttft_ms.p99=+1e400%"], "threshold"),
    (["--slo", "ttft_p99=1e400"], "slo"),
    (["--url", None, "--mock", "ttft_ms=1e400"], "ttft_ms"),
    (["--input-tokens", "normal:128,1e300"], "--input-tokens"),
    (["--output-tokens", "uniform:1-99999999"], "--output-tokens"),
    (["--model", "m", "--url", None, "--engine", "vllm", "--engine-args", '"unclosed'], "--engine-args"),
    (["--prompts", "/dev/zero"], "regular file"),
    (["--metrics-url", "http://h:99999/metrics"], "--metrics-url"),
    (["--store", "{one_byte}"], "not a perfbench run store"),
    (["--store", "{binary}"], "not a perfbench run store"),
    (["--store", "{corrupt_store}"], "not a perfbench run store"),
    (["--store", "{dir}"], "--store"),
    (["--store", "{under_file}"], "--store"),
    (["--store", "{long}"], "--store"),
    (["--junit", "{under_file}"], "--junit"),
    (["--junit", "{dir}"], "--junit"),
    (["--junit", "{long}"], "--junit"),
    (["--metrics-url", "x"], "--metrics-url"),
    (["--metrics-url", "ftp://h/metrics"], "--metrics-url"),
    (["--url", None, "--mock", "nosuch=1"], "--mock"),
    (["--url", None, "--mock", "capacity=-1"], "capacity"),
    (["--url", None, "--mock", "itl_ms=nan"], "itl_ms"),
    (["--mock", "itl_ms=1"], "--mock"),
]

SUB_CASES: list[tuple[list[str], str]] = [
    (["mock", "--port", "-1"], "--port"),
    (["mock", "--port", "70000"], "--port"),
    (["mock", "--port", "x"], "invalid int"),
    (["mock", "--ttft-ms", "nan"], "ttft"),
    (["mock", "--itl-ms", "-1"], "itl"),
    (["mock", "--capacity", "0"], "capacity"),
    (["mock", "--cut-rate", "2"], "cut"),
    (["mock", "--stall-s", "inf"], "stall"),
    (["mock", "--seed", "-1"], "seed"),
    (["serve"], "--model"),
    (["serve", "--model", "m", "--port", "0"], "--port"),
    (["serve", "--model", "m", "--port", "99999"], "--port"),
    (["serve", "--model", "m", "--max-batch-size", "0"], "--max-batch-size"),
    (["serve", "--model", "m", "--device", "tpu"], "--device"),
    (["serve", "--model", "m", "--dtype", "int3"], "invalid choice"),
    (["serve", "--model", ""], "--model"),
    (["report", "{missing}"], "summary.json"),
    (["report", "{file}"], "summary.json"),
    (["report", "{bad_summary}"], "summary.json"),
    (["report", "{dir}"], "summary.json"),
    (["plot", "{missing}"], "summary.json"),
    (["plot", "{bad_summary}"], "summary.json"),
    (["compare", "{missing}", "{missing}"], "does not exist"),
    (["compare", "{dir}", "{dir}"], "summary.json"),
    (["compare", "{file}", "{dir}"], "baseline"),
    (["compare", "{bad_summary}", "{bad_summary}"], "summary.json"),
    (["compare", "{dir}", "{dir}", "--confidence", "nan"], "--confidence"),
    (["compare", "{dir}", "{dir}", "--confidence", "2"], "--confidence"),
    (["compare", "{dir}", "{dir}", "--seed", "-1"], "--seed"),
    (["compare", "{dir}", "{dir}", "--threshold", "x"], "threshold"),
    (["compare", "{dir}", "{dir}", "--junit", "{under_file}"], "--junit"),
    (["compare", "{dir}", "{dir}", "--json", "{dir}"], "--json"),
    (["compare", "last", "{dir}", "--store", "{one_byte}"], "not a perfbench run store"),
    (["history", "--limit", "0"], "--limit"),
    (["history", "--limit", "-1"], "--limit"),
    (["history", "--store", "{missing}"], "no run store"),
    (["history", "--store", "{dir}"], "--store"),
    (["history", "--store", "{one_byte}"], "not a perfbench run store"),
    (["history", "--store", "{binary}"], "not a perfbench run store"),
    (["history", "--store", "{corrupt_store}"], "not a perfbench run store"),
    (["history", "--store", "{long}"], "--store"),
    (["history", "--metric", "nosuch"], "unknown metric"),
    (["history", "--plot", "x.png"], "--metric"),
    (["history", "--concurrency", "0"], "--concurrency"),
]


def _fill(argv: list[str | None], files: dict[str, str]) -> list[str]:
    out = []
    for arg in argv:
        if arg is None:
            continue
        for name, path in files.items():
            arg = arg.replace("{" + name + "}", path)
        out.append(arg)
    return out


def _run_argv(flags: list[str | None]) -> list[str | None]:
    """The flags with the default target in front, unless the row sets --url (None: no --url)."""
    if "--url" in flags:
        at = flags.index("--url")
        if flags[at + 1] is None:  # ["--url", None]: a local server (or the mock) run
            return [*flags[:at], *flags[at + 2 :], *QUIET]
        return [*flags, *QUIET]
    return ["--url", URL, *flags, *QUIET]


def _assert_one_line_error(code: int, err: str, expect: str) -> str:
    lines = err.splitlines()
    assert "Traceback" not in err, err
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("perfbench: error: "), err
    assert expect.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture
def no_network(monkeypatch):
    """Stop a run that got past validation before it contacts anything or starts a server."""

    def accepted(*args, **kwargs):
        raise Accepted("the input was accepted and the run started")

    monkeypatch.setattr("perfbench.benchmark.runner.check_reachable", accepted)
    monkeypatch.setattr("perfbench.servers.local.start_local_server", accepted)
    monkeypatch.setattr("perfbench.servers.mock.MockProcess", accepted)


@pytest.mark.parametrize("flags, expect", RUN_CASES, ids=[" ".join(map(str, f))[:60] for f, _ in RUN_CASES])
def test_run_flag_rejects_hostile_value(flags, expect, files, no_network, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # a default output dir lands here, not in the repository
    code = cli.main(_fill(_run_argv(flags), files))
    _assert_one_line_error(code, capsys.readouterr().err, expect)


@pytest.mark.parametrize("argv, expect", SUB_CASES, ids=[" ".join(a)[:60] for a, _ in SUB_CASES])
def test_subcommand_rejects_hostile_value(argv, expect, files, no_network, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    def accepted(coroutine):  # `mock` and `serve` serve until stopped: an accepted value must not start them
        coroutine.close()
        raise Accepted("the input was accepted and the server started")

    monkeypatch.setattr("asyncio.run", accepted)
    code = cli.main(_fill(argv, files))
    _assert_one_line_error(code, capsys.readouterr().err, expect)


def test_serve_and_model_without_torch_name_the_install(monkeypatch, capsys, no_network):
    """find_spec returns None for a module set to None in sys.modules: torch looks uninstalled."""
    monkeypatch.setitem(sys.modules, "torch", None)
    for argv in (["serve", "--model", "m"], ["--model", "m", *QUIET]):
        code = cli.main(argv)
        line = _assert_one_line_error(code, capsys.readouterr().err, "needs torch and transformers")
        assert "pip install 'perfbench[transformers]'" in line


def _subprocess(*argv: str | bytes, timeout_s: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "perfbench", *argv], cwd=REPO, capture_output=True, timeout=timeout_s)


@pytest.mark.parametrize(
    "argv, expect",
    [
        ([b"--url", b"http://127.0.0.1:9/v1/\xff\xfe"], "--url"),  # non-UTF-8 bytes in argv
        ([b"--url", URL.encode(), b"--header", b"X-\xff: v"], "--header"),
        ([b"--url", URL.encode(), b"--api-key", b"sk-\xff"], "--api-key"),
        ([b"--url", URL.encode(), b"--seed", b"-1"], "--seed"),
        ([b"--url", URL.encode(), b"--header", b"X-A: v\r\nEvil: x"], "--header"),
        ([b"history", b"--store", b"/dev/null/x"], "--store"),
    ],
)
def test_real_subprocess_one_line_exit_2(argv, expect):
    result = _subprocess(*argv)
    _assert_one_line_error(result.returncode, result.stderr.decode("utf-8", "replace"), expect)


def test_scenario_binary_file_in_a_real_subprocess(files):
    result = _subprocess("--scenario", files["binary"])
    _assert_one_line_error(result.returncode, result.stderr.decode("utf-8", "replace"), "scenario")


def test_non_database_store_is_refused_and_left_alone(files):
    """A 1-byte file given as --store must not be overwritten with a new database."""
    before = Path(files["one_byte"]).read_bytes()
    result = _subprocess("--store", files["one_byte"], "--number", "1", *QUIET)
    _assert_one_line_error(result.returncode, result.stderr.decode(), "is not a perfbench run store")
    assert Path(files["one_byte"]).read_bytes() == before


def test_non_utf8_output_dir_in_a_real_subprocess(tmp_path):
    """A non-UTF-8 folder name would crash the terminal and summary.json after the run: refused before it."""
    result = _subprocess(b"--number", b"1", b"--no-live", b"--output-dir", os.fsencode(tmp_path) + b"/out-\xff\xfe")
    _assert_one_line_error(result.returncode, result.stderr.decode("utf-8", "replace"), "--output-dir")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("flag", ["--output-dir", "--store", "--junit"])
def test_a_path_past_the_file_systems_limit_is_one_line_naming_the_flag(tmp_path, flag):
    """Each name fits (200 bytes), the whole path does not (over 4,096 bytes): refused before the run."""
    too_long = str(tmp_path) + ("/" + "d" * 200) * 21
    result = _subprocess("--number", "1", "--no-live", "--no-plots", flag, too_long)
    line = _assert_one_line_error(result.returncode, result.stderr.decode(), f"choose a shorter {flag}")
    assert "bytes long" in line and len(line) < 400, line  # the path is not printed whole
    assert not list(tmp_path.iterdir())


def test_non_utf8_subcommand_argument_is_one_line():
    result = _subprocess(b"report", b"/tmp/\xff-missing")
    _assert_one_line_error(result.returncode, result.stderr.decode("utf-8", "replace"), "not valid UTF-8")


def test_junit_that_cannot_be_written_after_the_run_is_one_line_and_keeps_the_run(tmp_path, capsys, monkeypatch):
    """The disk went read-only between the up-front check and the end of the run."""
    import errno
    import json

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("perfbench.report.junit.write_junit", read_only)
    run_dir = tmp_path / "run"
    code = cli.main(["--number", "2", "--no-live", "--no-telemetry", "--no-plots", "--output-dir", str(run_dir),
                     "--junit", str(tmp_path / "junit.xml"), "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("perfbench: error: ")] == [
        f"perfbench: error: cannot write --junit {tmp_path / 'junit.xml'} (Read-only file system); "
        "the run's files are kept, choose a writable path"
    ]
    assert json.loads((run_dir / "summary.json").read_text())["steps"][0]["requests_succeeded"] == 2
    assert (run_dir / "requests.jsonl").read_text().count("\n") == 2
    assert (tmp_path / "s.sqlite").stat().st_size > 0  # recorded in the history all the same


def test_history_lists_a_store_with_a_damaged_row(tmp_path, capsys):
    from perfbench.results.store import RunStore

    store = tmp_path / "s.sqlite"
    RunStore(store).close()
    db = sqlite3.connect(store)
    db.execute("INSERT INTO runs (run_id, recorded_at, started_at, run_dir, summary_json) VALUES ('r1', 'x', 'y', '/nowhere', '{not json')")
    db.commit()
    db.close()
    for argv in (["history", "--store", str(store)], ["history", "--store", str(store), "--metric", "ttft_ms.p99"]):
        assert cli.main(argv) == 0
        captured = capsys.readouterr()
        assert "r1" in captured.out and "Traceback" not in captured.err


def test_api_key_from_env_loses_a_trailing_newline_but_not_an_inner_one(monkeypatch):
    from perfbench.config.run_config import config_from_settings
    from perfbench.core.errors import ConfigError

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-file\n")
    assert config_from_settings({"url": URL}).api_key == "sk-from-file"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-a\nInjected: 1")
    with pytest.raises(ConfigError, match=r"\$OPENAI_API_KEY contains a line break"):
        config_from_settings({"url": URL})
