"""A run's identity: what must be equal for two runs to be compared like for like (DESIGN.md).

The identity is the target (scheme, host, port and endpoint path, secrets removed; "built-in
mock" or "local ENGINE server" when perfbench started it), the model, the API, simulated or
real, the workload (prompt source and the SHA-256 of a prompts or trace file, input/output lengths,
max_tokens, ignore_eos, sampling flags and --extra-body, seed, shared prefixes, a trace's speed-up,
window and block size, images per request with their sizes and format or the SHA-256 of an image
folder's files, a dataset's name or fingerprint with its column and split) and
the load shape (closed or open loop, the concurrency/rate ladder with each step's number,
duration, arrivals, search). Not in it: what describes the server's build or the client's
machine (--mock settings, dtype, engine args, workers, timeouts), since a change there is what a
comparison exists to catch.

It is computed here only, from summary.json's ``target`` and ``config``, so a run folder written
before identities existed has one too. Only the prompts file's hash cannot be recomputed once the
file has changed or gone: it is taken from the summary's recorded ``identity`` when there is one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from perfbench.core.errors import ConfigError
from perfbench.core.redact import redact_url
from perfbench.results.runfiles import step_label
from perfbench.workload.sampling import SAMPLING_FIELDS

IDENTITY_SCHEMA = "perfbench.identity/1"
SIMULATED_TARGET = "built-in mock"
HASH_CHARS = 12  # short enough to type into `perfbench history --identity`, long enough never to collide in one store
_DEFAULT_PORTS = {"http": 80, "https": 443}


class IdentityMismatch(ConfigError):
    """Two runs of different identities were to be compared without --allow-mismatch."""


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """The identity of one run: nested fields (summary.json's form) and their short hash."""

    fields: Mapping[str, Any]  # {"target", "model", "api", "simulated", "workload": {...}, "load": {...}}
    hash: str  # the first HASH_CHARS hex digits of the SHA-256 of the fields as canonical JSON

    def to_dict(self) -> dict[str, Any]:
        """summary.json's top-level ``identity`` object."""
        return {"schema": IDENTITY_SCHEMA, "hash": self.hash, **self.fields}

    def describe(self) -> str:
        """One line for messages: the hash and the fields a person recognises a run by."""
        model = self.fields.get("model")
        facts = ["simulated" if self.fields.get("simulated") else "real", self.fields.get("target") or "no target",
                 f"model {model}" if model else "no model", self.fields.get("api") or "no API"]
        return f"{self.hash} ({', '.join(facts)})"


def prompts_sha256(path: str | Path) -> str | None:
    """The SHA-256 of a prompts file's bytes; None when it cannot be read (moved, deleted)."""
    digest = hashlib.sha256()
    try:
        with Path(path).expanduser().open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def run_identity(summary: Mapping[str, Any]) -> RunIdentity:
    """The identity of the run whose summary.json is ``summary`` (see the module docstring)."""
    target = summary.get("target") or {}
    config = summary.get("config") or {}
    fields = {
        "target": _target(target, config),
        "model": target.get("model"),  # the name sent (a local server's served name), as the store's column holds it
        "api": target.get("api"),
        "simulated": bool(target.get("simulated")),
        "workload": _workload(config, summary.get("identity")),
        "load": _load(config),
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return RunIdentity(fields=fields, hash=hashlib.sha256(canonical.encode()).hexdigest()[:HASH_CHARS])


def differences(base: RunIdentity, new: RunIdentity) -> list[str]:
    """``"model (a vs b)"`` for each field whose value differs, in the identity's order."""
    flat_base, flat_new = _flatten(base.fields), _flatten(new.fields)
    keys = list(dict.fromkeys([*flat_base, *flat_new]))
    return [f"{key} ({_shown(flat_base.get(key))} vs {_shown(flat_new.get(key))})"
            for key in keys if flat_base.get(key) != flat_new.get(key)]


def mismatch_message(diffs: list[str]) -> str:
    """The one-line refusal: what differs and how to compare anyway."""
    listed = diffs[0] if len(diffs) == 1 else ", ".join(diffs[:-1]) + " and " + diffs[-1]
    return f"runs differ in {listed}; pass --allow-mismatch to compare anyway"


def check_like_for_like(base: Mapping[str, Any], new: Mapping[str, Any], *, allow_mismatch: bool) -> tuple[str, ...]:
    """The differences between two summaries' identities; IdentityMismatch when any, unless allowed."""
    diffs = differences(run_identity(base), run_identity(new))
    if diffs and not allow_mismatch:
        raise IdentityMismatch(mismatch_message(diffs))
    return tuple(diffs)


def _target(target: Mapping[str, Any], config: Mapping[str, Any]) -> str | None:
    if target.get("simulated"):
        return SIMULATED_TARGET  # the mock's port is new every run
    if "url" in config and config["url"] is None:  # a server perfbench started on a free port
        return f"local {config.get('engine') or 'transformers'} server"
    url = target.get("url") or config.get("url")
    return _endpoint(url) if isinstance(url, str) else None


def _endpoint(url: str) -> str:
    """scheme://host:port/path[?query], without userinfo and with secret query values masked."""
    parts = urlsplit(redact_url(url))
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:  # an unparsable port: keep the text, it still names the target
        return redact_url(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, ""))


def _workload(config: Mapping[str, Any], recorded: Any) -> dict[str, Any]:
    prompts = config.get("prompts")
    digest = _recorded_or_hashed(prompts, recorded, "prompts") if prompts else None
    workload = {
        "prompts": "file" if prompts else "synthetic",
        "prompts_sha256": digest,
        "input_tokens": None if prompts else config.get("input_tokens"),  # a file brings its own prompts
        "output_tokens": config.get("output_tokens"),
        "max_tokens": config.get("max_tokens"),
        "ignore_eos": bool(config.get("ignore_eos")),
        "extra_body": dict(config.get("extra_body") or {}),
        "seed": config.get("seed"),
        "shared_prefix_tokens": config.get("shared_prefix_tokens") or 0,
        "prefix_groups": config.get("prefix_groups") or 1,
        "batch_size": config.get("batch_size") or 1,
    }
    # Keys only a run using the feature has: earlier runs' identities (and their stored hashes) stay as they were.
    sampling = {key: config[key] for key in SAMPLING_FIELDS if config.get(key) is not None}
    if sampling:
        workload["sampling"] = sampling
    if config.get("turns") or config.get("conversations"):
        workload["prompts"] = "sessions"
        workload["sessions"] = {
            "turns": config.get("turns"), "think_time": config.get("think_time") or "0",
            "conversations_sha256": _recorded_or_hashed(config["conversations"], recorded, "conversations")
            if config.get("conversations") else None,
        }
        if config.get("conversations"):
            workload["input_tokens"] = None  # the file brings its own turns
    if config.get("trace"):
        workload["prompts"] = "trace"
        workload["input_tokens"] = None  # the trace gives every row's lengths
        workload["trace"] = {
            "sha256": _recorded_or_hashed(config["trace"], recorded, "trace"),
            "speedup": config.get("trace_speedup"), "window": config.get("trace_window"),
            "block_tokens": config.get("trace_block_tokens"),
        }
    if config.get("images"):  # --images: how many, and what (sizes and format, or the folder's files)
        workload["images"] = _images(config, recorded)
    if config.get("dataset"):
        workload["prompts"] = "dataset"
        workload["dataset"] = _dataset(config, recorded)
    return workload


def _recorded_workload(recorded: Any, key: str) -> Mapping[str, Any]:
    workload = recorded.get("workload") if isinstance(recorded, Mapping) else None
    entry = workload.get(key) if isinstance(workload, Mapping) else None
    return entry if isinstance(entry, Mapping) else {}


def _images(config: Mapping[str, Any], recorded: Any) -> dict[str, Any]:
    from perfbench.workload.images import DEFAULT_IMAGE_FORMAT, DEFAULT_IMAGE_SIZE

    if not config.get("image_dir"):
        return {"count": config["images"], "size": config.get("image_size") or DEFAULT_IMAGE_SIZE,
                "format": config.get("image_format") or DEFAULT_IMAGE_FORMAT}
    from perfbench.workload.images import image_dir_sha256

    # The folder's files as they were (recorded), else as they are now; the path itself is no identity.
    digest = _recorded_workload(recorded, "images").get("dir_sha256") or image_dir_sha256(config["image_dir"])
    return {"count": config["images"], "dir_sha256": digest}


def _dataset(config: Mapping[str, Any], recorded: Any) -> dict[str, Any]:
    """A dataset's name (a path is none: its content is) and fingerprint, column and split."""
    from perfbench.workload.datasets_loader import dataset_fingerprint

    entry = _recorded_workload(recorded, "dataset")
    source = str(config["dataset"])
    fingerprint = entry.get("fingerprint") or dataset_fingerprint(source)
    name = entry["name"] if "name" in entry else (None if Path(source).expanduser().exists() else source)
    return {"name": name, "fingerprint": fingerprint, "column": config.get("dataset_prompt_column"),
            "split": config.get("dataset_split")}


def _recorded_or_hashed(path: str, recorded: Any, kind: str) -> str | None:
    """A workload file's SHA-256 as the run recorded it (the file as it was then), else hashed now."""
    workload = recorded.get("workload") if isinstance(recorded, Mapping) else None
    if isinstance(workload, Mapping):
        if kind == "prompts":
            digest = workload.get("prompts_sha256")
        elif kind == "conversations":
            digest = (workload.get("sessions") or {}).get("conversations_sha256")
        else:
            digest = (workload.get("trace") or {}).get("sha256")
        if digest:
            return digest
    return prompts_sha256(path)


def _load(config: Mapping[str, Any]) -> dict[str, Any]:
    steps = [s for s in config.get("steps") or () if isinstance(s, Mapping)]
    open_loop = config.get("search") == "rate" or any(s.get("rate_req_s") is not None for s in steps)
    load: dict[str, Any] = {
        "mode": "open" if open_loop else "closed",
        "steps": ", ".join(step_label(s) + (f" n={s['number']}" if s.get("number") is not None else "") for s in steps) or None,
        "duration_s": config.get("duration_s"),
        "search": None,
    }
    if config.get("search"):
        load["search"] = (f"{config['search']} {config.get('search_start')}..{config.get('search_max')} "
                          f"precision {config.get('search_precision')}")
    if open_loop:  # closed-loop runs ignore these: a changed default must not split them
        load.update(arrivals=config.get("arrivals"), burstiness=config.get("burstiness"), ramp_up_s=config.get("ramp_up_s"))
    return load


def _flatten(fields: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value[:16] + "…" if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else value
    return json.dumps(value)
