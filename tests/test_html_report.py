"""perfbench.report.html: self-contained, offline, escaped; `perfbench report`."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from perfbench.commands.report import main
from perfbench.report.html import write_html_report
from run_fixtures import StepSpec, write_run
from usage_errors import assert_one_line_usage_error

EVIL = "<script>alert('x')</script>"
PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class _Collect(HTMLParser):
    """Every tag with its attributes, and the text, as a browser's parser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    return parser


def _evil_run(path: Path) -> Path:
    run = write_run(
        path,
        [StepSpec(requests=40, failures=5, error=f"upstream said {EVIL}")],
        model=f"model{EVIL}",
        config={"prompt": EVIL, "max_tokens": 32},
    )
    summary = json.loads((run / "summary.json").read_text())
    summary["tags"] = {"branch": EVIL}
    summary["target"]["url"] = f"http://127.0.0.1:1/v1?{EVIL}"
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "plots").mkdir()
    (run / "plots" / "latency_cdf.png").write_bytes(PNG_1x1)
    (run / "telemetry.jsonl").write_text(
        "\n".join(
            json.dumps(s)
            for s in [
                {"t_s": 0.0, "source": "gpu", "gpu": 0, "name": f"GPU{EVIL}", "driver": "550", "util_pct": 80.0,
                 "mem_used_mib": 100.0, "mem_total_mib": 1000.0, "power_w": 200.0, "energy_mj": 1000.0},
                {"t_s": 2.0, "source": "gpu", "gpu": 0, "name": f"GPU{EVIL}", "driver": "550", "util_pct": 60.0,
                 "mem_used_mib": 300.0, "mem_total_mib": 1000.0, "power_w": 200.0, "energy_mj": 401000.0},
                {"t_s": 1.0, "source": "prometheus", f'vllm:num_requests_running{{model_name="{EVIL}"}}': 3.0},
            ]
        )
    )
    return run


def test_report_is_self_contained_escaped_and_complete(tmp_path: Path) -> None:
    run = _evil_run(tmp_path / "run")
    path = write_html_report(run)
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    parsed = _parse(page)
    # no script at all, nothing loaded from elsewhere
    assert "script" not in [tag for tag, _ in parsed.tags]
    for tag, attrs in parsed.tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not re.match(r"\s*(https?:)?//", value), (tag, attrs)
    assert not re.search(r"@import|url\(", page)
    assert "alert('x')</script>" not in page and EVIL not in page
    text = "".join(parsed.text)
    # the user's text is there, as text: prompt (config), error, tag, model, GPU name, series
    assert text.count(EVIL) >= 6
    assert f"upstream said {EVIL}" in text and "http_500" in text
    # images are embedded
    images = [attrs["src"] for tag, attrs in parsed.tags if tag == "img"]
    assert images == ["data:image/png;base64," + base64.b64encode(PNG_1x1).decode()]
    # summary per step, telemetry, config and environment
    assert "c=4" in text and "35 / 5" in text
    assert "400.0 J (counter)" in text  # (401000 - 1000) mJ
    assert "vllm:num_requests_running" in text
    assert '"max_tokens": 32' in text and "perfbench" in text


