"""How one option's value is read and checked: from a scenario file (a YAML value) or, for
numbers, after argparse parsed a flag. One reader per kind of value, shared by every option
of that kind, so a flag and its scenario key accept and refuse the same values.

A reader raises ``BadValue`` with what is wrong and how to fix it; the caller puts the flag or
the file's key path in front.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from perfbench.errors import ConfigError

DATASET_LENGTHS = "dataset"  # --output-tokens value: each prompt's own length (JSONL max_tokens, ShareGPT answers)
LARGEST_SETTING = 1e9  # any count, size or seconds above this is a typo (and overflows timers)
MAX_TOKENS_PER_REQUEST = 1_000_000  # token lengths above this are a typo (prompts are built in memory)


class BadValue(Exception):
    """A value is wrong; the message says what and how to fix it (the flag or key path is added by the caller)."""


Reader = Callable[[Any], Any]  # one YAML value -> its setting, or BadValue


def type_name(value: Any) -> str:
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else repr(value)


def text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadValue(f"expected a string, got {type_name(value)}")
    return str(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadValue(f"expected true or false, got {type_name(value)}")
    return value


def choice(*options: str) -> Reader:
    def read(value: Any) -> str:
        if value not in options:
            hint = difflib.get_close_matches(str(value), options, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else "use one of " + ", ".join(options)
            raise BadValue(f"{value!r} is not allowed; {fix}")
        return value

    return read


@dataclass(frozen=True)
class Number:
    """A number of ``kind`` (int or float) within bounds; reads file values and checks flag values."""

    kind: type
    low: float = 0
    low_open: bool = True  # the low bound itself is refused
    high: float = LARGEST_SETTING

    def __call__(self, value: Any) -> Any:
        ok_types = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            raise BadValue(f"expected {'an integer' if self.kind is int else 'a number'}, got {type_name(value)}")
        return self.check(value)

    def check(self, value: float) -> Any:
        """``value`` in bounds (as ``kind``), else BadValue naming the allowed range."""
        if not math.isfinite(value):
            raise BadValue(f"{value!r} is not a finite number")
        if value > self.high and self.high == LARGEST_SETTING:  # past this, timers overflow and counts exhaust memory
            raise BadValue(f"{value:g} is too large; use a value up to {self.high:g}")
        if value < self.low or (self.low_open and value == self.low) or value > self.high:
            bound = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
            if self.high != LARGEST_SETTING:
                bound += f" and <= {self.high:g}"
            raise BadValue(f"{value:g} is out of range; use a value {bound}")
        return self.kind(value)


positive_int = Number(int)
nonnegative_int = Number(int, low_open=False)
positive_float = Number(float)
nonnegative_float = Number(float, low_open=False)
fraction = Number(float, low_open=False, high=1)


def list_of(item: Reader) -> Reader:
    """One value, a YAML list, or a comma-separated string ("1,4,16") -> a list."""

    def read(value: Any) -> list[Any]:
        if isinstance(value, str):
            try:
                value = [float(v) if "." in v or "e" in v.lower() else int(v) for v in value.split(",")]
            except ValueError:
                raise BadValue(f"{value!r} is not a list of numbers; write e.g. [1, 4, 16]") from None
        items = value if isinstance(value, list) else [value]
        if not items:
            raise BadValue("the list is empty; give at least one value")
        out = []
        for i, v in enumerate(items):
            try:
                out.append(item(v))
            except BadValue as exc:
                raise BadValue(f"item {i}: {exc}") from None
        return out

    return read


def text_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadValue(f"expected a mapping like {{key: value}}, got {type_name(value)}")
    out = {}
    for k, v in value.items():
        if isinstance(v, (dict, list)) or v is None:
            raise BadValue(f"{k}: expected a plain value, got {type_name(v)}")
        out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def engine_args(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return " ".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    raise BadValue(f'expected a string or a list of strings like ["--max-model-len", 4096], got {type_name(value)}')


def json_object(value: Any) -> dict[str, Any]:
    """A mapping from a file, or a flag's JSON text -> a dict (NaN and Infinity refused: no server parses them)."""
    if isinstance(value, str):
        def not_a_number(name: str) -> Any:
            raise BadValue(f"holds {name}, which is not JSON; give a finite number")

        try:
            value = json.loads(value, parse_constant=not_a_number)
        except ValueError:
            raise BadValue("is not valid JSON; give an object like '{\"temperature\": 0}'") from None
    if not isinstance(value, dict):
        raise BadValue("must be a JSON object like '{\"temperature\": 0}'")
    return value


def json_object_flag(text_value: str) -> dict[str, Any]:
    """argparse type for a JSON-object flag: BadValue becomes argparse's one-line error."""
    import argparse

    try:
        return json_object(text_value)
    except BadValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The parsers of lengths.py and slo.py prefix their messages with a name; the caller puts the key
# path in front, so they get a placeholder that is cut off again.
_NAME = "<value>"


def _unname(exc: ConfigError) -> str:
    message = str(exc)
    for prefix in (f"{_NAME}: ", "--slo: "):
        message = message.removeprefix(prefix)
    return message


def length_distribution(value: Any) -> str:
    """A token-length distribution as the --input-tokens string (fixed:N, uniform:A-B, normal:M,S)."""
    from perfbench.lengths import LengthDistribution

    if value == DATASET_LENGTHS:
        return value
    try:
        return str(LengthDistribution.from_mapping(value, name=_NAME))
    except ConfigError as exc:
        raise BadValue(_unname(exc)) from None


def slo_limits(value: Any) -> str:
    """SLOs as the --slo string: {ttft_p99: 500, tpot: 50} -> "tpot=50,ttft_p99=500"."""
    from perfbench.slo import Slos, parse_slos

    try:
        slos = parse_slos(value) if isinstance(value, str) else Slos.from_mapping(value, where=_NAME)
    except ConfigError as exc:
        raise BadValue(_unname(exc)) from None
    return slos.to_text()


def thresholds(value: Any) -> str:
    """Regression thresholds as the --threshold string: {ttft_ms.p99: +10%} -> "ttft_ms.p99=+10%"."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value:
        return ",".join(f"{key}={limit}" for key, limit in value.items())
    raise BadValue("expected a mapping like {ttft_ms.p99: +10%, output_throughput_tok_s: -5%}")


def mock_settings(value: Any) -> dict[str, Any]:
    """The built-in mock's settings: any MockConfig field."""
    from dataclasses import fields

    from perfbench.servers.mock_config import MockConfig

    if not isinstance(value, dict):
        raise BadValue("expected a mapping like {capacity: 8, itl_ms: 5}")
    allowed = [f.name for f in fields(MockConfig)]
    for key in value:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            raise BadValue(f"unknown mock setting '{key}'; " + (f"did you mean '{hint[0]}'?" if hint else "allowed: " + ", ".join(allowed)))
    return dict(value)
