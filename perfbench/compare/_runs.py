"""Comparing two run directories: steps matched by load, each metric's point change from summary.json
and its confidence interval from the bootstrap, and the regression verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from perfbench.compare._bootstrap import (
    CONFIDENCE, N_BOOTSTRAP, boot_statistics, boot_throughput_factor, ci_pct, resample_counts, step_samples,
)
from perfbench.compare._model import Comparison, MetricComparison
from perfbench.compare._thresholds import DEFAULT_THRESHOLDS, Threshold, higher_is_better
from perfbench.errors import ConfigError
from perfbench.identity import check_like_for_like
from perfbench.runfiles import iter_request_lines, read_summary, step_label, step_metric


def _match_steps(
    base_steps: list[dict[str, Any]], new_steps: list[dict[str, Any]]
) -> tuple[list[tuple[int, int]], list[str]]:
    """Pairs (base index, new index) of steps with equal (concurrency, rate), in new's order."""
    unused = list(range(len(base_steps)))
    pairs, unmatched = [], []
    for j, step in enumerate(new_steps):
        key = (step.get("concurrency"), step.get("rate_req_s"))
        found = next((i for i in unused if (base_steps[i].get("concurrency"), base_steps[i].get("rate_req_s")) == key), None)
        if found is None:
            unmatched.append(f"new {step_label(step)}")
        else:
            unused.remove(found)
            pairs.append((found, j))
    unmatched += [f"base {step_label(base_steps[i])}" for i in unused]
    return pairs, unmatched


def _by_step(lines: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    steps: dict[int, list[dict[str, Any]]] = {}
    for line in lines:
        if not line.get("warmup"):
            steps.setdefault(int(line.get("step", 0)), []).append(line)
    return steps


def compare_runs(
    base_dir: Path,
    new_dir: Path,
    thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS,
    *,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOTSTRAP,
    allow_mismatch: bool = False,
) -> Comparison:
    """Compare every headline metric of matching steps; see the module docstring for the rule.

    Like for like: IdentityMismatch (exit 2) when the runs' identities (perfbench.identity) differ,
    unless ``allow_mismatch``; then the comparison carries the differences in ``mismatch``.

    Steps are matched by (concurrency, rate_req_s); ConfigError when no step matches (steps
    in only one run are listed in ``unmatched_steps``). Rows cover the metrics of
    DEFAULT_THRESHOLDS plus those of ``thresholds``; only the latter are checked. Point
    values come from summary.json (falling back to the samples); the CI is a percentile
    bootstrap of ``n_boot`` independent request resamples of each run, seeded by ``seed``.
    """
    base_summary, new_summary = read_summary(base_dir), read_summary(new_dir)
    mismatch = check_like_for_like(base_summary, new_summary, allow_mismatch=allow_mismatch)
    base_lines, new_lines = _by_step(iter_request_lines(base_dir)), _by_step(iter_request_lines(new_dir))
    limits = {t.metric: t for t in thresholds}
    metrics = list(dict.fromkeys([t.metric for t in DEFAULT_THRESHOLDS] + list(limits)))
    pairs, unmatched = _match_steps(base_summary["steps"], new_summary["steps"])
    if not pairs:  # nothing compared must not read as "no regression"
        raise ConfigError(
            "no step of BASE matches a step of NEW (by concurrency and rate); compare runs of the same load ladder"
        )
    rng = np.random.default_rng(seed)
    rows: list[MetricComparison] = []
    for i, j in pairs:
        base = _evaluate(base_summary["steps"][i], base_lines.get(i, []), metrics, n_boot, rng)
        new = _evaluate(new_summary["steps"][j], new_lines.get(j, []), metrics, n_boot, rng)
        label = step_label(new_summary["steps"][j])
        rows += [_compare_metric(label, m, base[m], new[m], limits.get(m), confidence) for m in metrics]
    return Comparison(
        rows=tuple(rows),
        regressed=any(row.regressed for row in rows),
        base_dir=str(base_dir),
        new_dir=str(new_dir),
        confidence=confidence,
        unmatched_steps=tuple(unmatched),
        mismatch=mismatch,
    )


def _evaluate(
    step: Mapping[str, Any], lines: list[dict[str, Any]], metrics: Sequence[str], n_boot: int, rng: np.random.Generator
) -> dict[str, tuple[float | None, np.ndarray | None]]:
    """metric -> (point value, its value on each resample) for one step of one run."""
    data = step_samples(lines)
    counts = resample_counts(data.ok.size, n_boot, rng)
    wanted: dict[str, list[str]] = {}
    for metric in metrics:
        name, _, stat = metric.partition(".")
        if stat:
            wanted.setdefault(name, []).append(stat)
    boots: dict[str, np.ndarray] = {}
    points: dict[str, float] = {}
    for name, stats in wanted.items():
        values, owners = data.samples[name]
        if values.size:
            boots.update((f"{name}.{k}", v) for k, v in boot_statistics(values, owners, counts, stats, rng).items())
            points.update(
                (f"{name}.{stat}", float(values.mean() if stat == "mean" else np.percentile(values, float(stat[1:]))))
                for stat in stats
            )
    result: dict[str, tuple[float | None, np.ndarray | None]] = {}
    for metric in metrics:
        point = step_metric(step, metric)
        if "." in metric:
            result[metric] = (point if point is not None else points.get(metric), boots.get(metric))
        else:
            factor = None
            if data.ok.size and point is not None:
                factor = point * boot_throughput_factor(data, metric, counts, step.get("rate_req_s") is None)
            result[metric] = (point, factor)
    return result


def _compare_metric(
    label: str,
    metric: str,
    base: tuple[float | None, np.ndarray | None],
    new: tuple[float | None, np.ndarray | None],
    threshold: Threshold | None,
    confidence: float,
) -> MetricComparison:
    (base_value, base_boot), (new_value, new_boot) = base, new
    change = ci_low = ci_high = None
    if base_value is not None and new_value is not None and base_value != 0:
        change = (new_value / base_value - 1.0) * 100.0
        if base_boot is not None and new_boot is not None:
            ci_low, ci_high = ci_pct(base_boot, new_boot, confidence)
    significant = ci_low is not None and ci_high is not None and (ci_low > 0 or ci_high < 0)
    regressed = False
    if threshold is not None and change is not None and significant:
        limit = threshold.max_change_pct
        rise_is_bad = limit > 0 or (limit == 0 and not higher_is_better(metric))
        if rise_is_bad:
            regressed = change > limit and ci_low > 0
        else:
            regressed = change < limit and ci_high < 0
    return MetricComparison(
        step=label, metric=metric, base=base_value, new=new_value, change_pct=change,
        ci_low_pct=ci_low, ci_high_pct=ci_high, significant=significant, regressed=regressed, threshold=threshold,
    )
