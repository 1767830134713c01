"""telemetry.jsonl's series worth a panel, and telemetry.png drawn from them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perfbench.report.plots._drawing import new_figure, shade_steps
from perfbench.report.plots._inputs import Requests, Step
from perfbench.results.runfiles import read_telemetry

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class _Series:
    """One telemetry line to draw: which panel, its legend label, and the points."""

    panel: str  # panel title, e.g. "GPU utilization (%)"
    label: str  # legend entry, e.g. "GPU 0" or "running"
    times_s: np.ndarray  # seconds since the run's start
    values: np.ndarray


def telemetry_series(run_dir: Path) -> list[_Series]:
    """The telemetry.jsonl series worth a panel (telemetry/sampler.py writes the file).

    A line is one sample at ``t_s``: ``source: "gpu"`` lines carry one GPU's fields (``gpu`` is
    its index), ``source: "prometheus"`` lines one scrape, a field per series. Drawn: GPU
    utilisation, power and memory used; server gauges of running/waiting requests and cache
    usage; the server's generated tokens as a rate. Other series stay in the file.
    """
    points: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    for sample in read_telemetry(run_dir):
        for key, value in sample.items():
            if key in ("t_s", "source", "gpu") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            where = _telemetry_panel(str(sample.get("source")), key, sample.get("gpu"))
            if where is not None:
                times, values = points.setdefault(where, ([], []))
                times.append(float(sample["t_s"]))
                values.append(float(value))
    out = []
    for (panel, label), (times, values) in points.items():
        t, v = np.array(times), np.array(values)
        if panel.endswith(_PER_S):  # a counter: draw its rate; a drop is a reset, not a negative rate
            rates = np.diff(v) / np.where(np.diff(t) > 0, np.diff(t), np.nan)
            t, v = (t[1:] + t[:-1]) / 2, np.where(rates >= 0, rates, np.nan)
        if len(t) >= 2:
            out.append(_Series(panel, label, t, v))
    order = {panel: rank for rank, panel in enumerate(_PANEL_ORDER)}
    return sorted(out, key=lambda x: (order.get(x.panel, len(order)), x.panel, x.label))


_PER_S = "(1/s)"
_GPU_PANELS = {"util_pct": "GPU utilization (%)", "power_w": "GPU power (W)", "mem_used_mib": "GPU memory used (MiB)"}
_PANEL_ORDER = ("Server requests", "Server KV-cache usage (fraction)", "Server generated tokens " + _PER_S, *_GPU_PANELS.values())


def _telemetry_panel(source: str, key: str, gpu: Any) -> tuple[str, str] | None:
    """(panel, legend label) for a telemetry field, or None for fields not drawn."""
    if source == "gpu":
        panel = _GPU_PANELS.get(key)
        return None if panel is None else (panel, f"GPU {gpu}")
    if source != "prometheus":
        return None
    name, _, labels = key.partition("{")
    # One model per server: its label says nothing; any other label tells lines apart.
    rest = [pair for pair in labels.rstrip("}").split(",") if pair and not pair.startswith("model_name=")]
    suffix = f" {{{','.join(rest)}}}" if rest else ""
    short = name.split(":")[-1]
    if re.search(r"running|waiting|pending|swapped", short):
        state = re.search(r"running|waiting|pending|swapped", short)[0]  # type: ignore[index]
        return "Server requests", f"{state}{suffix}"
    if re.search(r"cache_usage|kv_cache", short):
        return "Server KV-cache usage (fraction)", f"{short}{suffix}"
    if re.fullmatch(r"generation_tokens(_total)?", short):
        return "Server generated tokens " + _PER_S, f"server output tok/s{suffix}"
    return None


def telemetry_figure(series: list[_Series], requests: Requests, steps: list[Step], title: str) -> Figure:
    panels: dict[str, list[_Series]] = {}
    for line in series:
        panels.setdefault(line.panel, []).append(line)
    figure, axes = new_figure(len(panels), 1, 12, 2.0 * len(panels) + 1.2, f"Telemetry — {title}", sharex=True)
    for ax, (panel, lines) in zip(axes[:, 0], panels.items()):
        for line in lines:
            ax.plot(line.times_s, line.values, linewidth=1.4, marker="." if len(line.times_s) < 40 else None, label=line.label)
        ax.set_ylabel(panel.replace(" (", "\n("), fontsize=9)
        top = max(float(np.nanmax(line.values)) if np.isfinite(line.values).any() else 0.0 for line in lines)
        ax.set_ylim(0, max(top * 1.15, 1e-9))  # headroom: a flat series does not sit on the frame
        ax.legend(fontsize=8, loc="upper left")
    axes[-1, 0].set_xlabel("Time since run start (s)")
    if len(requests.step):
        shade_steps(axes[:, 0], requests, steps)
    return figure
