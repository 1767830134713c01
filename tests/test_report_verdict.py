"""report.html's verdict and sections, from real runs against the mock: the page parsed as a browser
reads it, each expectation computed from the run's own summary.json and comparison.json."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfbench.commands.main import main
from perfbench.report.html import write_html_report
from perfbench.report.verdict import format_load, headline_numbers, slo_name
from perfbench.results.runfiles import step_label, step_metric
from perfbench.servers.mock import MockConfig, MockInThread

EVIL = "<script>alert('x')</script>"
QUIET = ["--no-live", "--no-telemetry"]


class Page(HTMLParser):
    """The parsed page: the verdict, each check's state, every section's text, every table's rows."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.all_text: list[str] = []
        self.verdict: str | None = None
        self.state: str | None = None
        self.checks: dict[str, str] = {}  # check name -> pass / warn / fail
        self.sections: dict[str, list[str]] = {}  # section id -> its text pieces
        self.tables: dict[str, list[list[str]]] = {}  # table id (or its section's id) -> rows of cell texts
        self._section: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._check: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self._section.append(a.get("id") or "")
            self.sections.setdefault(a.get("id") or "", [])
            if a.get("data-verdict"):
                self.verdict = a["data-verdict"]
                self.state = (a.get("class") or "").split()[-1]
        elif tag == "li" and a.get("data-check"):
            self.checks[a["data-check"]] = a.get("class") or ""
        elif tag == "table":
            self._table = a.get("id") or (self._section[-1] if self._section else "")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self._section:
            self._section.pop()
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.all_text.append(data)
        if self._section:
            self.sections[self._section[-1]].append(data)
        if self._cell is not None:
            self._cell.append(data)

    def text(self, section: str) -> str:
        return " ".join("".join(self.sections[section]).split())


def _page(run: Path) -> Page:
    return Page((run / "report.html").read_text(encoding="utf-8"))


def _summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def _number(cell: str) -> float:
    """The first number of a table cell, as shown (``1,234``, ``12.30`` and a change under it)."""
    return float(cell.split()[0].replace(",", ""))


def _run(out: Path, *args: str, plots: bool = False) -> int:
    """A real run into ``out``; without plots the finish stage writes no page, so it is built here."""
    code = main([*args, *QUIET, "--output-dir", str(out), *([] if plots else ["--no-plots"])])
    if not plots:
        write_html_report(out)
    return code


@pytest.fixture(scope="module")
def mock_url():
    with MockInThread(MockConfig(ttft_ms=5, itl_ms=1)) as mock:
        yield mock.base_url


@pytest.fixture
def store(tmp_path: Path) -> list[str]:
    return ["--store", str(tmp_path / "history.sqlite")]


def test_a_passing_run_says_passed_with_its_headline_numbers_and_slo_rows(mock_url, tmp_path, store) -> None:
    run = tmp_path / "pass"
    assert _run(run, "--url", mock_url, "-c", "1,2", "-n", "12", "--max-tokens", "6",
                "--slo", "ttft_p99=5000,latency_p90=10000", *store) == 0
    page, summary = _page(run), _summary(run)
    assert (page.verdict, page.state) == ("PASSED", "pass")
    assert page.checks == {"SLOs": "pass", "Requests": "pass"}
    assert "Every step met its SLOs (TTFT p99 ≤ 5000 ms, Latency p90 ≤ 10000 ms)" in page.text("verdict")
    for present in ("verdict", "headline", "slo", "steps", "plots", "failures", "telemetry", "environment"):
        assert present in page.sections, present
    for absent in ("alarm", "comparison", "history", "search"):
        assert absent not in page.sections, absent
    # The headline: the registry's names and units, a column per step, the summary's values.
    steps = summary["steps"]
    header, *rows = page.tables["headline"]
    assert header == ["metric", *(step_label(s) for s in steps)]
    expected = [h for h in headline_numbers() if any(step_metric(s, h.spec) is not None for s in steps)]
    assert [row[0] for row in rows] == [f"{h.name} ({h.metric.unit})" for h in expected]
    for row, headline in zip(rows, expected):
        for cell, step in zip(row[1:], steps):
            assert _number(cell) == pytest.approx(step_metric(step, headline.spec), rel=1e-3, abs=0.006)
    # The SLO table: every limit of every step, its value and its result.
    slo_rows = page.tables["slo-table"][1:]
    assert [(r[0], r[1], r[4]) for r in slo_rows] == [
        (step_label(s), slo_name(r["name"]), "pass") for s in steps for r in s["slo_results"]
    ]
    assert [_number(r[3]) for r in slo_rows] == pytest.approx([r["value_ms"] for s in steps for r in s["slo_results"]], abs=0.006)


