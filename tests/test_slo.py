"""Tests for perfbench.metrics.slo: --slo text and scenario mappings into limits, one-line errors."""

from __future__ import annotations

import pytest

from perfbench.core.errors import ConfigError
from perfbench.metrics.slo import Slos, StepLimit, parse_slos


def test_bare_keys_are_per_request_limits():
    slos = parse_slos("ttft=500,tpot=50,itl=100,latency=8000")
    assert slos.per_request_ms == {"ttft": 500.0, "tpot": 50.0, "itl": 100.0, "latency": 8000.0}
    assert slos.step_limits == ()


def test_keys_with_a_statistic_are_step_limits_in_order():
    slos = parse_slos("ttft_p99=500,latency_p90=8000,itl_p99.9=80,tpot_mean=40,ttft_p50=100")
    assert slos.per_request_ms == {}
    assert slos.step_limits == (
        StepLimit("ttft", "p99", 500.0),
        StepLimit("latency", "p90", 8000.0),
        StepLimit("itl", "p99.9", 80.0),
        StepLimit("tpot", "mean", 40.0),
        StepLimit("ttft", "p50", 100.0),
    )
    assert [limit.name for limit in slos.step_limits] == ["ttft_p99", "latency_p90", "itl_p99.9", "tpot_mean", "ttft_p50"]
    assert [limit.percentile for limit in slos.step_limits] == [99.0, 90.0, 99.9, None, 50.0]


def test_mixed_with_spaces_ms_suffix_and_case():
    slos = parse_slos(" TTFT = 500ms , tpot_P99=50 MS, latency=1.5e3,")
    assert slos.per_request_ms == {"ttft": 500.0, "latency": 1500.0}
    assert slos.step_limits == (StepLimit("tpot", "p99", 50.0),)


def test_percentiles_are_canonical_and_any_in_range_is_allowed():
    assert parse_slos("ttft_p99.90=1").step_limits[0].stat == "p99.9"
    assert parse_slos("ttft_p100=1").step_limits[0].stat == "p100"
    assert parse_slos("ttft_p0.5=1").step_limits[0].stat == "p0.5"
    assert parse_slos("ttft_p99.999=1").step_limits[0].stat == "p99.999"


def test_unknown_metric_names_the_item_and_the_fix():
    with pytest.raises(ConfigError) as err:
        parse_slos("ttf=500")
    assert str(err.value) == (
        "--slo: unknown metric 'ttf' in 'ttf=500'; use ttft, tpot, itl or latency, optionally with _p99/_mean"
    )


@pytest.mark.parametrize("key", ["ttft_p0", "ttft_p101", "ttft_p", "ttft_pxx", "ttft_max", "ttft_", "ttft_pnan", "ttft_pinf"])
def test_bad_statistic(key):
    with pytest.raises(ConfigError, match=rf"--slo: unknown statistic .* in '{key}=5'; use _pNN"):
        parse_slos(f"{key}=5")


@pytest.mark.parametrize("value", ["0", "-5", "abc", "", "5s", "nan", "inf", "ms"])
def test_bad_value(value):
    with pytest.raises(ConfigError, match=r"--slo: bad limit in 'ttft=.*'; give a positive number of milliseconds"):
        parse_slos(f"ttft={value}")


@pytest.mark.parametrize("text", ["", "  ", ",", " , ,"])
def test_empty_text(text):
    with pytest.raises(ConfigError, match="--slo: no limits given"):
        parse_slos(text)


def test_item_without_equals():
    with pytest.raises(ConfigError, match=r"--slo: 'ttft:500' is not key=value"):
        parse_slos("ttft:500")


def test_duplicate_key():
    with pytest.raises(ConfigError, match="'ttft_p99' is given twice"):
        parse_slos("ttft_p99=5,TTFT_p99.0=6")


def test_errors_are_one_line():
    for text in ["ttf=5", "ttft_p0=5", "ttft=x", "", "a", "ttft=1,ttft=2"]:
        with pytest.raises(ConfigError) as err:
            parse_slos(text)
        assert "\n" not in str(err.value)


def test_from_mapping_equals_text_form():
    mapping = {"ttft_p99": 500, "tpot": "50ms", "latency": 8000.5, "itl_mean": 20}
    assert Slos.from_mapping(mapping) == parse_slos("ttft_p99=500,tpot=50ms,latency=8000.5,itl_mean=20")


def test_from_mapping_errors_name_the_source():
    with pytest.raises(ConfigError, match=r"^scenario.yaml: slo: unknown metric 'ttf' in 'ttf: 5'; use ttft"):
        Slos.from_mapping({"ttf": 5}, where="scenario.yaml: slo")
    with pytest.raises(ConfigError, match=r"^slo: bad limit in 'ttft: True'"):
        Slos.from_mapping({"ttft": True})
    with pytest.raises(ConfigError, match=r"^slo: bad limit in 'ttft: None'"):
        Slos.from_mapping({"ttft": None})
    with pytest.raises(ConfigError, match=r"^slo: expected a mapping of limits in ms, got list"):
        Slos.from_mapping(["ttft=5"])  # type: ignore[arg-type]


def test_to_mapping_round_trips():
    slos = parse_slos("ttft=500,tpot_p99=50,itl_p99.9=80")
    assert slos.to_mapping() == {"ttft": 500.0, "tpot_p99": 50.0, "itl_p99.9": 80.0}
    assert Slos.from_mapping(slos.to_mapping()) == slos


def test_the_slo_metrics_are_the_registrys_alone(monkeypatch, tmp_path) -> None:
    """--slo's names, the per-request and step checks, the page's and JUnit's names all read
    perfbench.metrics.SLO_METRICS: a metric put there is limited everywhere, with no other list to edit."""
    import xml.etree.ElementTree as ET

    from perfbench.analysis import slo_name
    from perfbench.metrics import METRICS_BY_KEY, SLO_METRICS, summarize_step
    from perfbench.report.junit import write_junit
    from perfbench.results.records import OK, RequestRecord

    monkeypatch.setitem(SLO_METRICS, "queue", METRICS_BY_KEY["queue_ms"])
    slos = parse_slos("queue=3,queue_p50=2,ttft_p50=1000")
    assert slos.per_request_ms == {"queue": 3.0} and slos.step_limits[0] == StepLimit("queue", "p50", 2.0)
    ms = 1_000_000
    # Queue (sent - scheduled) 1, 2 and 4 ms; each request's one package at 10 ms.
    records = [RequestRecord(0, i, False, OK, 200, None, 0, q * ms, 10 * ms, (10 * ms,), (1,), 3, 1, "usage")
               for i, q in enumerate((1, 2, 4))]
    step = summarize_step(records, concurrency=1, rate_req_s=None, requests_expected=3, slos=slos)
    queue = next(r for r in step.slo_results if r.name == "queue_p50")
    assert (queue.value_ms, queue.passed) == (pytest.approx(2.0), True)
    assert step.goodput_req_s == pytest.approx(2 / step.duration_s)  # the 4 ms request misses queue=3
    assert slo_name("queue_p50") == "Queue p50"
    write_junit(tmp_path / "junit.xml", steps=[step.to_dict()])
    names = [case.get("name") for case in ET.parse(tmp_path / "junit.xml").getroot().iter("testcase")]
    assert names[0] == "queue_p50 <= 2 ms"
    with pytest.raises(ConfigError, match="use ttft, tpot, itl, latency or queue,"):
        parse_slos("nosuch=1")
