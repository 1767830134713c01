"""The page's building blocks: its inline style, escaping, numbers, tables, embedded images and the
page shell. Every cell and text handed to these is escaped here or was escaped by the caller with ``e``."""

from __future__ import annotations

import base64
import html
from typing import Any, Iterable, Sequence

from perfbench.core.printable import printable
from perfbench.core.numbers import format_number

CSS = """
:root { --fg:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f7f8fa; --accent:#2563eb;
        --bad:#b91c1c; --bad-bg:#fde8e8; --good:#047857; --good-bg:#def7ec; --warn:#92400e; --warn-bg:#fef3c7; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width:1200px; margin:0 auto; padding:8px 32px 48px; }
header { background:#111827; color:#f9fafb; padding:18px 32px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; overflow-wrap:anywhere; }
header .meta { color:#cbd2d9; font-size:13px; overflow-wrap:anywhere; }
h2 { font-size:17px; margin:20px 0 10px; padding-bottom:6px; border-bottom:1px solid var(--line); }
h3 { font-size:14px; margin:18px 0 8px; color:var(--muted); }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:4px 20px 16px; margin-top:20px; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; font-size:13px; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#f0f2f5; font-weight:600; white-space:nowrap; }
tbody tr:nth-child(even) { background:#fafbfc; }
table.fit { width:auto; min-width:min(100%, 640px); }
td.num, th.num { text-align:right; white-space:nowrap; }
td code { overflow-wrap:anywhere; } td code.nowrap { white-space:nowrap; overflow-wrap:normal; }
.scroll { overflow-x:auto; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; white-space:nowrap; }
.badge.bad { background:var(--bad-bg); color:var(--bad); }
.badge.good { background:var(--good-bg); color:var(--good); }
.badge.warn, .badge.sim { background:var(--warn-bg); color:var(--warn); }
.worse { color:var(--bad); font-weight:600; } .better { color:var(--good); font-weight:600; }
.muted { color:var(--muted); }
.change { display:block; font-size:11px; }
.change.regressed { background:var(--bad-bg); border-radius:4px; padding:0 4px; margin-left:auto; width:max-content; }
table.fit td:first-child { white-space:nowrap; }
.banner { padding:12px 16px; border-radius:8px; margin-top:12px; font-weight:600; }
.banner.bad { background:var(--bad-bg); color:var(--bad); } .banner.good { background:var(--good-bg); color:var(--good); }
.banner.warn { background:var(--warn-bg); color:var(--warn); }
.verdict { border-width:2px; padding:16px 20px; }
.verdict.pass { border-color:#34d399; } .verdict.warn { border-color:#f59e0b; } .verdict.fail { border-color:#f87171; }
.verdict .word { font-size:28px; font-weight:700; letter-spacing:.02em; margin:0; }
.verdict.pass .word { color:var(--good); } .verdict.warn .word { color:var(--warn); } .verdict.fail .word { color:var(--bad); }
.verdict .why { margin:2px 0 10px; font-size:15px; }
.checks { list-style:none; margin:0; padding:0; }
.checks > li { padding:6px 0 6px 12px; border-left:4px solid var(--line); margin:6px 0; }
.checks > li.pass { border-color:#34d399; } .checks > li.warn { border-color:#f59e0b; } .checks > li.fail { border-color:#f87171; }
.checks ul { margin:4px 0 0; padding-left:20px; font-size:13px; }
.alarm { background:var(--bad-bg); border-color:#f87171; }
.alarm h2 { color:var(--bad); border-color:#f8b4b4; }
.alarm table { background:#fff; }
pre { background:#f3f4f6; padding:12px; border-radius:6px; overflow-x:auto; font-size:12px; }
code, pre { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
figure { margin:16px 0; } figure img { display:block; max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:12px; margin-top:4px; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; margin:8px 0; }
dt { color:var(--muted); } dd { margin:0; overflow-wrap:anywhere; }
footer { color:var(--muted); font-size:12px; margin-top:32px; text-align:center; overflow-wrap:anywhere; }
@media (max-width: 1100px) { main { padding:8px 16px 40px; } header { padding:16px; } section { padding:4px 14px 14px; } }
"""

STATE_BADGE = {"pass": "good", "warn": "warn", "fail": "bad"}  # a verdict state's badge class
STATE_WORD = {"pass": "pass", "warn": "warning", "fail": "FAIL"}


def e(value: Any) -> str:
    """Escaped text of any value (None shows as a dash): HTML-escaped, and its control characters
    written as escapes (``\x1b``), so a server's escape sequence cannot act on a terminal showing the file."""
    return "-" if value is None else html.escape(printable(str(value), lines=True), quote=True)


def num(value: Any) -> str:
    """A number for a table cell, as perfbench prints numbers everywhere (``perfbench.core.numbers``); anything else escaped."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return e(value)
    return format_number(value)


def state_of(passed: bool | None) -> str:
    """A check's state from a pass flag: "pass", else "fail" (a step without a value fails its SLO)."""
    return "pass" if passed else "fail"


def badge(state: str, text: str | None = None) -> str:
    """A coloured pill for a check's state (pass, warn, fail)."""
    return f'<span class="badge {STATE_BADGE[state]}">{e(text or STATE_WORD[state])}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] | None = None,
          *, attrs: str = "") -> str:
    """A table from already-escaped cells, in a box that scrolls sideways rather than widen the page."""
    numeric = numeric or [False] * len(headers)
    head = "".join(f'<th class="num">{h}</th>' if n else f"<th>{h}</th>" for h, n in zip(headers, numeric))
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if n else f"<td>{c}</td>" for c, n in zip(row, numeric)) + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def figure(png: bytes, alt: str, caption: str) -> str:
    """An embedded PNG (a ``data:`` URI: the page loads nothing) with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{e(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def page(title: str, body: str) -> str:
    """The whole document around an already-built body."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # no script may run and nothing may load from elsewhere, even if escaping ever failed
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )
