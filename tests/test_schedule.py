"""Arrival schedules are pure functions: tested without a clock."""

import numpy as np
import pytest

from perfbench.workload.schedule import arrival_offsets_s


def test_constant_rate_is_exactly_spaced():
    # 4 req/s -> due at 0, 0.25, 0.5, 0.75 s
    offsets = arrival_offsets_s(rate_req_s=4, count=4, arrivals="constant")
    assert offsets.tolist() == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_poisson_mean_rate_and_exponential_spread():
    offsets = arrival_offsets_s(rate_req_s=10, count=20_000, seed=1)
    gaps = np.diff(offsets)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    # exponential intervals: coefficient of variation 1
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)


def test_burstiness_changes_spread_not_rate():
    bursty = np.diff(arrival_offsets_s(rate_req_s=10, count=20_000, burstiness=0.25, seed=2))
    smooth = np.diff(arrival_offsets_s(rate_req_s=10, count=20_000, burstiness=4, seed=2))
    assert bursty.mean() == pytest.approx(0.1, rel=0.05)
    assert smooth.mean() == pytest.approx(0.1, rel=0.05)
    # gamma shape k: CV = 1/sqrt(k) -> 2 and 0.5
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.1)
    assert smooth.std() / smooth.mean() == pytest.approx(0.5, rel=0.1)


def test_same_seed_same_schedule_other_seed_differs():
    a = arrival_offsets_s(rate_req_s=5, count=100, seed=7)
    b = arrival_offsets_s(rate_req_s=5, count=100, seed=7)
    c = arrival_offsets_s(rate_req_s=5, count=100, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_duration_bound_keeps_arrivals_inside_it():
    offsets = arrival_offsets_s(rate_req_s=50, duration_s=10, seed=3)
    assert offsets[0] == 0 and offsets[-1] < 10
    assert len(offsets) == pytest.approx(500, rel=0.15)
    assert np.all(np.diff(offsets) >= 0)


def test_linear_ramp_up():
    # constant 10/s with a 10 s ramp: by t the expected count is 10*t^2/(2*10) = t^2/2
    offsets = arrival_offsets_s(rate_req_s=10, count=200, arrivals="constant", ramp_up_s=10)
    assert np.sum(offsets < 4) == pytest.approx(4**2 / 2, abs=1)
    assert np.sum(offsets < 10) == pytest.approx(50, abs=1)
    # after the ramp, the full rate: 10 more per second
    assert np.sum(offsets < 12) - np.sum(offsets < 10) == pytest.approx(20, abs=1)


def test_bad_arguments():
    with pytest.raises(ValueError):
        arrival_offsets_s(rate_req_s=0, count=3)
    with pytest.raises(ValueError):
        arrival_offsets_s(rate_req_s=1, count=3, duration_s=3)
