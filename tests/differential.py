"""Both transports on the same server must give the same records (DESIGN.md, "The transport").

``assert_same_records`` compares two runs' records field by field: status, HTTP status, error text,
token counts and their source, finish reason, packages and their token shares; times within
generous bounds (the two runs are not simultaneous). An error text is compared whole, except the
part after the first ": " of a failure the transport itself words (a cut connection, an unreadable
answer): aiohttp and llhttp name the same event differently.
"""

from __future__ import annotations

from typing import Sequence

from perfbench.results import records as R

TRANSPORTS = ("lean", "aiohttp")
_CUT_SOMEWHERE = (R.RESPONSE_TOO_LARGE, R.TIMEOUT, R.CUT_STREAM)  # failures that end a body wherever the reads were then
_TRANSPORT_WORDED = ("the server closed the connection", "cannot connect")
_UNREADABLE = ("unreadable answer", "ClientResponseError")  # odd framing, in llhttp's words or aiohttp's


def comparable_error(error: str | None) -> str | None:
    if error is not None and error.startswith(_TRANSPORT_WORDED):
        return error.split(":", 1)[0]
    if error is not None and error.startswith(_UNREADABLE):
        return "unreadable answer"
    return error


def assert_same_records(lean: Sequence[R.RequestRecord], other: Sequence[R.RequestRecord], *, time_ms: float = 250,
                        by_index: bool = True) -> None:
    """Pairs by request index; or, with ``by_index`` False (a server whose answer depends on the order
    requests arrived in, with several in flight), by what each record holds."""
    assert len(lean) == len(other)
    key = (lambda r: (r.step, r.index)) if by_index else (lambda r: (r.step, r.status, comparable_error(r.error) or "", r.output_tokens or 0))
    for a, b in zip(sorted(lean, key=key), sorted(other, key=key)):
        where = f"request {a.index}: {_short(a)} vs {_short(b)}"
        assert (a.step, a.warmup) == (b.step, b.warmup), where
        assert not by_index or a.index == b.index, where
        assert (a.status, a.http_status) == (b.status, b.http_status), where
        assert comparable_error(a.error) == comparable_error(b.error), where
        if a.status in _CUT_SOMEWHERE:
            continue  # what was read before the cut depends on how the reads fell
        assert (a.input_tokens, a.output_tokens, a.token_source, a.finish_reason) == (b.input_tokens, b.output_tokens, b.token_source, b.finish_reason), where
        assert (len(a.package_times_ns), a.package_tokens, a.request_bytes) == (len(b.package_times_ns), b.package_tokens, b.request_bytes), where
        for x, y in ((a.end_ns - a.scheduled_ns, b.end_ns - b.scheduled_ns),
                     *zip([t - a.scheduled_ns for t in a.package_times_ns], [t - b.scheduled_ns for t in b.package_times_ns])):
            assert abs(x - y) / 1e6 < time_ms, where


def _short(record: R.RequestRecord) -> str:
    return (f"(status={record.status}, http={record.http_status}, error={record.error!r}, tokens={record.output_tokens}, "
            f"packages={len(record.package_times_ns)}, finish={record.finish_reason})")
