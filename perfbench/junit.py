"""Write a comparison's threshold checks as JUnit XML, so CI systems show them as tests."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from perfbench.compare import Comparison


def write_junit(comparison: Comparison, path: Path) -> None:
    """One testcase per checked (step, metric); a regression is a failure.

    A check that could not be made (a metric missing in one run) is reported as skipped,
    so a CI dashboard shows it instead of silently passing.
    """
    checks = [row for row in comparison.rows if row.threshold is not None]
    failures = sum(row.regressed for row in checks)
    skipped = sum(row.change_pct is None for row in checks)
    suite = ET.Element(
        "testsuite",
        name="perfbench.compare",
        tests=str(len(checks)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("base", comparison.base_dir), ("new", comparison.new_dir), ("confidence", str(comparison.confidence))):
        ET.SubElement(properties, "property", name=name, value=value)
    for row in checks:
        case = ET.SubElement(
            suite, "testcase", classname=f"perfbench.{row.step}", name=f"{row.metric} {row.threshold.max_change_pct:+g}%"
        )
        if row.regressed:
            failure = ET.SubElement(case, "failure", message=row.describe(), type="regression")
            failure.text = (
                f"{row.describe()}\nThe change is past the limit and its {comparison.confidence:.0%} "
                "confidence interval excludes 0."
            )
        elif row.change_pct is None:
            ET.SubElement(case, "skipped", message=row.describe())
        else:
            ET.SubElement(case, "system-out").text = row.describe()
    ET.indent(suite)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
