"""Token length distributions for synthetic prompts and outputs (``--input-tokens``, ``--output-tokens``).

Three kinds, each with a text form for the command line and a mapping form for scenario files:

    fixed     "128" | 128 | "fixed:128"            {fixed: 128}
    uniform   "uniform:64-256"  (both ends included) {uniform: [64, 256]}
    normal    "normal:128,32[,MIN[,MAX]]"          {normal: {mean: 128, std: 32, min: 16, max: 512}}

Normal samples are rounded to integers and clipped to ``[min, max]`` (``min`` defaults to 1,
``max`` to no limit), so every sample is an integer >= 1. ``str(d)`` gives the text form back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from perfbench.core.errors import ConfigError

FIXED = "fixed"
UNIFORM = "uniform"
NORMAL = "normal"

_FORMS = "use N, uniform:MIN-MAX or normal:MEAN,STD[,MIN[,MAX]] (e.g. 128, uniform:64-256, normal:128,32)"
_MAPPING_FORMS = "use {fixed: N}, {uniform: [MIN, MAX]} or {normal: {mean: M, std: S, min: A, max: B}}"
_NUMBER = r"\s*(\d+(?:\.\d*)?)\s*"


@dataclass(frozen=True, slots=True)
class LengthDistribution:
    """A distribution of token counts; every sample is an integer >= 1."""

    kind: str  # FIXED, UNIFORM or NORMAL
    low: int  # smallest possible sample (fixed: the value; uniform: MIN; normal: clip MIN, default 1)
    high: int | None  # largest possible sample (fixed: the value; uniform: MAX; normal: clip MAX or None)
    mean: float  # fixed: the value; uniform: (MIN+MAX)/2; normal: MEAN before clipping
    std: float = 0.0  # normal: STD before clipping; 0 otherwise

    @classmethod
    def fixed(cls, value: int) -> LengthDistribution:
        return cls(FIXED, value, value, float(value))

    @classmethod
    def uniform(cls, low: int, high: int) -> LengthDistribution:
        return cls(UNIFORM, low, high, (low + high) / 2)

    @classmethod
    def normal(cls, mean: float, std: float, low: int = 1, high: int | None = None) -> LengthDistribution:
        return cls(NORMAL, low, high, float(mean), float(std))

    def __post_init__(self) -> None:
        if self.kind not in (FIXED, UNIFORM, NORMAL):
            raise ConfigError(f"unknown length distribution {self.kind!r}; {_FORMS}")
        if self.low < 1:
            raise ConfigError(f"token length {self.low} is below 1; lengths must be at least 1")
        if self.high is not None and self.high < self.low:
            raise ConfigError(f"token length range {self.low}-{self.high} is empty; put the smaller number first")
        if self.kind == NORMAL and (self.std < 0 or not math.isfinite(self.std) or not math.isfinite(self.mean)):
            raise ConfigError(f"normal length needs a finite mean and a std >= 0, got {self.mean:g},{self.std:g}")

    @classmethod
    def parse(cls, text: str | int, *, name: str = "token length") -> LengthDistribution:
        """Parse the command-line form; ``name`` (e.g. "--input-tokens") labels errors."""
        if isinstance(text, bool):  # bool is an int subclass; True is not a length
            raise ConfigError(f"{name}: bad value {text!r}; {_FORMS}")
        if not isinstance(text, (str, int)):
            raise ConfigError(f"{name}: bad value {text!r}; {_FORMS}")
        s = str(text).strip().lower()
        kind, _, rest = s.rpartition(":") if ":" in s else ("", "", s)
        try:
            if kind in ("", FIXED) and re.fullmatch(r"\s*-?\d+\s*", rest):
                return cls.fixed(int(rest))
            if kind == UNIFORM and (m := re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", rest)):
                return cls.uniform(int(m[1]), int(m[2]))
            if kind == NORMAL and (m := re.fullmatch(_NUMBER + "," + _NUMBER + r"(?:,\s*(\d+)\s*(?:,\s*(\d+)\s*)?)?", rest)):
                low = int(m[3]) if m[3] is not None else 1
                return cls.normal(float(m[1]), float(m[2]), low, _opt_int(m[4]))
        except ConfigError as e:
            raise ConfigError(f"{name}: {text!r}: {e}") from None
        raise ConfigError(f"{name}: bad value {text!r}; {_FORMS}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | str | int, *, name: str = "token length") -> LengthDistribution:
        """Parse the scenario-file form; a bare number or string is read as by ``parse``."""
        if isinstance(m, (str, int)):
            return cls.parse(m, name=name)
        if not isinstance(m, Mapping) or len(m) != 1:
            raise ConfigError(f"{name}: bad value {m!r}; {_MAPPING_FORMS}")
        ((kind, value),) = m.items()
        try:
            if kind == FIXED and isinstance(value, int) and not isinstance(value, bool):
                return cls.fixed(value)
            if kind == UNIFORM and _ints(value, 2):
                return cls.uniform(int(value[0]), int(value[1]))
            if kind == UNIFORM and isinstance(value, Mapping) and set(value) == {"min", "max"} and _ints(
                [value["min"], value["max"]], 2
            ):
                return cls.uniform(int(value["min"]), int(value["max"]))
            if kind == NORMAL and isinstance(value, Mapping) and {"mean", "std"} <= set(value) <= {"mean", "std", "min", "max"}:
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
                    return cls.normal(value["mean"], value["std"], int(value.get("min", 1)), _opt_int(value.get("max")))
        except ConfigError as e:
            raise ConfigError(f"{name}: {m!r}: {e}") from None
        raise ConfigError(f"{name}: bad value {m!r}; {_MAPPING_FORMS}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` integer samples (int64, each >= 1) drawn with ``rng``."""
        if self.kind == FIXED:
            return np.full(n, self.low, dtype=np.int64)
        if self.kind == UNIFORM:
            return rng.integers(self.low, self.high, size=n, endpoint=True, dtype=np.int64)
        values = np.rint(rng.normal(self.mean, self.std, size=n))
        return np.clip(values, self.low, self.high if self.high is not None else np.inf).astype(np.int64)

    def __str__(self) -> str:
        if self.kind == FIXED:
            return f"{FIXED}:{self.low}"
        if self.kind == UNIFORM:
            return f"{UNIFORM}:{self.low}-{self.high}"
        clip = f",{self.low}" if self.low != 1 or self.high is not None else ""
        clip += f",{self.high}" if self.high is not None else ""
        return f"{NORMAL}:{self.mean:g},{self.std:g}{clip}"


def _ints(value: Any, count: int) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == count
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


DATASET_LENGTHS = "dataset"  # --output-tokens value: each prompt's own length (JSONL max_tokens, ShareGPT answers)


MAX_TOKENS_PER_REQUEST = 1_000_000  # token lengths above this are a typo (prompts are built in memory)
