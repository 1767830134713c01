"""Text from outside made safe to show: what a server, a file or the history store says never acts on a terminal.

A server's error text, a prompts file's line, a scenario's value or a stored run's model name may
hold escape sequences (``ESC ] 0 ; title BEL`` sets the window title, ``ESC ] 52`` writes the
clipboard, ``ESC [ 2 J`` clears the screen), carriage returns that overwrite a line, or Unicode
direction overrides that reorder it. ``printable`` writes each such character as its Python
escape (``\\x1b``, ``\\r``, ``\\u202e``), so it shows as text, wherever data becomes display text:
the terminal, the one-line errors on stderr, report.html.
"""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL; Unicode line separators and direction marks/overrides/isolates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    return ascii(match.group())[1:-1]  # "\x1b" -> "\\x1b", "\n" -> "\\n", "\u202e" -> "\\u202e"


def printable(text: str, *, lines: bool = False) -> str:
    """``text`` with every control character written as its escape (``\\x1b``), so it shows as text.

    With ``lines``, line breaks and tabs stay as they are (a multi-line block such as a
    configuration shown in a ``<pre>``); otherwise they too are escaped: one value, one line.
    """
    return (_CONTROL_BUT_LINES if lines else _CONTROL).sub(_escaped, text)
