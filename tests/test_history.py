"""`perfbench history`: filtering by identity and tag, and managing runs (tag, untag, rm), on real
run folders made against the mock (one simulated, two real runs of one identity, one of another)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfbench.commands.main import main
from perfbench.results.identity import run_identity
from perfbench.results.runfiles import read_summary
from perfbench.servers.mock import MockConfig, MockInThread
from perfbench.results.store import RunStore, resolve_baseline

LOAD = ["-c", "2", "-n", "8", "--max-tokens", "4", "--no-plots", "--no-live", "--no-telemetry"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """A store holding runs "sim" (simulated), "a1" and "a2" (model a) and "b" (model b), tagged suite=x."""
    root = tmp_path_factory.mktemp("history")
    store = root / "h.sqlite"
    runs = {}
    with MockInThread(MockConfig(ttft_ms=5, itl_ms=1)) as mock:
        for name, target in {"sim": [], "a1": ["--url", mock.base_url, "--model", "a"],
                             "a2": ["--url", mock.base_url, "--model", "a"], "b": ["--url", mock.base_url, "--model", "b"]}.items():
            runs[name] = root / name
            assert main([*target, *LOAD, "--store", str(store), "--tag", "suite=x", "--output-dir", str(runs[name])]) == 0
    return store, runs


def _listed(capsys: pytest.CaptureFixture, *args: str) -> set[str]:
    """The run folders `perfbench history ARGS` lists (by their run ids)."""
    assert main(["history", *args]) == 0
    out = capsys.readouterr().out
    with RunStore(args[args.index("--store") + 1]) as store:
        return {info.run_dir.name for info in store.list_runs(limit=100) if info.run_id in out}


def test_history_filters_by_identity_like_and_tag(recorded, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    store, runs = recorded
    identity = run_identity(read_summary(runs["a1"])).hash
    assert _listed(capsys, "--store", str(store)) == {"sim", "a1", "a2", "b"}
    assert _listed(capsys, "--store", str(store), "--identity", identity) == {"a1", "a2"}
    assert _listed(capsys, "--store", str(store), "--identity", identity[:6]) == {"a1", "a2"}  # a prefix will do
    assert _listed(capsys, "--store", str(store), "--like", str(runs["b"])) == {"b"}
    with RunStore(store) as history:
        sim_id = history.get_by_dir(runs["sim"]).run_id
    assert _listed(capsys, "--store", str(store), "--like", sim_id) == {"sim"}
    assert _listed(capsys, "--store", str(store), "--like", str(runs["a2"]), "--metric", "ttft_ms.p50") == {"a1", "a2"}
    assert _listed(capsys, "--store", str(store), "--tag", "suite=x", "--identity", identity) == {"a1", "a2"}
    assert _listed(capsys, "--store", str(store), "--tag", "suite=y") == set()


def test_the_runs_table_fits_80_columns_keeping_ids_and_tags_and_says_what_it_left_out(recorded, capsys, monkeypatch) -> None:
    store, runs = recorded
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["history", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    with RunStore(store) as history:
        infos = history.list_runs(limit=100)
    for info in infos:  # whole ids, hashes and tags: what a user copies into --baseline, --identity, history tag
        assert info.run_id in out and info.identity.hash in out
    assert "suite=x" in out and "not shown at 80 columns: version" in out
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["history", "--store", str(store)]) == 0
    wide = capsys.readouterr().out
    assert "not shown" not in wide and "started (UTC)" in wide and "version" in wide


def test_tag_promotes_a_run_to_the_baseline_then_untag_and_rm(recorded, capsys) -> None:
    store, runs = recorded
    identity = run_identity(read_summary(runs["a2"]))
    with RunStore(store) as history:
        a1 = history.get_by_dir(runs["a1"]).run_id
        with pytest.raises(Exception, match="no run with tag check=pass"):
            resolve_baseline("tag:check=pass", history, identity=identity)
    # promote the older run by its folder: it becomes `--baseline tag:check=pass` for its identity
    assert main(["history", "tag", str(runs["a1"]), "check=pass", "owner=me", "--store", str(store)]) == 0
    assert f"{a1}: check=pass, owner=me, suite=x" in capsys.readouterr().out
    with RunStore(store) as history:
        assert resolve_baseline("tag:check=pass", history, identity=identity) == runs["a1"].resolve()
    assert main(["history", "untag", a1[:-1], "owner", "--store", str(store)]) == 0  # a unique id prefix will do
    assert f"{a1}: check=pass, suite=x" in capsys.readouterr().out
    assert main(["history", "rm", a1, "--store", str(store)]) == 0
    assert f"removed {a1} from {store}; its folder {runs['a1'].resolve()} is kept" in capsys.readouterr().out
    assert (runs["a1"] / "summary.json").exists()
    with RunStore(store) as history:
        assert history.get_by_dir(runs["a1"]) is None
        assert resolve_baseline("last", history, identity=identity) == runs["a2"].resolve()


@pytest.mark.parametrize("args, expect", [
    (["untag", "{a2}", "nosuch"], "has no tag nosuch; its tags: suite"),
    (["rm", "20200101T000000Z-none"], "is not in the run store"),
    (["tag", "{a2}", "oops"], "KEY=VALUE"),
    (["tag", "{a2}"], "the following arguments are required"),
    (["--identity", "not-hex"], "is not an identity hash"),
    (["--identity", "ab", "--like", "{a2}"], "not both"),
    (["--like", "/no/such/run"], "is not in the run store"),
])
def test_bad_history_input_is_one_line_exit_2(recorded, capsys, args, expect) -> None:
    store, runs = recorded
    args = [a.replace("{a2}", str(runs["a2"])) for a in args]
    assert main(["history", *args, "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("perfbench: error: ") and expect in err[0], err
