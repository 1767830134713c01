"""Compare two runs and decide, noise-aware, whether the newer one regressed.

The point values (base, new, % change) are the statistics of each run's ``summary.json``.
Whether a change is *real* is judged from the per-request samples in ``requests.jsonl``:
both runs are resampled by request (a cluster bootstrap: a request's ITL gaps travel
together) and the change of each statistic is recomputed on every resample, giving a
confidence interval (CI) of the relative change.

A metric **regresses** when both hold:

1. its point change is past its threshold in the threshold's direction
   (``ttft_ms.p99=+10%``: rose by more than 10 %; ``output_throughput_tok_s=-5%``:
   fell by more than 5 %), and
2. the CI of the change lies entirely on that side of 0 (the rise, or fall, is not
   explained by sampling noise at the chosen confidence).

Exit codes of ``perfbench compare``: 0 no regression, 1 regression, 2 bad usage.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from perfbench.cliutil import OneLineArgumentParser, check_writable_file
from perfbench.errors import ConfigError, PerfbenchError
from perfbench.metrics import DISTRIBUTION, METRICS, RATE, metric_of, request_samples
from perfbench.records import RequestRecord
from perfbench.runfiles import COMPARISON_SCHEMA, iter_request_lines, read_summary, step_label, step_metric, write_comparison

# What compare shows, from the metric registry: the compared distributions at these statistics, and the compared rates.
DISTRIBUTIONS = tuple(m.key for m in METRICS if m.compared and m.kind == DISTRIBUTION)
STATISTICS = ("mean", "p50", "p90", "p95", "p99")
THROUGHPUTS = tuple(m.key for m in METRICS if m.compared and m.kind == RATE)

N_BOOTSTRAP = 1000  # resamples per run; 99 % CI tails then hold 5 resamples each
CONFIDENCE = 0.99  # high because ~10 metrics are checked per step (fewer false alarms)
MAX_CI_SAMPLES = 50_000  # pooled ITL gaps above this are subsampled for the CI only
_CHUNK_CELLS = 4_000_000  # bootstrap rows x samples processed at once (bounds memory)


@dataclass(frozen=True, slots=True)
class Threshold:
    """How far a metric may move before it counts as a regression."""

    metric: str  # "ttft_ms.p99" (distribution.statistic) or a throughput name
    max_change_pct: float  # signed: +10 = may rise 10 %, -5 = may fall 5 %


def _known_metric(metric: str) -> bool:
    if metric in THROUGHPUTS:
        return True
    name, _, stat = metric.partition(".")
    return name in DISTRIBUTIONS and stat in STATISTICS


def _higher_is_better(metric: str) -> bool:
    known = metric_of(metric)
    return known is not None and known.higher_is_better


_THRESHOLD_RE = re.compile(r"^\s*([a-z_]+(?:\.[a-z0-9]+)?)\s*=\s*([+-]?)\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*$")


def parse_thresholds(text: str) -> tuple[Threshold, ...]:
    """Parse ``"ttft_ms.p99=+10%,output_throughput_tok_s=-5%"``.

    An unsigned limit takes the bad direction of its metric (latencies may rise,
    throughputs may fall), so ``ttft_ms.p99=10%`` means ``+10%``.
    """
    thresholds: dict[str, Threshold] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        match = _THRESHOLD_RE.match(part)
        if not match:
            raise ConfigError(
                f"bad threshold {part.strip()!r}; write METRIC=+PCT% or METRIC=-PCT%, "
                "e.g. ttft_ms.p99=+10%,output_throughput_tok_s=-5%"
            )
        metric, sign, number = match.groups()
        if not _known_metric(metric):
            known = ", ".join([f"{d}.{{{'|'.join(STATISTICS)}}}" for d in DISTRIBUTIONS] + list(THROUGHPUTS))
            raise ConfigError(f"unknown threshold metric {metric!r}; use one of {known}")
        value = float(number)
        if sign == "-" or (not sign and _higher_is_better(metric)):
            value = -value
        thresholds[metric] = Threshold(metric, value)
    if not thresholds:
        raise ConfigError("empty --threshold; give e.g. ttft_ms.p99=+10%")
    return tuple(thresholds.values())


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = tuple(Threshold(spec, pct) for m in METRICS for spec, pct in m.threshold_specs())


@dataclass(frozen=True, slots=True)
class MetricComparison:
    """One metric of one step, base against new."""

    step: str  # the step's label (runfiles.step_label), e.g. "c=16" or "rate=8/s cap=64"
    metric: str  # "ttft_ms.p99", "output_throughput_tok_s", ...
    base: float | None  # the base run's value (summary.json), None when it has none
    new: float | None  # the new run's value
    change_pct: float | None  # (new / base - 1) * 100
    ci_low_pct: float | None  # lower end of the CI of change_pct
    ci_high_pct: float | None  # upper end of the CI of change_pct
    significant: bool  # the CI excludes 0
    regressed: bool  # past the threshold in its direction AND the CI on that side of 0
    threshold: Threshold | None  # the limit checked, None for a shown-only metric

    @property
    def worse(self) -> bool | None:
        """True when the change goes the bad way for this metric, None without a change."""
        if self.change_pct is None or self.change_pct == 0:
            return None
        return (self.change_pct < 0) == _higher_is_better(self.metric)

    def describe(self) -> str:
        """One line saying what changed, for JUnit and logs."""
        if self.change_pct is None:
            return f"{self.step} {self.metric}: no value to compare (base {self.base}, new {self.new})"
        ci = ""
        if self.ci_low_pct is not None and self.ci_high_pct is not None:
            ci = f" (CI {self.ci_low_pct:+.1f}% .. {self.ci_high_pct:+.1f}%)"
        limit = f", limit {self.threshold.max_change_pct:+g}%" if self.threshold else ""
        return (
            f"{self.step} {self.metric}: {_fmt(self.base)} -> {_fmt(self.new)}, "
            f"{self.change_pct:+.1f}%{ci}{limit}"
        )


@dataclass(frozen=True, slots=True)
class Comparison:
    """The result of comparing a new run with a base run."""

    rows: tuple[MetricComparison, ...]
    regressed: bool  # any row regressed
    base_dir: str = ""  # the run directories compared
    new_dir: str = ""
    confidence: float = CONFIDENCE  # of the CIs
    unmatched_steps: tuple[str, ...] = ()  # steps present in only one of the runs

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``perfbench compare --json``)."""
        return {
            "schema": COMPARISON_SCHEMA,
            "base_dir": self.base_dir,
            "new_dir": self.new_dir,
            "regressed": self.regressed,
            "confidence": self.confidence,
            "unmatched_steps": list(self.unmatched_steps),
            "rows": [asdict(row) for row in self.rows],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        """Inverse of ``to_dict``: a run folder's comparison.json, for rebuilding its report."""
        rows = []
        for row in d.get("rows") or ():
            threshold = row.get("threshold")
            rows.append(MetricComparison(**{**row, "threshold": Threshold(**threshold) if threshold else None}))
        return cls(
            rows=tuple(rows), regressed=bool(d.get("regressed")), base_dir=str(d.get("base_dir")), new_dir=str(d.get("new_dir")),
            confidence=float(d.get("confidence", CONFIDENCE)), unmatched_steps=tuple(d.get("unmatched_steps") or ()),
        )


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class _StepSamples:
    """Per-request arrays of one step, everything the bootstrap needs."""

    ok: np.ndarray  # bool per request
    occupancy_s: np.ndarray  # end - scheduled per request (failed ones too)
    output_tokens: np.ndarray  # per request (0 when unknown)
    total_tokens: np.ndarray  # input + output per request
    samples: dict[str, tuple[np.ndarray, np.ndarray]]  # distribution -> (values, request index)


def _step_samples(lines: Iterable[dict[str, Any]]) -> _StepSamples:
    """One step's requests.jsonl lines as the bootstrap's arrays; the distributions' samples come
    from perfbench.metrics (``request_samples``), so compare and the summary read one definition."""
    records = [RequestRecord.from_json(line) for line in lines]
    ok = np.fromiter((r.ok and not r.warmup for r in records), dtype=bool, count=len(records))
    output = np.fromiter((r.output_tokens or 0 for r in records), dtype=float, count=len(records))
    total = output + np.fromiter((r.input_tokens or 0 for r in records), dtype=float, count=len(records))
    occupancy_s = np.fromiter((max(r.end_ns - r.scheduled_ns, 0) / 1e9 for r in records), dtype=float, count=len(records))
    return _StepSamples(
        ok=ok,
        occupancy_s=occupancy_s,
        output_tokens=np.where(ok, output, 0.0),
        total_tokens=np.where(ok, total, 0.0),
        samples=request_samples(records),
    )


# --------------------------------------------------------------------------- bootstrap


def _resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) counts: how often each request appears in each resample."""
    if n == 0:
        return np.zeros((n_boot, 0), dtype=np.int32)
    idx = rng.integers(0, n, size=(n_boot, n))
    idx += (np.arange(n_boot) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.int32)


def _boot_statistics(
    values: np.ndarray, owners: np.ndarray, counts: np.ndarray, stats: Sequence[str], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Each statistic on every resample: samples weighted by their request's count.

    Percentiles use linear interpolation between order statistics of the resample, the
    definition of DESIGN.md, found without materialising the resamples: in a row of
    cumulative weights over the sorted samples, order statistic k is the first sample
    whose cumulative weight exceeds k.
    """
    n_boot, n_requests = counts.shape
    out: dict[str, np.ndarray] = {}
    if "mean" in stats:
        # per-request sums and sample counts, so the weighted mean is two matrix products
        sums = np.bincount(owners, weights=values, minlength=n_requests)
        ns = np.bincount(owners, minlength=n_requests).astype(float)
        total = counts @ ns
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mean"] = np.where(total > 0, (counts @ sums) / np.where(total > 0, total, 1), np.nan)
    quantiles = [float(stat[1:]) / 100.0 for stat in stats if stat != "mean"]
    if not quantiles:
        return out
    if values.size > MAX_CI_SAMPLES:
        keep = rng.choice(values.size, MAX_CI_SAMPLES, replace=False)
        values, owners = values[keep], owners[keep]
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_owners = values[order], owners[order]
    q = np.asarray(quantiles)
    result = np.full((n_boot, len(q)), np.nan)
    rows_per_chunk = max(1, _CHUNK_CELLS // max(1, values.size))
    for start in range(0, n_boot, rows_per_chunk):
        cum = np.cumsum(counts[start : start + rows_per_chunk, sorted_owners], axis=1, dtype=np.int32)  # totals < 2**31 (MAX_CI_SAMPLES)
        total = cum[:, -1]
        # lay the rows end to end, each shifted past the previous one's largest weight, so
        # one searchsorted serves every row
        shift = np.arange(len(cum), dtype=np.int32) * np.int32(int(total.max()) + 1)
        flat = (cum + shift[:, None]).ravel()
        pos = (np.maximum(total, 1) - 1)[:, None] * q[None, :]
        lower = np.floor(pos)
        upper = np.minimum(lower + 1, np.maximum(total, 1)[:, None] - 1)
        row_start = (np.arange(len(cum)) * values.size)[:, None]
        k_lo = np.searchsorted(flat, lower + shift[:, None], side="right") - row_start
        k_hi = np.searchsorted(flat, upper + shift[:, None], side="right") - row_start
        lo = sorted_values[np.minimum(k_lo, values.size - 1)]
        hi = sorted_values[np.minimum(k_hi, values.size - 1)]
        chunk = lo + (pos - lower) * (hi - lo)
        chunk[total == 0] = np.nan
        result[start : start + len(cum)] = chunk
    out.update((stat, result[:, i]) for i, stat in enumerate(s for s in stats if s != "mean"))
    return out


def _boot_throughput_factor(data: _StepSamples, metric: str, counts: np.ndarray, closed_loop: bool) -> np.ndarray:
    """Each resample's throughput relative to the run's own.

    throughput = sum(tokens of succeeded requests) / duration. In closed loop the duration
    is (sum of request occupancies) / concurrency, so a resample scales the throughput by
    its token sum over its occupancy sum; in open loop the duration is set by the arrival
    rate and only the token sum (and the share of succeeded requests) varies.
    """
    per_request = {
        "output_throughput_tok_s": data.output_tokens,
        "total_throughput_tok_s": data.total_tokens,
        "request_throughput_req_s": data.ok.astype(float),
    }[metric]
    point = per_request.sum()
    if point <= 0:
        return np.zeros(counts.shape[0])
    factor = (counts @ per_request) / point
    if closed_loop:
        occupied = data.occupancy_s.sum()
        boot_occupied = counts @ data.occupancy_s
        factor = factor * np.where(boot_occupied > 0, occupied / np.where(boot_occupied > 0, boot_occupied, 1), 1.0)
    return factor


def _ci_pct(base_boot: np.ndarray, new_boot: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    with np.errstate(invalid="ignore", divide="ignore"):
        change = (new_boot / base_boot - 1.0) * 100.0
    change = change[np.isfinite(change)]
    if change.size < 0.9 * len(base_boot):
        return None, None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(change, [tail, 100.0 - tail])
    return float(low), float(high)


# -------------------------------------------------------------------------- comparing


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
) -> Comparison:
    """Compare every headline metric of matching steps; see the module docstring for the rule.

    Steps are matched by (concurrency, rate_req_s); ConfigError when no step matches (steps
    in only one run are listed in ``unmatched_steps``). Rows cover the metrics of
    DEFAULT_THRESHOLDS plus those of ``thresholds``; only the latter are checked. Point
    values come from summary.json (falling back to the samples); the CI is a percentile
    bootstrap of ``n_boot`` independent request resamples of each run, seeded by ``seed``.
    """
    base_summary, new_summary = read_summary(base_dir), read_summary(new_dir)
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
    )


