"""The SSE parser: events whole however the bytes are cut, and each event's raw bytes kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from wire_samples import ANTHROPIC_STREAM, OPENAI_CHAT_STREAM, RESPONSES_STREAM

from quotaledger.wire.sse import SSEEvent, SSEParser


def _parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_events_keep_their_exact_raw_bytes() -> None:
    events = _parse(ANTHROPIC_STREAM)
    assert b"".join(event.raw for event in events) == ANTHROPIC_STREAM
    assert [e.event for e in events][:3] == ["message_start", "content_block_start", "ping"]
    assert events[2].json() == {"type": "ping"}


@given(st.lists(st.integers(min_value=0, max_value=len(RESPONSES_STREAM)), max_size=12))
def test_an_event_split_across_chunks_anywhere_comes_out_whole(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [
        RESPONSES_STREAM[a:b]
        for a, b in zip([0, *points], [*points, len(RESPONSES_STREAM)], strict=True)
    ]
    assert _parse(*chunks) == _parse(RESPONSES_STREAM)


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    chunks = [OPENAI_CHAT_STREAM[i : i + 1] for i in range(len(OPENAI_CHAT_STREAM))]
    events = _parse(*chunks)
    assert events == _parse(OPENAI_CHAT_STREAM)
    assert events[-1].data == "[DONE]" and events[-1].event is None


def test_crlf_and_lone_cr_line_endings_are_lines_too() -> None:
    crlf = b"event: a\r\ndata: 1\r\n\r\n"
    cr = b"event: b\rdata: 2\r\r"
    events = _parse(crlf + cr, b"data: 3\n\n")  # a final CR waits: it may be half a CRLF
    assert [(e.event, e.data) for e in events] == [("a", "1"), ("b", "2"), (None, "3")]
    assert events[0].raw == crlf and events[1].raw == cr


def test_a_crlf_cut_between_its_cr_and_lf_is_one_line_end() -> None:
    events = _parse(b"data: x\r", b"\n\r", b"\ndata: y\r\n\r\n")
    assert [e.data for e in events] == ["x", "y"]


def test_multi_line_data_is_joined_with_newlines() -> None:
    (event,) = _parse(b'data: {"a":\ndata: 1}\n\n')
    assert event.data == '{"a":\n1}' and event.json() == {"a": 1}


def test_comments_are_ignored_inside_an_event_and_kept_alone_as_keep_alives() -> None:
    events = _parse(b": OPENROUTER PROCESSING\n\n", b": note\ndata: 1\n\n")
    assert not events[0].has_data and events[0].raw == b": OPENROUTER PROCESSING\n\n"
    assert events[1].has_data and events[1].data == "1"


def test_one_space_after_the_colon_is_dropped_and_no_more() -> None:
    (event,) = _parse(b"data:  two spaces\nid: 7\nretry: 1500\n\n")
    assert event.data == " two spaces" and event.id == "7" and event.retry == 1500


def test_an_unfinished_event_is_left_pending() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: 1\n\ndata: 2\n") != []
    assert parser.pending == b"data: 2\n"


def test_a_leading_byte_order_mark_is_dropped() -> None:
    (event,) = _parse(b"\xef\xbb\xbfdata: 1\n\n")
    assert event.data == "1"


def test_stray_blank_lines_make_no_event() -> None:
    assert [e.data for e in _parse(b"\n\ndata: 1\n\n\n\n")] == ["1"]


CRLF_STREAM = ANTHROPIC_STREAM.replace(b"\n", b"\r\n")


@given(st.lists(st.integers(min_value=0, max_value=len(CRLF_STREAM)), max_size=12))
def test_a_crlf_stream_cut_anywhere_gives_the_events_of_the_lf_stream(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    bounds = zip([0, *points], [*points, len(CRLF_STREAM)], strict=True)
    events = _parse(*(CRLF_STREAM[a:b] for a, b in bounds))
    assert [(e.event, e.data) for e in events] == [
        (e.event, e.data) for e in _parse(ANTHROPIC_STREAM)
    ]
    assert b"".join(e.raw for e in events) == CRLF_STREAM


_LINE = st.one_of(
    st.builds(lambda v: b"data: " + v, st.sampled_from([b"", b"{}", b"x: y", b"[DONE]", b" a"])),
    st.builds(lambda v: b"data:" + v, st.sampled_from([b"", b"z", b" two  spaces"])),
    st.builds(lambda v: b"event: " + v, st.sampled_from([b"ping", b"a:b", b""])),
    st.sampled_from([b"id: 7", b"retry: 30", b": comment", b"other: field"]),
)


@given(st.lists(st.lists(_LINE, min_size=1, max_size=4), min_size=1, max_size=6))
def test_any_block_reads_the_same_through_the_lf_shortcuts_and_the_line_parser(
    blocks: list[list[bytes]],
) -> None:
    # LF-only input takes the block shortcuts (one `data:` line, or `event:` then `data:`);
    # the same blocks with CRLF take the line-by-line parser: both must agree on every field.
    lf = b"".join(b"\n".join(lines) + b"\n\n" for lines in blocks)

    def fields(events: list[SSEEvent]) -> list[tuple[object, ...]]:
        return [(e.event, e.data, e.has_data, e.id, e.retry) for e in events]

    assert fields(_parse(lf)) == fields(_parse(lf.replace(b"\n", b"\r\n")))
