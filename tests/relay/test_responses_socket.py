"""Responses over WebSocket (SPEC §14): `GET /v1/responses` upgraded, `response.create`
messages in, the stream's events out, against a real `quotaledger serve` with the `websockets`
client; each event checked with the OpenAI SDK's own types. Every response on the socket is
reserved, settled and logged exactly as a streamed POST of the same body; the last test runs
the real Codex CLI, whose first transport this is."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from agents import install_agents, run_agent
from openai.types.responses.responses_server_event import ResponsesServerEvent
from pydantic import TypeAdapter
from relay_live import (
    ANSWER,
    MODEL,
    Customer,
    Relay,
    balance,
    consistent,
    customer,
    log_rows,
    relay_server,
    sdk_client,
    settled,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

# The SDK's own types of what a Responses socket may send (its `ResponseWsError` included).
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponsesServerEvent)
USER = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi."}]}
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
TOOL_OUTPUT = {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"}


# Requests in progress an address may hold: sockets may take half of them.
PER_ADDRESS = 8


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    env = {"QUOTALEDGER_MAX_REQUESTS_PER_ADDRESS": str(PER_ADDRESS)}
    yield from relay_server(tmp_path_factory, env=env)


def _socket(relay: Relay, key: str) -> ClientConnection:
    url = relay.v1.replace("http://", "ws://") + "/responses"
    return connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10)


def _create(**body: Any) -> str:
    return json.dumps({"type": "response.create", "model": MODEL, "store": False, **body})


def _one_response(socket: ClientConnection) -> list[dict[str, Any]]:
    """The events of one response up to its end, each one of the SDK's server events."""
    events = []
    while True:
        event = json.loads(socket.recv(timeout=30))
        EVENTS.validate_python(event)
        events.append(event)
        if event["type"] in ("error", *TERMINAL):
            return events


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def _cost(row: Any) -> int:
    """gpt-test: 2 USD in, 8 USD out per million tokens, in quota (ceil)."""
    micro = row["prompt_tokens"] * 2 + row["completion_tokens"] * 8
    return -(-micro * 500_000 // 1_000_000)


def _charged_as_logged(relay: Relay, who: Customer, start: int, rows: int) -> list[Any]:
    found = settled(relay, who, rows)
    assert len(found) == rows
    for row in found:
        assert (row["status"], row["end_reason"], row["is_stream"]) == (200, "completed", True)
        assert row["client_format"] == "responses" and row["quota"] == _cost(row)
    assert start - balance(relay, who).quota == sum(row["quota"] for row in found)
    consistent(relay)
    return found


def _metric(relay: Relay, name: str) -> float:
    """A counter's value on the relay's `/metrics` (0 before its first count)."""
    metrics = httpx.get(relay.server.base_url + "/metrics", timeout=10).text
    found = [line for line in metrics.splitlines() if line.startswith(name + " ")]
    return float(found[0].split()[-1]) if found else 0.0


SOCKETS = "quotaledger_relay_sockets_total"
CONTINUED = 'quotaledger_relay_socket_messages_total{kind="continued"}'


def test_two_turns_over_one_socket_continue_the_conversation_and_are_charged_each(
    relay: Relay,
) -> None:
    """The second turn names the first response and sends only the tool's output (as Codex
    does): upstream gets the whole conversation, as a plain HTTP request would carry it."""
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests_to("/v1/responses"))
    continued = _metric(relay, CONTINUED)
    relay.upstream.script(tool_call=True, path="/v1/responses")
    with _socket(relay, who.key) as socket:
        socket.send(_create(input=[USER], client_metadata={"turn_id": "t1"}))
        first = _one_response(socket)
        response = first[-1]["response"]
        assert response["output"][0]["type"] == "function_call"
        socket.send(_create(previous_response_id=response["id"], input=[TOOL_OUTPUT]))
        second = _one_response(socket)
    assert second[-1]["type"] == "response.completed" and _text(second) == ANSWER
    bodies = [r.json() for r in relay.upstream.requests_to("/v1/responses")[seen:]]
    assert len(bodies) == 2
    assert bodies[1]["input"] == [USER, *response["output"], TOOL_OUTPUT]
    assert _metric(relay, CONTINUED) == continued + 1
    for body in bodies:  # the socket's own fields stay on the socket
        assert body["stream"] is True
        assert not {"type", "client_metadata", "previous_response_id"} & set(body)
    _charged_as_logged(relay, who, start, 2)


def test_a_response_over_the_socket_costs_what_the_same_post_costs(relay: Relay) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests_to("/v1/responses"))
    with _socket(relay, who.key) as socket:
        socket.send(_create(input=[USER]))
        events = _one_response(socket)
    assert _text(events) == ANSWER
    body = {"model": MODEL, "store": False, "input": [USER], "stream": True}
    with httpx.stream(
        "POST", relay.v1 + "/responses", json=body, timeout=30,
        headers={"Authorization": f"Bearer {who.key}"},
    ) as posted:  # fmt: skip
        assert posted.status_code == 200
        posted.read()
    socket_sent, post_sent = relay.upstream.requests_to("/v1/responses")[seen:]
    assert socket_sent.body == post_sent.body
    by_socket, by_post = _charged_as_logged(relay, who, start, 2)
    assert by_socket["quota"] == by_post["quota"] > 0


