"""The result of a comparison (one row per step and metric), as compare, JUnit and report.html read it;
``to_dict``/``from_dict`` are its comparison.json form (``perfbench.results.runfiles`` reads and writes the file)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

from perfbench.compare._bootstrap import CONFIDENCE
from perfbench.compare._thresholds import Threshold, higher_is_better
from perfbench.core.numbers import format_number
from perfbench.results.runfiles import COMPARISON_SCHEMA


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
    unchecked: str | None = None  # why the limit was not checked although given (too few samples behind a percentile)

    @property
    def worse(self) -> bool | None:
        """True when the change goes the bad way for this metric, None without a change."""
        if self.change_pct is None or self.change_pct == 0:
            return None
        return (self.change_pct < 0) == higher_is_better(self.metric)

    def describe(self) -> str:
        """One line saying what changed, for JUnit and logs."""
        if self.change_pct is None:
            return f"{self.step} {self.metric}: no value to compare (base {self.base}, new {self.new})"
        ci = ""
        if self.ci_low_pct is not None and self.ci_high_pct is not None:
            ci = f" (CI {self.ci_low_pct:+.1f}% .. {self.ci_high_pct:+.1f}%)"
        limit = f", limit {self.threshold.max_change_pct:+g}%" if self.threshold else ""
        if self.unchecked:
            limit += f", not checked: {self.unchecked}"
        return (
            f"{self.step} {self.metric}: {format_number(self.base)} -> {format_number(self.new)}, "
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
    mismatch: tuple[str, ...] = ()  # how the runs' identities differ ("model (a vs b)"), compared with --allow-mismatch
    base_client_bound: tuple[str, ...] = ()  # the base run's steps in which the client was the limit ("c=256")
    new_client_bound: tuple[str, ...] = ()  # the new run's

    @property
    def client_bound(self) -> tuple[str, ...]:
        """Every client-bound step of either run, named with its run: ``("base c=256", "new c=256")``."""
        return tuple(f"base {s}" for s in self.base_client_bound) + tuple(f"new {s}" for s in self.new_client_bound)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``perfbench compare --json``)."""
        return {
            "schema": COMPARISON_SCHEMA,
            "base_dir": self.base_dir,
            "new_dir": self.new_dir,
            "regressed": self.regressed,
            "confidence": self.confidence,
            "unmatched_steps": list(self.unmatched_steps),
            "mismatch": list(self.mismatch),
            "client_bound": {"base": list(self.base_client_bound), "new": list(self.new_client_bound)},
            "rows": [asdict(row) for row in self.rows],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Comparison:
        """Inverse of ``to_dict``: a run folder's comparison.json, for rebuilding its report."""
        client_bound = d.get("client_bound") or {}  # absent from older comparisons
        rows = []
        for row in d.get("rows") or ():
            threshold = row.get("threshold")
            rows.append(MetricComparison(**{**row, "threshold": Threshold(**threshold) if threshold else None}))
        return cls(
            rows=tuple(rows), regressed=bool(d.get("regressed")), base_dir=str(d.get("base_dir")), new_dir=str(d.get("new_dir")),
            confidence=float(d.get("confidence", CONFIDENCE)), unmatched_steps=tuple(d.get("unmatched_steps") or ()),
            mismatch=tuple(d.get("mismatch") or ()), base_client_bound=tuple(client_bound.get("base") or ()),
            new_client_bound=tuple(client_bound.get("new") or ()),
        )


