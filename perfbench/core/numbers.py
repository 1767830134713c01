"""How perfbench prints a measured number, wherever it is shown: the terminal, report.html,
``perfbench compare``'s table, JUnit messages and the verdict's sentences.

The rule: significant digits by magnitude, enough to read a change of a tenth of a percent and
never a float's tail.

    |x| >= 1000         whole, thousands grouped        1234.567 -> ``1,235``
    100 <= |x| < 1000   one decimal                     123.456  -> ``123.5``
    1 <= |x| < 100      two decimals                    12.3456  -> ``12.35``
    0 < |x| < 1         three significant digits        0.012345 -> ``0.0123``
    0                   ``0``

A whole number (``int``: a count) prints whole, thousands grouped (``12,345``); no value (None,
NaN) prints ``-``. Limits the user gave (``--slo ttft_p99=500``) and loads are printed as given
(``:g``), not through here: they were not measured.
"""

from __future__ import annotations

import math
from typing import Any

NO_VALUE = "-"


def format_number(value: Any, unit: str = "") -> str:
    """``value`` by the rule above, followed by `` unit`` when given (``12.35 ms``); ``-`` for no value."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return NO_VALUE if value is None or isinstance(value, bool) else str(value)
    if isinstance(value, float) and math.isnan(value):
        return NO_VALUE
    text = _digits(value)
    return f"{text} {unit}" if unit else text


def _digits(value: int | float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    size = abs(value)
    # By the size it has once rounded: 999.96 is "1,000", not "1000.0".
    if round(size) >= 1000:
        return f"{value:,.0f}"
    if round(size, 1) >= 100:
        return f"{value:.1f}"
    if round(size, 2) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
