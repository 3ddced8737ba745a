"""OpenAI chat on the wire: the body sent upstream, usage, and what a client sees of a stream."""

from __future__ import annotations

import orjson
import pytest
from wire_samples import (
    OPENAI_CHAT_COMPLETION,
    OPENAI_CHAT_STREAM,
    OPENAI_CHAT_STREAM_NO_USAGE,
    OPENAI_CHAT_TOOL_STREAM,
)
from wire_support import client_events, relay_stream

from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import counting
from quotaledger.wire.errors import InvalidRequest
from quotaledger.wire.openai_chat import (
    ChatStream,
    completion_usage,
    embeddings_usage,
    parse_usage,
    prepare_chat,
)

REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


def test_a_stream_without_a_cap_gets_the_relays_default_and_forced_usage() -> None:
    prepared = prepare_chat(
        {**REQUEST, "stream": True}, default_max_tokens=4096, upstream_model="gpt-4o"
    )
    assert prepared.body["max_tokens"] == 4096 and prepared.cap_set_by_relay
    assert prepared.body["stream_options"] == {"include_usage": True}
    assert prepared.body["model"] == "gpt-4o" and not prepared.client_wants_usage
    assert "max_tokens" not in REQUEST  # the client's body is left alone


def test_the_clients_own_cap_is_kept_and_multiplied_by_n() -> None:
    body = {**REQUEST, "max_completion_tokens": 100, "n": 3}
    prepared = prepare_chat(body, default_max_tokens=4096)
    assert "max_tokens" not in prepared.body and prepared.output_cap == 100
    assert prepared.reserved_output_tokens == 300 and not prepared.cap_set_by_relay


def test_the_default_cap_can_go_as_max_completion_tokens() -> None:
    prepared = prepare_chat(REQUEST, default_max_tokens=512, cap_field="max_completion_tokens")
    assert prepared.body["max_completion_tokens"] == 512 and "max_tokens" not in prepared.body


def test_the_clients_stream_options_are_kept_beside_include_usage() -> None:
    body = {**REQUEST, "stream": True, "stream_options": {"include_usage": True, "x": 1}}
    prepared = prepare_chat(body, default_max_tokens=10)
    assert prepared.client_wants_usage and prepared.body["stream_options"] == {
        "include_usage": True,
        "x": 1,
    }
    assert orjson.loads(prepared.encode())["stream_options"]["x"] == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "Hi"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({**REQUEST, "max_tokens": 0}, "max_tokens"),
        ({**REQUEST, "max_tokens": "10"}, "max_tokens"),
        ({**REQUEST, "n": True}, "n"),
        ({**REQUEST, "stream": "yes"}, "stream"),
    ],
)
def test_a_bad_field_is_named(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        prepare_chat(body, default_max_tokens=10)
    assert raised.value.param == param


def test_usage_splits_cached_input_out_of_prompt_tokens() -> None:
    usage = parse_usage(OPENAI_CHAT_COMPLETION["usage"])
    assert usage == TokenUsage(input=93, cache_read=1024, output=46, reasoning=0)
    assert usage.prompt_tokens == 1117


@pytest.mark.parametrize(
    "bad",
    [
        {"prompt_tokens": -5, "completion_tokens": 1},
        {"prompt_tokens": 10, "completion_tokens": "3"},
        {"prompt_tokens": 10},
        {
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 11},
        },
        {
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "completion_tokens_details": {"reasoning_tokens": 4},
        },
        {"prompt_tokens": True, "completion_tokens": 3},
    ],
)
def test_an_unbelievable_usage_is_none(bad: dict[str, object]) -> None:
    assert parse_usage(bad) is None


def test_a_non_stream_answer_with_wrong_usage_is_counted_locally() -> None:
    answer = {**OPENAI_CHAT_COMPLETION, "usage": {"prompt_tokens": -1, "completion_tokens": -1}}
    usage = completion_usage(answer, prompt_tokens=30)
    assert usage.source == UsageSource.LOCAL and usage.input == 30
    assert usage.output == counting.count_text("The image shows a wooden boardwalk path.")
    assert completion_usage(OPENAI_CHAT_COMPLETION, prompt_tokens=30).source == UsageSource.UPSTREAM


def test_an_answer_claiming_no_output_for_delivered_text_is_counted_locally() -> None:
    answer = {**OPENAI_CHAT_COMPLETION, "usage": {"prompt_tokens": 5, "completion_tokens": 0}}
    assert completion_usage(answer, prompt_tokens=5).source == UsageSource.LOCAL


def test_a_client_that_did_not_ask_for_usage_never_sees_the_usage_chunk() -> None:
    tracker = ChatStream(client_wants_usage=False, prompt_tokens=10)
    events = client_events(relay_stream(tracker, OPENAI_CHAT_STREAM))
    assert all(e == "[DONE]" or e["choices"] for e in events)
    assert events[-1] == "[DONE]" and len(events) == 5
    assert tracker.usage() == TokenUsage(input=176, cache_read=1024, output=17, reasoning=5)


