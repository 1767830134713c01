"""Tests for perfbench.metrics: each metric against hand-built records, arithmetic in comments."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfbench.metrics import (
    SloResult,
    Stats,
    StepAccumulator,
    StepSummary,
    describe,
    itl_ms,
    latency_ms,
    per_request_ms,
    queue_ms,
    summarize_step,
    time_per_package_ms,
    tpot_ms,
    ttft_ms,
)
from perfbench.results.records import CUT_STREAM, OK, TIMEOUT, RequestRecord, http_reason

HTTP_500 = http_reason(500)
from perfbench.metrics.slo import parse_slos

MS = 1_000_000  # ns per ms
BASE = 10**15  # perf_counter_ns values are large; differences must stay exact


def rec(
    packages_ms: list[float] = (100, 110, 120),
    tokens: list[int] | None = None,
    *,
    t0_ms: float = 0,
    sent_ms: float | None = None,
    end_ms: float | None = None,
    status: str = OK,
    warmup: bool = False,
    input_tokens: int | None = 10,
    output_tokens: int | None = None,
    index: int = 0,
) -> RequestRecord:
    """A record with times in ms relative to BASE; output_tokens defaults to sum(tokens)."""
    times = tuple(BASE + round(ms * MS) for ms in packages_ms)
    package_tokens = tuple(tokens) if tokens is not None else (1,) * len(times)
    if output_tokens is None and status == OK:
        output_tokens = sum(package_tokens)
    return RequestRecord(
        step=0,
        index=index,
        warmup=warmup,
        status=status,
        http_status=200 if status == OK else 500,
        error=None if status == OK else "boom",
        scheduled_ns=BASE + round(t0_ms * MS),
        sent_ns=BASE + round((t0_ms if sent_ms is None else sent_ms) * MS),
        end_ns=BASE + round(((packages_ms[-1] if packages_ms else t0_ms) if end_ms is None else end_ms) * MS),
        package_times_ns=times,
        package_tokens=package_tokens,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        token_source="usage",
    )


def summarize(records, slos=None, **kw) -> StepSummary:
    kw.setdefault("concurrency", 1)
    kw.setdefault("rate_req_s", None)
    kw.setdefault("requests_expected", len(records))
    return summarize_step(records, slos=None if slos is None else parse_slos(slos), **kw)


# --- per-request metrics ---------------------------------------------------------------------


def test_the_basic_example():
    # t0=0, packages at 100, 110, 120 ms, 1 token each (n_out=3):
    r = rec([100, 110, 120])
    assert ttft_ms(r) == 100.0  # 100 - 0
    assert latency_ms(r) == 120.0  # 120 - 0
    assert tpot_ms(r) == 10.0  # (120 - 100) / (3 - 1)
    assert itl_ms(r).tolist() == [10.0, 10.0]  # 110 - 100, 120 - 110
    assert time_per_package_ms(r) == 10.0  # (120 - 100) / (3 - 1)


def test_clock_starts_at_the_scheduled_time_not_the_send():
    # Due at 0, sent at 30 (client lag), first package at 100: TTFT is 100 and queue 30.
    r = rec([100, 110], sent_ms=30)
    assert ttft_ms(r) == 100.0
    assert queue_ms(r) == 30.0  # 30 - 0


def test_tpot_never_includes_ttft():
    # First output at 500 ms, last at 600 ms, 11 tokens: TPOT = (600 - 500) / (11 - 1) = 10,
    # not 600 / 11 = 54.5 (latency per token) nor 600 / 10 = 60.
    r = rec([500, 550, 600], [1, 5, 5])
    assert tpot_ms(r) == 10.0


def test_tpot_uses_output_tokens_not_packages():
    # 2 packages but usage says 5 tokens: (130 - 100) / (5 - 1) = 7.5
    assert tpot_ms(rec([100, 130], output_tokens=5)) == 7.5


def test_tpot_has_no_value_below_two_tokens():
    assert tpot_ms(rec([100], output_tokens=1)) is None
    unknown_n_out = dataclasses.replace(rec([100, 110]), output_tokens=None)
    assert tpot_ms(unknown_n_out) is None
    assert tpot_ms(rec([], output_tokens=0)) is None


def test_tpot_of_a_single_package_with_many_tokens_is_zero():
    # Everything arrived at once: (100 - 100) / (4 - 1) = 0, a real measurement.
    assert tpot_ms(rec([100], [4])) == 0.0


def test_itl_spreads_a_multi_token_package_over_its_tokens():
    # Package of 3 tokens 30 ms after the previous one: three samples of 30 / 3 = 10 ms,
    # not one 30 ms sample (which would bias ITL).
    r = rec([100, 130], [1, 3])
    assert itl_ms(r).tolist() == [10.0, 10.0, 10.0]
    # Mixed: gaps 20 (2 tokens) and 9 (3 tokens) -> [10, 10, 3, 3, 3]
    assert itl_ms(rec([100, 120, 129], [1, 2, 3])).tolist() == [10.0, 10.0, 3.0, 3.0, 3.0]


def test_itl_ignores_the_first_packages_tokens():
    # A first package of 4 tokens adds no samples: its wait is TTFT, not ITL.
    assert itl_ms(rec([100, 110], [4, 1])).tolist() == [10.0]


def test_itl_treats_packages_as_one_token_when_counts_are_missing_or_mismatched():
    assert itl_ms(rec([100, 110, 130], [])).tolist() == [10.0, 20.0]
    assert itl_ms(rec([100, 110, 130], [2, 2])).tolist() == [10.0, 20.0]


def test_itl_zero_token_package_passes_its_gap_on():
    # Package at 110 carries 0 tokens: the next token waited 130 - 100 = 30 ms.
    assert itl_ms(rec([100, 110, 130], [1, 0, 1])).tolist() == [30.0]
    # A leading zero-token package: samples start at the first token-carrying one.
    assert itl_ms(rec([90, 100, 110], [0, 1, 1])).tolist() == [10.0]


def test_itl_empty_without_two_packages():
    assert itl_ms(rec([100])).size == 0
    assert itl_ms(rec([], output_tokens=0)).size == 0


def test_time_per_package():
    # Packages at 100, 110, 140: (140 - 100) / (3 - 1) = 20, whatever tokens they carry.
    assert time_per_package_ms(rec([100, 110, 140], [1, 5, 5])) == 20.0
    assert time_per_package_ms(rec([100])) is None


def test_no_output_means_no_value_not_zero():
    r = rec([], status=CUT_STREAM, end_ms=50)
    assert ttft_ms(r) is None
    assert latency_ms(r) is None
    assert tpot_ms(r) is None
    assert time_per_package_ms(r) is None
    assert queue_ms(r) == 0.0  # always defined


def test_differences_are_exact_at_large_clock_values():
    # BASE is 1e15 ns: 100.000001 ms must not round away.
    r = rec([100.000001, 100.000002])
    assert ttft_ms(r) == 100.000001
    assert itl_ms(r).tolist() == [0.000001]


def test_per_request_ms_matches_the_one_record_functions():
    records = [rec([100, 110, 140], [1, 2, 3]), rec([], status=TIMEOUT), rec([5], t0_ms=1, sent_ms=2)]
    columns = per_request_ms(records)
    for i, r in enumerate(records):
        for name, fn in [("ttft_ms", ttft_ms), ("latency_ms", latency_ms), ("tpot_ms", tpot_ms), ("queue_ms", queue_ms)]:
            expected = fn(r)
            assert (math.isnan(columns[name][i]) and expected is None) or columns[name][i] == expected
    # largest per-token ITL of the first: gaps 10/2 = 5 and 30/3 = 10 -> 10
    assert columns["itl_max_ms"][0] == 10.0
    assert math.isnan(columns["itl_max_ms"][1]) and math.isnan(columns["itl_max_ms"][2])


# --- describe --------------------------------------------------------------------------------


def test_describe_by_hand():
    s = describe([4.0, 1.0, 3.0, 2.0])
    assert s.count == 4
    assert s.mean == 2.5
    assert s.std == math.sqrt(1.25)  # population: mean of squared deviations (2.25+0.25+0.25+2.25)/4
    assert (s.min, s.max) == (1.0, 4.0)
    # linear interpolation over sorted [1, 2, 3, 4]: rank q/100 * 3
    assert s.p50 == 2.5  # rank 1.5
    assert s.p90 == pytest.approx(3.7)  # rank 2.7 -> 3 + 0.7
    assert s.p95 == pytest.approx(3.85)  # rank 2.85
    assert s.p99 == pytest.approx(3.97)  # rank 2.97


def test_describe_empty_is_none_not_zero():
    for values in ([], [None], [math.nan], np.array([])):
        s = describe(values)
        assert s == Stats(0, None, None, None, None, None, None, None, None)


def test_describe_drops_missing_values():
    assert describe([1.0, None, 3.0, math.nan]).mean == 2.0


def test_describe_keeps_full_precision():
    assert describe([1.23456789012]).p50 == 1.23456789012


def test_stats_round_trip():
    s = describe([1.0, 2.0])
    assert Stats.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert list(s.to_dict()) == ["count", "mean", "std", "min", "p50", "p90", "p95", "p99", "max"]


# --- a step ----------------------------------------------------------------------------------


def test_step_counts_throughput_duration_and_concurrency():
    # Two succeeded requests and one failed:
    #   A: due 0, sent 0, packages 100, 110, 120 (3 tokens), ends 120, input 10
    #   B: due 50, sent 60, packages 200, 300 (1 + 3 = 4 tokens), ends 300, input 20
    #   C: due 100, sent 100, HTTP error, ends 150
    records = [
        rec([100, 110, 120], input_tokens=10),
        rec([200, 300], [1, 3], t0_ms=50, sent_ms=60, input_tokens=20),
        rec([], t0_ms=100, end_ms=150, status=HTTP_500, input_tokens=None),
    ]
    s = summarize(records, concurrency=2, requests_expected=4)
    assert (s.requests_expected, s.requests_completed, s.requests_succeeded, s.requests_failed) == (4, 3, 2, 1)
    assert s.failure_reasons == {HTTP_500: 1}
    assert s.duration_s == pytest.approx(0.3)  # first due 0 to last end 300 ms
    assert s.request_throughput_req_s == pytest.approx(2 / 0.3)  # succeeded / duration
    assert s.output_throughput_tok_s == pytest.approx(7 / 0.3)  # (3 + 4) / duration
    assert s.total_throughput_tok_s == pytest.approx((10 + 20 + 7) / 0.3)
    # in flight: A 0..120, B 60..300, C 100..150 -> (120 + 240 + 50) / 300 ms
    assert s.concurrency_achieved == pytest.approx(410 / 300)
    assert s.latency_ms.count == 2 and s.latency_ms.mean == 185.0  # (120 + 250) / 2
    assert s.ttft_ms.min == 100.0 and s.ttft_ms.max == 150.0  # 100 - 0, 200 - 50
    assert s.queue_ms.max == 10.0  # B: 60 - 50; failed C not counted
    assert s.tpot_ms.max == pytest.approx(100 / 3)  # B: (300 - 200) / (4 - 1)
    assert s.itl_ms.count == 2 + 3  # A: [10, 10]; B: 100 / 3 three times
    assert s.packages_per_request.mean == 2.5  # (3 + 2) / 2
    assert s.input_tokens_per_request.mean == 15.0
    assert s.output_tokens_per_request.mean == 3.5


def test_itl_is_pooled_over_requests_weighted_by_tokens():
    # A: gaps [10] ; B: one package of 4 tokens after 40 ms -> [10, 10, 10, 10]
    # Pooled: five samples of 10, not the mean of per-request means.
    s = summarize([rec([100, 110]), rec([100, 140], [1, 4])])
    assert s.itl_ms.count == 5
    assert s.itl_ms.mean == 10.0 and s.itl_ms.max == 10.0


def test_failed_requests_are_excluded_but_counted_by_reason():
    ok = rec([100, 110])
    failed = [
        rec([50, 60], status=CUT_STREAM, end_ms=70),  # had output, still excluded
        rec([], status=TIMEOUT, end_ms=900),
        rec([], status=TIMEOUT, end_ms=800),
    ]
    s = summarize([ok, *failed])
    assert s.failure_reasons == {CUT_STREAM: 1, TIMEOUT: 2}
    assert list(s.failure_reasons) == sorted(s.failure_reasons)
    assert s.requests_failed == 3 and s.requests_succeeded == 1
    assert s.ttft_ms.count == 1 and s.ttft_ms.min == 100.0  # the cut stream's 50 ms is not in
    assert s.duration_s == pytest.approx(0.9)  # failed requests still take time: 0 to 900 ms
    assert s.request_throughput_req_s == pytest.approx(1 / 0.9)


def test_warmup_is_excluded_from_everything():
    warm = rec([10, 20], t0_ms=-1000, end_ms=20, warmup=True)
    warm_failed = rec([], t0_ms=-500, end_ms=5000, warmup=True, status=TIMEOUT)
    s = summarize([warm, warm_failed, rec([100, 110])], requests_expected=1)
    assert s.requests_completed == 1 and s.requests_failed == 0 and s.failure_reasons == {}
    assert s.duration_s == pytest.approx(0.11)  # 0 to 110 ms, warm-up spans ignored
    assert s.ttft_ms.count == 1 and s.ttft_ms.max == 100.0


def test_no_data_is_none_never_zero():
    # All failed: latency statistics have no value; rates over a known duration are a real 0.
    s = summarize([rec([], status=TIMEOUT, end_ms=1000)])
    for key in ("latency_ms", "ttft_ms", "tpot_ms", "itl_ms", "queue_ms", "time_per_package_ms"):
        stats = getattr(s, key)
        assert stats.count == 0 and stats.mean is None and stats.p99 is None
    assert s.request_throughput_req_s == 0.0
    assert s.output_throughput_tok_s == 0.0
    # Nothing at all: no duration, so no rates.
    s = summarize([])
    assert s.duration_s is None
    assert s.request_throughput_req_s is None and s.output_throughput_tok_s is None
    assert s.concurrency_achieved is None and s.total_throughput_tok_s is None
    assert s.latency_ms.count == 0


def test_single_token_requests_have_no_tpot_or_itl():
    s = summarize([rec([100]), rec([120])])
    assert s.tpot_ms.count == 0 and s.tpot_ms.mean is None
    assert s.itl_ms.count == 0 and s.itl_ms.mean is None
    assert s.ttft_ms.count == 2


def test_total_throughput_needs_input_counts():
    s = summarize([rec([100, 110], input_tokens=None)])
    assert s.total_throughput_tok_s is None
    assert s.output_throughput_tok_s == pytest.approx(2 / 0.11)


def test_records_merge_by_concatenation_in_any_order():
    records = [rec([100 + i, 110 + 2 * i, 150], [1, 2, 1], t0_ms=i, index=i) for i in range(30)]
    records.append(rec([], status=TIMEOUT, t0_ms=5, end_ms=400, index=30))
    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    a, b = summarize(shuffled).to_dict(), summarize(records).to_dict()
    assert a.keys() == b.keys()
    for key in a:  # equal up to floating-point summation order
        if isinstance(a[key], dict) and "mean" in a[key]:
            assert a[key] == pytest.approx(b[key], rel=1e-12), key
        else:
            assert a[key] == (pytest.approx(b[key], rel=1e-12) if isinstance(b[key], float) else b[key]), key


# --- SLOs ------------------------------------------------------------------------------------


def test_goodput_counts_requests_meeting_every_per_request_limit():
    records = [
        rec([100, 110, 120]),  # ttft 100, tpot 10, latency 120, max itl 10 -> good
        rec([300, 310]),  # ttft 300 > 200 -> not good
        rec([100, 150]),  # tpot (150 - 100) / 1 = 50 > 20 -> not good
        rec([100], [1]),  # n_out = 1: tpot and itl limits count as met -> good
        rec([100, 105, 140], [1, 1, 2], end_ms=1000),  # itl samples [5, 17.5, 17.5] max 17.5 > 15 -> not good
        rec([], status=TIMEOUT, end_ms=1000),  # failed -> never good
    ]
    s = summarize(records, "ttft=200,tpot=20,itl=15,latency=500")
    assert s.duration_s == pytest.approx(1.0)
    assert s.goodput_req_s == pytest.approx(2 / 1.0)
    assert s.slo_passed is None and s.slo_results == ()  # no step limits


def test_goodput_limit_is_inclusive():
    assert summarize([rec([100, 110])], "ttft=100").goodput_req_s == pytest.approx(1 / 0.11)


def test_goodput_is_none_without_per_request_limits():
    assert summarize([rec()]).goodput_req_s is None
    assert summarize([rec()], "ttft_p99=500").goodput_req_s is None


def test_step_limits_use_the_named_statistic():
    # TTFTs 100, 200, ..., 1000 ms (10 requests): p50 = 550, p90 = 910 (rank 8.1 -> 900 + 0.1*100),
    # mean = 550; latency = ttft + 10.
    records = [rec([100 * k, 100 * k + 10], index=k) for k in range(1, 11)]
    s = summarize(records, "ttft_p50=550,ttft_p90=900,ttft_mean=600,latency_p100=1010,itl_p99.9=10")
    assert s.slo_results == (
        SloResult("ttft_p50", 550.0, 550.0, True),
        SloResult("ttft_p90", 900.0, pytest.approx(910.0), False),
        SloResult("ttft_mean", 600.0, 550.0, True),
        SloResult("latency_p100", 1010.0, 1010.0, True),
        SloResult("itl_p99.9", 10.0, 10.0, True),
    )
    assert s.slo_passed is False
    assert summarize(records, "ttft_p50=550,itl_p99=10").slo_passed is True


def test_step_limit_without_values_fails():
    s = summarize([rec([100])], "tpot_p99=50")  # one token: no TPOT at all
    assert s.slo_results == (SloResult("tpot_p99", 50.0, None, False),)
    assert s.slo_passed is False


def test_step_with_both_kinds_reports_both():
    s = summarize([rec([100, 110])], "ttft=50,ttft_p99=150")
    assert s.goodput_req_s == 0.0  # ttft 100 > 50
    assert s.slo_passed is True


# --- the STEP object -------------------------------------------------------------------------

DESIGN_STEP_KEYS = [
    "concurrency", "rate_req_s", "requests_expected", "requests_completed", "requests_succeeded",
    "requests_failed", "failure_reasons", "failure_examples", "duration_s", "request_throughput_req_s",
    "output_throughput_tok_s", "total_throughput_tok_s", "goodput_req_s", "concurrency_achieved",
    "latency_ms", "ttft_ms", "tpot_ms", "itl_ms", "queue_ms", "time_per_package_ms",
    "packages_per_request", "input_tokens_per_request", "output_tokens_per_request",
]  # fmt: skip


def test_to_dict_keys_are_exactly_design_md_step_keys():
    d = summarize([rec()], "ttft=500,ttft_p99=500").to_dict()
    # input_throughput_tok_s: beside output throughput, for APIs that generate none (embeddings); DESIGN lacks it yet
    expected = list(DESIGN_STEP_KEYS)
    expected.insert(expected.index("duration_s") + 1, "wire_duration_s")  # issue 12: the server-side view
    expected.insert(expected.index("output_throughput_tok_s") + 1, "output_throughput_wire_tok_s")
    expected.insert(expected.index("output_throughput_wire_tok_s") + 1, "input_throughput_tok_s")
    expected.insert(expected.index("itl_ms") + 1, "inter_package_ms")  # issue 11: other tools' "ITL", beside ours
    # client: DESIGN's "The client checks itself" (null here: a summary from records alone has no engine readings)
    assert list(d) == expected + ["slo_passed", "slo_results", "token_sources", "finish_reasons", "client"]
    assert d["client"] is None
    for key in DESIGN_STEP_KEYS[DESIGN_STEP_KEYS.index("latency_ms"):]:
        assert list(d[key]) == ["count", "mean", "std", "min", "p50", "p90", "p95", "p99", "max"]
    assert d["slo_results"] == [{"name": "ttft_p99", "limit_ms": 500.0, "value_ms": 100.0, "passed": True}]


@pytest.mark.parametrize("slos", [None, "ttft=500,itl_p99=5"])
def test_to_dict_from_dict_round_trip_through_json(slos):
    records = [rec([100, 110, 130], [1, 1, 2]), rec([], status=TIMEOUT, end_ms=300)]
    s = summarize(records, slos, rate_req_s=2.5)
    text = json.dumps(s.to_dict(), allow_nan=False)  # JSON-ready: no NaN, no numpy types
    assert StepSummary.from_dict(json.loads(text)) == s


# --- properties ------------------------------------------------------------------------------


@st.composite
def records(draw):
    """A random succeeded or failed record with non-decreasing package times."""
    t0 = draw(st.integers(0, 10**9))
    queue = draw(st.integers(0, 10**8))
    first = draw(st.integers(0, 10**9))
    gaps = draw(st.lists(st.integers(0, 10**8), max_size=12))
    times = [t0 + queue + first]
    for gap in gaps:
        times.append(times[-1] + gap)
    if draw(st.booleans()):
        tokens = tuple(draw(st.lists(st.integers(0, 5), min_size=len(times), max_size=len(times))))
    else:
        tokens = ()
    status = draw(st.sampled_from([OK, OK, OK, TIMEOUT, HTTP_500]))
    n_out = sum(tokens) if tokens else len(times)
    return RequestRecord(
        0, 0, draw(st.booleans()) and draw(st.booleans()), status, 200, None, BASE + t0, BASE + t0 + queue,
        BASE + times[-1] + draw(st.integers(0, 10**6)), tuple(BASE + t for t in times), tokens,
        draw(st.none() | st.integers(0, 10**4)), n_out, "usage",
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), max_size=25))
def test_invariants(recs):
    s = summarize(recs, "ttft=1000,tpot=10,itl_p99=5")
    for r in recs:
        if ttft_ms(r) is not None:
            assert ttft_ms(r) <= latency_ms(r)
        assert (itl_ms(r) >= 0).all()
    for key in ("latency_ms", "ttft_ms", "tpot_ms", "itl_ms", "queue_ms", "time_per_package_ms", "packages_per_request"):
        stats = getattr(s, key)
        if stats.count:
            assert stats.min <= stats.p50 <= stats.p90 <= stats.p95 <= stats.p99 <= stats.max
            assert stats.min <= stats.mean <= stats.max
            assert stats.std >= 0
        else:
            assert stats.mean is None
    if s.ttft_ms.count:
        assert s.ttft_ms.min <= s.latency_ms.min and s.ttft_ms.max <= s.latency_ms.max
    assert s.requests_succeeded + s.requests_failed == s.requests_completed
    assert sum(s.failure_reasons.values()) == s.requests_failed
    if s.goodput_req_s is not None:
        assert 0 <= s.goodput_req_s <= s.request_throughput_req_s
    assert StepSummary.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@settings(max_examples=100, deadline=None)
@given(st.lists(records(), min_size=1, max_size=10))
def test_batch_equals_one_record_at_a_time(recs):
    # The column-wise code must give each record exactly what it gives that record alone.
    recs = [r for r in recs if r.ok and not r.warmup]
    s = summarize(recs)
    pooled = np.concatenate([itl_ms(r) for r in recs]) if recs else np.array([])
    assert describe(pooled) == s.itl_ms
    assert describe([ttft_ms(r) for r in recs]) == s.ttft_ms
    assert describe([tpot_ms(r) for r in recs]) == s.tpot_ms
    assert describe([time_per_package_ms(r) for r in recs]) == s.time_per_package_ms
    for r in recs:
        # ITL samples of a request sum to its token-carrying span
        carrying = [t for t, k in zip(r.package_times_ns, r.package_tokens or (1,) * len(r.package_times_ns)) if k > 0]
        if len(carrying) >= 2:
            assert itl_ms(r).sum() == pytest.approx((carrying[-1] - carrying[0]) / MS)


# --- chunked accumulation --------------------------------------------------------------------


def test_failure_examples_keep_the_first_error_text_of_each_reason():
    records = [
        rec(),
        dataclasses.replace(rec([], status=TIMEOUT, end_ms=300), error=None),  # no text: a later one fills in
        dataclasses.replace(rec([], status=HTTP_500), error="HTTP 500: first"),
        dataclasses.replace(rec([], status=TIMEOUT, end_ms=300), error="no answer in 0.3 s"),
        dataclasses.replace(rec([], status=HTTP_500), error="HTTP 500: second"),
        dataclasses.replace(rec([], status=CUT_STREAM), error=None),
        dataclasses.replace(rec([], status="http_429", warmup=True), error="warm-up counts nowhere"),
    ]
    s = summarize(records)
    assert s.failure_examples == {CUT_STREAM: None, HTTP_500: "HTTP 500: first", TIMEOUT: "no answer in 0.3 s"}
    assert list(s.failure_examples) == list(s.failure_reasons)
    assert StepSummary.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(records(), st.sampled_from([None, "", "boom", "HTTP 500: <b>x</b>"])), max_size=40),
    st.lists(st.integers(1, 9), min_size=1, max_size=40),
)
def test_chunked_accumulation_equals_one_pass(recs, chunk_sizes):
    # A run feeds its records in chunks; every number must be exactly (==, not approx) what one
    # pass over the whole list gives.
    recs = [dataclasses.replace(r, error=error) for r, error in recs]
    slos = parse_slos("ttft=1000,tpot=10,itl=20,latency=5000,itl_p99=5,ttft_p50=900,tpot_mean=3")
    whole = summarize_step(recs, concurrency=4, rate_req_s=None, requests_expected=50, slos=slos)
    accumulator = StepAccumulator()
    start, sizes = 0, iter(chunk_sizes * 40)
    while start < len(recs):
        size = next(sizes)
        accumulator.add(recs[start:start + size])
        if size % 3 == 0:
            accumulator.column("ttft_ms")  # joining the chunks midway changes nothing either
        start += size
    chunked = accumulator.summary(concurrency=4, rate_req_s=None, requests_expected=50, slos=slos)
    assert chunked.to_dict() == whole.to_dict()
    assert json.dumps(chunked.to_dict()) == json.dumps(whole.to_dict())  # same floats to the last bit


def test_the_wire_duration_starts_at_the_first_byte_sent():
    # Scheduled at 0 ms but sent at 40 ms (the client lagged), ended at 140 ms: the step's duration
    # counts the lag, the server's view does not.
    record = RequestRecord(0, 0, False, OK, 200, None, 0, 40_000_000, 140_000_000, (90_000_000, 140_000_000), (1, 1), 3, 2, "usage")
    s = summarize_step([record], concurrency=1, rate_req_s=None, requests_expected=1)
    assert s.duration_s == pytest.approx(0.14) and s.wire_duration_s == pytest.approx(0.10)
    assert s.output_throughput_tok_s == pytest.approx(2 / 0.14) and s.output_throughput_wire_tok_s == pytest.approx(2 / 0.10)


def test_the_registry_names_every_metric_an_slo_may_limit():
    from perfbench.metrics import slo
    from perfbench.metrics import SLO_METRICS

    assert sorted(SLO_METRICS) == sorted(slo.METRICS)
    assert {m.unit for m in SLO_METRICS.values()} == {"ms"}  # SLO limits are in ms


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), max_size=25), st.lists(st.booleans(), max_size=25))
def test_the_request_lines_times_are_the_columns_formulas(recs, without_packages):
    # requests.jsonl's ttft_ms and latency_ms come from a per-record path (no arrays): the same values
    # as the columns the statistics use, for answers with packages and without (embeddings, failures).
    from perfbench.metrics import per_request_ms, requests_times_ms

    recs = [dataclasses.replace(r, package_times_ns=(), package_tokens=()) if drop else r
            for r, drop in zip(recs, without_packages + [False] * len(recs))]
    lines, columns = requests_times_ms(recs), per_request_ms(recs)
    for key in ("ttft_ms", "latency_ms"):
        assert lines[key] == [None if math.isnan(v) else v for v in columns[key].tolist()], key
