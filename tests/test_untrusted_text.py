"""What a server (or a file, or the history store) says is data: it never leaks the key, never
acts on the terminal, and is never read as rich markup.

Every test runs the real command line against a raw server on 127.0.0.1 (tests/raw_server.py)
or the built-in mock, and reads what a user would: stdout, stderr and the run's files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raw_server import RawServer, chat_answer, error_response, sse_response

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-Zq7Secret0123456789"  # no 6-character start of it may reach any output
CUT = 300  # where a record's error text is cut (perfbench.core.redact.ERROR_TEXT_CHARS)
FINISH_CUT = 40  # where a finish reason is cut


def perfbench(tmp_path: Path, *argv: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, with the user's home out of reach."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env |= {"XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "perfbench", *argv], cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout_s, env=env)


# ---------------------------------------------------------------- 1. secrets survive no cut


def _across(cut: int, prefix: str) -> list[int]:
    """Where the key starts: from 10 characters before it reaches the cut to 10 after the cut, for
    a cut counted in the server's words and one counted in the whole line (after ``prefix``)."""
    return list(range(cut - len(prefix) - len(KEY) - 10, cut + 11))


HTTP_STARTS = _across(CUT, "HTTP 500: ")
EVENT_STARTS = _across(CUT, "error event: ")
FINISH_STARTS = _across(FINISH_CUT, "")
KINDS = [("http", s) for s in HTTP_STARTS] + [("event", s) for s in EVENT_STARTS] + [("finish", s) for s in FINISH_STARTS]


def _echoing(start: int, size: int) -> str:
    return "x" * start + KEY + "y" * (size - start)


def echo_across_the_cut(index: int, headers: dict[str, str]) -> bytes:
    """Request k echoes the key at the k-th place around a cut: in an HTTP 500 body, an error event or a finish reason."""
    assert headers.get("authorization") == f"Bearer {KEY}"  # the key is sent, and so known to the server
    kind, start = KINDS[index % len(KINDS)]
    if kind == "http":
        return error_response(500, _echoing(start, 2 * CUT))
    if kind == "event":
        return sse_response({"error": {"message": _echoing(start, 2 * CUT)}})
    return chat_answer(finish_reason=_echoing(start, FINISH_CUT))


def _outputs(run: subprocess.CompletedProcess[str], run_dir: Path) -> dict[str, str]:
    files = {name: (run_dir / name).read_text(encoding="utf-8") for name in ("requests.jsonl", "summary.json", "report.html")}
    return {"stdout": run.stdout, "stderr": run.stderr, **files}


def test_a_key_echoed_across_the_cut_of_an_error_text_reaches_no_output(tmp_path):
    run_dir = tmp_path / "run"
    with RawServer(echo_across_the_cut) as server:
        run = perfbench(tmp_path, "--url", server.url, "--api-key", KEY, "-n", str(len(KINDS)), "-c", "8",
                        "--no-preflight", "--no-live", "--no-telemetry", "--output-dir", str(run_dir),
                        "--store", str(tmp_path / "store.sqlite"))
    assert run.returncode == 0, run.stderr[-3000:]
    outputs = _outputs(run, run_dir)
    for name, text in outputs.items():
        assert KEY[:6] not in text, (name, text[max(0, text.find(KEY[:6]) - 80):][:200])
    assert "HTTP 500: xxxx" in outputs["requests.jsonl"] and "error event: xxxx" in outputs["requests.jsonl"]
    assert "xxx***yyy" in outputs["requests.jsonl"]  # a key wholly before the cut is masked where it was


def test_a_pre_flight_error_echoing_the_key_across_the_cut_leaves_no_trace_on_stderr(tmp_path):
    for offset in (-12, -7, -1):  # the cut falls 12, 7 and 1 characters into the key
        start = CUT - len("HTTP 500: ") - len(KEY) - offset
        with RawServer(lambda index, headers: error_response(500, _echoing(start, 2 * CUT))) as server:
            run = perfbench(tmp_path, "--url", server.url, "--api-key", KEY, "-n", "1", "--no-live", "--no-telemetry",
                            "--output-dir", str(tmp_path / f"run{offset}"), "--store", str(tmp_path / "store.sqlite"))
        assert run.returncode == 3, run.stderr
        assert "pre-flight request failed (http_500): HTTP 500: xxxx" in run.stderr
        assert KEY[:6] not in run.stdout + run.stderr, run.stderr


