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
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from perfbench.core.errors import BadValue, ConfigError, shown_text
from perfbench.workload.lengths import DATASET_LENGTHS

LARGEST_SETTING = 1e9  # any count, size or seconds above this is a typo (and overflows timers)




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


def worker_count(value: Any) -> int | str:
    """--workers: a whole number >= 1, or "auto" (the cores the machine can spare)."""
    if value == "auto":
        return value
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise BadValue(f"{value!r} is neither a whole number nor auto; use e.g. 2, or auto") from None
    return Number(int, high=1024)(value)


def flag_type(read: Reader) -> Callable[[str], Any]:
    """``read`` as an argparse type: BadValue becomes argparse's one-line error."""

    def parse(text_value: str) -> Any:
        import argparse

        try:
            return read(text_value)
        except BadValue as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = read.__name__
    return parse


worker_count_flag = flag_type(worker_count)

RAY_LOCAL = "local"  # --ray's default: a Ray instance of this run's own, on 127.0.0.1
RAY_PER_NODE = 0  # RunConfig.workers under --ray without a count (or auto): one actor per live node
RAY_MISSING = "--ray needs Ray, an optional extra: pip install 'perfbench[ray]'"
_RAY_ADDRESS = re.compile(r"(ray://)?\[?[A-Za-z0-9._:-]+\]?:\d{1,5}")


def ray_address(value: Any) -> str:
    """--ray: local (a Ray instance of the run's own), auto (the cluster this machine is part of),
    ray://HOST:PORT (Ray Client) or HOST:PORT (a cluster's GCS address)."""
    if not isinstance(value, str) or not (value in (RAY_LOCAL, "auto") or _RAY_ADDRESS.fullmatch(value)):
        raise BadValue(f"{shown_text(str(value))} is no Ray address; use local, auto, ray://HOST:PORT or HOST:PORT")
    return value


def choices(*options: str) -> Reader:
    """Names from ``options``: a YAML list, or one string (comma-separated) -> a tuple without repeats."""
    one = choice(*options)

    def read(value: Any) -> tuple[str, ...]:
        items = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise BadValue(f"expected a list of {', '.join(options)}, got {type_name(value)}")
        return tuple(dict.fromkeys(one(item) for item in items))

    return read


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


json_object_flag = flag_type(json_object)


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
    from perfbench.workload.lengths import LengthDistribution

    if value == DATASET_LENGTHS:
        return value
    try:
        return str(LengthDistribution.from_mapping(value, name=_NAME))
    except ConfigError as exc:
        raise BadValue(_unname(exc)) from None


def slo_limits(value: Any) -> str:
    """SLOs as the --slo string: {ttft_p99: 500, tpot: 50} -> "tpot=50,ttft_p99=500"."""
    from perfbench.metrics.slo import Slos, parse_slos

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

    from perfbench.core.mock_config import MockConfig

    if not isinstance(value, dict):
        raise BadValue("expected a mapping like {capacity: 8, itl_ms: 5}")
    allowed = [f.name for f in fields(MockConfig)]
    for key in value:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            raise BadValue(f"unknown mock setting '{key}'; " + (f"did you mean '{hint[0]}'?" if hint else "allowed: " + ", ".join(allowed)))
    return dict(value)


# Flag texts of the options whose command-line spelling needs parsing beyond argparse.

# RFC 7230 token: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
BAD_HEADER_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # CR, LF, NUL and other controls (tab is allowed)
# Headers the HTTP client sets from the request itself: a user value would corrupt the framing.
_CLIENT_HEADERS = ("content-length", "transfer-encoding", "host", "connection")


def parse_int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: expected an integer or a comma-separated list like 1,4,16") from None


def parse_float_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        values = [math.nan]
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{flag} {text!r}: expected a finite number or a comma-separated list like 1,2.5,10")
    return values


