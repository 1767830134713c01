"""Secrets never leave: URLs and error texts are redacted before they are shown or stored.

perfbench knows its secrets (the API key, header values, a URL's password and secret-looking
query values); ``redact_text`` replaces each of them wherever it appears, so a server that
echoes the key in its error text does not get it written to requests.jsonl or the terminal.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose value is a credential (api_key, access_token, sig, password, ...).
_SECRET_QUERY_KEY = re.compile(r"(key|token|secret|pass|pwd|auth|sig|credential|session)", re.IGNORECASE)
_SHORTEST_SECRET = 4  # shorter values (e.g. a header "1") would mask ordinary text


def redact_url(url: str) -> str:
    """``url`` with userinfo and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{MASK}@{host}" + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY_KEY.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_QUERY_KEY.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secrets a URL carries: its password (and user name) and secret-looking query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [s for s in (parts.password, parts.username) if s]
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if _SECRET_QUERY_KEY.search(k) and v]
    return found


def run_secrets(*, url: str | None, api_key: str | None, headers: Mapping[str, str]) -> tuple[str, ...]:
    """Every secret of a run, longest first (so a key containing another is masked whole)."""
    found: set[str] = set(url_secrets(url or ""))
    if api_key:
        found.add(api_key)
    for value in headers.values():
        found.add(value)
        scheme, _, credential = value.partition(" ")  # "Bearer sk-...": the credential alone too
        if credential and scheme.isalpha():
            found.add(credential)
    return tuple(sorted((s for s in found if len(s) >= _SHORTEST_SECRET), key=len, reverse=True))


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
