"""Scenario files: read a ``scenarios/*.yaml`` file into the flat run settings the CLI merges.

``load_scenario(path)`` returns a dict keyed by the CLI's argparse dest names (``concurrency``,
``rate``, ``input_tokens``, ``slo``, ...); the CLI puts explicit flags on top, so flags win.
Only the settings the file gives are returned, so every default stays the CLI's.
Every key is checked here once, and a bad one raises a one-line ConfigError naming the file,
the key path and the fix (``scenarios/x.yaml: load.concurency: unknown key; did you mean
'concurrency'?``).

The file's shape (every section and key is optional; see scenarios/README.md)::

    name: capacity-ladder            # run name (default: the file's stem); used in the output dir
    description: free text           # for people; ignored
    seed: 42                         # seeds prompts, lengths and arrivals
    target:                          # omit for the built-in mock server
      url: http://127.0.0.1:8000/v1/chat/completions   # full endpoint or base URL
      api: openai-chat               # or openai-completions
      model: my-model                # served name; without url a local dir/name to serve
      engine: transformers           # or vllm (local serving only)
      engine_args: "--max-model-len 4096"   # extra engine flags: a string or a list
      tokenizer: ./tok               # local tokenizer for counting / exact synthetic lengths
      headers: {X-Team: infra}       # extra HTTP headers
      timeout_s: 120                 # per request
    load:                            # one of three shapes:
      concurrency: [1, 4, 16, 64]    #  1. closed-loop ladder: one step per value
      number: 200                    #     requests per step (one value, or one per step)
      warmup: 10                     #     warm-up requests, excluded from statistics
      # rate: [1, 2, 4]              #  2. open-loop ladder in requests/s (concurrency = cap)
      # duration_s: 60               #     seconds per step (instead of number)
      # burstiness: 1.0              #     gamma shape of the gaps; 1 = Poisson
      # ramp_up_s: 10                #     linear ramp-up to the step's rate
      # search: concurrency          #  3. max-load search (or: rate); needs step SLOs
      # start: 1                     #     first load probed
      # max: 256                     #     never probe above this
      # precision: 0.1               #     stop bisecting when (hi - lo) / lo <= this
    workload:
      prompts: prompts/chat-short.txt     # a prompts file, or synthetic lengths:
      input_tokens: {normal: {mean: 512, std: 128}}   # N | {fixed: N} | {uniform: {min, max}}
      output_tokens: 256                  #   | {normal: {mean, std}} | "uniform:64-256" | dataset (the prompts file's own)
      max_tokens: 512
      shared_prefix: {tokens: 256, groups: 4}   # prefix-cache study: groups sharing K tokens
    slo: {ttft_p99: 500, tpot_p99: 50}   # or the --slo string "ttft_p99=500,tpot_p99=50"
    stop: {max_failure_rate: 0.1}        # end a ladder after a step failing more than this
    mock: {capacity: 8, itl_ms: 5}      # the built-in mock's settings (no target only): any MockConfig field
    output:
      dir: runs/nightly              # output directory
      tags: {gpu: h100, build: nightly}
      baseline: runs/last-good       # compare against this run afterwards
      thresholds: {ttft_ms.p99: +10%}   # or the --threshold string

Relative file paths (prompts, and model/tokenizer/baseline when they name existing paths) are
looked up in the current directory first, then next to the scenario file.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Callable

import yaml

from perfbench.config import DATASET_LENGTHS
from perfbench.apis import API_NAMES
from perfbench.errors import ConfigError

__all__ = ["load_scenario"]

MAX_SCENARIO_BYTES = 2**20  # a scenario is a few hundred bytes; anything this big is the wrong file


class _Bad(Exception):
    """A value is wrong; the message says what and how to fix it (the key path is added later)."""


# A converter turns one YAML value into its setting, or raises _Bad.
Converter = Callable[[Any], Any]


def _type_name(value: Any) -> str:
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else repr(value)


def _str(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Bad(f"expected a string, got {_type_name(value)}")
    return str(value)


def _choice(*options: str) -> Converter:
    def convert(value: Any) -> str:
        if value not in options:
            hint = difflib.get_close_matches(str(value), options, n=1)
            fix = f"did you mean '{hint[0]}'?" if hint else "use one of " + ", ".join(options)
            raise _Bad(f"{value!r} is not allowed; {fix}")
        return value

    return convert


def _number(kind: type, *, low: float, low_open: bool, high: float | None = None) -> Converter:
    """A number of ``kind`` (int or float) with a lower (and optional upper) bound."""

    def convert(value: Any) -> Any:
        ok_types = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            what = "an integer" if kind is int else "a number"
            raise _Bad(f"expected {what}, got {_type_name(value)}")
        if not math.isfinite(value):
            raise _Bad(f"{value!r} is not a finite number")
        if value < low or (low_open and value == low) or (high is not None and value > high):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            if high is not None:
                bound += f" and <= {high:g}"
            raise _Bad(f"{value!r} is out of range; use a value {bound}")
        return kind(value)

    return convert


_pos_int = _number(int, low=0, low_open=True)
_nonneg_int = _number(int, low=0, low_open=False)
_pos_float = _number(float, low=0, low_open=True)
_nonneg_float = _number(float, low=0, low_open=False)
_fraction = _number(float, low=0, low_open=False, high=1)


def _list_of(item: Converter) -> Converter:
    """One value, a YAML list, or a comma-separated string ("1,4,16") -> a list."""

    def convert(value: Any) -> list[Any]:
        if isinstance(value, str):
            try:
                value = [float(v) if "." in v or "e" in v.lower() else int(v) for v in value.split(",")]
            except ValueError:
                raise _Bad(f"{value!r} is not a list of numbers; write e.g. [1, 4, 16]") from None
        items = value if isinstance(value, list) else [value]
        if not items:
            raise _Bad("the list is empty; give at least one value")
        out = []
        for i, v in enumerate(items):
            try:
                out.append(item(v))
            except _Bad as exc:
                raise _Bad(f"item {i}: {exc}") from None
        return out

    return convert


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Bad(f"expected a mapping like {{key: value}}, got {_type_name(value)}")
    out = {}
    for k, v in value.items():
        if isinstance(v, (dict, list)) or v is None:
            raise _Bad(f"{k}: expected a plain value, got {_type_name(v)}")
        out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def _engine_args(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return " ".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    raise _Bad(f'expected a string or a list of strings like ["--max-model-len", 4096], got {_type_name(value)}')


def _length_dist(value: Any) -> str:
    """A token-length distribution as the --input-tokens string (fixed:N, uniform:A-B, normal:M,S)."""
    from perfbench.lengths import LengthDistribution

    if value == DATASET_LENGTHS:
        return value
    try:
        return str(LengthDistribution.from_mapping(value, name=_NAME))
    except ConfigError as exc:
        raise _Bad(_unname(exc)) from None


def _slo(value: Any) -> str:
    """SLOs as the --slo string: {ttft_p99: 500, tpot: 50} -> "tpot=50,ttft_p99=500"."""
    from perfbench.slo import Slos, parse_slos

    try:
        slos = parse_slos(value) if isinstance(value, str) else Slos.from_mapping(value, where=_NAME)
    except ConfigError as exc:
        raise _Bad(_unname(exc)) from None
    return ",".join(f"{key}={limit_ms:g}" for key, limit_ms in slos.to_mapping().items())


# The parsers of lengths.py and slo.py prefix their messages with a name; we put the key path
# (and the file) in front ourselves, so they get a placeholder that is cut off again.
_NAME = "<value>"


def _unname(exc: ConfigError) -> str:
    message = str(exc)
    for prefix in (f"{_NAME}: ", "--slo: "):
        message = message.removeprefix(prefix)
    return message


def _thresholds(value: Any) -> str:
    """Regression thresholds as the --threshold string: {ttft_ms.p99: +10%} -> "ttft_ms.p99=+10%"."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value:
        return ",".join(f"{key}={limit}" for key, limit in value.items())
    raise _Bad("expected a mapping like {ttft_ms.p99: +10%, output_throughput_tok_s: -5%}")


