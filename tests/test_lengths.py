"""LengthDistribution: text and mapping forms, errors, sample statistics and clipping."""

from __future__ import annotations

import numpy as np
import pytest

from perfbench.core.errors import ConfigError
from perfbench.workload.lengths import LengthDistribution as LD


@pytest.mark.parametrize(
    "text, expected",
    [
        ("128", LD.fixed(128)),
        (128, LD.fixed(128)),
        ("fixed:7", LD.fixed(7)),
        (" Uniform: 64 - 256 ", LD.uniform(64, 256)),
        ("uniform:5-5", LD.uniform(5, 5)),
        ("normal:128,32", LD.normal(128, 32)),
        ("normal:128.5,0.5", LD.normal(128.5, 0.5)),
        ("normal:128,32,16", LD.normal(128, 32, 16)),
        ("normal:128,32,16,512", LD.normal(128, 32, 16, 512)),
    ],
)
def test_parse_forms_and_round_trip(text, expected):
    d = LD.parse(text)
    assert d == expected
    assert LD.parse(str(d)) == d


def test_str_forms():
    assert str(LD.parse(128)) == "fixed:128"
    assert str(LD.parse("uniform:64-256")) == "uniform:64-256"
    assert str(LD.parse("normal:128,32")) == "normal:128,32"
    assert str(LD.parse("normal:128,32,16,512")) == "normal:128,32,16,512"


@pytest.mark.parametrize(
    "bad",
    ["", "x", "fixed:", "1.5", 1.5, True, None, "uniform:64", "uniform:1-2-3", "normal:1", "normal:1,-2", "poisson:3"],
)
def test_parse_rejects_with_accepted_forms(bad):
    with pytest.raises(ConfigError) as e:
        LD.parse(bad, name="--input-tokens")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("--input-tokens: ")
    assert "uniform:MIN-MAX" in msg and "normal:MEAN,STD" in msg


@pytest.mark.parametrize("bad", ["0", 0, -3, "uniform:0-4", "uniform:9-3", "normal:10,2,20,5", "normal:10,2,0"])
def test_parse_rejects_impossible_lengths(bad):
    with pytest.raises(ConfigError, match=r"^--output-tokens: .*(below 1|empty)"):
        LD.parse(bad, name="--output-tokens")


@pytest.mark.parametrize(
    "mapping, expected",
    [
        ({"fixed": 128}, LD.fixed(128)),
        ({"uniform": [64, 256]}, LD.uniform(64, 256)),
        ({"uniform": {"min": 64, "max": 256}}, LD.uniform(64, 256)),
        ({"normal": {"mean": 128, "std": 32}}, LD.normal(128, 32)),
        ({"normal": {"mean": 128, "std": 32, "min": 16, "max": 512}}, LD.normal(128, 32, 16, 512)),
        (256, LD.fixed(256)),
        ("uniform:1-9", LD.uniform(1, 9)),
    ],
)
def test_from_mapping(mapping, expected):
    assert LD.from_mapping(mapping) == expected


@pytest.mark.parametrize(
    "bad",
    [
        {"fixed": "many"},
        {"fixed": True},
        {"uniform": [1]},
        {"uniform": [1, 2.5]},
        {"normal": {"mean": 10}},
        {"normal": {"mean": 10, "std": 2, "median": 3}},
        {"normal": [10, 2]},
        {"poisson": 3},
        {"fixed": 1, "uniform": [1, 2]},
        [64, 256],
    ],
)
def test_from_mapping_rejects(bad):
    with pytest.raises(ConfigError, match=r"^input_tokens: bad value .*\{fixed: N\}"):
        LD.from_mapping(bad, name="input_tokens")


def test_fixed_samples():
    s = LD.fixed(42).sample(100, np.random.default_rng(0))
    assert s.dtype == np.int64 and s.shape == (100,) and (s == 42).all()


def test_uniform_samples_cover_both_ends():
    s = LD.uniform(64, 256).sample(20_000, np.random.default_rng(1))
    assert s.min() == 64 and s.max() == 256  # endpoints included
    assert abs(s.mean() - 160) < 3  # sd of the mean ~ 0.4
    assert len(np.unique(s)) == 193


def test_normal_samples_statistics():
    s = LD.normal(128, 32).sample(20_000, np.random.default_rng(2))
    assert s.dtype == np.int64
    assert abs(s.mean() - 128) < 2 and abs(s.std() - 32) < 2


def test_normal_clipped_to_at_least_one_and_to_bounds():
    s = LD.normal(2, 50).sample(10_000, np.random.default_rng(3))
    assert s.min() == 1  # about half the raw draws are below 1
    assert (s == 1).mean() > 0.4
    c = LD.normal(100, 100, 50, 150).sample(10_000, np.random.default_rng(4))
    assert c.min() == 50 and c.max() == 150


def test_seeded_sampling_is_reproducible():
    d = LD.normal(500, 100)
    a = d.sample(50, np.random.default_rng(7))
    b = d.sample(50, np.random.default_rng(7))
    c = d.sample(50, np.random.default_rng(8))
    assert (a == b).all() and not (a == c).all()