def parse_headers(values: list[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["X-Team: infra"]`` (or a mapping) -> dict; ConfigError for anything that would corrupt every request."""
    if not values:
        return {}
    if isinstance(values, Mapping):
        pairs = [(str(k), str(v)) for k, v in values.items()]
    else:
        pairs = []
        for item in values:
            name, sep, value = item.partition(":")
            if not sep or not name.strip():
                raise ConfigError(f"--header {shown_text(item)}: expected 'Name: value'")
            pairs.append((name.strip(), value.strip()))
    headers = {}
    for name, value in pairs:
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"--header {shown_text(name)} is not a valid header name; use letters, digits and -, e.g. X-Team")
        if name.lower() in _CLIENT_HEADERS:
            raise ConfigError(f"--header {name}: perfbench sets {name} itself for each request; drop this header")
        if BAD_HEADER_VALUE.search(value):
            raise ConfigError(f"--header {name}: the value contains a line break, NUL or control character; remove it")
        headers[name] = value
    return headers




# Room left in a path for what perfbench puts after it: a file in --output-dir ("/requests.parquet",
# a plot's name, a file written aside and renamed), SQLite's "-journal" beside --store.
_PATH_ROOM_BYTES = 64


def _path_max_bytes() -> int:
    """The longest path the file system opens (PATH_MAX, the ending NUL counted): 4096 on Linux."""
    try:
        return int(os.pathconf("/", "PC_PATH_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no such limit
        return 4096


def check_path_text(path: str, flag: str) -> None:
    """ConfigError for a path the file system cannot hold: NUL bytes, a name over 255 bytes, a path
    that (made absolute, with room for the files perfbench writes in or beside it) is past PATH_MAX."""
    if "\x00" in path:
        raise ConfigError(f"{flag} contains a NUL byte; give a plain path")
    for part in path.replace(os.sep, "/").split("/"):
        if len(os.fsencode(part)) > 255:
            raise ConfigError(f"{flag}: the name {part[:40]}... is longer than 255 bytes; choose a shorter name")
    try:
        full = os.path.abspath(path)  # what the run's files and the history store end up naming
    except OSError:  # the working directory is gone: the path as given
        full = path
    size, limit = len(os.fsencode(full)), _path_max_bytes() - _PATH_ROOM_BYTES
    if size > limit:
        raise ConfigError(f"{flag} is {size:,} bytes long as a full path (from {shown_text(full[:40])}); the file system "
                          f"opens paths of up to {limit + _PATH_ROOM_BYTES:,} bytes, files inside included; choose a shorter {flag}")


def check_extra_body(extra: Any) -> None:
    """Refuse --extra-body fields that would make every request fail or be measured wrongly."""
    if not isinstance(extra, Mapping):
        raise ConfigError("--extra-body must be a JSON object like '{\"temperature\": 0}'")
    if "stream" in extra and extra["stream"] is not True:
        raise ConfigError("--extra-body sets stream to something other than true; perfbench measures streamed answers, drop 'stream'")
    if "stream_options" in extra:
        options = extra["stream_options"]
        if not isinstance(options, Mapping) or options.get("include_usage") is not True:
            raise ConfigError('--extra-body replaces stream_options without "include_usage": true, so no usage '
                              'would come back; add "include_usage": true or drop stream_options')
    for key in ("messages", "prompt"):
        if key in extra:
            raise ConfigError(f"--extra-body sets {key!r}, which would replace every prompt; give prompts with --prompts FILE")
    if "model" in extra:
        raise ConfigError("--extra-body sets 'model'; set the model with --model so the run records it")




def parse_mock_settings(text: str) -> dict[str, Any]:
    """``--mock capacity=8,itl_ms=5`` -> {"capacity": 8, "itl_ms": 5.0}; values are numbers or words."""
    settings: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--mock {item!r}: expected key=value, e.g. --mock capacity=8,itl_ms=5")
        for kind in (int, float):
            try:
                settings[key.strip()] = kind(value)
                break
            except ValueError:
                continue
        else:
            settings[key.strip()] = {"true": True, "false": False}.get(value.strip().lower(), value.strip())
    return settings
