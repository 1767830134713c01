"""perfbench.junit: threshold checks as JUnit XML that CI systems parse."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from perfbench.compare import Comparison, MetricComparison, Threshold, compare_runs
from perfbench.junit import write_junit
from run_fixtures import StepSpec, write_run


def _row(metric: str, change: float | None, regressed: bool, threshold: Threshold | None) -> MetricComparison:
    return MetricComparison(
        step="concurrency=4", metric=metric, base=100.0, new=None if change is None else 100.0 + change,
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
    write_junit(comparison, path)
    suite = ET.parse(path).getroot()
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("3", "1", "1", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"ttft_ms.p99 +10%", "tpot_ms.p50 +10%", "itl_ms.p50 +10%"}
    failure = cases["ttft_ms.p99 +10%"].find("failure")
    assert failure is not None and "+25.0%" in failure.get("message") and "limit +10%" in failure.get("message")
    assert cases["tpot_ms.p50 +10%"].find("failure") is None
    assert cases["itl_ms.p50 +10%"].find("skipped") is not None
    assert all(case.get("classname") == "perfbench.concurrency=4" for case in cases.values())
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["base"] == "runs/<base>"  # escaped by the writer, intact after parsing


def test_junit_of_a_real_comparison(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base", [StepSpec(requests=150)], seed=1)
    slow = write_run(tmp_path / "slow", [StepSpec(requests=150, slowdown=1.25)], seed=2)
    comparison = compare_runs(base, slow)
    write_junit(comparison, tmp_path / "junit.xml")
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    failed = {case.get("name").split()[0] for case in suite.iter("testcase") if case.find("failure") is not None}
    assert failed == {row.metric for row in comparison.rows if row.regressed}
    assert "latency_ms.p50" in failed and int(suite.get("failures")) == len(failed)