# ---------------------------------------------------------------- 2. no server text reaches the terminal raw

# What a hostile server may put in its words: a window title (OSC 0), a clipboard write (OSC 52),
# a hyperlink (OSC 8), a cleared screen (CSI 2J), a carriage return, a direction override.
ESCAPES = "\x1b]0;pwned\x07 \x1b]52;c;ZXZpbA==\x07 \x1b]8;;http://evil.example/\x1b\\link\x1b]8;;\x1b\\ \x1b[2J \rover \u202eright"
RAW = ("\x1b", "\x07", "\r", "\u202e")  # none of these may be printed or written to report.html


def _raw_in(text: str) -> list[str]:
    return [repr(c) for c in RAW if c in text]


def escapes_in_every_error(index: int, headers: dict[str, str]) -> bytes:
    if index % 2:
        return error_response(500, f"overloaded {ESCAPES} done")
    return sse_response({"error": {"message": f"stream broke {ESCAPES} done"}})


def test_escape_sequences_from_a_server_are_shown_escaped_on_the_terminal_stderr_and_report(tmp_path):
    run_dir = tmp_path / "run"
    with RawServer(escapes_in_every_error) as server:
        run = perfbench(tmp_path, "--url", server.url, "-n", "6", "-c", "2", "--no-preflight", "--no-live",
                        "--no-telemetry", "--output-dir", str(run_dir), "--store", str(tmp_path / "store.sqlite"))
        preflight = perfbench(tmp_path, "--url", server.url, "-n", "1", "--no-live", "--no-telemetry",
                              "--output-dir", str(tmp_path / "pre"), "--store", str(tmp_path / "store.sqlite"))
    assert run.returncode == 3 and "every request failed" in run.stderr, run.stderr  # the server's words on stderr
    assert preflight.returncode == 3 and "pre-flight request failed" in preflight.stderr, preflight.stderr
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    for name, text in (("stdout", run.stdout), ("stderr", run.stderr), ("pre-flight stderr", preflight.stderr),
                       ("report.html", report)):
        assert _raw_in(text) == [], (name, text[-1500:])
        assert r"\x1b]0;pwned\x07" in text, (name, text[-1500:])  # shown, as text
    assert r"\x1b]52;c;ZXZpbA==\x07" in run.stdout and r"\x1b[2J" in run.stdout and r"\u202eright" in run.stdout
    # The files keep the server's words as data (JSON escapes them); only display neutralises them.
    assert "\\u001b]0;pwned\\u0007" in (run_dir / "requests.jsonl").read_text()


def test_control_characters_in_the_history_store_and_tags_are_shown_escaped(tmp_path):
    store = str(tmp_path / "store.sqlite")
    with RawServer(lambda index, headers: chat_answer(finish_reason=f"stop{ESCAPES}")) as server:
        run = perfbench(tmp_path, "--url", server.url, "-n", "2", "--no-live", "--no-telemetry", "--no-plots",
                        "--model", f"m{ESCAPES}", "--tag", f"k=v{ESCAPES}", "--output-dir", str(tmp_path / "run"), "--store", store)
    assert run.returncode == 0, run.stderr
    listing = perfbench(tmp_path, "history", "--store", store)
    trend = perfbench(tmp_path, "history", "--store", store, "--metric", "ttft_ms.p50")
    tagged = perfbench(tmp_path, "history", "tag", str(tmp_path / "run"), f"k2=w{ESCAPES}", "--store", store)
    for name, done in (("run", run), ("history", listing), ("trend", trend), ("tag", tagged)):
        assert done.returncode == 0, (name, done.stderr)
        assert _raw_in(done.stdout + done.stderr) == [], (name, done.stdout[-2000:])
    assert r"m\x1b]0;pwned\x07" in run.stdout  # the model in the summary's title
    assert r"stop\x1b]0;pwned\x07" in run.stdout  # the server's finish reason
    assert r"m\x1b]0;pwned\x07" in listing.stdout and r"m\x1b]0;pwned\x07" in trend.stdout  # the stored model
    assert r"w\x1b]0;pwned\x07" in tagged.stdout


