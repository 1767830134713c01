"""perfbench.results.store: SQLite round trip, tags, baseline resolution, trends; perfbench.commands.history CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from perfbench.core.errors import ConfigError
from perfbench.commands.history import main as history_main
from perfbench.results.store import NoBaselineYet, RunStore, default_store_path, parse_tags, resolve_baseline
from run_fixtures import StepSpec, write_run
from usage_errors import assert_one_line_usage_error


def _runs(tmp_path: Path) -> list[Path]:
    specs = [StepSpec(concurrency=2, requests=30), StepSpec(concurrency=8, requests=30)]
    return [
        write_run(tmp_path / f"run{i}", [StepSpec(concurrency=2, requests=30, slowdown=1 + i / 10), specs[1]],
                  seed=i, started_at=f"2024-05-0{i + 1}T02:00:00Z")
        for i in range(3)
    ]


def test_default_store_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "perfbench" / "history.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / ".local" / "share" / "perfbench" / "history.sqlite"


def test_round_trip(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [StepSpec(requests=20)], model="llama-<b>")
    (run / "telemetry.jsonl").write_text(
        json.dumps({"t_s": 0.0, "source": "prometheus", "vllm:num_requests_running": 1.0}) + "\n"
        + json.dumps({"t_s": 0.5, "source": "gpu", "gpu": 0, "name": "NVIDIA H100", "driver": "550.54"}) + "\n"
    )
    store = RunStore(tmp_path / "db" / "history.sqlite")
    run_id = store.record_run(run, {"branch": "main", "gpu": "h100"})
    info = store.get(run_id)
    assert info.run_id == run_id and run_id.startswith("20240501T020000Z-")
    assert info.run_dir == run.resolve()
    assert info.model == "llama-<b>" and info.simulated and info.api == "openai-chat"
    assert info.perfbench_version == "0.1.0" and info.host
    assert (info.gpu_name, info.gpu_driver) == ("NVIDIA H100", "550.54")
    assert info.tags == {"branch": "main", "gpu": "h100"}
    assert info.summary == json.loads((run / "summary.json").read_text())
    assert info.config["max_tokens"] == 64
    # recording the same run again keeps its id and replaces the tags
    assert store.record_run(run, {"branch": "dev"}) == run_id
    assert store.get(run_id).tags == {"branch": "dev"}
    assert len(store.list_runs()) == 1
    store.close()
    # it is a plain SQLite file others can read
    with sqlite3.connect(tmp_path / "db" / "history.sqlite") as db:
        assert db.execute("SELECT model FROM runs").fetchone() == ("llama-<b>",)


def test_list_tags_last_and_baselines(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    store = RunStore(tmp_path / "h.sqlite")
    ids = [store.record_run(run, {"branch": "main" if i != 1 else "dev", "good": str(i < 2).lower()})
           for i, run in enumerate(runs)]
    assert [r.run_id for r in store.list_runs()] == ids[::-1]  # newest first
    assert [r.run_id for r in store.list_runs(limit=2)] == ids[:0:-1]
    assert [r.run_id for r in store.list_runs(tag={"branch": "main"})] == [ids[2], ids[0]]
    assert [r.run_id for r in store.list_runs(tag={"branch": "main", "good": "true"})] == [ids[0]]
    assert store.last_run().run_id == ids[2]
    assert store.last_run(exclude_run_id=ids[2]).run_id == ids[1]
    assert store.last_run(tag={"branch": "nope"}) is None
    # baselines: a directory, an id, an id prefix, "last", "tag:key=value"
    assert resolve_baseline(str(runs[1]), store) == runs[1]
    assert resolve_baseline(ids[0], store) == runs[0].resolve()
    assert resolve_baseline(ids[0][:-2], store) == runs[0].resolve()
    assert resolve_baseline("last", store) == runs[2].resolve()
    assert resolve_baseline("last", store, exclude_run_id=ids[2]) == runs[1].resolve()
    assert resolve_baseline("tag:good=true", store) == runs[1].resolve()
    assert resolve_baseline("tag:branch=main", store, exclude_run_id=ids[2]) == runs[0].resolve()
    for bad in ("tag:branch=none", "nosuchid", "tag:novalue", "2024"):  # "2024" prefixes all three
        with pytest.raises(ConfigError):
            resolve_baseline(bad, store)
    with pytest.raises(ConfigError, match="no run recorded"):
        resolve_baseline("last", RunStore(tmp_path / "empty.sqlite"))


def test_baseline_that_looks_like_a_missing_directory(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "h.sqlite")
    store.record_run(write_run(tmp_path / "run", [StepSpec(requests=10)]), {"branch": "feature/x"})
    for spec in (str(tmp_path / "nope"), "runs/typo", "./typo", ".typo", "../typo"):
        with pytest.raises(ConfigError) as err:
            resolve_baseline(spec, store)
        assert str(err.value) == (
            f"baseline directory {spec} does not exist; pass a run directory, a run id, 'last' or 'tag:K=V'"
        )
        assert not isinstance(err.value, NoBaselineYet)
    assert resolve_baseline("tag:branch=feature/x", store) == (tmp_path / "run").resolve()  # a "/" in a tag is no path
    with pytest.raises(NoBaselineYet):
        resolve_baseline("tag:branch=feature/y", store)
    with pytest.raises(ConfigError, match="not in the run store"):
        resolve_baseline("20200101T000000Z-nosuch", store)


def test_compare_with_a_missing_baseline_directory_opens_no_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from perfbench.commands.compare import main as compare_main

    new = write_run(tmp_path / "new", [StepSpec(requests=10)])
    store = tmp_path / "store" / "h.sqlite"
    assert compare_main([str(tmp_path / "typo"), str(new), "--store", str(store)]) == 2
    assert "baseline directory" in capsys.readouterr().err and not store.parent.exists()


def test_baseline_whose_directory_is_gone(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [StepSpec(requests=10)])
    store = RunStore(tmp_path / "h.sqlite")
    run_id = store.record_run(run, {})
    (run / "summary.json").unlink()
    with pytest.raises(ConfigError, match="gone"):
        resolve_baseline(run_id, store)


def test_metric_trend(tmp_path: Path) -> None:
    runs = _runs(tmp_path)
    store = RunStore(tmp_path / "h.sqlite")
    for i, run in enumerate(runs):
        store.record_run(run, {"branch": "main"})
    trend = store.metric_trend("ttft_ms.p50")
    assert [info.run_dir for info, _ in trend] == [r.resolve() for r in runs]  # oldest first
    values = [v for _, v in trend]
    assert values == [json.loads((r / "summary.json").read_text())["steps"][0]["ttft_ms"]["p50"] for r in runs]
    assert values[2] > values[0]  # run 2 was simulated 20 % slower
    c8 = store.metric_trend("output_throughput_tok_s", concurrency=8)
    assert all(v is not None and v > 0 for _, v in c8)
    assert [v for _, v in store.metric_trend("ttft_ms.p50", concurrency=64)] == [None] * 3


def test_parse_tags() -> None:
    assert parse_tags(["a=1", "b=x=y,c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ConfigError):
        parse_tags(["novalue"])


def test_unwritable_store_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="--store"):
        RunStore(tmp_path / "file" / "history.sqlite")


def test_history_cli(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich reads the terminal width from it
    runs = _runs(tmp_path)
    db = tmp_path / "h.sqlite"
    store = RunStore(db)
    ids = [store.record_run(run, {"branch": "main"}) for run in runs]
    store.close()
    assert history_main(["--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert all(run_id in out for run_id in ids) and "tiny-model" in out
    png = tmp_path / "trend.png"
    assert history_main(["--store", str(db), "--metric", "ttft_ms.p50", "--tag", "branch=main", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "ttft_ms.p50" in out and all(run_id in out for run_id in ids)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert history_main(["--store", str(db), "--metric", "ttft.p50"]) == 2
    assert "perfbench: error:" in capsys.readouterr().err
    assert history_main(["--store", str(db), "--tag", "oops"]) == 2
    assert history_main(["--store", str(db), "--limit", "0"]) == 2


def test_history_usage_errors_are_one_line_exit_2() -> None:
    assert_one_line_usage_error("history", "--limit", "x", expect="--limit: invalid int value")
    assert_one_line_usage_error("history", "extra", expect="unrecognized arguments: extra")


def test_every_store_the_commands_open_is_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with --baseline (resolved before, compared and recorded after), report, compare and history
    each open the store: every one they open is closed again (an open SQLite handle holds a file
    descriptor and, until closed, may hold back what it wrote)."""
    from perfbench.commands.main import main

    opened: list[RunStore] = []
    closed: list[RunStore] = []
    real_init, real_close = RunStore.__init__, RunStore.close

    def init(self: RunStore, path: Path) -> None:
        real_init(self, path)
        opened.append(self)

    def close(self: RunStore) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(RunStore, "__init__", init)
    monkeypatch.setattr(RunStore, "close", close)
    store = ["--store", str(tmp_path / "history.sqlite")]
    run = ["--mock", "ttft_ms=1,itl_ms=0", "-c", "2", "-n", "6", "--max-tokens", "2", "--no-live", "--no-telemetry", *store]
    assert main([*run, "--output-dir", str(tmp_path / "a")]) == 0
    assert main([*run, "--baseline", "last", "--threshold", "ttft_ms.p50=+1000%", "--output-dir", str(tmp_path / "b")]) == 0
    assert main(["report", str(tmp_path / "b"), "--baseline", "last", *store]) == 0
    assert main(["compare", "last", str(tmp_path / "b"), *store]) in (0, 1)
    assert main(["history", *store]) == 0
    assert main(["history", "tag", str(tmp_path / "a"), "check=pass", *store]) == 0
    assert len(opened) >= 8 and {id(s) for s in opened} <= {id(s) for s in closed}
