"""Like for like (DESIGN.md, Comparisons): a run's identity in summary.json, compare and --baseline
refusing runs of another identity, and the store choosing baselines of the run's own identity.

Run folders are real: perfbench runs against its mock, simulated (no --url) or as a "real" target
(a MockInThread at a URL). The nightly sequence of the README is played night by night at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from perfbench.commands.main import main
from perfbench.results.identity import run_identity
from perfbench.servers.mock import MockConfig, MockInThread
from perfbench.results.store import NoBaselineYet, RunStore, resolve_baseline

FAST = MockConfig(ttft_ms=20, itl_ms=2)
SLOW = MockConfig(ttft_ms=40, itl_ms=4)  # the regressed build: twice as slow
LOAD = ["-c", "2", "-n", "24", "--max-tokens", "8"]
QUIET = ["--no-plots", "--no-live", "--no-telemetry"]
# generous limits: only the 2x slower build must regress, whatever else the machine is doing
LIMITS = ["--threshold", "ttft_ms.p50=+30%,tpot_ms.p50=+30%"]


def run(*args: str) -> int:
    return main([*args, *QUIET])


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def real_url():
    with MockInThread(FAST) as mock:
        yield f"{mock.base_url}/v1/chat/completions"


@pytest.fixture(scope="module")
def runs(real_url, tmp_path_factory) -> dict[str, Path]:
    """Run folders: two alike real runs, one of another model, one of another temperature, one simulated."""
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for name, extra in {
        "a": ["--model", "m-a"], "a2": ["--model", "m-a"], "model": ["--model", "m-b"],
        "hot": ["--model", "m-a", "--extra-body", '{"temperature": 0.7}'],
    }.items():
        assert run("--url", real_url, *LOAD, *extra, "--output-dir", str(root / name)) == 0
        made[name] = root / name
    assert run(*LOAD, "--output-dir", str(root / "sim")) == 0
    made["sim"] = root / "sim"
    return made


def test_summary_records_the_identity_and_an_old_folder_gets_the_same(runs) -> None:
    recorded = summary(runs["a"])["identity"]
    assert recorded["schema"] == "perfbench.identity/1" and len(recorded["hash"]) == 12
    assert (recorded["simulated"], recorded["model"], recorded["api"]) == (False, "m-a", "openai-chat")
    assert recorded["load"] == {"mode": "closed", "steps": "c=2 n=24", "duration_s": None, "search": None}
    assert recorded["workload"]["prompts"] == "synthetic" and recorded["workload"]["max_tokens"] == 8
    # a folder written before identities existed: the same identity, from its config and target
    old = {k: v for k, v in summary(runs["a"]).items() if k != "identity"}
    assert run_identity(old).hash == recorded["hash"]
    assert summary(runs["a2"])["identity"]["hash"] == recorded["hash"]
    assert summary(runs["model"])["identity"]["hash"] != recorded["hash"]
    sim = summary(runs["sim"])["identity"]
    assert (sim["target"], sim["simulated"]) == ("built-in mock", True)


def test_the_target_is_scheme_host_port_and_path_without_secrets() -> None:
    url = "http://user:hunter2@GPU-Box/v1/chat/completions?api_key=sk-secret&deployment=a"
    identity = run_identity({"target": {"url": url, "api": "openai-chat", "model": "m"}, "config": {"url": url}})
    assert identity.fields["target"] == "http://gpu-box:80/v1/chat/completions?api_key=***&deployment=a"
    assert "hunter2" not in json.dumps(identity.to_dict()) and "sk-secret" not in json.dumps(identity.to_dict())
    same = run_identity({"target": {"url": "http://gpu-box:80/v1/chat/completions?api_key=other&deployment=a",
                                    "api": "openai-chat", "model": "m"}, "config": {}})
    assert same.fields["target"] == identity.fields["target"]


def test_sampling_flags_and_a_trace_are_part_of_the_workload_and_absent_settings_change_no_hash(tmp_path) -> None:
    def identity(**config):
        return run_identity({"target": {"url": "http://h:1/v1/chat/completions", "api": "openai-chat", "model": "m"},
                             "config": {"url": "http://h:1/v1/chat/completions", **config}})

    plain = identity()
    assert "sampling" not in plain.fields["workload"] and "trace" not in plain.fields["workload"]
    assert identity(temperature=None, top_p=None, top_k=None, trace=None).hash == plain.hash  # older runs keep their hash
    hot = identity(temperature=0.7)
    assert hot.fields["workload"]["sampling"] == {"temperature": 0.7} and hot.hash != plain.hash
    assert identity(top_k=5).hash != plain.hash

    trace = tmp_path / "t.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 8, "output_length": 4}\n')
    replay = identity(trace=str(trace), trace_speedup=1.0, trace_window=None, trace_block_tokens=512)
    workload = replay.fields["workload"]
    assert workload["prompts"] == "trace"
    assert workload["trace"]["sha256"] == hashlib.sha256(trace.read_bytes()).hexdigest()
    assert identity(trace=str(trace), trace_speedup=2.0, trace_window=None, trace_block_tokens=512).hash != replay.hash
    trace.write_text('{"timestamp": 0, "input_length": 9, "output_length": 4}\n')
    assert identity(trace=str(trace), trace_speedup=1.0, trace_window=None, trace_block_tokens=512).hash != replay.hash
    recorded = run_identity({"target": {"url": "http://h:1/v1/chat/completions", "api": "openai-chat", "model": "m"},
                             "config": {"url": "http://h:1/v1/chat/completions", "trace": str(trace), "trace_speedup": 1.0,
                                        "trace_window": None, "trace_block_tokens": 512},
                             "identity": replay.to_dict()})
    assert recorded.hash == replay.hash  # the file as it was when the run was made


def test_compare_refuses_another_model_in_one_line(runs, capsys) -> None:
    assert main(["compare", str(runs["a"]), str(runs["model"])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["perfbench: error: runs differ in model (m-a vs m-b); pass --allow-mismatch to compare anyway"]


def test_compare_refuses_simulated_against_real_and_another_temperature(runs, capsys) -> None:
    assert main(["compare", str(runs["sim"]), str(runs["a"])]) == 2
    err = capsys.readouterr().err
    assert "simulated (true vs false)" in err and "target (built-in mock vs http://127.0.0.1:" in err
    assert "model (mock vs m-a)" in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(runs["a"]), str(runs["hot"])]) == 2
    assert "workload.extra_body.temperature (none vs 0.7)" in capsys.readouterr().err


def test_allow_mismatch_compares_and_says_so_in_the_table_the_json_and_the_report(runs, tmp_path, capsys) -> None:
    out = tmp_path / "c.json"
    assert main(["compare", str(runs["a"]), str(runs["model"]), "--allow-mismatch", "--json", str(out),
                 "--threshold", "ttft_ms.p50=+300%"]) == 0
    assert "Not like for like (--allow-mismatch): the runs differ in model (m-a vs m-b)" in capsys.readouterr().out
    assert json.loads(out.read_text())["mismatch"] == ["model (m-a vs m-b)"]
    assert main(["report", str(runs["model"]), "--baseline", str(runs["a"])]) == 2
    assert "runs differ in model" in capsys.readouterr().err
    assert main(["report", str(runs["model"]), "--baseline", str(runs["a"]), "--allow-mismatch"]) == 0
    page = (runs["model"] / "report.html").read_text()
    assert 'id="mismatch"' in page and "the runs differ in model (m-a vs m-b)" in page


def test_prompts_file_hash_is_part_of_the_workload(real_url, tmp_path, capsys) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello there\nhow are you\n")
    args = ["--url", real_url, *LOAD, "--prompts", str(prompts)]
    assert run(*args, "--output-dir", str(tmp_path / "p1")) == 0
    workload = summary(tmp_path / "p1")["identity"]["workload"]
    assert workload["prompts"] == "file"
    assert workload["prompts_sha256"] == hashlib.sha256(prompts.read_bytes()).hexdigest()
    prompts.write_text("a different question\n")
    # the first run keeps the hash of the file as it read it
    assert run_identity(summary(tmp_path / "p1")).fields["workload"]["prompts_sha256"] == workload["prompts_sha256"]
    assert run(*args, "--output-dir", str(tmp_path / "p2")) == 0
    assert main(["compare", str(tmp_path / "p1"), str(tmp_path / "p2")]) == 2
    assert "workload.prompts_sha256" in capsys.readouterr().err


def test_last_and_tag_consider_only_runs_of_the_same_identity(runs, tmp_path) -> None:
    store = RunStore(tmp_path / "h.sqlite")
    ids = {name: store.record_run(runs[name], {"suite": "x"}) for name in ("a", "model", "sim")}
    identity = run_identity(summary(runs["a2"]))
    assert resolve_baseline("last", store, identity=identity) == runs["a"].resolve()
    assert resolve_baseline("tag:suite=x", store, identity=identity) == runs["a"].resolve()
    assert resolve_baseline("last", store) == runs["sim"].resolve()  # without an identity: the newest of all
    with pytest.raises(NoBaselineYet, match=f"no run with tag suite=x of identity {identity.hash} .real"):
        resolve_baseline("tag:suite=x", store, identity=identity, exclude_dir=runs["a"])
    # `perfbench compare last NEW` takes NEW's identity and never NEW itself
    store.record_run(runs["a2"])
    store.close()
    assert main(["compare", "last", str(runs["a2"]), "--store", str(tmp_path / "h.sqlite"), "--json", str(tmp_path / "c.json"),
                 "--threshold", "ttft_ms.p50=+300%"]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["base_dir"] == str(runs["a"].resolve())
    assert ids  # recorded


def test_the_nightly_sequence_night_after_night(tmp_path, caplog) -> None:
    """The README's recipe in one store: a simulated nightly run, the first real night, a model change,
    a real regression (exit 1), and the night after it compared with the last good run, not the bad one."""
    store = str(tmp_path / "h.sqlite")
    nightly = [*LOAD, "--tag", "suite=nightly", "--baseline", "tag:suite=nightly,check=pass", "--store", store, *LIMITS]

    def night(name: str, *target: str) -> int:
        return run(*target, *nightly, "--output-dir", str(tmp_path / name))

    assert night("sim") == 0  # a simulated nightly run in the same store (someone tried the recipe first)
    with MockInThread(FAST) as server:
        url = server.base_url
        port = int(url.rsplit(":", 1)[1])
        real = ["--url", f"{url}/v1/chat/completions", "--model", "m"]
        with caplog.at_level(logging.WARNING):
            assert night("n1", *real) == 0  # the first real night: never compared with the simulated run
        assert not (tmp_path / "n1" / "comparison.json").exists()
        n1_identity = summary(tmp_path / "n1")["identity"]["hash"]
        assert f"no run with tag suite=nightly,check=pass of identity {n1_identity}" in caplog.text
        assert night("n2", *real) == 0
        assert night("m2", "--url", f"{url}/v1/chat/completions", "--model", "m2") == 0  # a new model: its own first night
        assert not (tmp_path / "m2" / "comparison.json").exists()
    with MockInThread(SLOW, port=port):  # the same address serving a slower build
        assert night("n3", *real) == 1
    with MockInThread(FAST, port=port):
        assert night("n4", *real) == 0
    base_of = {name: json.loads((tmp_path / name / "comparison.json").read_text())["base_dir"]
               for name in ("n2", "n3", "n4")}
    assert base_of == {"n2": str(tmp_path / "n1"), "n3": str(tmp_path / "n2"), "n4": str(tmp_path / "n2")}
    with RunStore(Path(store)) as history:
        checks = {r.run_dir.name: r.tags["check"] for r in history.list_runs()}
    assert checks == {"sim": "pass", "n1": "pass", "n2": "pass", "m2": "pass", "n3": "fail", "n4": "pass"}
    assert main(["compare", str(tmp_path / "n2"), str(tmp_path / "m2")]) == 2  # a model change is refused


def test_an_explicit_baseline_of_another_identity_is_exit_2_after_the_run(runs, real_url, tmp_path, capsys) -> None:
    out = tmp_path / "b"
    assert run("--url", real_url, *LOAD, "--model", "m-b", "--baseline", str(runs["a"]), "--output-dir", str(out)) == 2
    assert "runs differ in model (m-a vs m-b); pass --allow-mismatch" in capsys.readouterr().err
    assert (out / "summary.json").exists() and not (out / "comparison.json").exists()
    assert run("--url", real_url, *LOAD, "--model", "m-b", "--baseline", str(runs["a"]), "--allow-mismatch",
               "--threshold", "ttft_ms.p50=+300%", "--output-dir", str(tmp_path / "c")) == 0
    assert json.loads((tmp_path / "c" / "comparison.json").read_text())["mismatch"] == ["model (m-a vs m-b)"]
    assert main(["report", str(tmp_path / "c")]) == 0  # rebuilt from comparison.json: still says so
    assert "the runs differ in model (m-a vs m-b)" in (tmp_path / "c" / "report.html").read_text()


def test_report_rebuilt_later_keeps_the_baseline_comparison(runs, real_url, tmp_path) -> None:
    out = tmp_path / "r"
    assert main(["--url", real_url, *LOAD, "--model", "m-a", "--baseline", str(runs["a"]), "--no-live", "--no-telemetry",
                 "--threshold", "ttft_ms.p50=+300%", "--output-dir", str(out)]) == 0
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Comparison with the baseline" in page and str(runs["a"]) in page and 'id="mismatch"' not in page


def test_a_gone_folder_of_another_identity_does_not_stop_the_run(runs, real_url, tmp_path) -> None:
    """A shared store: someone's newer simulated run was deleted; `--baseline last` still finds this run's own."""
    store = str(tmp_path / "h.sqlite")
    with RunStore(Path(store)) as history:
        history.record_run(runs["a"])
    assert run(*LOAD, "--store", store, "--output-dir", str(tmp_path / "sim")) == 0
    (tmp_path / "sim" / "summary.json").unlink()
    out = tmp_path / "new"
    assert run("--url", real_url, *LOAD, "--model", "m-a", "--baseline", "last", "--store", store,
               "--threshold", "ttft_ms.p50=+300%", "--output-dir", str(out)) == 0
    assert json.loads((out / "comparison.json").read_text())["base_dir"] == str(runs["a"].resolve())


def test_sessions_are_part_of_the_workload_identity(tmp_path) -> None:
    def identity(**config):
        return run_identity({"target": {"url": "http://h:1/v1/chat/completions", "api": "openai-chat", "model": "m"},
                             "config": {"url": "http://h:1/v1/chat/completions", **config}})

    plain = identity()
    assert "sessions" not in plain.fields["workload"]
    three = identity(turns="fixed:3")
    assert three.fields["workload"]["prompts"] == "sessions" and three.hash != plain.hash
    assert identity(turns="fixed:4").hash != three.hash and identity(turns="fixed:3", think_time="2").hash != three.hash
    conversations = tmp_path / "c.jsonl"
    conversations.write_text('["a", "b"]\n')
    first = identity(conversations=str(conversations))
    assert first.fields["workload"]["sessions"]["conversations_sha256"] == hashlib.sha256(conversations.read_bytes()).hexdigest()
    conversations.write_text('["a", "c"]\n')
    assert identity(conversations=str(conversations)).hash != first.hash