def test_a_warmup_is_answered_without_upstream_and_the_next_turn_continues_it(
    relay: Relay,
) -> None:
    """Codex's `generate: false` as a session starts: a response id, no output, nothing sent
    upstream or charged; its turn then sends only the user's message."""
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests_to("/v1/responses"))
    system = {"type": "message", "role": "developer", "content": "Be brief."}
    with _socket(relay, who.key) as socket:
        socket.send(_create(input=[system], generate=False, tools=[]))
        warm = _one_response(socket)
        assert [e["type"] for e in warm] == ["response.created", "response.completed"]
        assert warm[-1]["response"]["output"] == []
        assert len(relay.upstream.requests_to("/v1/responses")) == seen
        socket.send(_create(previous_response_id=warm[-1]["response"]["id"], input=[USER]))
        assert _text(_one_response(socket)) == ANSWER
    [sent] = relay.upstream.requests_to("/v1/responses")[seen:]
    assert sent.json()["input"] == [system, USER]
    _charged_as_logged(relay, who, start, 1)


def _sdk_response(connection: Any) -> list[Any]:
    events = []
    for event in connection:
        events.append(event)
        if event.type in ("error", *TERMINAL):
            return events
    raise AssertionError("the socket closed before the response ended")


def test_the_openai_sdks_socket_client_holds_a_conversation_on_lanes(relay: Relay) -> None:
    """`client.responses.connect()`, the official SDK's Responses socket: a turn, then one
    continuing it on the same lane, each answered with its lane named."""
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests_to("/v1/responses"))
    client = sdk_client(openai.OpenAI(api_key=who.key, base_url=relay.v1, max_retries=0))
    with client.responses.connect(max_retries=0) as connection:
        connection.response.create(model=MODEL, input="Hi.", store=False, stream_id="a")
        first = _sdk_response(connection)
        connection.response.create(
            model=MODEL, input="And then?", store=False, stream_id="a",
            previous_response_id=first[-1].response.id,
        )  # fmt: skip
        second = _sdk_response(connection)
    for events in (first, second):
        assert events[-1].type == "response.completed" and events[-1].response.output_text
        assert {event.stream_id for event in events} == {"a"}
    answer = first[-1].response.output[0]
    sent = relay.upstream.requests_to("/v1/responses")[seen:][1].json()
    assert [item.get("content") for item in sent["input"]] == [
        "Hi.", answer.to_dict()["content"], "And then?"
    ]  # fmt: skip
    _charged_as_logged(relay, who, start, 2)


@pytest.mark.parametrize("key", ["sk-ql-not-a-key", ""], ids=["unknown", "missing"])
def test_a_bad_key_is_refused_before_the_upgrade_in_openai_shape(relay: Relay, key: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        _socket(relay, key)
    answer = refused.value.response
    assert answer.status_code == 401
    error = json.loads(answer.body)["error"]
    assert error["type"] == "invalid_request_error" and "key" in error["message"].lower()


def test_another_path_is_refused_with_404_in_openai_shape(relay: Relay) -> None:
    who = customer(relay)
    url = relay.v1.replace("http://", "ws://") + "/chat/completions"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers={"Authorization": f"Bearer {who.key}"})
    assert refused.value.response.status_code == 404
    assert json.loads(refused.value.response.body)["error"]["code"] == "unknown_url"


def test_an_empty_account_gets_the_posts_refusal_as_an_error_event(relay: Relay) -> None:
    """The 400 `insufficient_quota` Codex shows at once over HTTP, with the same body; the
    socket stays open for the next request."""
    who = customer(relay, quota=0)
    with _socket(relay, who.key) as socket:
        socket.send(_create(input=[USER]))
        [event] = _one_response(socket)
        assert (event["type"], event["status"]) == ("error", 400)
        assert event["error"]["code"] == "insufficient_quota"
        socket.send("not json")
        [event] = _one_response(socket)
        assert (event["status"], event["error"]["type"]) == (400, "invalid_request_error")
    assert log_rows(relay, who) == []


def test_a_client_that_closes_the_socket_mid_answer_pays_for_what_it_received(
    relay: Relay,
) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    relay.upstream.script(duration=20.0, usage="none", path="/v1/responses")
    cancelled = relay.upstream.cancellations
    with _socket(relay, who.key) as socket:
        socket.send(_create(input=[USER]))
        while json.loads(socket.recv(timeout=30))["type"] != "response.output_text.delta":
            pass  # the answer has begun; then the client goes away
    [row] = settled(relay, who, 1)
    assert (row["status"], row["end_reason"]) == (200, "client_disconnected")
    assert row["completion_tokens"] > 0 and row["quota"] > 0
    assert start - balance(relay, who).quota == row["quota"]
    deadline = time.monotonic() + 5
    while relay.upstream.cancellations == cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert relay.upstream.cancellations == cancelled + 1
    consistent(relay)