@pytest.mark.parametrize("source", ["--slo", "--prompts", "scenario"])
def test_a_flag_or_file_value_shown_back_in_a_one_line_error_is_escaped(tmp_path, capsys, source):
    from perfbench.commands.main import main

    value = "x\x1b]0;pwned\x07\r\u202e"
    if source == "--slo":
        argv = ["--slo", f"{value}=5"]
    elif source == "--prompts":
        argv = ["--prompts", str(tmp_path / f"prompts{value}.txt")]  # a path (a file name) that is not there
    else:
        scenario = tmp_path / "scenario.yaml"
        scenario.write_text('slo: "x\\e]0;pwned\\a\\r=5"\n', encoding="utf-8")  # YAML escapes: the file holds only text
        argv = ["--scenario", str(scenario)]
    assert main([*argv, "-n", "1", "--no-live", "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("perfbench: error: "), err
    assert _raw_in(err) == [] and r"x\x1b]0;pwned\x07" in err, err


# ---------------------------------------------------------------- 3. rich markup in data is text

MARKUP = "[/bold][red]m:smile:"  # a closing tag rich cannot match (MarkupError), a colour, an emoji code


def _run(tmp_path: Path, url: str, *flags: str) -> int:
    from perfbench.commands.main import main

    return main(["--url", url, "-n", "2", "--no-live", "--no-telemetry", "--store", str(tmp_path / "store.sqlite"), *flags])


def _flags(case: str, tmp_path: Path) -> tuple[list[str], str]:
    """The flags that put MARKUP into the run, and the folder the run writes."""
    run_dir = tmp_path / "run"
    if case == "output dir":
        run_dir = tmp_path / f"run{MARKUP}"
        return ["--output-dir", str(run_dir)], str(run_dir)
    flags = {"model": ["--model", MARKUP], "url": [], "finish reason": []}[case]
    return [*flags, "--output-dir", str(run_dir), "--no-plots"], str(run_dir)


@pytest.mark.parametrize("case", ["model", "url", "finish reason", "output dir"])
def test_markup_in_a_flag_or_from_the_server_is_printed_as_text(tmp_path, capsys, case):
    finish = MARKUP if case == "finish reason" else "stop"
    with RawServer(lambda index, headers: chat_answer(finish_reason=finish)) as server:
        url = server.url + (f"?note={MARKUP}" if case == "url" else "")
        flags, run_dir = _flags(case, tmp_path)
        assert _run(tmp_path, url, *flags) == 0
    out = capsys.readouterr().out
    assert MARKUP in out, out[-3000:]  # as it was given: not read as markup, no emoji
    assert "😄" not in out
    if case == "output dir":
        assert f"Report: {run_dir}/report.html" in out


@pytest.mark.parametrize("field", ["model", "tag"])
def test_markup_in_the_history_store_is_printed_as_text(tmp_path, capsys, monkeypatch, field):
    from perfbench.commands.main import main

    monkeypatch.setenv("COLUMNS", "400")  # every column shown
    store = str(tmp_path / "store.sqlite")
    flags = ["--model", MARKUP] if field == "model" else ["--tag", f"k={MARKUP}"]
    with RawServer(lambda index, headers: chat_answer()) as server:
        assert _run(tmp_path, server.url, *flags, "--output-dir", str(tmp_path / "run"), "--no-plots") == 0
    capsys.readouterr()
    for argv in (["history", "--store", store], ["history", "--store", store, "--metric", "ttft_ms.p50"]):
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        assert MARKUP in out, (argv, out[-3000:])


def test_markup_in_the_folders_of_compared_runs_is_printed_as_text(tmp_path, capsys, monkeypatch):
    from perfbench.commands.main import main

    monkeypatch.setenv("COLUMNS", "400")  # the long folder names on one line each
    run_dir = tmp_path / f"run{MARKUP}"
    with RawServer(lambda index, headers: chat_answer()) as server:
        assert _run(tmp_path, server.url, "--output-dir", str(run_dir), "--no-plots") == 0
    capsys.readouterr()
    assert main(["compare", str(run_dir), str(run_dir)]) == 0
    assert f"base: {run_dir}" in capsys.readouterr().out


def test_a_dollar_formula_in_the_model_name_is_drawn_as_written_in_the_plots(tmp_path, capsys):
    # matplotlib reads $...$ as mathtext: "\foo{" is no formula and raised while the plots were saved
    run_dir = tmp_path / "run"
    with RawServer(lambda index, headers: chat_answer()) as server:
        assert _run(tmp_path, server.url, "--model", r"$\foo{$", "--output-dir", str(run_dir)) == 0
    assert (run_dir / "plots" / "percentiles.png").exists() and (run_dir / "report.html").exists()