def _evaluate(
    step: Mapping[str, Any], lines: list[dict[str, Any]], metrics: Sequence[str], n_boot: int, rng: np.random.Generator
) -> dict[str, tuple[float | None, np.ndarray | None]]:
    """metric -> (point value, its value on each resample) for one step of one run."""
    data = _step_samples(lines)
    counts = _resample_counts(data.ok.size, n_boot, rng)
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
            boots.update((f"{name}.{k}", v) for k, v in _boot_statistics(values, owners, counts, stats, rng).items())
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
                factor = point * _boot_throughput_factor(data, metric, counts, step.get("rate_req_s") is None)
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
            ci_low, ci_high = _ci_pct(base_boot, new_boot, confidence)
    significant = ci_low is not None and ci_high is not None and (ci_low > 0 or ci_high < 0)
    regressed = False
    if threshold is not None and change is not None and significant:
        limit = threshold.max_change_pct
        rise_is_bad = limit > 0 or (limit == 0 and not _higher_is_better(metric))
        if rise_is_bad:
            regressed = change > limit and ci_low > 0
        else:
            regressed = change < limit and ci_high < 0
    return MetricComparison(
        step=label, metric=metric, base=base_value, new=new_value, change_pct=change,
        ci_low_pct=ci_low, ci_high_pct=ci_high, significant=significant, regressed=regressed, threshold=threshold,
    )


