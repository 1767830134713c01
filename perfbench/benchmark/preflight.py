"""Before the first step's clock: is the target there, and does one real request succeed?"""

from __future__ import annotations

import dataclasses
import json
import socket
from urllib.parse import urlsplit

from perfbench.config.run_config import RunConfig
from perfbench.engine.engine import Engine
from perfbench.engine.plan import PreparedRequest
from perfbench.core.errors import TargetError


def check_reachable(url: str, timeout_s: float = 5.0) -> None:
    """Fail fast (exit 3) when nothing listens at the target's host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TargetError(f"cannot reach {parts.hostname}:{port} ({reason}); is the server running? check --url") from None


async def preflight(config: RunConfig, engine: Engine, request: PreparedRequest) -> None:
    """One real request before the first step's clock (counted nowhere); its failure is exit 3 at once."""
    record = await engine.preflight(dataclasses.replace(request, body=_short_body(request.body)))
    if not record.ok:
        raise TargetError(
            f"pre-flight request failed ({record.status}): {record.error}{_flag_hint(config, record.error or '')}; "
            "fix the target or the request, or skip this check with --no-preflight"
        )


PREFLIGHT_MAX_TOKENS = 8  # the pre-flight checks the answer's shape, not the server's speed


def _short_body(body: bytes) -> bytes:
    """``body`` asking for at most PREFLIGHT_MAX_TOKENS tokens (exact-length fields kept, so a server refusing them fails here)."""
    obj = json.loads(body)
    if isinstance(obj, dict):
        for key in ("max_tokens", "min_tokens", "max_output_tokens", "max_completion_tokens"):
            if isinstance(obj.get(key), int) and obj[key] > PREFLIGHT_MAX_TOKENS:
                obj[key] = PREFLIGHT_MAX_TOKENS
    return json.dumps(obj, ensure_ascii=False).encode()


def _flag_hint(config: RunConfig, error: str) -> str:
    """Which of the user's flags put the fields a server refused into the request."""
    flags = []
    if config.output_tokens and ("min_tokens" in error or "ignore_eos" in error):
        flags.append("--output-tokens (sends min_tokens and ignore_eos)")
    elif config.ignore_eos and "ignore_eos" in error:
        flags.append("--ignore-eos")
    flags += [f"--extra-body ({key})" for key in config.extra_body if key in error]
    if config.images and "image" in error.lower():
        flags.append("--images (sends image_url parts)")
    return f" (sent by {', '.join(flags)})" if flags else ""
