"""Request records -> statistics: every metric of DESIGN.md defined once, as a numpy function.

Notation (fields of ``RequestRecord``): ``t0`` = ``scheduled_ns`` (the clock starts at the due
time, so client lag is inside every latency and shown apart as ``queue_ms``); ``t_first`` /
``t_last`` = first / last of ``package_times_ns`` (arrivals of output-carrying packages);
``n_pkg`` = number of those packages; ``n_out`` = ``output_tokens``; ``package_tokens[j]`` =
tokens package j carries (when missing or of the wrong length: 1 per package). A metric that
does not apply has no value: ``None`` in Python, NaN inside arrays, and never 0
(``np.mean(x or 0)`` would report 0 ms for "no data").

This package is the public surface; its modules, in the order data flows through them:

    _stats        the statistics object (count, mean, std, min, percentiles, max) of one distribution
    _per_request  each per-request formula once, column-wise over many records
    _registry     one declaration per metric: key, label, unit, kind, computation, direction, threshold
    _client       the client checks itself: a step's ``client`` object and whether the client was the limit
    _step         a step's records -> its STEP object (chunk by chunk) and its SLO verdict
"""

from perfbench.metrics._client import (
    CLIENT_BOUND, CLIENT_FIX, CLIENT_LIMITS, CLIENT_OK, ClientCheck, ClientLimits, SendFit, achieved_rate_req_s, check_client,
    client_bound_reasons, client_verdict, same_read_counts, same_read_share,
)
from perfbench.metrics._per_request import (
    inter_package_ms, itl_ms, latency_ms, per_request_ms, queue_ms, requests_times_ms, time_per_package_ms, tpot_ms,
    ttft_ms,
)
from perfbench.metrics._registry import (
    DISTRIBUTION, DISTRIBUTIONS, DURATIONS, METRICS, METRICS_BY_KEY, RATE, SLO_METRICS, Metric, metric_of, request_samples,
)
from perfbench.metrics._stats import STATISTICS, Stats, describe
from perfbench.metrics._step import GrowingArray, SloResult, StepAccumulator, StepSummary, summarize_step

__all__ = [
    "CLIENT_BOUND", "CLIENT_FIX", "CLIENT_LIMITS", "CLIENT_OK", "ClientCheck", "ClientLimits", "SendFit", "achieved_rate_req_s",
    "check_client", "client_bound_reasons", "client_verdict", "same_read_counts", "same_read_share",
    "DISTRIBUTION", "DISTRIBUTIONS", "DURATIONS", "METRICS", "METRICS_BY_KEY", "RATE", "SLO_METRICS", "STATISTICS",
    "GrowingArray", "Metric", "SloResult", "Stats", "StepAccumulator", "StepSummary",
    "describe", "inter_package_ms", "itl_ms", "latency_ms", "metric_of", "per_request_ms", "queue_ms", "request_samples",
    "requests_times_ms", "summarize_step", "time_per_package_ms", "tpot_ms", "ttft_ms",
]  # fmt: skip