# --------------------------------------------------------------------------- display


def render_comparison(comparison: Comparison, console: Any) -> None:
    """Print the side-by-side table: values, % change (coloured) with its CI, verdict.

    Red: significantly worse; green: significantly better; plain: within noise.
    """
    from rich.table import Table

    table = Table(
        title=f"perfbench compare ({comparison.confidence:.0%} CI, bootstrap by request)",
        caption=f"base: {comparison.base_dir}\nnew:  {comparison.new_dir}",
    )
    for header, justify in (
        ("step", "left"), ("metric", "left"), ("base", "right"), ("new", "right"),
        ("change", "right"), ("CI", "right"), ("limit", "right"), ("verdict", "left"),
    ):
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for row in comparison.rows:
        style = ""
        if row.significant and row.worse is not None:
            style = "red" if row.worse else "green"
        change = "-" if row.change_pct is None else f"[{style}]{row.change_pct:+.1f}%[/]" if style else f"{row.change_pct:+.1f}%"
        ci = "-" if row.ci_low_pct is None else f"{row.ci_low_pct:+.1f} .. {row.ci_high_pct:+.1f}%"
        limit = f"{row.threshold.max_change_pct:+g}%" if row.threshold else ""
        if row.regressed:
            verdict = "[bold red]REGRESSED[/]"
        elif row.threshold is None:
            verdict = ""
        elif row.change_pct is None:
            verdict = "[yellow]no data[/]"
        else:
            verdict = "ok" if not (row.significant and row.worse) else "ok (within limit)"
        table.add_row(row.step, row.metric, _fmt(row.base), _fmt(row.new), change, ci, limit, verdict)
    console.print(table)
    for step in comparison.unmatched_steps:
        console.print(f"[yellow]step only in the {step}; not compared[/]")
    regressed = [row for row in comparison.rows if row.regressed]
    if regressed:
        console.print(f"[bold red]{len(regressed)} regression(s):[/]")
        for row in regressed:
            console.print(f"  {row.describe()}", markup=False, highlight=False)
    else:
        console.print("[green]no regression[/]")


