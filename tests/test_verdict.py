"""The run's one verdict (perfbench.analysis.verdict): real runs against the mock, and in each case the
exit code, summary.json's verdict, the terminal, report.html's PASSED/FAILED, the JUnit failures and
the history's check= tag agree.

The two cases that once disagreed (exit 0 but a FAILED report) are decided once: a ladder stopped by
--max-failure-rate and a search in which no load passed both fail, exit 1.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from perfbench.analysis import Check, Verdict, judge, run_exit_code
from perfbench.commands.main import main
from perfbench.results.store import RunStore

FAST = "ttft_ms=2,itl_ms=0"
LIGHT = ["--max-tokens", "4", "--no-live", "--no-telemetry"]

# name: (arguments, exit code, passed, the kinds of its failed checks)
CASES = {
    "slo_met": (["--mock", FAST, "-c", "2", "-n", "8", "--slo", "ttft_p99=5000"], 0, True, set()),
    "slo_missed": (["--mock", FAST, "-c", "2", "-n", "8", "--slo", "ttft_p99=0.001"], 1, False, {"slo"}),
    "ladder_stopped_by_max_failure_rate": (
        ["--mock", f"{FAST},http_error_fraction=0.5", "-c", "1,2", "-n", "10", "--max-failure-rate", "0.2",
         "--no-preflight"], 1, False, {"failure_rate"}),
    "ladder_within_max_failure_rate": (
        ["--mock", f"{FAST},http_error_fraction=0.1", "-c", "1,2", "-n", "10", "--max-failure-rate", "0.2",
         "--no-preflight"], 0, True, set()),
    "search_in_which_no_load_passed": (
        ["--mock", FAST, "--search", "concurrency", "--search-max", "4", "-n", "6", "--slo", "ttft_p99=0.001"],
        1, False, {"search"}),
    "search_that_found_a_load": (
        ["--mock", FAST, "--search", "concurrency", "--search-max", "2", "-n", "6", "--slo", "ttft_p99=5000"],
        0, True, set()),
    "every_request_failed": (
        ["--mock", f"{FAST},http_error_fraction=1", "-c", "2", "-n", "6", "--no-preflight"], 3, False, {"requests"}),
    "some_requests_failed": (
        ["--mock", f"{FAST},http_error_fraction=0.25", "-c", "2", "-n", "8", "--no-preflight"], 0, True, set()),
}


def _junit_failures(path: Path) -> int:
    return int(ET.parse(path).getroot().get("failures"))


def _check_tag(store: Path, run_dir: Path) -> str:
    with RunStore(store) as history:
        [info] = [r for r in history.list_runs() if r.run_dir == run_dir.resolve()]
    return info.tags["check"]


def _page_verdict(run_dir: Path) -> str:
    return re.search(r'data-verdict="(\w+)"', (run_dir / "report.html").read_text()).group(1)


def _agree(run_dir: Path, store: Path, junit: Path, code: int, printed: str) -> Verdict:
    """Every place that says whether the run passed says what summary.json's verdict says; returns it."""
    saved = json.loads((run_dir / "summary.json").read_text())["verdict"]
    verdict = Verdict.from_dict(saved)
    word = "PASSED" if saved["passed"] else "FAILED"
    assert code == (0 if saved["passed"] else verdict.exit_code)
    assert f"Verdict: {word}" in printed
    assert _page_verdict(run_dir) == word
    assert (_junit_failures(junit) > 0) == (not saved["passed"])
    assert _check_tag(store, run_dir) == ("pass" if saved["passed"] else "fail")
    assert saved["passed"] == all(check["passed"] for check in saved["checks"])
    return verdict


@pytest.mark.parametrize("case", CASES)
def test_every_output_says_what_the_verdict_says(case, tmp_path, capsys) -> None:
    args, expected_code, passed, failed_kinds = CASES[case]
    out, store, junit = tmp_path / "run", tmp_path / "history.sqlite", tmp_path / "junit.xml"
    code = main([*args, *LIGHT, "--output-dir", str(out), "--store", str(store), "--junit", str(junit),
                 "--baseline", "last"])  # no run of its identity yet: judged without one, tagged check=
    verdict = _agree(out, store, junit, code, capsys.readouterr().out)
    assert (code, verdict.passed) == (expected_code, passed)
    assert {check.kind for check in verdict.failed} == failed_kinds


def test_a_regression_and_a_refused_baseline_agree_too(tmp_path, capsys) -> None:
    store, junit = tmp_path / "history.sqlite", tmp_path / "junit.xml"
    files = [*LIGHT, "--store", str(store), "--junit", str(junit)]
    assert main(["--mock", "ttft_ms=5,itl_ms=1", "-c", "2", "-n", "40", *files, "--output-dir", str(tmp_path / "base")]) == 0
    capsys.readouterr()
    # A slower build, compared with the last run of its identity (--mock settings are not part of it).
    code = main(["--mock", "ttft_ms=25,itl_ms=3", "-c", "2", "-n", "40", *files, "--baseline", "last",
                 "--output-dir", str(tmp_path / "slow")])
    verdict = _agree(tmp_path / "slow", store, junit, code, capsys.readouterr().out)
    assert (code, {check.kind for check in verdict.failed}) == (1, {"regression"})
    # Another ladder cannot be compared with it: a usage error (exit 2), and the verdict says so.
    code = main(["--mock", "ttft_ms=5,itl_ms=1", "-c", "3", "-n", "6", *files, "--baseline", str(tmp_path / "base"),
                 "--allow-mismatch", "--output-dir", str(tmp_path / "other")])
    verdict = _agree(tmp_path / "other", store, junit, code, capsys.readouterr().out)
    assert (code, {check.kind for check in verdict.failed}) == (2, {"baseline"})


def test_the_exit_code_follows_the_verdict() -> None:
    def verdict(*kinds_failed: str) -> Verdict:
        return Verdict((Check("requests", "pass", "ok"), *(Check(kind, "fail", "no") for kind in kinds_failed)))

    assert run_exit_code(verdict()) == 0
    assert run_exit_code(verdict(), interrupted=True) == 130
    assert run_exit_code(verdict(), output_error=True, interrupted=True) == 2
    assert run_exit_code(verdict("slo"), interrupted=True) == 1  # a failed check outranks the interruption
    assert run_exit_code(verdict("slo", "baseline")) == 2
    assert run_exit_code(verdict("slo", "regression", "requests")) == 3  # every request failed outranks all
    assert run_exit_code(verdict("failure_rate")) == 1 and run_exit_code(verdict("search")) == 1


def test_a_verdict_survives_summary_json() -> None:
    summary = {"config": {"max_failure_rate": 0.1}, "stopped_early": "step 1 failed 50% of its requests (limit 10%)",
               "steps": [{"concurrency": 1, "requests_succeeded": 5, "requests_failed": 5, "failure_reasons": {"http_500": 5},
                          "slo_results": [{"name": "ttft_p99", "limit_ms": 10.0, "value_ms": 12.5, "passed": False}],
                          "slo_passed": False}]}
    verdict = judge(summary)
    assert [(c.kind, c.state) for c in verdict.checks] == [("slo", "fail"), ("failure_rate", "fail"), ("requests", "warn")]
    assert Verdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict
    # An interrupted search is a warning, not a failure: it did not answer.
    interrupted = judge({"config": {"search": "concurrency"}, "interrupted": True, "steps": summary["steps"]})
    assert interrupted.passed and [c.kind for c in interrupted.checks] == ["search", "requests", "interrupted"]
