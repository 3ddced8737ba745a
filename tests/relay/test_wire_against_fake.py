"""The trackers on real HTTP streams from the fake upstream, fault by fault."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from wire_support import client_events

from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import counting
from quotaledger.wire.anthropic_messages import MessagesStream, prepare_messages
from quotaledger.wire.openai_chat import ChatStream, prepare_chat
from quotaledger.wire.openai_responses import ResponsesStream, prepare_responses
from quotaledger.wire.sse import SSEParser

ANSWER = "Hello from the fake upstream! How can I help?"
CHAT = {"model": "fake-gpt", "messages": [{"role": "user", "content": "Hi"}], "stream": True}


def _through(tracker: Any, url: str, body: bytes, **scenario: Any) -> bytes:
    """Stream `body` to the fake upstream and pass what comes back through `tracker`."""
    parser, sent = SSEParser(), b""
    headers = {"X-Fake-Scenario": json.dumps(scenario), "Content-Type": "application/json"}
    try:
        with httpx.stream("POST", url, content=body, headers=headers) as response:
            for chunk in response.iter_raw():
                sent += b"".join(tracker.relay(event) for event in parser.feed(chunk))
    except httpx.HTTPError:
        pass  # a reset: the tracker ends the stream for the client
    return sent + tracker.finish()


def test_a_chat_stream_for_a_client_that_did_not_ask_has_no_usage_but_is_settled_on_it(
    fake_upstream: Any,
) -> None:
    prepared = prepare_chat(CHAT, default_max_tokens=100)
    tracker = ChatStream(client_wants_usage=prepared.client_wants_usage, prompt_tokens=5)
    url = fake_upstream.base_url + "/v1/chat/completions"
    events = client_events(
        _through(tracker, url, prepared.encode(), input_tokens=30, cache_read=10)
    )
    assert all(e == "[DONE]" or e["choices"] for e in events)
    assert tracker.usage() == TokenUsage(input=30, cache_read=10, output=9)
    sent = fake_upstream.upstream.requests[0].json()
    assert sent["stream_options"] == {"include_usage": True} and sent["max_tokens"] == 100


def test_a_chat_stream_with_wrong_usage_is_counted_locally_and_the_client_gets_ours(
    fake_upstream: Any,
) -> None:
    prepared = prepare_chat(
        {**CHAT, "stream_options": {"include_usage": True}}, default_max_tokens=100
    )
    tracker = ChatStream(client_wants_usage=True, prompt_tokens=5)
    url = fake_upstream.base_url + "/v1/chat/completions"
    events = client_events(_through(tracker, url, prepared.encode(), usage="wrong"))
    (usage_chunk,) = [e for e in events if e != "[DONE]" and e.get("usage")]
    output = counting.count_text(ANSWER)
    assert usage_chunk["usage"]["completion_tokens"] == output
    assert tracker.usage() == TokenUsage(input=5, output=output, source=UsageSource.LOCAL)


def test_a_chat_stream_reset_after_content_ends_with_an_error_and_counts_what_was_sent(
    fake_upstream: Any,
) -> None:
    tracker = ChatStream(client_wants_usage=False, prompt_tokens=5)
    url = fake_upstream.base_url + "/v1/chat/completions"
    events = client_events(_through(tracker, url, json.dumps(CHAT).encode(), reset_after=4))
    assert events[-2]["error"]["code"] == "upstream_error" and events[-1] == "[DONE]"
    assert tracker.usage().output == counting.count_text("Hello from the ")


@pytest.mark.parametrize("zero_in_start", [False, True])
def test_a_messages_stream_is_settled_on_its_cumulative_usage(
    fake_upstream: Any, zero_in_start: bool
) -> None:
    body = {
        "model": "claude-fake",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    prepared = prepare_messages({**body, "stream": True})
    tracker = MessagesStream(prompt_tokens=3)
    scenario = {"input_tokens": 12, "cache_read": 900, "cache_write_5m": 40, "cache_write_1h": 60}
    url = fake_upstream.base_url + "/v1/messages"
    _through(tracker, url, prepared.encode(), zero_input_in_start=zero_in_start, **scenario)
    expected_1h = 0 if zero_in_start else 60  # message_delta carries no 5m/1h split
    expected = TokenUsage(
        input=12,
        cache_read=900,
        cache_write_5m=100 - expected_1h,
        cache_write_1h=expected_1h,
        output=9,
    )
    assert tracker.usage() == expected


def test_a_responses_stream_without_its_terminal_event_gets_ours(fake_upstream: Any) -> None:
    prepared = prepare_responses(
        {"model": "fake-gpt", "input": "Hi", "stream": True}, default_max_tokens=100
    )
    tracker = ResponsesStream(prompt_tokens=8)
    url = fake_upstream.base_url + "/v1/responses"
    events = client_events(_through(tracker, url, prepared.encode(), no_terminal=True))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["sequence_number"] == events[-2]["sequence_number"] + 1
    assert events[-1]["response"]["usage"]["output_tokens"] == counting.count_text(ANSWER)
    assert tracker.usage().source == UsageSource.LOCAL
