"""Scenario files: read a ``scenarios/*.yaml`` file into the flat run settings the CLI merges.

``load_scenario(path)`` returns a dict keyed by the option table's dest names (``concurrency``,
``rate``, ``input_tokens``, ``slo``, ...); the CLI puts explicit flags on top, so flags win.
Only the settings the file gives are returned, so every default stays the option table's.
The keys and their nesting come from the option table (``options.OPTIONS``: each option's
``key``, e.g. ``workload.shared_prefix.tokens``); scenarios/README.md shows every key.
Every key is checked here once, and a bad one raises a one-line ConfigError naming the file,
the key path and the fix (``scenarios/x.yaml: load.concurency: unknown key; did you mean
'concurrency'?``).

Relative file paths (prompts, and model/tokenizer/baseline when they name existing paths) are
looked up in the current directory first, then next to the scenario file.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from perfbench.core.errors import ConfigError
from perfbench.config.option_values import type_name
from perfbench.core.errors import BadValue
from perfbench.config.options import FILE_ONLY, OPTIONS

__all__ = ["load_scenario", "SCENARIO_KEYS"]

MAX_SCENARIO_BYTES = 2**20  # a scenario is a few hundred bytes; anything this big is the wrong file


def _key_tree() -> dict[str, Any]:
    """The option table as nested sections: {"load": {"concurrency": Option, ...}, "seed": Option, ...}."""
    tree: dict[str, Any] = {}
    for option in OPTIONS:
        if option.key is None:
            continue
        *sections, leaf = option.key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = option
    return tree


SCENARIO_KEYS = _key_tree()


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
        raise ConfigError(f"{path}: expected a mapping of sections (target, load, workload, ...), got {type_name(data)}")
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
            raise self.fail(where or "(top level)", f"expected a mapping, got {type_name(mapping)}")
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
            try:
                converted = entry.read(value)
            except BadValue as exc:
                raise self.fail(key_path, str(exc)) from None
            if entry.dest not in FILE_ONLY:
                self.settings[entry.dest] = converted

    def read(self, data: dict[str, Any]) -> dict[str, Any]:
        self.settings["name"] = self.path.stem
        self.convert(data, SCENARIO_KEYS, "")
        self.resolve_paths()
        self.check_load(data.get("load") or {})
        return self.settings

    def resolve_paths(self) -> None:
        for dest, key_path in (("prompts", "workload.prompts"), ("trace", "workload.trace.file")):
            if dest in self.settings:
                found = self.find(self.settings[dest])
                if found is None:
                    raise self.fail(
                        key_path,
                        f"file {self.settings[dest]!r} not found in the current directory or in "
                        f"{self.path.parent}; fix the path",
                    )
                self.settings[dest] = found
        if "image_dir" in self.settings:  # --image-dir: a folder, beside the file when not found from here
            found = self.find(self.settings["image_dir"])
            if found is None:
                raise self.fail("workload.images.dir", f"folder {self.settings['image_dir']!r} not found in the current "
                                f"directory or in {self.path.parent}; fix the path")
            self.settings["image_dir"] = found
        # These may name a hub model, a cached dataset or a run id rather than a path: resolve only when found.
        for dest in ("model", "tokenizer", "baseline", "dataset"):
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
        """Combinations within the file that cannot mean anything: two step bounds, a ladder with a search."""
        if "number" in load and "duration_s" in load:
            raise self.fail("load.duration_s", "number and duration_s both bound a step; keep one of them")
        search = load.get("search")
        if search is None:  # start/max/precision alone: a --search flag may still come (the merged config checks)
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
