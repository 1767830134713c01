"""Data on the terminal: what a server, a file or the history store says, as rich ``Text``.

rich reads a plain string as markup (``[/bold]`` raises MarkupError, ``[red]`` colours the rest)
and ``:name:`` as an emoji; a ``Text`` is neither. Every value that came from outside perfbench,
and every line quoting one, goes to a rich console or table through ``data_text``, which also
escapes its control characters (``perfbench.core.printable``).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from perfbench.core.printable import printable


def data_text(value: Any, style: str = "") -> Text:
    """``value`` (or a line quoting it) as rich ``Text`` in ``style``: control characters escaped, no markup read."""
    return Text(printable(str(value)), style=style)
