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

Modules: ``_thresholds`` (the limits), ``_bootstrap`` (the noise model), ``_model`` (the result),
``_runs`` (comparing two run directories, resolving a baseline). ``perfbench compare`` is perfbench/commands/compare.py.
"""

from perfbench.compare._bootstrap import CONFIDENCE
from perfbench.compare._model import Comparison, MetricComparison
from perfbench.compare._runs import compare_runs, resolve_base
from perfbench.compare._thresholds import DEFAULT_THRESHOLDS, Threshold, parse_thresholds

__all__ = [
    "CONFIDENCE", "DEFAULT_THRESHOLDS", "Comparison", "MetricComparison", "Threshold",
    "compare_runs", "parse_thresholds", "resolve_base",
]  # fmt: skip