def test_an_slo_miss_fails_and_names_the_step_and_value(mock_url, tmp_path, store) -> None:
    run = tmp_path / "miss"
    assert _run(run, "--url", mock_url, "-c", "2", "-n", "10", "--max-tokens", "4", "--slo", "ttft_p99=1,latency_p90=10000",
                *store) == 1
    page, [step] = _page(run), _summary(run)["steps"]
    assert (page.verdict, page.state) == ("FAILED", "fail")
    assert page.checks["SLOs"] == "fail"
    ttft = next(r for r in step["slo_results"] if r["name"] == "ttft_p99")
    assert f"c=2: TTFT p99 {ttft['value_ms']:.2f} ms, limit 1 ms" in page.text("verdict")
    assert [(r[1], r[4]) for r in page.tables["slo-table"][1:]] == [("TTFT p99", "FAIL"), ("Latency p90", "pass")]


def test_a_regression_fails_with_each_change_and_its_confidence_interval(tmp_path, store) -> None:
    base, new = tmp_path / "base", tmp_path / "new"
    with MockInThread(MockConfig(ttft_ms=5, itl_ms=1)) as fast:
        assert _run(base, "--url", fast.base_url, "-c", "2", "-n", "40", "--max-tokens", "8", *store) == 0
        port = int(fast.base_url.rsplit(":", 1)[1])  # the slower build at the same address: the same identity
    with MockInThread(MockConfig(ttft_ms=25, itl_ms=3), port=port) as slow:
        assert _run(new, "--url", slow.base_url, "-c", "2", "-n", "40", "--max-tokens", "8", "--baseline", str(base),
                    *store) == 1
    page = _page(new)
    comparison = json.loads((new / "comparison.json").read_text())
    regressed = sorted((r for r in comparison["rows"] if r["regressed"]), key=lambda r: -abs(r["change_pct"]))
    assert regressed and (page.verdict, page.checks["Regression"]) == ("FAILED", "fail")
    checked = [r for r in comparison["rows"] if r["threshold"] and not r.get("unchecked")]
    verdict = page.text("verdict")
    assert f"{len(regressed)} of {len(checked)} regression checks failed against the baseline" in verdict
    worst = regressed[0]
    assert (f"{worst['change_pct']:+.1f} % (99% CI {worst['ci_low_pct']:+.1f} to {worst['ci_high_pct']:+.1f} %), "
            f"limit {worst['threshold']['max_change_pct']:+g} %") in verdict
    # The comparison: base against new drawn, and a row per compared metric with its verdict.
    assert "comparison" in page.sections and "baseline distributions" in (new / "report.html").read_text()
    rows = page.tables["comparison-table"][1:]
    assert len(rows) == len(comparison["rows"])
    assert sum(row[-1] == "regressed" for row in rows) == len(regressed)
    # The headline marks the same regressions under its values.
    assert sum(cell.count("✗") for row in page.tables["headline"][1:] for cell in row[1:]) == len(
        [r for r in regressed if any(h.spec == r["metric"] for h in headline_numbers())])


def test_every_request_failed_is_a_failure_with_an_alarm(tmp_path, store) -> None:
    run = tmp_path / "down"
    assert _run(run, "-c", "2", "-n", "6", "--max-tokens", "4", "--no-preflight",
                "--mock", "ttft_ms=0,itl_ms=0,http_error_fraction=1", *store) == 3
    page, summary = _page(run), _summary(run)
    [(reason, count)] = summary["steps"][0]["failure_reasons"].items()
    assert (page.verdict, page.checks["Requests"]) == ("FAILED", "fail")
    assert f"Every request failed ({count} of {count})" in page.text("verdict")
    assert page.tables["alarm"][1:] == [[reason, str(count), "c=2", summary["steps"][0]["failure_examples"][reason]]]


def test_some_failed_is_a_warning_with_the_top_reasons_escaped(tmp_path, store) -> None:
    # A real server's HTML error page and a hostile model name: shown as text, never as markup.
    run = tmp_path / "some"
    with MockInThread(MockConfig(ttft_ms=0, itl_ms=0, bad_body_fraction=0.3, http_error_fraction=0.2)) as mock:
        assert _run(run, "--url", mock.base_url, "--model", EVIL, "-c", "2", "-n", "20", "--max-tokens", "4",
                    "--no-preflight", *store) == 0
    page, summary = _page(run), _summary(run)
    [step] = summary["steps"]
    assert (page.verdict, page.state, page.checks["Requests"]) == ("PASSED", "warn", "warn")
    failed = step["requests_failed"]
    assert f"{failed} of {step['requests_completed']} requests failed" in page.text("verdict")
    by_count = sorted(step["failure_reasons"].items(), key=lambda item: (-item[1], item[0]))
    assert page.tables["alarm"][1:] == [[r, str(n), "c=2", step["failure_examples"][r]] for r, n in by_count]
    assert "<html>" in step["failure_examples"]["bad_response"]  # the server's markup, kept as text ...
    assert page.tags.count("h1") == 1 and "script" not in page.tags and page.tags.count("title") == 1  # ... not as tags
    assert EVIL in "".join(page.all_text) and EVIL not in (run / "report.html").read_text()  # the model's name, as text