# Section -> key -> (dest, converter). Paths are handled apart (they need the file's folder).
_TARGET: dict[str, tuple[str, Converter]] = {
    "url": ("url", _str),
    "api": ("api", _choice(*API_NAMES)),
    "model": ("model", _str),
    "engine": ("engine", _choice("transformers", "vllm")),
    "engine_args": ("engine_args", _engine_args),
    "tokenizer": ("tokenizer", _str),
    "headers": ("headers", _str_map),
    "timeout_s": ("timeout_s", _pos_float),
}
_LOAD: dict[str, tuple[str, Converter]] = {
    "concurrency": ("concurrency", _list_of(_pos_int)),
    "number": ("number", _list_of(_pos_int)),
    "rate": ("rate", _list_of(_pos_float)),
    "duration_s": ("duration_s", _pos_float),
    "warmup": ("warmup", _nonneg_int),
    "burstiness": ("burstiness", _pos_float),
    "ramp_up_s": ("ramp_up_s", _nonneg_float),
    "search": ("search", _choice("concurrency", "rate")),
    "start": ("search_start", _pos_float),
    "max": ("search_max", _pos_float),
    "precision": ("search_precision", _number(float, low=0, low_open=True, high=1)),
}
_WORKLOAD: dict[str, Any] = {
    "prompts": ("prompts", _str),
    "input_tokens": ("input_tokens", _length_dist),
    "output_tokens": ("output_tokens", _length_dist),
    "max_tokens": ("max_tokens", _pos_int),
    "batch_size": ("batch_size", _pos_int),
    "shared_prefix": {  # a nested section
        "tokens": ("shared_prefix_tokens", _pos_int),
        "groups": ("prefix_groups", _pos_int),
    },
}
_STOP: dict[str, tuple[str, Converter]] = {
    "max_failure_rate": ("max_failure_rate", _fraction),
}
_OUTPUT: dict[str, tuple[str, Converter]] = {
    "dir": ("output_dir", _str),
    "tags": ("tags", _str_map),
    "baseline": ("baseline", _str),
    "thresholds": ("thresholds", _thresholds),
}
def _mock_settings(value: Any) -> dict[str, Any]:
    from dataclasses import fields

    from perfbench.servers.mock_config import MockConfig

    if not isinstance(value, dict):
        raise _Bad("expected a mapping like {capacity: 8, itl_ms: 5}")
    allowed = [f.name for f in fields(MockConfig)]
    for key in value:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            raise _Bad(f"unknown mock setting '{key}'; " + (f"did you mean '{hint[0]}'?" if hint else "allowed: " + ", ".join(allowed)))
    return dict(value)


