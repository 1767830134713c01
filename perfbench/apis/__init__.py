"""API adapters: what a request body looks like and what each streamed event means, per API.

The stream loop itself lives once, in ``perfbench.engine``; an adapter never touches the network.
"""

from __future__ import annotations

from perfbench.apis.openai import API_NAMES, ApiAdapter, StreamContent, get_adapter

__all__ = ["API_NAMES", "ApiAdapter", "StreamContent", "get_adapter"]
