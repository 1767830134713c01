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
from perfbench.core.errors import ConfigError
from perfbench.metrics import client_bound_reasons
from perfbench.results.identity import check_like_for_like
from perfbench.results.runfiles import iter_request_lines, read_summary, step_label, step_metric


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

    Like for like: IdentityMismatch (exit 2) when the runs' identities (perfbench.results.identity) differ,
    unless ``allow_mismatch``; then the comparison carries the differences in ``mismatch``.

    Steps are matched by (concurrency, rate_req_s); ConfigError when no step matches (steps
    in only one run are listed in ``unmatched_steps``; steps in which either run's client was the
    limit, in ``client_bound``: a change there may be the client's). Rows cover the metrics of
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
        base_client_bound=_client_bound_steps(base_summary),
        new_client_bound=_client_bound_steps(new_summary),
    )


def _client_bound_steps(summary: Mapping[str, Any]) -> tuple[str, ...]:
    """The labels of a run's steps in which the client, not the server, was the limit."""
    return tuple(step_label(step) for step in summary["steps"] if client_bound_reasons(step) is not None)


def _evaluate(
    step: Mapping[str, Any], lines: list[dict[str, Any]], metrics: Sequence[str], n_boot: int, rng: np.random.Generator
) -> dict[str, tuple[float | None, np.ndarray | None, int | None]]:
    """metric -> (point value, its value on each resample, the samples behind a statistic) for one step of one run."""
    data = step_samples(lines)
    counts = resample_counts(data.ok.size, n_boot, rng)
    wanted: dict[str, list[str]] = {}
    for metric in metrics:
        name, _, stat = metric.partition(".")
        if stat:
            wanted.setdefault(name, []).append(stat)
    boots: dict[str, np.ndarray] = {}
    points: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for name, stats in wanted.items():
        values, owners = data.samples[name]
        sizes.update((f"{name}.{stat}", int(values.size)) for stat in stats)
        if values.size:
            boots.update((f"{name}.{k}", v) for k, v in boot_statistics(values, owners, counts, stats, rng).items())
            points.update(
                (f"{name}.{stat}", float(values.mean() if stat == "mean" else np.percentile(values, float(stat[1:]))))
                for stat in stats
            )
    result: dict[str, tuple[float | None, np.ndarray | None, int | None]] = {}
    for metric in metrics:
        point = step_metric(step, metric)
        if "." in metric:
            result[metric] = (point if point is not None else points.get(metric), boots.get(metric), sizes.get(metric))
        else:
            factor = None
            if data.ok.size and point is not None:
                factor = point * boot_throughput_factor(data, metric, counts, step.get("rate_req_s") is None)
            result[metric] = (point, factor, None)
    return result


def _compare_metric(
    label: str,
    metric: str,
    base: tuple[float | None, np.ndarray | None, int | None],
    new: tuple[float | None, np.ndarray | None, int | None],
    threshold: Threshold | None,
    confidence: float,
) -> MetricComparison:
    (base_value, base_boot, base_n), (new_value, new_boot, new_n) = base, new
    change = ci_low = ci_high = None
    if base_value is not None and new_value is not None and base_value != 0:
        change = (new_value / base_value - 1.0) * 100.0
        if base_boot is not None and new_boot is not None:
            ci_low, ci_high = ci_pct(base_boot, new_boot, confidence)
    significant = ci_low is not None and ci_high is not None and (ci_low > 0 or ci_high < 0)
    regressed = False
    unchecked = _too_few_behind(metric, base_n, new_n) if threshold is not None else None
    if threshold is not None and change is not None and significant and unchecked is None:
        limit = threshold.max_change_pct
        rise_is_bad = limit > 0 or (limit == 0 and not higher_is_better(metric))
        if rise_is_bad:
            regressed = change > limit and ci_low > 0
        else:
            regressed = change < limit and ci_high < 0
    return MetricComparison(
        step=label, metric=metric, base=base_value, new=new_value, change_pct=change,
        ci_low_pct=ci_low, ci_high_pct=ci_high, significant=significant, regressed=regressed, threshold=threshold,
        unchecked=unchecked,
    )


MIN_TAIL_SAMPLES = 10  # samples a run must have beyond an upper percentile for its change to be judged


def _too_few_behind(metric: str, base_n: int | None, new_n: int | None) -> str | None:
    """Why an upper percentile (p90, p99) cannot be judged: too few samples behind it in a run; else None.

    The bootstrap of a p99 of 128 requests resamples its one or two slowest, so its interval misses
    how much that tail moves from run to run: an unchanged server failed a +10 % limit that way.
    """
    _, _, stat = metric.partition(".")
    if not stat.startswith("p") or not stat[1:].replace(".", "", 1).isdigit() or float(stat[1:]) <= 50:
        return None
    share = 1 - float(stat[1:]) / 100
    fewest = min(n for n in (base_n, new_n) if n is not None) if base_n is not None or new_n is not None else None
    if fewest is None or fewest * share >= MIN_TAIL_SAMPLES:
        return None
    needed = int(np.ceil(MIN_TAIL_SAMPLES / share - 1e-9))
    return f"{fewest} samples leave {fewest * share:.1f} behind the {stat}; {needed:,} are needed to judge it"


def resolve_base(spec: str, store_path: Path | None, *, new_dir: Path | None = None) -> Path:
    """A directory as is (no store touched); anything else is looked up in the run store.

    With ``new_dir``, ``last`` and ``tag:`` pick only runs of its identity, and never ``new_dir`` itself.
    """
    if Path(spec).is_dir():
        return Path(spec)
    from perfbench.results.identity import run_identity
    from perfbench.results.runfiles import read_summary
    from perfbench.results.store import RunStore, check_baseline_spec, default_store_path, resolve_baseline

    check_baseline_spec(spec)  # a mistyped directory: say so before opening (or creating) a store
    with RunStore(store_path or default_store_path()) as store:
        identity = run_identity(read_summary(new_dir)) if new_dir is not None else None
        return resolve_baseline(spec, store, identity=identity, exclude_dir=new_dir)