def test_a_client_that_asked_gets_upstreams_usage_chunk_unchanged() -> None:
    sent = relay_stream(ChatStream(client_wants_usage=True, prompt_tokens=10), OPENAI_CHAT_STREAM)
    assert sent == OPENAI_CHAT_STREAM


def test_a_client_that_asked_gets_one_usage_chunk_of_ours_when_upstream_sent_none() -> None:
    tracker = ChatStream(client_wants_usage=True, prompt_tokens=12)
    events = client_events(relay_stream(tracker, OPENAI_CHAT_STREAM_NO_USAGE))
    usage_chunks = [e for e in events if e != "[DONE]" and e.get("usage")]
    assert len(usage_chunks) == 1 and events[-1] == "[DONE]"
    (chunk,) = usage_chunks
    assert chunk["choices"] == [] and chunk["id"] == "chatcmpl-123"
    assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == "gpt-4o-mini"
    output = counting.count_text("Hello world!")
    assert chunk["usage"]["prompt_tokens"] == 12 and chunk["usage"]["completion_tokens"] == output
    assert tracker.usage().source == UsageSource.LOCAL


def test_a_wrong_usage_chunk_is_replaced_by_ours() -> None:
    wrong = OPENAI_CHAT_STREAM.replace(b'"prompt_tokens":1200', b'"prompt_tokens":-3')
    events = client_events(
        relay_stream(ChatStream(client_wants_usage=True, prompt_tokens=12), wrong)
    )
    (chunk,) = [e for e in events if e != "[DONE]" and e.get("usage")]
    assert chunk["usage"]["prompt_tokens"] == 12


def test_tool_call_arguments_are_counted_when_usage_is_missing() -> None:
    tracker = ChatStream(client_wants_usage=False, prompt_tokens=0)
    relay_stream(tracker, OPENAI_CHAT_TOOL_STREAM)
    assert tracker.delivered
    assert tracker.usage().output == counting.count_text('get_weather{"location":"Paris"}')


def test_a_stream_cut_mid_way_ends_with_an_error_event_then_done_and_counts_what_was_sent() -> None:
    cut = OPENAI_CHAT_STREAM[: OPENAI_CHAT_STREAM.index(b'"finish_reason":"stop"')]
    tracker = ChatStream(client_wants_usage=False, prompt_tokens=40)
    events = client_events(relay_stream(tracker, cut))
    assert events[-2]["error"]["type"] == "server_error" and events[-1] == "[DONE]"
    assert tracker.usage() == counting.local_usage(40, ["", "Hello", " world!"])


def test_an_upstream_error_event_is_relayed_then_done_is_added() -> None:
    error = b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
    head = OPENAI_CHAT_STREAM.split(b"\n\n")[1] + b"\n\n"
    tracker = ChatStream(client_wants_usage=False, prompt_tokens=1)
    sent = relay_stream(tracker, head + error)
    assert sent.endswith(error + b"data: [DONE]\n\n")
    assert tracker.upstream_error is not None and tracker.usage().output == 1  # "Hello", not "boom"


def test_an_idle_timeout_ends_the_stream_with_our_error() -> None:
    tracker = ChatStream(client_wants_usage=False, prompt_tokens=1)
    relay_stream(tracker, OPENAI_CHAT_STREAM.split(b"\n\n")[1] + b"\n\n", finish=False)
    ending = client_events(tracker.fail("No event for 300 s", status=504))
    assert ending[0]["error"]["code"] == "upstream_error" and ending[1] == "[DONE]"
    assert tracker.finish() == b""


def test_embeddings_usage_reads_prompt_tokens_else_counts_the_input() -> None:
    assert (
        embeddings_usage({"usage": {"prompt_tokens": 8, "total_tokens": 8}}, input_tokens=3).input
        == 8
    )
    local = embeddings_usage({"data": []}, input_tokens=3)
    assert local.input == 3 and local.source == UsageSource.LOCAL


def test_a_usage_chunk_claiming_no_output_for_delivered_text_is_replaced_not_doubled() -> None:
    zero = OPENAI_CHAT_STREAM.replace(b'"completion_tokens":17', b'"completion_tokens":0')
    zero = zero.replace(b'"reasoning_tokens":5', b'"reasoning_tokens":0')
    tracker = ChatStream(client_wants_usage=True, prompt_tokens=12)
    events = client_events(relay_stream(tracker, zero))
    (chunk,) = [e for e in events if e != "[DONE]" and e.get("usage")]
    assert chunk["usage"]["completion_tokens"] == counting.count_text("Hello world!")
    assert tracker.usage().source == UsageSource.LOCAL
