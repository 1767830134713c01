"""Analysis: what a run's numbers mean, decided once. Today that is the run's single verdict
(``verdict``): its checks, and the exit code, the terminal, report.html, JUnit and the history's
``check=`` tag derived from it. It reads summary.json's dicts and a comparison; it writes nothing.
"""

from perfbench.analysis.verdict import (
    CHECK_NAMES, FAIL, PASS, WARN, Check, FailureReason, Verdict, describe_change, every_request_failed, failure_reasons,
    format_load, judge, metric_name, run_exit_code, saved_verdict, search_sentence, slo_name,
)

__all__ = [
    "CHECK_NAMES", "FAIL", "PASS", "WARN", "Check", "FailureReason", "Verdict", "describe_change", "every_request_failed",
    "failure_reasons", "format_load", "judge", "metric_name", "run_exit_code", "saved_verdict", "search_sentence", "slo_name",
]  # fmt: skip
