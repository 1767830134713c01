"""The mock server's configuration and its deterministic fault schedule.

Faults hit exact fractions, decided by arrival order alone (no randomness), so a test that sends
100 requests with ``cut_fraction=0.1`` knows that exactly 10 were cut and which ones.

One kind alone: request ``i`` (0-based) gets the fault when ``floor((i+1)*f) > floor(i*f)``
(for ``f = 0.1``: requests 9, 19, 29, ...).

Several kinds at once must never hit the same request. A fixed phase per kind cannot promise that
for arbitrary fractions (two Beatty sequences with different rates collide, e.g. 0.1 and 0.2 with
phase 0.1 both pick request 9), so the kinds are drawn in turn, each on what the previous ones
left: kind 1 applies the rule above to the arrival index ``i``; kind 2 applies it, with fraction
``f2 / (1 - f1)``, to ``j`` = the index of the request among those kind 1 did not take
(``j = i - floor(i*f1)``); kind 3 uses ``f3 / (1 - f1 - f2)`` on what kinds 1 and 2 left, and so
on, in the order of ``FAULT_KINDS``. No two kinds can collide, a kind set alone follows exactly
the rule above, and over ``N`` requests kind ``k`` hits ``floor`` of its share of what was left,
which is exactly ``N*f_k`` whenever the ``N*f`` are whole numbers (100 x 0.1 -> 10 of each).
Fractions are read as the decimals they print as (``Fraction(repr(f))``), so 0.57 is 57/100 and
float rounding cannot move a fault.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from perfbench.core.errors import ConfigError

# Fault kinds, in the order they are drawn (see module docstring).
FAULT_HTTP_ERROR = "http_error"  # HTTP 500 with a JSON error body, at once
FAULT_BAD_BODY = "bad_body"  # HTTP 200 with an HTML body instead of SSE, at once
FAULT_CUT = "cut"  # TCP connection aborted halfway through the output
FAULT_ERROR_EVENT = "error_event"  # an error event halfway, then the stream ends
FAULT_STALL = "stall"  # halfway, nothing for stall_s, then the rest
FAULT_KINDS = (FAULT_HTTP_ERROR, FAULT_BAD_BODY, FAULT_CUT, FAULT_ERROR_EVENT, FAULT_STALL)

USAGE_PLACEMENTS = ("last", "separate", "none")
DEFAULT_OUTPUT_TOKENS = 128  # when neither the config nor the request sets a length


@dataclass(frozen=True, slots=True)
class MockConfig:
    """How the mock server behaves. Validated on construction (ConfigError)."""

    ttft_ms: float = 50.0  # admission -> first output package
    itl_ms: float = 10.0  # per output token: a package of k tokens follows the previous one by k*itl_ms
    output_tokens: int | None = None  # fixed output length; None -> request's max_(completion_)tokens, else 128
    tokens_per_package: int = 1  # tokens per SSE package (the last one may carry fewer)
    role_chunk: bool = True  # chat: a role-only first chunk at once (not output)
    reasoning_tokens: int = 0  # chat, responses: the first N tokens go out as reasoning (reasoning_content, reasoning_text)
    send_done: bool = True  # end the stream with `data: [DONE]`
    usage: str = "last"  # "last" (in the finish chunk), "separate" (final chunk, empty choices), "none"
    crlf: bool = False  # \r\n line endings
    ping_interval_ms: float = 0  # `: ping` comment lines this often between packages (0 = never)
    capacity: int | None = None  # at most K requests generate at once; the rest wait in FIFO order
    http_error_fraction: float = 0  # answer HTTP 500 with a JSON error body
    cut_fraction: float = 0  # abort the TCP connection halfway through the output
    error_event_fraction: float = 0  # halfway, an error event, then the stream ends
    stall_fraction: float = 0  # halfway, stop sending for stall_s, then continue
    stall_s: float = 30.0  # length of a stall
    bad_body_fraction: float = 0  # answer 200 with an HTML body instead of SSE
    seed: int = 0  # varies ids and token words; faults do not depend on it
    model: str = "mock"  # the model name served (/v1/models, metrics label); chunks echo the request's
    embedding_dim: int = 64  # floats per /v1/embeddings vector (a request's `dimensions` may ask for fewer)

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "itl_ms", "ping_interval_ms", "stall_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"mock {name} must be a finite number >= 0, got {value!r}")
        _check_int(self.output_tokens, "output_tokens", 0, allow_none=True)
        _check_int(self.tokens_per_package, "tokens_per_package", 1)
        _check_int(self.reasoning_tokens, "reasoning_tokens", 0)
        _check_int(self.capacity, "capacity", 1, allow_none=True)
        _check_int(self.seed, "seed", 0)
        _check_int(self.embedding_dim, "embedding_dim", 1)
        if self.usage not in USAGE_PLACEMENTS:
            raise ConfigError(f"mock usage must be one of {', '.join(USAGE_PLACEMENTS)}, got {self.usage!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError("mock model must be a non-empty name")
        total = Fraction(0)
        for kind, value in zip(FAULT_KINDS, self.fault_fractions()):
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"mock {kind} fraction must be between 0 and 1, got {value!r}")
            total += _exact(value)
        if total > 1:
            raise ConfigError(f"mock fault fractions add up to {float(total):g}; make their sum at most 1")

    def fault_fractions(self) -> tuple[float, ...]:
        """The fault fractions in FAULT_KINDS order."""
        return (
            self.http_error_fraction,
            self.bad_body_fraction,
            self.cut_fraction,
            self.error_event_fraction,
            self.stall_fraction,
        )


def _check_int(value: object, name: str, minimum: int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ConfigError(f"mock {name} must be an integer{bound}, got {value!r}")


def _exact(fraction: float) -> Fraction:
    """The decimal a float prints as, exactly (0.1 -> 1/10, not 0.1000000000000000055...)."""
    return Fraction(repr(float(fraction)))


class FaultSchedule:
    """Which fault (if any) the request with a given arrival index gets; see module docstring."""

    __slots__ = ("_rates",)

    def __init__(self, config: MockConfig) -> None:
        rates: list[tuple[str, Fraction]] = []
        left = Fraction(1)  # share of requests the kinds drawn so far did not take
        for kind, value in zip(FAULT_KINDS, config.fault_fractions()):
            share = _exact(value)
            # A zero kind takes nothing, so it leaves the index unchanged; skip it.
            if share > 0:
                rates.append((kind, share / left))
            left -= share
            if left <= 0:
                break
        self._rates = tuple(rates)

    def fault_for(self, index: int) -> str | None:
        """The fault kind of the request that arrived ``index``-th (0-based), or None."""
        j = index
        for kind, rate in self._rates:
            taken_before = math.floor(j * rate)
            if math.floor((j + 1) * rate) > taken_before:
                return kind
            j -= taken_before  # index among the requests this kind left
        return None

