"""perfbench.core.numbers: one rule for every number perfbench prints (terminal, report.html, compare, JUnit)."""

from __future__ import annotations

import math

import pytest

from perfbench.core.numbers import format_number


@pytest.mark.parametrize("value, text", [
    (1234.567, "1,235"),  # >= 1000: whole, grouped
    (-1234.4, "-1,234"),
    (123.456, "123.5"),  # >= 100: one decimal
    (12.3456, "12.35"),  # >= 1: two decimals
    (1.0, "1.00"),
    (0.012345, "0.0123"),  # below 1: three significant digits
    (0.0, "0"),
    (0, "0"),
    (12345, "12,345"),  # a count prints whole
    (999.96, "1,000"),  # judged by its rounded size: never "1000.0"
    (99.996, "100.0"),
    (0.99996, "1.00"),
    (None, "-"),
    (math.nan, "-"),
])  # fmt: skip
def test_significant_digits_by_magnitude(value, text) -> None:
    assert format_number(value) == text


def test_a_unit_follows_a_value_but_not_a_missing_one() -> None:
    assert format_number(12.3456, "ms") == "12.35 ms"
    assert format_number(None, "ms") == "-"


def test_every_place_prints_the_same_text() -> None:
    """The terminal, report.html, compare's rows and JUnit's messages all print 1234.567 as 1,235."""
    import io
    import xml.etree.ElementTree as ET
    from pathlib import Path
    from tempfile import TemporaryDirectory

    from rich.console import Console

    from perfbench.compare import MetricComparison
    from perfbench.report.html._markup import num
    from perfbench.report.junit import write_junit
    from perfbench.report.terminal import slo_table

    step = {"concurrency": 4, "rate_req_s": None,
            "slo_results": [{"name": "ttft_p99", "limit_ms": 1000.0, "value_ms": 1234.567, "passed": False}]}
    console = Console(file=io.StringIO(), width=120)
    console.print(slo_table([step]))
    assert "1,235" in console.file.getvalue()
    assert num(1234.567) == "1,235"
    row = MetricComparison(step="c=4", metric="ttft_ms.p99", base=1234.567, new=1234.567, change_pct=0.0, ci_low_pct=-1.0,
                           ci_high_pct=1.0, significant=False, regressed=False, threshold=None)
    assert "1,235 -> 1,235" in row.describe()
    with TemporaryDirectory() as folder:
        path = Path(folder) / "junit.xml"
        write_junit(path, steps=[step])
        assert "1,235 ms" in ET.parse(path).getroot().find("testsuite/testcase/failure").get("message")
