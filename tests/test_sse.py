"""Tests for perfbench.engine.sse: every WHATWG rule we rely on, and chunking independence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from perfbench.engine.sse import SSEEvent, SSEParser


def parse(*chunks: bytes) -> list[SSEEvent]:
    """Feed chunks in order, then flush; all events."""
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.flush()


def reference_parse(stream: bytes) -> list[SSEEvent]:
    """A slow, obviously-correct parser of a whole stream, written from the WHATWG text."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    lines, line, i = [], bytearray(), 0
    while i < len(stream):
        c = stream[i : i + 1]
        if c == b"\r":
            lines.append(bytes(line))
            line = bytearray()
            if stream[i + 1 : i + 2] == b"\n":
                i += 1
        elif c == b"\n":
            lines.append(bytes(line))
            line = bytearray()
        else:
            line += c
        i += 1
    if line:
        lines.append(bytes(line))
    lines.append(b"")  # flush: the pending event is kept
    events, data, event = [], None, None
    for line in lines:
        if line == b"":
            if data is not None:
                events.append(SSEEvent(data, event))
            data, event = None, None
            continue
        if line.startswith(b":"):
            continue
        if b":" in line:
            name, value = line.split(b":", 1)
            if value.startswith(b" "):
                value = value[1:]
        else:
            name, value = line, b""
        if name == b"data":
            data = value if data is None else data + b"\n" + value
        elif name == b"event":
            event = value.decode("utf-8", "replace") or None
    return events


# --- one test per rule -------------------------------------------------------------------


def test_common_case_one_event_per_chunk():
    parser = SSEParser()
    assert parser.feed(b'data: {"a": 1}\n\n') == [SSEEvent(b'{"a": 1}', None)]
    assert parser.feed(b'data: {"b": 2}\n\n') == [SSEEvent(b'{"b": 2}', None)]
    assert parser.flush() == []


def test_several_events_in_one_chunk():
    assert SSEParser().feed(b"data: 1\n\ndata: 2\n\ndata: 3\n\n") == [
        SSEEvent(b"1", None),
        SSEEvent(b"2", None),
        SSEEvent(b"3", None),
    ]


def test_event_is_returned_by_the_chunk_that_completes_it():
    parser = SSEParser()
    assert parser.feed(b"data: x") == []
    assert parser.feed(b"yz\n") == []  # line complete, event not yet
    assert parser.feed(b"\n") == [SSEEvent(b"xyz", None)]


def test_line_endings_lf_crlf_cr():
    expected = [SSEEvent(b"a", None), SSEEvent(b"b", None)]
    assert parse(b"data: a\n\ndata: b\n\n") == expected
    assert parse(b"data: a\r\n\r\ndata: b\r\n\r\n") == expected
    assert parse(b"data: a\r\rdata: b\r\r") == expected
    assert parse(b"data: a\r\n\rdata: b\n\r\n") == expected  # mixed


def test_cr_at_chunk_end_dispatches_at_once_and_its_lf_is_not_a_blank_line():
    parser = SSEParser()
    assert parser.feed(b"data: a\r\n\r") == [SSEEvent(b"a", None)]  # no waiting for the "\n"
    # The "\n" completing "\r\n" must not count as a second (blank) line.
    assert parser.feed(b"\ndata: b\r") == []
    assert parser.feed(b"\ndata: c\r\n\r\n") == [SSEEvent(b"b\nc", None)]


def test_cr_split_from_lf_between_lines():
    assert parse(b"data: a\r", b"\n", b"data: b\r", b"\n\r", b"\n") == [SSEEvent(b"a\nb", None)]


def test_comments_are_ignored():
    assert parse(b": ping\n\n:\n\ndata: x\n: keep-alive\n\n") == [SSEEvent(b"x", None)]


def test_one_optional_space_after_colon_is_removed():
    assert parse(b"data:x\n\n") == [SSEEvent(b"x", None)]
    assert parse(b"data: x\n\n") == [SSEEvent(b"x", None)]
    assert parse(b"data:  x\n\n") == [SSEEvent(b" x", None)]
    assert parse(b"data:\tx\n\n") == [SSEEvent(b"\tx", None)]


