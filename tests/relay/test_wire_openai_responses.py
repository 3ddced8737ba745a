"""OpenAI Responses on the wire: usage from the terminal event, a cut stream ended by us."""

from __future__ import annotations

import pytest
from wire_samples import RESPONSES_STREAM, RESPONSES_STREAM_CUT
from wire_support import client_events, relay_stream

from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import counting
from quotaledger.wire.errors import InvalidRequest
from quotaledger.wire.openai_responses import (
    ResponsesStream,
    parse_usage,
    prepare_responses,
    response_usage,
)

REQUEST = {"model": "gpt-5-codex", "input": "Write a haiku", "stream": True}


def test_the_relays_cap_goes_as_max_output_tokens_when_the_client_set_none() -> None:
    prepared = prepare_responses(REQUEST, default_max_tokens=4096, upstream_model="gpt-5")
    assert prepared.body["max_output_tokens"] == 4096 and prepared.body["model"] == "gpt-5"
    assert prepared.stream and prepared.cap_set_by_relay
    own = prepare_responses({**REQUEST, "max_output_tokens": 64}, default_max_tokens=4096)
    assert own.body["max_output_tokens"] == 64 and own.reserved_output_tokens == 64


def test_a_bad_input_is_named() -> None:
    with pytest.raises(InvalidRequest) as raised:
        prepare_responses({"model": "m", "input": 3}, default_max_tokens=1)
    assert raised.value.param == "input"


def test_input_tokens_include_the_cached_ones() -> None:
    usage = parse_usage(
        {
            "input_tokens": 3000,
            "input_tokens_details": {"cached_tokens": 2048},
            "output_tokens": 300,
            "output_tokens_details": {"reasoning_tokens": 256},
            "total_tokens": 3300,
        }
    )
    assert usage == TokenUsage(input=952, cache_read=2048, output=300, reasoning=256)


def test_cached_beyond_input_is_not_believed() -> None:
    assert (
        parse_usage(
            {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 6}, "output_tokens": 1}
        )
        is None
    )


def test_a_streams_usage_comes_from_its_terminal_event_and_passes_unchanged() -> None:
    tracker = ResponsesStream(prompt_tokens=9)
    assert relay_stream(tracker, RESPONSES_STREAM) == RESPONSES_STREAM
    assert tracker.terminal == "response.completed"
    assert tracker.usage() == TokenUsage(input=952, cache_read=2048, output=300, reasoning=256)


@pytest.mark.parametrize("status", ["incomplete", "failed"])
def test_incomplete_and_failed_are_terminal_too(status: str) -> None:
    stream = RESPONSES_STREAM.replace(b"response.completed", b"response." + status.encode())
    tracker = ResponsesStream(prompt_tokens=9)
    assert relay_stream(tracker, stream) == stream
    assert tracker.usage().output == 300


def test_a_stream_without_a_terminal_event_is_ended_with_our_response_failed() -> None:
    tracker = ResponsesStream(prompt_tokens=40)
    events = client_events(relay_stream(tracker, RESPONSES_STREAM_CUT))
    final = events[-1]
    assert final["type"] == "response.failed" and final["sequence_number"] == 9
    response = final["response"]
    assert response["id"] == "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654"
    assert response["status"] == "failed" and response["error"]["code"] == "server_error"
    assert response["output"][0]["content"][0]["text"] == "Hi there!"
    delivered = counting.count_text("Hi there!")
    assert (
        response["usage"]["input_tokens"] == 40 and response["usage"]["output_tokens"] == delivered
    )
    assert tracker.usage() == counting.local_usage(40, ["Hi", " there!"])
    assert tracker.usage().source == UsageSource.LOCAL and tracker.finish() == b""


def test_our_terminal_event_can_say_incomplete() -> None:
    tracker = ResponsesStream(prompt_tokens=1)
    relay_stream(tracker, RESPONSES_STREAM_CUT, finish=False)
    (event,) = client_events(tracker.fail("cut", status="incomplete"))
    assert event["type"] == "response.incomplete"
    assert event["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_a_stream_cut_before_response_created_still_gets_a_well_formed_terminal_event() -> None:
    tracker = ResponsesStream(prompt_tokens=5)
    (event,) = client_events(tracker.finish())
    assert event["sequence_number"] == 0 and event["response"]["id"].startswith("resp_")
    assert event["response"]["object"] == "response" and event["response"]["output"] == []


def test_a_non_stream_response_without_usage_is_counted_locally() -> None:
    answer = {
        "object": "response",
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}]},
            {"type": "function_call", "name": "shell", "arguments": '{"cmd":"ls"}', "call_id": "c"},
        ],
    }
    usage = response_usage(answer, prompt_tokens=17)
    assert usage == counting.local_usage(17, ["Think.", "shell", '{"cmd":"ls"}'], ["Think."])