def test_a_search_is_one_sentence_with_its_knee_never_a_python_list(tmp_path, store) -> None:
    run = tmp_path / "search"
    assert _run(run, "--search", "concurrency", "--search-max", "8", "-n", "12", "--max-tokens", "4",
                "--slo", "ttft_p99=40", "--mock", "ttft_ms=10,itl_ms=1,capacity=2", *store) == 0
    page, search = _page(run), _summary(run)["search"]
    sentence = page.text("search").split("probe load SLOs")[0]
    best, knee = search["max_passing"], search["knee"]
    assert f"the highest load that met the SLOs is {format_load('concurrency', best)}" in sentence
    assert (f"The knee, where throughput stops rising while latency climbs, is at {format_load('concurrency', knee)}."
            if knee is not None else "No knee") in sentence
    assert page.checks == {"Max-load search": "pass", "Requests": "pass"}
    assert len(page.tables["search"]) == 1 + len(search["probes"])
    html = (run / "report.html").read_text()
    assert "'load'" not in html and "[{" not in html and "max_passing" not in html


def test_the_history_trend_shows_only_earlier_runs_of_the_same_identity(mock_url, tmp_path, store) -> None:
    same = ["--url", mock_url, "-c", "2", "-n", "8", "--max-tokens", "4", *store]
    first, second, other = tmp_path / "first", tmp_path / "second", tmp_path / "other"
    assert _run(first, *same, plots=True) == 0
    assert "history" not in _page(first).sections  # nothing earlier in the store
    assert _run(second, *same, plots=True) == 0  # the finish stage hands the first run in
    page = _page(second)
    assert "history" in page.sections and "1 earlier run(s) of the same identity" in page.text("history")
    header, *rows = page.tables["history-table"]
    assert len(header) == 3 and header[-1] == "this run"
    [step] = _summary(second)["steps"]
    ttft = next(r for r in rows if r[0] == "TTFT p99 (ms)")
    [first_step] = _summary(first)["steps"]
    assert [_number(c) for c in ttft[1:]] == pytest.approx(
        [first_step["ttft_ms"]["p99"], step["ttft_ms"]["p99"]], abs=0.006)
    assert _run(other, *same[:-2], "-n", "9", *store, plots=True) == 0  # another load: another identity
    assert "history" not in _page(other).sections
    # Rebuilt later, the first run's report still shows no run that came after it.
    assert main(["report", str(first), *store]) == 0
    assert "history" not in _page(first).sections
    assert main(["report", str(second), *store]) == 0
    assert "history" in _page(second).sections


def test_thinned_samples_keep_the_distribution(monkeypatch) -> None:
    from perfbench.report.plots import _baseline

    monkeypatch.setattr(_baseline, "MAX_SAMPLES", 4_000)
    kept = _baseline._Thinned(np.random.default_rng(0))
    stream = np.arange(200_000, dtype=np.float64)  # rising: a thinning that favoured early or late values would show
    for part in np.array_split(stream, 37):
        kept.add(part)
    assert 1_000 <= kept.values.size <= 4_000
    # Each kept value stands for as many of the stream: its percentiles within a few standard errors (~1 % of the span).
    assert np.percentile(kept.values, [10, 50, 90]) == pytest.approx(np.percentile(stream, [10, 50, 90]), abs=6_000)


def test_what_does_not_apply_is_not_shown(tmp_path, store) -> None:
    run = tmp_path / "embeddings"  # no TTFT, ITL or output tokens: no such headline rows
    assert _run(run, "--api", "openai-embeddings", "-c", "2", "-n", "6", "--mock", "ttft_ms=1,itl_ms=0", *store) == 0
    [step] = _summary(run)["steps"]
    shown = [row[0] for row in _page(run).tables["headline"][1:]]
    assert shown == [f"{h.name} ({h.metric.unit})" for h in headline_numbers() if step_metric(step, h.spec) is not None]
    assert "Latency p50 (ms)" in shown and not any(name.startswith(("TTFT", "ITL", "Output")) for name in shown)
