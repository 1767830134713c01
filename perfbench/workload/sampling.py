"""The sampling flags (--temperature, --top-p, --top-k): sent only when given, refused where they mean nothing.

Each is sent under its own name in every generating API's body (chat, completions, responses).
``top_k`` is not in OpenAI's own API (which refuses it) but vLLM, SGLang, TGI and perfbench's
local server take it.
"""

from __future__ import annotations

from typing import Any, Mapping

from perfbench.core.errors import ConfigError

SAMPLING_FIELDS = ("temperature", "top_p", "top_k")  # RunConfig fields and request body keys alike
_FLAGS = {"temperature": "--temperature", "top_p": "--top-p", "top_k": "--top-k"}


def sampling_body(config: Any) -> dict[str, Any]:
    """The body fields of the sampling settings given (a RunConfig, or anything with those attributes)."""
    return {key: getattr(config, key) for key in SAMPLING_FIELDS if getattr(config, key) is not None}


def check_sampling(settings: Mapping[str, Any], produces_output: bool, api: str) -> None:
    """Refuse a sampling flag for an API that samples nothing, or one --extra-body sets as well."""
    extra = settings.get("extra_body") or {}
    for key in SAMPLING_FIELDS:
        if settings.get(key) is None:
            continue
        flag = _FLAGS[key]
        if not produces_output:
            raise ConfigError(f"{flag} shapes sampled output, but {api} generates none; drop {flag}")
        if isinstance(extra, Mapping) and key in extra:
            raise ConfigError(f"{flag} and --extra-body both set {key!r}; keep one of them")
