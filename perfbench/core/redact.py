"""Secrets never leave: URLs and error texts are redacted before they are shown or stored.

perfbench knows its secrets (the API key, header values, a URL's password and secret-looking
query values); ``redact_text`` replaces each of them wherever it appears, so a server that
echoes the key in its error text does not get it written to requests.jsonl or the terminal.
A server's text is shortened only by ``excerpt``, which masks before it cuts and also masks a
secret's beginning left at the cut (a key echoed across the cut would otherwise show its start).
"""

from __future__ import annotations

import base64
import re
from typing import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose value is a credential (api_key, access_token, sig, password, ...).
_SECRET_QUERY_KEY = re.compile(r"(key|token|secret|pass|pwd|auth|sig|credential|session)", re.IGNORECASE)
_USERINFO = re.compile(r"(//)[^/?#]*@")  # the userinfo of a URL that urlsplit cannot parse
_SHORTEST_SECRET = 4  # shorter values (e.g. a header "1") would mask ordinary text
SHORTEST_SECRET_PREFIX = 6  # a secret's beginning this long or longer, left at a cut, is masked too
ERROR_TEXT_CHARS = 300  # a record's error text, at most (plus "…")


def _redact_pairs(text: str) -> str:
    """A query (or fragment) with the values of secret-looking keys replaced by ``***``."""
    pairs = parse_qsl(text, keep_blank_values=True)
    if not any(_SECRET_QUERY_KEY.search(k) for k, _ in pairs):
        return text
    return urlencode([(k, MASK if _SECRET_QUERY_KEY.search(k) else v) for k, v in pairs], safe="*")


def redact_url(url: str) -> str:
    """``url`` with userinfo and secret-looking query (and fragment) values replaced by ``***``.

    Works on the text, not on a parsed port or host, so a URL that is otherwise invalid (a bad
    port, say) still loses its password before it is shown in the error about it.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[" in the host: mask everything between "//" and "@"
        return _USERINFO.sub(r"\1" + MASK + "@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, _redact_pairs(parts.query), _redact_pairs(parts.fragment)))


def url_secrets(url: str) -> list[str]:
    """The secrets a URL carries: its password and user name, secret-looking query values.

    Each as written and as decoded (``%40`` -> ``@``), and the Basic credential the client
    builds from the userinfo, since a server may echo any of these forms.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, _, password = userinfo.partition(":")
        found += [userinfo, password, unquote(password)]
        if not password:  # "https://TOKEN@host": the user name is the credential
            found += [user, unquote(user)]
        found.append(base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode())
    for text in (parts.query, parts.fragment):
        for item in text.split("&"):
            key, _, raw = item.partition("=")
            if raw and _SECRET_QUERY_KEY.search(unquote_plus(key)):
                found += [raw, unquote_plus(raw)]
    return [s for s in dict.fromkeys(found) if s]


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


def excerpt(text: str, secrets: Sequence[str], limit: int = ERROR_TEXT_CHARS) -> str:
    """``text`` (a server's words) as one line of at most ``limit`` characters, secrets masked.

    Every cut of a server's text goes through here: each of ``secrets`` is masked and the
    whitespace collapsed *before* the cut, and a beginning of a secret
    (``SHORTEST_SECRET_PREFIX`` characters or more) that the line then ends in is masked too, so
    neither ``sk-SECRE…`` nor, with the cut one character later, the whole key is shown. That
    holds for a cut made before (a body read up to a bound), which is why the line's end is
    checked even when nothing is cut here. A cut line ends in "…". Only the first ``4 * limit``
    characters (and a secret's length) are read: a huge text costs no more than a short one, and
    that bound is a cut like the other.
    """
    window = text[: 4 * limit + max(map(len, secrets), default=0)]
    cut = len(window) < len(text)
    line = redact_text(" ".join(redact_text(window, secrets).split()), secrets)
    if len(line) > limit:
        line, cut = line[:limit], True
    line = _mask_secret_start(line, secrets)
    return line + "…" if cut else line


def _mask_secret_start(line: str, secrets: Sequence[str]) -> str:
    """``line`` with the longest beginning of a secret it ends in (``SHORTEST_SECRET_PREFIX`` or more characters) masked."""
    cut_at = len(line)
    for secret in secrets:
        head = secret[:SHORTEST_SECRET_PREFIX]
        if len(head) < SHORTEST_SECRET_PREFIX:
            continue
        # A beginning that ends the line starts with ``head`` within the last len(secret) - 1 characters;
        # the first such place that the secret continues to the end is the longest.
        at = line.find(head, max(0, len(line) - len(secret) + 1))
        while 0 <= at < cut_at:
            if secret.startswith(line[at:]):
                cut_at = at
                break
            at = line.find(head, at + 1)
    return line[:cut_at] + MASK if cut_at < len(line) else line
