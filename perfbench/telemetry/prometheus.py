"""The server's Prometheus ``/metrics``: where it is, and its text format turned into numbers."""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

from perfbench.core.errors import ConfigError

# Series that would swamp the samples without telling a timeline anything.
_SKIPPED_SUFFIXES = ("_bucket", "_created")
# The series a run keeps from each scrape: what the summary (queue and KV-cache gauges) and the
# telemetry plot (requests running/waiting, cache usage, generated and prompt tokens) read, for vLLM, TGI,
# SGLang and similar names. Matched against the metric's name.
KEPT_SERIES = re.compile(r"running|waiting|pending|swapped|queue|cache_usage|kv_cache|generation_tokens|prompt_tokens", re.IGNORECASE)


def metrics_url_for(target_url: str) -> str:
    """The target's ``/metrics``: ``http://host:port/v1/chat/completions`` -> ``http://host:port/metrics``."""
    parts = urlsplit(target_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"cannot derive /metrics from {target_url!r}; pass --metrics-url http://HOST:PORT/metrics")
    return f"{parts.scheme}://{parts.netloc}/metrics"


def _split_labels(text: str, start: int) -> tuple[list[tuple[str, str]], int] | None:
    """Labels from ``{`` at ``start``; returns (pairs, index after ``}``) or None if malformed."""
    pairs: list[tuple[str, str]] = []
    i = start + 1
    while True:
        while i < len(text) and text[i] in " ,":
            i += 1
        if i < len(text) and text[i] == "}":
            return pairs, i + 1
        eq = text.find("=", i)
        if eq < 0 or eq + 1 >= len(text) or text[eq + 1] != '"':
            return None
        key = text[i:eq].strip()
        i, value = eq + 2, []
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text):
                value.append({"n": "\n"}.get(text[i + 1], text[i + 1]))
                i += 2
            else:
                value.append(text[i])
                i += 1
        if i >= len(text):
            return None
        pairs.append((key, "".join(value)))
        i += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_prometheus(text: str, keep: re.Pattern[str] | None = None) -> dict[str, float]:
    """Every sample of a Prometheus text page as ``{key: value}`` (with ``keep``: those whose
    metric name it matches; the page's other lines are passed over by one C-level search).

    The key is the metric name with its labels folded in, sorted:
    ``vllm:num_requests_running{model_name="m"}`` (no braces without labels). Comments,
    ``# HELP``/``# TYPE`` lines, histogram buckets, ``_created`` stamps, non-finite values
    and malformed lines are skipped; histogram ``_sum``/``_count`` stay (they are counters).
    """
    values: dict[str, float] = {}
    lines = text.splitlines() if keep is None else _lines_matching(text, keep)
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        end = 0
        while end < len(line) and line[end] not in "{ \t":
            end += 1
        name = line[:end]
        labels: list[tuple[str, str]] = []
        if end < len(line) and line[end] == "{":
            parsed = _split_labels(line, end)
            if parsed is None:
                continue
            labels, end = parsed
        fields = line[end:].split()
        if not name or not fields or name.endswith(_SKIPPED_SUFFIXES) or (keep is not None and not keep.search(name)):
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        if labels:
            folded = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels))
            name = f"{name}{{{folded}}}"
        values[name] = value
    return values


def _lines_matching(text: str, keep: re.Pattern[str]) -> list[str]:
    """The lines holding a match of ``keep`` anywhere (the name is checked again when the line is parsed)."""
    pattern = re.compile(rf"^.*(?:{keep.pattern}).*$", keep.flags | re.MULTILINE)
    return pattern.findall(text)