def test_a_binary_message_is_refused_and_the_socket_keeps_serving(relay: Relay) -> None:
    who = customer(relay)
    with _socket(relay, who.key) as socket:
        socket.send(b"\x00\x01")
        [event] = _one_response(socket)
        assert (event["status"], event["error"]["param"]) == (400, "type")
        socket.send(_create(input=[USER]))
        assert _text(_one_response(socket)) == ANSWER
        socket.close()
    with pytest.raises(ConnectionClosed):
        socket.recv(timeout=1)


MARK = "quotaledger-tool-ran"  # what Codex's tool prints; its output must reach the model
CODEX_PROVIDERS = [
    # Its built-in OpenAI provider pointed at the relay: websockets on by default.
    pytest.param('openai_base_url = "{v1}"\n', "CODEX_API_KEY", id="built-in"),
    # The README's custom provider, with the socket turned on.
    pytest.param(
        'model_provider = "quotaledger"\n\n[model_providers.quotaledger]\n'
        'name = "quotaledger"\nbase_url = "{v1}"\nenv_key = "QUOTALEDGER_KEY"\n'
        'wire_api = "responses"\nsupports_websockets = true\n',
        "QUOTALEDGER_KEY",
        id="custom",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("provider", "key_variable"), CODEX_PROVIDERS)
def test_codex_runs_a_tool_turn_over_the_socket_without_reconnecting(
    relay: Relay, tmp_path: Path, provider: str, key_variable: str
) -> None:
    """The real Codex CLI: its warm-up, the tool call and the answer after it go over the
    socket (the second request sent as the tool's output only, continuing the first); it
    never prints "Reconnecting" nor falls back to HTTP; each request is charged once."""
    bin_dir = install_agents()
    who = customer(relay)
    start = balance(relay, who).quota
    seen = len(relay.upstream.requests_to("/v1/responses"))
    sockets, continued = _metric(relay, SOCKETS), _metric(relay, CONTINUED)
    relay.upstream.script(
        tool_call=True, tool_name="exec_command", times=1, path="/v1/responses",
        tool_arguments=json.dumps({"cmd": f"echo {MARK}"}),
    )  # fmt: skip
    home = tmp_path / "codex-home"
    home.mkdir()
    config = f'model = "{MODEL}"\n' + provider.format(v1=relay.v1)
    (home / "config.toml").write_text(config)
    turn = run_agent(
        [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", "Run the echo."],
        {"CODEX_HOME": str(home), key_variable: who.key},
        tmp_path,
    )
    output = turn.stdout + turn.stderr
    assert turn.exit_code == 0, output[-3000:]
    assert ANSWER in turn.stdout
    assert "Reconnecting" not in output and "Falling back" not in output, output[-3000:]
    assert _metric(relay, SOCKETS) > sockets
    # The turn continued the warm-up, the answer the tool call: sent as new items only.
    assert _metric(relay, CONTINUED) == continued + 2
    first, second = (r.json() for r in relay.upstream.requests_to("/v1/responses")[seen:])
    assert MARK in json.dumps(second["input"][-1])  # the tool's output went back
    assert second["input"][: len(first["input"])] == first["input"]  # with all before it
    _charged_as_logged(relay, who, start, 2)


def test_a_socket_beyond_half_the_addresss_requests_is_refused_with_426(relay: Relay) -> None:
    who = customer(relay)
    with contextlib.ExitStack() as held:
        for _ in range(PER_ADDRESS // 2):
            held.enter_context(_socket(relay, who.key))
        with pytest.raises(InvalidStatus) as refused:
            _socket(relay, who.key)
    assert refused.value.response.status_code == 426
    assert "use HTTP" in json.loads(refused.value.response.body)["error"]["message"]
    with _socket(relay, who.key) as socket:  # the sockets' slots came back
        socket.send(_create(input=[USER]))
        assert _text(_one_response(socket)) == ANSWER


@pytest.mark.slow
def test_codex_refused_a_socket_falls_back_to_http_at_once(relay: Relay, tmp_path: Path) -> None:
    """The answer that makes Codex switch to HTTP without its five reconnects: 426."""
    bin_dir = install_agents()
    who = customer(relay)
    start = balance(relay, who).quota
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(f'model = "{MODEL}"\nopenai_base_url = "{relay.v1}"\n')
    with contextlib.ExitStack() as held:
        for _ in range(PER_ADDRESS // 2):  # the address's sockets are all taken
            held.enter_context(_socket(relay, who.key))
        sockets = _metric(relay, SOCKETS)
        turn = run_agent(
            [str(bin_dir / "codex"), "exec", "--skip-git-repo-check", "Say hello."],
            {"CODEX_HOME": str(home), "CODEX_API_KEY": who.key},
            tmp_path,
        )
    output = turn.stdout + turn.stderr
    assert turn.exit_code == 0, output[-3000:]
    assert ANSWER in turn.stdout and "Reconnecting" not in output, output[-3000:]
    assert _metric(relay, SOCKETS) == sockets
    _charged_as_logged(relay, who, start, 1)
