"""Write perfbench's checks as JUnit XML, so CI systems show them as tests.

One ``<testsuites>`` holds a suite per kind of check: ``perfbench.slo`` (the step limits of
``--slo``, one testcase per step and limit; with the run's verdict, only when it judged them: a
search's probes are its method, not checks), ``perfbench.compare`` (the threshold checks of a
comparison with a baseline, one testcase per step and metric) and ``perfbench.verdict`` (each other
failed check of the run's verdict, ``perfbench.analysis.verdict``: every request failed, a search in
which no load passed, ``--max-failure-rate`` passed, a baseline that could not be compared). So the
file holds a failure exactly when the run's verdict failed.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from perfbench.core.numbers import format_number
from perfbench.metrics import SLO_METRICS
from perfbench.metrics.slo import split_name
from perfbench.results.runfiles import step_label

if TYPE_CHECKING:  # only the types: writing the file needs neither package's code
    from perfbench.analysis import Check, Verdict
    from perfbench.compare import Comparison


def write_junit(
    path: Path, *, comparison: Comparison | None = None, steps: Sequence[Mapping[str, Any]] = (),
    verdict: Verdict | None = None,
) -> None:
    """Write the checks to ``path``: the run's ``verdict``, the SLO results of ``steps`` (summary.json
    STEP dicts; with a verdict, only when it judged them) and the threshold checks of ``comparison``;
    a kind with nothing to check gets no suite."""
    root = ET.Element("testsuites", name="perfbench")
    if verdict is not None and verdict.check("slo") is None:
        steps = ()
    slo_cases = [(step, result) for step in steps for result in step.get("slo_results") or ()]
    if slo_cases:
        _slo_suite(root, slo_cases)
    if comparison is not None:
        _comparison_suite(root, comparison)
    if verdict is not None:
        told = {"slo": bool(slo_cases), "regression": comparison is not None}  # checks with testcases of their own
        _verdict_suite(root, [check for check in verdict.failed if not told.get(check.kind)])
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in root)))
    ET.indent(root)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _verdict_suite(root: ET.Element, failed: Sequence[Check]) -> None:
    """One failing testcase per failed check of the verdict (named as the verdict names it); none: no suite."""
    if not failed:
        return
    suite = ET.SubElement(root, "testsuite", name="perfbench.verdict", tests=str(len(failed)),
                          failures=str(len(failed)), errors="0", skipped="0")
    for check in failed:
        case = ET.SubElement(suite, "testcase", classname="perfbench.verdict", name=check.name)
        ET.SubElement(case, "failure", message=check.reason, type=check.kind).text = "\n".join((check.reason, *check.details))


def _classname(label: str) -> str:
    """A step's test class, the same in every suite, so a CI dashboard shows one class per step."""
    return f"perfbench.{label}"


def _slo_suite(root: ET.Element, cases: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> None:
    """One testcase per (step, step limit); a limit not met, or without a value, is a failure."""
    failures = sum(not result.get("passed") for _, result in cases)
    suite = ET.SubElement(
        root, "testsuite", name="perfbench.slo", tests=str(len(cases)), failures=str(failures), errors="0", skipped="0"
    )
    for step, result in cases:
        limit_ms, value_ms = result.get("limit_ms"), result.get("value_ms")
        load = step_label(step)
        unit = SLO_METRICS[split_name(str(result.get("name")))[0]].unit  # the limited metric's unit (registry)
        case = ET.SubElement(suite, "testcase", classname=_classname(load), name=f"{result.get('name')} <= {limit_ms:g} {unit}")
        shown = format_number(value_ms, unit) if isinstance(value_ms, (int, float)) and math.isfinite(value_ms) else "no value"
        text = f"{load} {result.get('name')}: {shown}, limit {limit_ms:g} {unit}"
        if result.get("passed"):
            ET.SubElement(case, "system-out").text = text
        else:
            ET.SubElement(case, "failure", message=text, type="slo").text = (
                f"{text}\nThe step's statistic is above its limit (or the step has no values for it)."
            )


def _comparison_suite(root: ET.Element, comparison: Comparison) -> None:
    """One testcase per checked (step, metric); a regression is a failure.

    A check that could not be made (a metric missing in one run) is reported as skipped,
    so a CI dashboard shows it instead of silently passing.
    """
    checks = [row for row in comparison.rows if row.threshold is not None]
    suite = ET.SubElement(
        root,
        "testsuite",
        name="perfbench.compare",
        tests=str(len(checks)),
        failures=str(sum(row.regressed for row in checks)),
        errors="0",
        skipped=str(sum(row.change_pct is None or bool(row.unchecked) for row in checks)),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("base", comparison.base_dir), ("new", comparison.new_dir), ("confidence", str(comparison.confidence))):
        ET.SubElement(properties, "property", name=name, value=value)
    for row in checks:
        case = ET.SubElement(
            suite, "testcase", classname=_classname(row.step), name=f"{row.metric} {row.threshold.max_change_pct:+g}%"
        )
        if row.regressed:
            failure = ET.SubElement(case, "failure", message=row.describe(), type="regression")
            failure.text = (
                f"{row.describe()}\nThe change is past the limit and its {comparison.confidence:.0%} "
                "confidence interval excludes 0."
            )
        elif row.change_pct is None or row.unchecked:
            ET.SubElement(case, "skipped", message=row.describe())
        else:
            ET.SubElement(case, "system-out").text = row.describe()