def test_data_lines_are_joined_with_lf():
    assert parse(b"data: a\ndata: b\ndata:\n\n") == [SSEEvent(b"a\nb\n", None)]


def test_event_type():
    assert parse(b"event: error\ndata: {}\n\n") == [SSEEvent(b"{}", "error")]
    assert parse(b"event:\ndata: {}\n\n") == [SSEEvent(b"{}", None)]  # empty type = default


def test_event_type_does_not_leak_into_the_next_event():
    assert parse(b"event: a\ndata: 1\n\ndata: 2\n\n") == [SSEEvent(b"1", "a"), SSEEvent(b"2", None)]
    # An event without data is not dispatched, but its type is still reset.
    assert parse(b"event: a\n\ndata: 2\n\n") == [SSEEvent(b"2", None)]


def test_id_retry_and_unknown_fields_are_ignored():
    assert parse(b"id: 7\nretry: 1000\nfoo: bar\ndata: x\n\n") == [SSEEvent(b"x", None)]


def test_events_without_data_are_not_dispatched():
    assert parse(b"\n\n\n") == []
    assert parse(b"id: 1\n\nevent: x\n\nretry: 5\n\n") == []


def test_empty_data_field_is_dispatched():
    assert parse(b"data:\n\n") == [SSEEvent(b"", None)]


def test_line_without_colon_is_a_field_with_empty_value():
    assert parse(b"data\n\n") == [SSEEvent(b"", None)]
    assert parse(b"data\ndata\n\n") == [SSEEvent(b"\n", None)]
    assert parse(b"event\ndata: x\n\n") == [SSEEvent(b"x", None)]


def test_field_names_are_case_sensitive():
    assert parse(b"Data: x\n\n") == []


def test_done_is_just_data():
    assert parse(b"data: [DONE]\n\n") == [SSEEvent(b"[DONE]", None)]


def test_flush_keeps_the_pending_event_and_an_unterminated_last_line():
    parser = SSEParser()
    assert parser.feed(b"data: a\n") == []
    assert parser.flush() == [SSEEvent(b"a", None)]
    assert parse(b"data: a\n\ndata: [DONE]") == [SSEEvent(b"a", None), SSEEvent(b"[DONE]", None)]
    assert parse(b"data: a\n\n: ping") == [SSEEvent(b"a", None)]


def test_flush_resets_the_parser():
    parser = SSEParser()
    parser.feed(b"event: x\ndata: a\r")
    assert parser.flush() == [SSEEvent(b"a", "x")]
    assert parser.feed(b"\ndata: b\n\n") == [SSEEvent(b"b", None)]  # no stale "\r" state


def test_utf8_bom_at_stream_start_is_skipped_even_when_split():
    assert parse(b"\xef\xbb\xbfdata: a\n\n") == [SSEEvent(b"a", None)]
    assert parse(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == [SSEEvent(b"a", None)]
    # Only at the start: later it is part of the field name, which is then unknown.
    assert parse(b"data: a\n\n\xef\xbb\xbfdata: b\n\n") == [SSEEvent(b"a", None)]


def test_data_stays_bytes_including_non_ascii_split_inside_a_character():
    text = 'data: {"c": "héllo ✓"}\n\n'.encode()
    cut = text.index("✓".encode()) + 1
    assert parse(text[:cut], text[cut:]) == [SSEEvent('{"c": "héllo ✓"}'.encode(), None)]


def test_empty_chunks_are_harmless():
    assert parse(b"", b"data: a", b"", b"\n", b"", b"\n", b"") == [SSEEvent(b"a", None)]


# --- properties ----------------------------------------------------------------------------

_line = st.one_of(
    st.just(b""),
    st.builds(lambda v: b"data: " + v, st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))),
    st.builds(lambda v: b"data:" + v, st.sampled_from([b"", b"x", b"  y", b"[DONE]", b'{"a":1}'])),
    st.sampled_from([b"data", b": ping", b":", b"event: error", b"event:", b"id: 3", b"retry: 10", b"foo", b"x:y"]),
)
_ending = st.sampled_from([b"\n", b"\r\n", b"\r"])
_stream = st.lists(st.tuples(_line, _ending), max_size=30).map(lambda ls: b"".join(l + e for l, e in ls))


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]


