"""perfbench.report.junit: SLO and threshold checks as JUnit XML that CI systems parse."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from perfbench.compare import Comparison, MetricComparison, Threshold, compare_runs
from perfbench.report.junit import write_junit
from perfbench.metrics import summarize_step
from perfbench.metrics.slo import parse_slos
from run_fixtures import StepSpec, simulate_step, write_run


def _row(metric: str, change: float | None, regressed: bool, threshold: Threshold | None) -> MetricComparison:
    return MetricComparison(
        step="c=4", metric=metric, base=100.0, new=None if change is None else 100.0 + change,
        change_pct=change, ci_low_pct=None if change is None else change - 5, ci_high_pct=None if change is None else change + 5,
        significant=change is not None, regressed=regressed, threshold=threshold,
    )


def test_one_testcase_per_check(tmp_path: Path) -> None:
    comparison = Comparison(
        rows=(
            _row("ttft_ms.p99", 25.0, True, Threshold("ttft_ms.p99", 10.0)),
            _row("tpot_ms.p50", 2.0, False, Threshold("tpot_ms.p50", 10.0)),
            _row("itl_ms.p50", None, False, Threshold("itl_ms.p50", 10.0)),
            _row("latency_ms.p90", 30.0, False, None),  # shown only, not a check
        ),
        regressed=True, base_dir="runs/<base>", new_dir="runs/new",
    )
    path = tmp_path / "out" / "junit.xml"
    write_junit(path, comparison=comparison)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and [s.get("name") for s in root] == ["perfbench.compare"]
    assert (root.get("tests"), root.get("failures"), root.get("skipped"), root.get("errors")) == ("3", "1", "1", "0")
    suite = root[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("3", "1", "1", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"ttft_ms.p99 +10%", "tpot_ms.p50 +10%", "itl_ms.p50 +10%"}
    failure = cases["ttft_ms.p99 +10%"].find("failure")
    assert failure is not None and "+25.0%" in failure.get("message") and "limit +10%" in failure.get("message")
    assert cases["tpot_ms.p50 +10%"].find("failure") is None
    assert cases["itl_ms.p50 +10%"].find("skipped") is not None
    assert all(case.get("classname") == "perfbench.c=4" for case in cases.values())
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["base"] == "runs/<base>"  # escaped by the writer, intact after parsing


def test_junit_of_a_real_comparison(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base", [StepSpec(requests=150)], seed=1)
    slow = write_run(tmp_path / "slow", [StepSpec(requests=150, slowdown=1.25)], seed=2)
    comparison = compare_runs(base, slow)
    write_junit(tmp_path / "junit.xml", comparison=comparison)
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    failed = {case.get("name").split()[0] for case in suite.iter("testcase") if case.find("failure") is not None}
    assert failed == {row.metric for row in comparison.rows if row.regressed}
    assert "latency_ms.p50" in failed and int(suite.get("failures")) == len(failed)


def _steps(slo: str) -> list[dict]:
    """Real STEP dicts: a closed-loop step at c=4 and an open-loop one at 4/s, same records."""
    records = simulate_step(0, StepSpec(requests=60), np.random.default_rng(3))
    return [
        summarize_step(records, concurrency=c, rate_req_s=rate, requests_expected=60, slos=parse_slos(slo)).to_dict()
        for c, rate in ((4, None), (64, 4.0))
    ]


def test_slo_results_are_testcases(tmp_path: Path) -> None:
    steps = _steps("ttft_p99=10000,ttft_p50=1,tpot_p99=10000")  # ttft_p50 <= 1 ms cannot pass (median TTFT 100 ms)
    path = tmp_path / "junit.xml"
    write_junit(path, steps=steps)
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and [s.get("name") for s in root] == ["perfbench.slo"]
    suite = root[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("6", "2", "0", "0")
    assert (root.get("tests"), root.get("failures")) == ("6", "2")
    cases = [(c.get("classname"), c.get("name"), c.find("failure")) for c in suite.iter("testcase")]
    assert [(cls, name) for cls, name, _ in cases[:3]] == [
        ("perfbench.c=4", "ttft_p99 <= 10000 ms"), ("perfbench.c=4", "ttft_p50 <= 1 ms"), ("perfbench.c=4", "tpot_p99 <= 10000 ms"),
    ]
    assert {cls for cls, _, _ in cases[3:]} == {"perfbench.rate=4/s cap=64"}
    failed = [(cls, name, f) for cls, name, f in cases if f is not None]
    assert [(cls, name) for cls, name, _ in failed] == [("perfbench.c=4", "ttft_p50 <= 1 ms"), ("perfbench.rate=4/s cap=64", "ttft_p50 <= 1 ms")]
    value = steps[0]["slo_results"][1]["value_ms"]
    assert failed[0][2].get("message") == f"c=4 ttft_p50: {value:.2f} ms, limit 1 ms"


def test_slo_and_comparison_suites_together(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base", [StepSpec(requests=150)], seed=1)
    slow = write_run(tmp_path / "slow", [StepSpec(requests=150, slowdown=1.25)], seed=2)
    comparison = compare_runs(base, slow)
    steps = [{"concurrency": 4, "rate_req_s": None, "slo_results": [
        {"name": "latency_p90", "limit_ms": 500.0, "value_ms": None, "passed": False},  # a step without values fails
    ]}]
    write_junit(tmp_path / "junit.xml", comparison=comparison, steps=steps)
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert [s.get("name") for s in root] == ["perfbench.slo", "perfbench.compare"]
    checks = [row for row in comparison.rows if row.threshold is not None]
    assert int(root.get("tests")) == 1 + len(checks)
    assert int(root.get("failures")) == 1 + sum(row.regressed for row in checks)
    assert root[0].find("testcase/failure").get("message") == "c=4 latency_p90: no value, limit 500 ms"


def test_nothing_to_check_is_an_empty_valid_report(tmp_path: Path) -> None:
    write_junit(tmp_path / "junit.xml", steps=[{"concurrency": 1, "slo_results": []}])
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert root.tag == "testsuites" and len(root) == 0 and root.get("tests") == "0"


def test_slo_units_come_from_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from perfbench.metrics import SLO_METRICS

    monkeypatch.setitem(SLO_METRICS, "ttft", dataclasses.replace(SLO_METRICS["ttft"], unit="unit-of-ttft"))
    write_junit(tmp_path / "junit.xml", steps=_steps("ttft_p50=1"))
    case = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase")
    assert case.get("name") == "ttft_p50 <= 1 unit-of-ttft"
    assert case.find("failure").get("message").endswith(" unit-of-ttft, limit 1 unit-of-ttft")
