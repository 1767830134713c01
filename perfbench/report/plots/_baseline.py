"""Base against new: the distributions of TTFT, ITL and latency of two runs, overlaid per matched step."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from perfbench import metrics
from perfbench.report.plots._drawing import cdf_points, log_axis_if_wide, new_figure, registered
from perfbench.results.runfiles import iter_record_chunks

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BASELINE_METRICS = ("ttft_ms", "itl_ms", "latency_ms")  # the distributions a reader compares first
MAX_SAMPLES = 500_000  # values kept per step and metric; past it, an even random thinning (a CDF is a share)
BASE_COLOR, NEW_COLOR = "#6b7280", "#2563eb"


@dataclass
class _Thinned:
    """Up to MAX_SAMPLES values of a stream, each kept with the same chance: when full, every value
    kept so far survives a coin toss and later values are kept at half the rate, so the CDF drawn
    from them is the CDF of all (ITL is pooled per token: a long run has hundreds of millions)."""

    rng: np.random.Generator
    parts: list[np.ndarray] = field(default_factory=list)
    size: int = 0
    keep: float = 1.0  # the chance a new value is kept

    def add(self, values: np.ndarray) -> None:
        if self.keep < 1.0:
            values = values[self.rng.random(len(values)) < self.keep]
        self.parts.append(values)
        self.size += len(values)
        while self.size > MAX_SAMPLES:
            kept = np.concatenate(self.parts)
            kept = kept[self.rng.random(len(kept)) < 0.5]
            self.parts, self.size, self.keep = [kept], len(kept), self.keep / 2

    @property
    def values(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0)


def step_distributions(run_dir: Path, seed: int = 0) -> dict[int, dict[str, np.ndarray]]:
    """{step index: {metric key: samples}} of BASELINE_METRICS over the succeeded, non-warm-up
    requests (metrics.request_samples), read chunk by chunk."""
    rng = np.random.default_rng(seed)
    kept: dict[int, dict[str, _Thinned]] = {}
    for chunk in iter_record_chunks(run_dir):
        by_step: dict[int, list] = {}
        for record in chunk:
            by_step.setdefault(record.step, []).append(record)
        for step, records in by_step.items():
            samples = metrics.request_samples(records)
            into = kept.setdefault(step, {key: _Thinned(rng) for key in BASELINE_METRICS})
            for key in BASELINE_METRICS:
                into[key].add(samples[key][0])
    return {step: {key: t.values for key, t in ts.items()} for step, ts in kept.items()}


@dataclass(frozen=True)
class MatchedStep:
    """One step of both runs: its label and each run's samples of BASELINE_METRICS."""

    label: str
    base: dict[str, np.ndarray]
    new: dict[str, np.ndarray]


def baseline_figure(steps: Sequence[MatchedStep], title: str) -> Figure | None:
    """One row per matched step, one CDF panel per metric: base dashed grey, new solid blue, each
    with its p50 and p99 in the legend. None when no metric of any step has values in both runs."""
    keys = [k for k in BASELINE_METRICS if any(len(s.base.get(k, ())) and len(s.new.get(k, ())) for s in steps)]
    if not steps or not keys:
        return None
    figure, axes = new_figure(len(steps), len(keys), 4.2 * len(keys), 3.3 * len(steps) + 0.5,
                              f"Baseline against this run — {title}")
    for row, step in zip(axes, steps):
        for ax, key in zip(row, keys):
            metric = registered(key)
            lowest, highest = math.inf, 0.0
            for name, samples, color, style in (("base", step.base.get(key), BASE_COLOR, "--"),
                                                ("new", step.new.get(key), NEW_COLOR, "-")):
                if samples is None or not len(samples):
                    continue
                values, share = cdf_points(samples)
                p50, p99 = np.percentile(samples, [50, 99])
                ax.step(values, share, where="post", color=color, linestyle=style, linewidth=1.6,
                        label=f"{name}: p50 {p50:.3g}, p99 {p99:.3g}")
                lowest, highest = min(lowest, float(values[0])), max(highest, float(values[-1]))
            log_axis_if_wide(ax, lowest, highest)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel(metric.title)
            ax.set_title(f"{step.label} · {metric.label}", fontsize=10)
            ax.legend(fontsize=8, loc="lower right")
        row[0].set_ylabel("Share ≤ x")
    return figure
