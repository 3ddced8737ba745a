"""The Responses WebSocket's messages (`wire.responses_socket`), without a socket: what a
`response.create` sends upstream, how the socket's last response is continued, and the
events answered here, checked with the OpenAI SDK's own types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.responses.responses_server_event import ResponsesServerEvent
from pydantic import TypeAdapter

from quotaledger.wire.errors import InvalidRequest, WireFormat, error_body
from quotaledger.wire.responses_socket import Chain, Outcome, error_event, warmup

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponsesServerEvent)
ANSWER = {
    "type": "message",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Hi"}],
}


def _create(**body: Any) -> str:
    return json.dumps({"type": "response.create", "model": "gpt-test", **body})


def _answered(chain: Chain, text: str, response_id: str, output: list[Any]) -> None:
    ask = chain.ask(text)
    assert ask is not None
    chain.answered(ask, response_id, output)


def test_the_transport_fields_stay_on_the_socket_and_the_body_is_streamed() -> None:
    ask = Chain().ask(_create(input="Hi", generate=True, client_metadata={"a": "b"}))
    assert ask is not None and not ask.warmup
    assert ask.body == {"model": "gpt-test", "input": "Hi", "stream": True}


def test_a_continued_string_input_becomes_the_whole_conversation() -> None:
    chain = Chain()
    _answered(chain, _create(input="Hi"), "resp_1", [ANSWER])
    ask = chain.ask(_create(previous_response_id="resp_1", input="And then?"))
    assert ask is not None and ask.continued
    user = {"type": "message", "role": "user"}
    assert ask.body["input"] == [
        {**user, "content": "Hi"},
        ANSWER,
        {**user, "content": "And then?"},
    ]
    assert "previous_response_id" not in ask.body


def test_a_previous_response_the_socket_does_not_hold_goes_upstream_as_it_came() -> None:
    chain = Chain()
    _answered(chain, _create(input="Hi"), "resp_1", [ANSWER])
    chain.forget()  # a failed request ends the chain
    ask = chain.ask(_create(previous_response_id="resp_1", input="And then?"))
    assert ask is not None and not ask.continued
    assert ask.body["previous_response_id"] == "resp_1" and ask.body["input"] == "And then?"


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ("[]", "type"),
        (json.dumps({"type": "response.cancel"}), "type"),
        (_create(background=True), "background"),
        (_create(stream_id=7), "stream_id"),
        (json.dumps({"type": "response.create"}), "model"),
    ],
)
def test_a_message_the_socket_cannot_serve_is_refused_naming_the_field(
    message: str, param: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        Chain().ask(message)
    assert refused.value.param == param


def test_codexs_acknowledgement_asks_for_nothing() -> None:
    assert Chain().ask(json.dumps({"type": "response.processed", "response_id": "r"})) is None


def test_a_warmup_is_a_completed_response_without_output() -> None:
    ask = Chain().ask(_create(input=[], generate=False, tools=[]))
    assert ask is not None and ask.warmup
    response_id, events = warmup(ask)
    created, completed = (EVENTS.validate_json(event) for event in events)
    assert (created.type, completed.type) == ("response.created", "response.completed")
    assert completed.response.id == response_id and completed.response.output == []


def test_a_lane_is_named_on_each_event_of_its_answer() -> None:
    ask = Chain().ask(_create(input="Hi", stream_id="lane-2"))
    assert ask is not None and "stream_id" not in ask.body
    labelled = json.loads(ask.labelled('{"type":"response.in_progress","sequence_number":1}'))
    assert labelled == {"stream_id": "lane-2", "type": "response.in_progress", "sequence_number": 1}


def test_the_outcome_is_the_terminal_events_response() -> None:
    outcome = Outcome()
    outcome.read("response.output_text.delta", '{"type": "response.output_text.delta"}')
    assert outcome.chained == (None, [])  # no terminal event: nothing to continue
    outcome.read(None, json.dumps({"type": "response.output_item.done", "item": ANSWER}))
    done = {"type": "response.completed", "response": {"id": "resp_9", "output": [ANSWER]}}
    outcome.read("response.completed", json.dumps(done))
    assert outcome.chained == ("resp_9", [ANSWER])


def test_a_refusal_is_the_sdks_error_event_with_the_http_status_and_headers() -> None:
    body = error_body(WireFormat.OPENAI, 429, "slow down")
    text = error_event(429, body, {"retry-after": "3"})
    event = EVENTS.validate_json(text)
    assert (event.type, event.status, event.error.message) == ("error", 429, "slow down")
    assert event.error.headers == {"retry-after": "3"}  # where the SDKs read them
    assert json.loads(text)["headers"] == {"retry-after": "3"}  # where Codex does