def main(argv: list[str]) -> int:
    """``perfbench compare BASE NEW [--threshold ...] [--junit FILE] [--json FILE]``.

    Returns 1 on regression, 0 otherwise, 2 on bad usage.
    """
    from rich.console import Console

    parser = OneLineArgumentParser(
        prog="perfbench compare",
        description="Compare two runs; exit 1 when a metric regressed past its threshold "
        "(point change past the limit AND its confidence interval excluding 0).",
    )
    parser.add_argument("base", help="baseline: a run directory, a run id from the store, 'last' or 'tag:KEY=VALUE'")
    parser.add_argument("new", type=Path, help="the new run directory")
    parser.add_argument(
        "--threshold", default=None, metavar="METRIC=±PCT%,...",
        help="limits replacing the defaults, e.g. ttft_ms.p99=+10%%,output_throughput_tok_s=-5%% "
        "(default: p50/p99 of ttft/tpot/itl/latency +10%%, output and request throughput -5%%)",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write the checks as JUnit XML")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the comparison as JSON")
    parser.add_argument("--store", type=Path, metavar="PATH", help="run store for run ids (default: user data dir)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--confidence", type=float, default=CONFIDENCE, help=f"CI level (default {CONFIDENCE})")
    console = Console()
    try:
        args = parser.parse_args(argv)
        if not 0 <= args.seed < 2**63:  # numpy's generators take no negative seed
            raise ConfigError(f"--seed {args.seed} is out of range; use an integer from 0 to 2**63-1")
        if not 0.5 <= args.confidence < 1.0:
            raise ConfigError(f"--confidence {args.confidence} out of range; give a level in [0.5, 1), e.g. 0.99")
        thresholds = parse_thresholds(args.threshold) if args.threshold is not None else DEFAULT_THRESHOLDS
        for path, flag in ((args.junit, "--junit"), (args.json, "--json")):
            if path is not None:  # before the comparison: a bad output path is a usage error, not a traceback after it
                check_writable_file(path, flag)
        base_dir = resolve_base(args.base, args.store)
        comparison = compare_runs(base_dir, args.new, thresholds, seed=args.seed, confidence=args.confidence)
    except PerfbenchError as exc:
        Console(stderr=True).print(f"perfbench: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    render_comparison(comparison, console)
    if args.junit:
        from perfbench.junit import write_junit

        write_junit(args.junit, comparison=comparison)
    if args.json:
        write_comparison(args.json, comparison.to_dict())
    return 1 if comparison.regressed else 0


def resolve_base(spec: str, store_path: Path | None) -> Path:
    """A directory as is (no store touched); anything else is looked up in the run store."""
    if Path(spec).is_dir():
        return Path(spec)
    from perfbench.store import RunStore, check_baseline_spec, default_store_path, resolve_baseline

    check_baseline_spec(spec)  # a mistyped directory: say so before opening (or creating) a store
    return resolve_baseline(spec, RunStore(store_path or default_store_path()))
