"""Anthropic Messages on the wire: cache classes, cumulative stream usage, cut streams."""

from __future__ import annotations

import orjson
import pytest
from wire_samples import (
    ANTHROPIC_ERROR_EVENT,
    ANTHROPIC_MESSAGE,
    ANTHROPIC_STREAM,
    ANTHROPIC_TOOL_AND_THINKING_STREAM,
    anthropic_stream,
)
from wire_support import client_events, relay_stream

from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import counting
from quotaledger.wire.anthropic_messages import (
    MessagesStream,
    count_tokens_answer,
    message_usage,
    parse_usage,
    prepare_messages,
)
from quotaledger.wire.errors import InvalidRequest

REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Hi"}],
}


def test_only_the_model_changes_on_the_way_upstream() -> None:
    prepared = prepare_messages(
        {**REQUEST, "stream": True}, upstream_model="claude-sonnet-4-5-20250929"
    )
    assert prepared.body == {**REQUEST, "stream": True, "model": "claude-sonnet-4-5-20250929"}
    assert prepared.stream and prepared.reserved_output_tokens == 1024


def test_max_tokens_is_required() -> None:
    with pytest.raises(InvalidRequest) as raised:
        prepare_messages({"model": "m", "messages": []})
    assert raised.value.param == "max_tokens"


def test_input_tokens_exclude_cache_reads_and_writes_which_split_by_ttl() -> None:
    usage = parse_usage(ANTHROPIC_MESSAGE["usage"])
    assert usage == TokenUsage(
        input=2095, cache_read=100, cache_write_5m=51, cache_write_1h=2000, output=503
    )
    assert usage.prompt_tokens == 2095 + 100 + 2051


def test_cache_writes_without_the_split_are_five_minute_writes() -> None:
    usage = parse_usage(
        {"input_tokens": 10, "cache_creation_input_tokens": 300, "output_tokens": 5}
    )
    assert usage is not None and (usage.cache_write_5m, usage.cache_write_1h) == (300, 0)


def test_a_split_short_of_the_total_leaves_the_rest_to_five_minutes() -> None:
    usage = parse_usage(
        {
            "input_tokens": 1,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_1h_input_tokens": 100},
            "output_tokens": 5,
        }
    )
    assert usage is not None and (usage.cache_write_5m, usage.cache_write_1h) == (200, 100)


def test_invalid_counts_make_no_usage() -> None:
    assert parse_usage({"input_tokens": -1, "output_tokens": -1}) is None
    assert parse_usage({"input_tokens": 3}) is None


def test_a_streams_usage_is_overwritten_by_message_delta_never_added() -> None:
    tracker = MessagesStream(prompt_tokens=7)
    sent = relay_stream(tracker, ANTHROPIC_STREAM)
    assert sent == ANTHROPIC_STREAM  # nothing rewritten, nothing added
    assert tracker.usage() == TokenUsage(
        input=25, cache_read=30000, cache_write_5m=1500, cache_write_1h=500, output=15
    )


def test_zero_input_in_message_start_settles_on_the_value_in_message_delta() -> None:
    start = '{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
    start += '"output_tokens":1}'
    delta = '{"input_tokens":4200,"cache_creation_input_tokens":0,"cache_read_input_tokens":900,'
    delta += '"output_tokens":31}'
    tracker = MessagesStream(prompt_tokens=7)
    relay_stream(tracker, anthropic_stream(start, delta))
    assert tracker.usage() == TokenUsage(input=4200, cache_read=900, output=31)


def test_a_zero_in_message_delta_does_not_erase_message_starts_value() -> None:
    start = '{"input_tokens":50,"cache_read_input_tokens":800,"output_tokens":1}'
    delta = '{"input_tokens":0,"cache_read_input_tokens":0,"output_tokens":12}'
    tracker = MessagesStream(prompt_tokens=7)
    relay_stream(tracker, anthropic_stream(start, delta))
    assert tracker.usage() == TokenUsage(input=50, cache_read=800, output=12)


def test_thinking_and_tool_input_are_delivered_output_with_thinking_tokens_noted() -> None:
    tracker = MessagesStream(prompt_tokens=0)
    relay_stream(tracker, ANTHROPIC_TOOL_AND_THINKING_STREAM)
    assert tracker.usage() == TokenUsage(input=472, output=89, reasoning=40)
    relay_stream(cut := MessagesStream(prompt_tokens=0), ANTHROPIC_TOOL_AND_THINKING_STREAM[:-120])
    text = 'I need the weather.get_weather{"location": "San Francisco, CA"}'
    assert cut.usage().output == counting.count_text(text)


def test_a_stream_cut_after_content_is_settled_on_what_was_delivered_never_zero() -> None:
    start = '{"input_tokens":0,"output_tokens":1}'
    stream = anthropic_stream(start, '{"output_tokens":9}', text="Hello there, friend")
    cut = stream[: stream.index(b"event: content_block_stop")]
    tracker = MessagesStream(prompt_tokens=333)
    events = client_events(relay_stream(tracker, cut))
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "api_error"
    usage = tracker.usage()
    assert usage.input == 333 and usage.output == counting.count_text("Hello there, friend")
    assert usage.source == UsageSource.LOCAL


def test_an_upstream_error_event_passes_through_and_needs_nothing_after() -> None:
    head = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: content_block_stop")]
    tracker = MessagesStream(prompt_tokens=1)
    sent = relay_stream(tracker, head + ANTHROPIC_ERROR_EVENT)
    assert sent.endswith(ANTHROPIC_ERROR_EVENT)
    assert tracker.upstream_error == {"type": "overloaded_error", "message": "Overloaded"}
    usage = tracker.usage()  # cut before message_delta: the input reported, the output delivered
    assert (usage.input, usage.cache_read, usage.output) == (
        25,
        30000,
        counting.count_text("Hello!"),
    )


def test_a_message_without_usage_is_counted_locally() -> None:
    answer = {k: v for k, v in ANTHROPIC_MESSAGE.items() if k != "usage"}
    usage = message_usage(answer, prompt_tokens=21)
    assert usage == counting.local_usage(21, ["Hi! My name is Claude."])
    assert message_usage(ANTHROPIC_MESSAGE, prompt_tokens=21).source == UsageSource.UPSTREAM


def test_count_tokens_is_answered_locally_in_anthropics_shape() -> None:
    answer = orjson.loads(count_tokens_answer(REQUEST))
    assert answer == {"input_tokens": counting.messages_prompt_tokens(REQUEST)}
