"""API adapters, one per API, and their registry: the only place an API is named.

An adapter owns its endpoint path, its request bodies, whether it streams, and what each event
(or a whole JSON answer) means; the engine knows only ``ApiAdapter``. To add an API: write its
adapter module here, add it to ``_ADAPTERS``; its path then selects it from a URL, and ``--api``
and scenario files accept its name.
"""

from __future__ import annotations

from perfbench.apis.base import ApiAdapter, StreamContent
from perfbench.apis.embeddings import OpenAIEmbeddings
from perfbench.apis.openai import OpenAIChat, OpenAICompletions
from perfbench.apis.responses import OpenAIResponses
from perfbench.core.errors import ConfigError

_ADAPTERS: dict[str, ApiAdapter] = {a.name: a for a in (OpenAIChat(), OpenAICompletions(), OpenAIResponses(), OpenAIEmbeddings())}
API_NAMES = tuple(_ADAPTERS)
DEFAULT_API = "openai-chat"


def get_adapter(name: str) -> ApiAdapter:
    try:
        return _ADAPTERS[name]
    except KeyError:
        raise ConfigError(f"unknown API '{name}'; use --api {' or '.join(API_NAMES)}") from None


def adapter_for_path(path: str) -> ApiAdapter | None:
    """The adapter whose endpoint path ``path`` ends in, the ``/v1`` optional (a server may mount its
    API under another prefix); longest first, so ``.../chat/completions`` is never taken for ``.../completions``."""
    path = path.rstrip("/")
    for adapter in sorted(_ADAPTERS.values(), key=lambda a: len(a.path), reverse=True):
        if path.endswith(adapter.path.removeprefix("/v1")):
            return adapter
    return None


__all__ = ["API_NAMES", "DEFAULT_API", "ApiAdapter", "StreamContent", "adapter_for_path", "get_adapter"]