def test_report_with_baseline_shows_the_comparison(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base", [StepSpec(requests=150)], seed=1)
    slow = write_run(tmp_path / "slow", [StepSpec(requests=150, slowdown=1.3)], seed=2)
    from perfbench.compare import compare_runs

    text = "".join(_parse(write_html_report(slow, comparison=compare_runs(base, slow)).read_text()).text)
    assert "Comparison with the baseline" in text and "Regression against the baseline" in text
    assert "ttft_ms.p99" in text and "regressed" in text
    # without plots, failures or telemetry the page says so instead of breaking
    assert "No plots" in text and "every request succeeded" in text and "No telemetry" in text


def test_report_main(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = write_run(tmp_path / "base", [StepSpec(requests=60)], seed=1)
    new = write_run(tmp_path / "new", [StepSpec(requests=60)], seed=2)
    assert main([str(new), "--baseline", str(base)]) == 0
    # plots.write_plots ran first, and its PNGs are embedded, beside the baseline's overlaid distributions
    pngs = sorted((new / "plots").glob("*.png"))
    assert pngs
    page = (new / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(pngs) + 1
    assert page.index('alt="baseline distributions"') > page.index('id="comparison"')
    assert "report.html" in capsys.readouterr().out
    assert main([str(tmp_path / "nope")]) == 2
    assert "perfbench: error: no summary.json" in capsys.readouterr().err
    assert main([str(new), "--baseline", "tag:x=y", "--store", str(tmp_path / "h.sqlite")]) == 2


def test_report_usage_errors_are_one_line_exit_2() -> None:
    assert_one_line_usage_error("report", expect="required: run_dir")
    assert_one_line_usage_error("report", "d", "--bogus", expect="unrecognized arguments: --bogus")


def _failing_run(path: Path) -> Path:
    """One step: 3 ok, 4 x http_429 (two texts), 2 x http_500 (one text), 1 timeout without text."""
    from perfbench.metrics import summarize_step
    from perfbench.results.records import OK, RequestRecord
    from perfbench.report.requests_file import RecordWriter

    failures = [("http_429", 429, "HTTP 429: slow down <b>now</b>")] * 3 + [("http_429", 429, "HTTP 429: quota")]
    failures += [("http_500", 500, f"HTTP 500: {EVIL}")] * 2 + [("timeout", None, None)]
    records = [RequestRecord(0, k, False, OK, 200, None, k, k, k + 9, (k + 5, k + 9), (1, 1), 3, 2, "usage") for k in range(3)]
    records += [
        RequestRecord(0, 3 + k, False, status, http, error, k, k, k + 9, (), (), 3, None, None)
        for k, (status, http, error) in enumerate(failures)
    ]
    path.mkdir()
    writer = RecordWriter(path / "requests.jsonl", run_start_ns=0)
    for record in records:
        writer.write(record)
    writer.close()
    step = summarize_step(records, concurrency=2, rate_req_s=None, requests_expected=10).to_dict()
    summary = {"schema": "perfbench.summary/1", "target": {"url": "http://127.0.0.1:1/v1/chat/completions"}, "steps": [step]}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def _failure_rows(run: Path) -> dict[str, list[str]]:
    page = write_html_report(run).read_text()
    section = page[page.index("<h2>Failures</h2>"):]
    section = section[: section.index("</section>")]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", section)[1:]:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        rows[cells[1]] = cells[2:]
    return rows


def test_failures_show_each_reason_with_its_count_and_sample_texts_escaped(tmp_path: Path) -> None:
    run = _failing_run(tmp_path / "run")
    rows = _failure_rows(run)
    assert rows == {
        "http_429": ["4", "<code>HTTP 429: slow down &lt;b&gt;now&lt;/b&gt;</code><br><code>HTTP 429: quota</code>"],
        "http_500": ["2", "<code>HTTP 500: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</code>"],
        "timeout": ["1", '<span class="muted">-</span>'],
    }
    # The sample comes from summary.json's failure_examples even when requests.jsonl is gone ...
    (run / "requests.jsonl").unlink()
    assert _failure_rows(run)["http_429"] == ["4", "<code>HTTP 429: slow down &lt;b&gt;now&lt;/b&gt;</code>"]
    # ... and from requests.jsonl for a summary written before failure_examples existed.
    run = _failing_run(tmp_path / "old")
    summary = json.loads((run / "summary.json").read_text())
    del summary["steps"][0]["failure_examples"]
    (run / "summary.json").write_text(json.dumps(summary))
    assert _failure_rows(run) == rows


def test_a_rebuilt_report_keeps_the_runs_own_comparison(tmp_path: Path) -> None:
    # The run was checked against its baseline (comparison.json in its folder); `perfbench report DIR`
    # later, without --baseline, must still show that verdict, not drop it.
    from perfbench.compare import Comparison, compare_runs

    base = write_run(tmp_path / "base", [StepSpec(requests=150)], seed=1)
    slow = write_run(tmp_path / "slow", [StepSpec(requests=150, slowdown=1.3)], seed=2)
    comparison = compare_runs(base, slow)
    (slow / "comparison.json").write_text(json.dumps(comparison.to_dict()))
    assert Comparison.from_dict(json.loads((slow / "comparison.json").read_text())) == comparison
    assert main([str(slow)]) == 0
    text = "".join(_parse((slow / "report.html").read_text()).text)
    assert "Comparison with the baseline" in text and "Regression against the baseline" in text
