"""Which transport a run uses (perfbench/engine/transport.py): the lean HTTP/1.1 client unless it
cannot do the job, then aiohttp.

aiohttp is chosen when a proxy from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY; NO_PROXY
respected) applies to the target, or httptools is not installed. summary.json names the transport
that ran (``environment.transport``) and why when it is aiohttp (``environment.transport_reason``).
"""

from __future__ import annotations

import logging
import ssl
import urllib.request
from urllib.parse import urlsplit

from perfbench.core.errors import ConfigError
from perfbench.core.redact import redact_url
from perfbench.engine.plan import Target
from perfbench.engine.transport import AIOHTTP, LEAN, HttpTransport

logger = logging.getLogger(__name__)

PROXY_SCHEMES = ("http", "https")  # proxies aiohttp can speak to


def make_transport(target: Target, *, timeout_s: float, connect_timeout_s: float, max_connections: int,
                   kind: str | None = None) -> HttpTransport:
    """The transport for ``target``: the lean one unless it cannot do the job (see module docstring).

    ``kind`` forces one ("lean" or "aiohttp"); ``max_connections`` bounds aiohttp's pool only (the
    lean pool has as many connections as requests in flight). ConfigError for a proxy aiohttp cannot use.
    """
    proxy = proxy_for(target.url)
    reason = None
    if kind is None:
        kind, reason = LEAN, None
        if proxy is not None:
            kind, reason = AIOHTTP, f"the proxy {redact_url(proxy)} from the environment applies to the target"
        elif not httptools_available():
            kind, reason = AIOHTTP, "httptools is not installed"
    ssl_context = tls_context(target) if urlsplit(target.url).scheme == "https" else None
    transport: HttpTransport
    if kind == LEAN:
        from perfbench.engine.lean_http import LeanTransport

        transport = LeanTransport(target, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s, ssl_context=ssl_context)
    elif kind == AIOHTTP:
        if proxy is not None and urlsplit(proxy).scheme not in PROXY_SCHEMES:
            raise ConfigError(f"the proxy {redact_url(proxy)} from the environment is not an http(s) proxy, which perfbench "
                              f"cannot use; set NO_PROXY={urlsplit(target.url).hostname} to go direct")
        from perfbench.engine.aiohttp_transport import AiohttpTransport

        transport = AiohttpTransport(target, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
                                     max_connections=max_connections, ssl_context=ssl_context, proxy=proxy)
    else:
        raise ValueError(f"unknown transport {kind!r}")
    transport.reason = reason
    if reason:
        logger.info("requests go through aiohttp: %s", reason)
    return transport


def httptools_available() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


def proxy_for(url: str) -> str | None:
    """The proxy the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY; NO_PROXY) sets for ``url``, or None."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    candidates = [parts.hostname] + ([f"{host}:{parts.port}"] if parts.port else [])
    if any(urllib.request.proxy_bypass(candidate) for candidate in candidates):
        return None
    return proxy


def tls_context(target: Target) -> ssl.SSLContext:
    """Certificates verified against the system's CAs, or ``--ca-cert``'s; none with ``--insecure``."""
    context = ssl.create_default_context(cafile=target.ca_cert)
    if target.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context
