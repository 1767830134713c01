"""One name per step: JUnit, compare, the plots and the terminal all call a step what runfiles.step_label calls it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from perfbench.compare import compare_runs
from perfbench.report.junit import write_junit
from perfbench.metrics import summarize_step
from perfbench.results.records import RequestRecord
from perfbench.report.plots._inputs import read_steps
from perfbench.report.terminal import overview_table
from perfbench.results.runfiles import step_label
from perfbench.report.requests_file import request_line
from perfbench.metrics.slo import parse_slos
from run_fixtures import RUN_START_NS, StepSpec, simulate_step

# (concurrency, rate): closed loop, open loop, open loop with a concurrency cap
LOADS = ((4, None), (None, 4.0), (8, 4.0))
LABELS = ["c=4", "rate=4/s", "rate=4/s cap=8"]


def _run(run_dir: Path) -> Path:
    """A run of the three kinds of step, each with a step limit (so each has an SLO testcase)."""
    run_dir.mkdir()
    rng = np.random.default_rng(0)
    steps, lines = [], []
    for index, (concurrency, rate) in enumerate(LOADS):
        records: list[RequestRecord] = simulate_step(index, StepSpec(requests=40), rng)
        lines += [json.dumps(request_line(r, RUN_START_NS)) for r in records]
        steps.append(summarize_step(records, concurrency=concurrency, rate_req_s=rate, requests_expected=40,
                                    slos=parse_slos("ttft_p99=10000")).to_dict())  # fmt: skip
    (run_dir / "requests.jsonl").write_text("\n".join(lines) + "\n")
    summary = {"schema": "perfbench.summary/1", "target": {"url": "http://127.0.0.1:1/v1/completions", "api": "openai-completions"},
               "config": {}, "steps": steps}  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def test_junit_compare_plots_and_terminal_name_each_step_alike(tmp_path: Path) -> None:
    run_dir = _run(tmp_path / "run")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [step_label(s) for s in summary["steps"]] == LABELS

    comparison = compare_runs(run_dir, run_dir)
    assert list(dict.fromkeys(row.step for row in comparison.rows)) == LABELS
    assert [s.label for s in read_steps(summary)] == LABELS
    table = overview_table(summary["steps"], title="t")
    assert [str(column.header) for column in table.columns][1:] == LABELS  # a Text: a label from a file is no markup

    write_junit(tmp_path / "junit.xml", comparison=comparison, steps=summary["steps"])
    suites = {suite.get("name"): suite for suite in ET.parse(tmp_path / "junit.xml").getroot()}
    for name in ("perfbench.slo", "perfbench.compare"):
        classes = list(dict.fromkeys(case.get("classname") for case in suites[name].iter("testcase")))
        assert classes == [f"perfbench.{label}" for label in LABELS], name