_SCENARIO: dict[str, Any] = {
    "name": ("name", _str),
    "mock": ("mock", _mock_settings),  # the built-in mock's behaviour when there is no target
    "description": ("", _str),  # for people only
    "seed": ("seed", _nonneg_int),
    "target": _TARGET,
    "load": _LOAD,
    "workload": _WORKLOAD,
    "slo": ("slo", _slo),
    "stop": _STOP,
    "output": _OUTPUT,
}


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read and validate a scenario file; return its run settings keyed by CLI dest names.

    Raises:
        ConfigError: the file is missing, is not YAML, or holds a bad key or value.
    """
    path = Path(path)
    try:
        # Only a regular file of sane size: /dev/zero or a FIFO would never finish reading.
        if path.exists() and not path.is_dir() and not path.is_file():
            raise ConfigError(f"{path}: the scenario is not a regular file; pass a YAML file")
        if path.is_file() and path.stat().st_size > MAX_SCENARIO_BYTES:
            raise ConfigError(f"{path}: the scenario file is over {MAX_SCENARIO_BYTES // 2**20} MiB; pass a scenario YAML file")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the scenario file ({exc.strerror}); check the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the scenario file is not UTF-8 text; pass a YAML file saved as UTF-8") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix the syntax (indentation, colons, quotes)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (target, load, workload, ...), got {_type_name(data)}")
    return _Reader(path).read(data)


class _Reader:
    """Walks one scenario's sections, converting keys and naming the key path in errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.settings: dict[str, Any] = {}

    def fail(self, key_path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key_path}: {message}")

    def check_keys(self, mapping: Any, allowed: dict[str, Any], where: str) -> dict[str, Any]:
        if not isinstance(mapping, dict):
            raise self.fail(where or "(top level)", f"expected a mapping, got {_type_name(mapping)}")
        for key in mapping:
            if key not in allowed:
                key_path = f"{where}.{key}" if where else str(key)
                hint = difflib.get_close_matches(str(key), list(allowed), n=1)
                fix = f"did you mean '{hint[0]}'?" if hint else "allowed keys: " + ", ".join(allowed)
                raise self.fail(key_path, f"unknown key; {fix}")
        return mapping

    def convert(self, section: Any, table: dict[str, Any], where: str) -> None:
        """Check ``section``'s keys against ``table`` and store each converted value."""
        for key, value in self.check_keys(section, table, where).items():
            key_path = f"{where}.{key}" if where else str(key)
            entry = table[key]
            if isinstance(entry, dict):
                if value is not None:  # an empty section ("load:") means nothing set
                    self.convert(value, entry, key_path)
                continue
            dest, converter = entry
            try:
                converted = converter(value)
            except _Bad as exc:
                raise self.fail(key_path, str(exc)) from None
            if dest:
                self.settings[dest] = converted

    def read(self, data: dict[str, Any]) -> dict[str, Any]:
        self.settings["name"] = self.path.stem
        self.convert(data, _SCENARIO, "")
        self.resolve_paths()
        self.check_load(data.get("load") or {})
        return self.settings

    def resolve_paths(self) -> None:
        if "prompts" in self.settings:
            found = self.find(self.settings["prompts"])
            if found is None:
                raise self.fail(
                    "workload.prompts",
                    f"file {self.settings['prompts']!r} not found in the current directory or in "
                    f"{self.path.parent}; fix the path",
                )
            self.settings["prompts"] = found
        # These may name a hub model or a run id rather than a path: resolve only when found.
        for dest in ("model", "tokenizer", "baseline"):
            if dest in self.settings:
                self.settings[dest] = self.find(self.settings[dest]) or self.settings[dest]

    def find(self, name: str) -> str | None:
        """A relative path as given when it exists from the CWD, else next to the scenario file."""
        candidate = Path(name).expanduser()
        if candidate.exists():
            return str(candidate)
        beside = self.path.parent / candidate
        if not candidate.is_absolute() and beside.exists():
            return str(beside)
        return None

    def check_load(self, load: dict[str, Any]) -> None:
        """Combinations that cannot mean anything: two step bounds, a ladder with a search, search keys alone."""
        if "number" in load and "duration_s" in load:
            raise self.fail("load.duration_s", "number and duration_s both bound a step; keep one of them")
        search = load.get("search")
        if search is None:
            for key in ("start", "max", "precision"):
                if key in load:
                    raise self.fail(f"load.{key}", "only applies to a search; add 'search: concurrency' or 'search: rate'")
            return
        ladder = self.settings.get(search, [])
        if len(ladder) > 1:
            raise self.fail(
                f"load.{search}",
                f"a ladder cannot go with 'search: {search}'; remove the list (use start/max) or the search",
            )
        if search == "concurrency" and "start" in load and not float(load["start"]).is_integer():
            raise self.fail("load.start", "a concurrency search starts at a whole number; use e.g. 1")
        if "start" in load and "max" in load and load["max"] < load["start"]:
            raise self.fail("load.max", f"{load['max']} is below start {load['start']}; raise max")
