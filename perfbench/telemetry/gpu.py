"""GPU readings through NVML (nvidia-ml-py): utilisation, memory, power and the energy counter.

pynvml is imported only inside these functions: a client run on a machine without an
NVIDIA GPU (or without the `gpu` extra) pays nothing and is told once that GPU telemetry
is off.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)
_warned = False


class GpuSource(Protocol):
    """Anything that reads the GPUs now: tests inject a fake, production uses NVML."""

    def sample(self) -> list[dict[str, Any]]:
        """One dict per GPU: index, name, driver, util_pct, mem_used_mib, mem_total_mib,
        power_w, energy_mj (cumulative counter since driver load, None when unsupported)."""
        ...


class NvmlSource:
    """GpuSource over pynvml; handles are looked up once."""

    def __init__(self, pynvml: Any) -> None:
        self._nvml = pynvml
        self._driver = _text(pynvml.nvmlSystemGetDriverVersion())
        count = pynvml.nvmlDeviceGetCount()
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._names = [_text(pynvml.nvmlDeviceGetName(h)) for h in self._handles]

    def sample(self) -> list[dict[str, Any]]:
        nvml = self._nvml
        readings = []
        for index, handle in enumerate(self._handles):
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            readings.append(
                {
                    "index": index,
                    "name": self._names[index],
                    "driver": self._driver,
                    "util_pct": float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    "mem_used_mib": memory.used / 2**20,
                    "mem_total_mib": memory.total / 2**20,
                    "power_w": _optional(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, nvml),
                    "energy_mj": _optional(lambda: float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle)), nvml),
                }
            )
        return readings


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(read: Any, nvml: Any) -> float | None:
    """A reading some GPUs do not support (energy counter before Volta, power on some boards)."""
    try:
        return read()
    except nvml.NVMLError:
        return None


def nvml_source() -> GpuSource | None:
    """An NVML source when nvidia-ml-py is installed and a GPU is present, else None
    (logged once: "no NVIDIA GPU found; GPU telemetry off")."""
    global _warned
    try:
        import pynvml
    except ImportError:
        reason = "no NVIDIA GPU found (nvidia-ml-py not installed: pip install 'perfbench[gpu]')"
    else:
        try:
            pynvml.nvmlInit()
            source = NvmlSource(pynvml)
            if source.sample():
                return source
            reason = "no NVIDIA GPU found"
        except pynvml.NVMLError as exc:  # every NVML failure (no driver, no library, no device) is one
            reason = f"no NVIDIA GPU found ({exc})"
    if not _warned:
        log.warning("%s; GPU telemetry off", reason)
        _warned = True
    return None


def local_gpu_info() -> tuple[str | None, str | None]:
    """(name of GPU 0, driver version) of this machine, (None, None) without NVML."""
    try:
        import pynvml
    except ImportError:
        return None, None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return _text(pynvml.nvmlDeviceGetName(handle)), _text(pynvml.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError:  # no driver, no GPU: nothing to record
        return None, None