@settings(max_examples=400, deadline=None)
@given(stream=_stream, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_chunking_gives_the_reference_events(stream, cuts):
    expected = reference_parse(stream)
    assert parse(stream) == expected
    assert parse(*_split(stream, cuts)) == expected


@settings(max_examples=150, deadline=None)
@given(stream=_stream)
def test_one_byte_at_a_time_gives_the_same_events(stream):
    assert parse(*(stream[i : i + 1] for i in range(len(stream)))) == parse(stream)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(_line, max_size=30), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_crlf_lf_and_cr_streams_give_the_same_events(lines, cuts):
    lf = b"".join(line + b"\n" for line in lines)
    crlf = b"".join(line + b"\r\n" for line in lines)
    cr = b"".join(line + b"\r" for line in lines)
    expected = parse(lf)
    assert parse(*_split(crlf, cuts)) == expected
    assert parse(*_split(cr, cuts)) == expected


@settings(max_examples=100, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b), max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_openai_style_streams_round_trip(payloads, cuts):
    stream = b"".join(b"data: " + p + b"\r\n\r\n" for p in payloads) + b"data: [DONE]\r\n\r\n"
    events = parse(*_split(stream, cuts))
    assert events == [SSEEvent(p, None) for p in payloads] + [SSEEvent(b"[DONE]", None)]


# --- parse_recorded: the whole-stream path the engine uses -----------------------------------

from perfbench.engine.sse import parse_recorded  # noqa: E402


def _incremental(chunks: list[bytes]) -> tuple[list[bytes], list[str | None], list[int]]:
    parser = SSEParser()
    events, completed_by = [], []
    for index, chunk in enumerate(chunks):
        new = parser.feed(chunk)
        events += new
        completed_by += [index] * len(new)
    tail = parser.flush()
    events += tail
    return [e.data for e in events], [e.event for e in events], completed_by + [len(chunks) - 1] * len(tail)


def _same(recorded, expected) -> bool:
    data, types, completed_by = recorded
    return (data, types if types is not None else [None] * len(data), completed_by) == expected


_simple_piece = st.one_of(
    st.builds(lambda v: b"data: " + v, st.binary(max_size=30).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))),
    st.builds(lambda v: b"data:" + v, st.sampled_from([b"", b"x", b" y", b'{"a":1}'])),
    st.sampled_from([b": ping", b":", b"event: error\ndata: {}", b"data: a\ndata: b", b"", b"id: 1"]),
)


@settings(max_examples=400, deadline=None)
@given(
    pieces=st.lists(_simple_piece, max_size=20),
    tail=st.sampled_from([b"", b"data: unterminated", b"data: x\n", b"\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_parse_recorded_equals_feeding_chunk_by_chunk(pieces, tail, cuts):
    stream = b"".join(p + b"\n\n" for p in pieces) + tail
    chunks = _split(stream, cuts)
    assert _same(parse_recorded(chunks), _incremental(chunks))


@settings(max_examples=200, deadline=None)
@given(stream=_stream, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_parse_recorded_on_any_stream(stream, cuts):
    chunks = _split(stream, cuts)
    assert _same(parse_recorded(chunks), _incremental(chunks))


def test_parse_recorded_names_the_completing_chunk():
    chunks = [b"data: a\n", b"\ndata: b\n\nda", b"ta: c\n\n"]
    data, _, completed_by = parse_recorded(chunks)
    assert data == [b"a", b"b", b"c"] and completed_by == [1, 1, 2]


def test_parse_recorded_common_shape_stamps_each_event_by_the_read_holding_its_blank_line():
    # Reads cut inside a payload, between an event's line end and its blank line, and right after it.
    chunks = [b"data: {\"a\"", b":1}\n", b"\ndata: 2\n\ndata: 3\n", b"\n", b"data: 4\n\n"]
    recorded = parse_recorded(chunks)
    assert recorded.types is None  # the whole-stream path was taken
    assert recorded.data == [b'{"a":1}', b"2", b"3", b"4"] and recorded.completed_by == [2, 2, 3, 4]
    assert _same(recorded, _incremental(chunks))
