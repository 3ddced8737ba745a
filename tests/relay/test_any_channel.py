"""Any client on any channel (SPEC §11): every client format — Chat Completions, Responses,
Messages and the Gemini API, each through its official SDK — on a channel of every format
(`openai`, `openai-chat`, `anthropic`, `gemini`), against a real `quotaledger serve` in
front of the fake upstream, which answers each in its provider's real wire format.

For every pair: a whole answer, a streamed one, a tool round trip with the call's id kept,
the charge (the channel's reported usage at the model's price, exactly), the log row's
formats, and an upstream error reaching the client's SDK as its own error with the status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest
from relay_live import (
    ANSWER,
    FORMAT_MODELS,
    UPSTREAM_KEY,
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

genai = pytest.importorskip("google.genai", reason="google-genai is in the test extra")
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types as genai_types  # noqa: E402

TOOL = "get_weather"
ARGUMENTS = {"location": "Paris, France", "unit": "celsius"}
SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
    "required": ["location"],
}
RESULT = "18 degrees and sunny"
QUESTION = "What is the weather in Paris?"
CLIENTS = ("chat", "responses", "messages", "gemini")
CHANNELS = ("openai", "openai-chat", "anthropic", "gemini")


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    yield from relay_server(tmp_path_factory, formats=True)


# ---------------------------------------------------------------- each client, as its SDK


@dataclass
class Reply:
    text: str = ""
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # id, name, args


def ask(
    relay: Relay, who: Customer, client: str, model: str, *, stream: bool = False,
    tool_round: tuple[str, str] | None = None,
) -> Reply:  # fmt: skip
    """One request in `client`'s format through its SDK. With `tool_round` (call id, name),
    the history holds that tool call and its result, and the request offers the tool."""
    return _ASK[client](relay, who, model, stream, tool_round)


def _chat(relay: Relay, who: Customer, model: str, stream: bool, tool_round: Any) -> Reply:
    sdk = sdk_client(openai.OpenAI(api_key=who.key, base_url=relay.v1, max_retries=0))
    tools: Any = [{"type": "function", "function": {"name": TOOL, "parameters": SCHEMA}}]
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    if tool_round:
        function = {"name": tool_round[1], "arguments": json.dumps(ARGUMENTS)}
        call = {"id": tool_round[0], "type": "function", "function": function}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": tool_round[0], "content": RESULT},
        ]
    if not stream:
        done = sdk.chat.completions.create(model=model, messages=messages, tools=tools)
        message = done.choices[0].message
        calls = [(c.id, c.function.name, json.loads(c.function.arguments))
                 for c in message.tool_calls or [] if c.type == "function"]  # fmt: skip
        return Reply(message.content or "", calls)
    reply, pending = Reply(), {}
    for chunk in sdk.chat.completions.create(
        model=model, messages=messages, tools=tools, stream=True
    ):
        for choice in chunk.choices:
            reply.text += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                slot = pending.setdefault(delta.index, ["", "", ""])
                slot[0] = delta.id or slot[0]
                if delta.function:
                    slot[1] += delta.function.name or ""
                    slot[2] += delta.function.arguments or ""
    reply.calls = [(i, n, json.loads(a)) for i, n, a in pending.values()]
    return reply


def _responses(relay: Relay, who: Customer, model: str, stream: bool, tool_round: Any) -> Reply:
    sdk = sdk_client(openai.OpenAI(api_key=who.key, base_url=relay.v1, max_retries=0))
    tools: Any = [{"type": "function", "name": TOOL, "parameters": SCHEMA, "strict": False}]
    items: list[Any] = [{"role": "user", "content": QUESTION}]
    if tool_round:
        items += [
            {"type": "function_call", "call_id": tool_round[0], "name": tool_round[1],
             "arguments": json.dumps(ARGUMENTS)},
            {"type": "function_call_output", "call_id": tool_round[0], "output": RESULT},
        ]  # fmt: skip
    if stream:
        with sdk.responses.stream(model=model, input=items, tools=tools) as events:
            for _ in events:
                pass
            done = events.get_final_response()
    else:
        done = sdk.responses.create(model=model, input=items, tools=tools)
    calls = [(o.call_id, o.name, json.loads(o.arguments))
             for o in done.output if o.type == "function_call"]  # fmt: skip
    return Reply(done.output_text, calls)


def _messages(relay: Relay, who: Customer, model: str, stream: bool, tool_round: Any) -> Reply:
    sdk = sdk_client(
        anthropic.Anthropic(api_key=who.key, base_url=relay.server.base_url, max_retries=0)
    )
    tools: Any = [{"name": TOOL, "input_schema": SCHEMA}]
    messages: list[Any] = [{"role": "user", "content": QUESTION}]
    if tool_round:
        messages += [
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": tool_round[0], "name": tool_round[1],
                 "input": ARGUMENTS}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tool_round[0], "content": RESULT}]},
        ]  # fmt: skip
    asked: Any = {"model": model, "max_tokens": 256, "messages": messages, "tools": tools}
    if stream:
        with sdk.messages.stream(**asked) as events:
            for _ in events:
                pass
            done = events.get_final_message()
    else:
        done = sdk.messages.create(**asked)
    text = "".join(b.text for b in done.content if b.type == "text")
    calls = [(b.id, b.name, dict(b.input)) for b in done.content if b.type == "tool_use"]  # type: ignore[arg-type]
    return Reply(text, calls)


def _gemini(relay: Relay, who: Customer, model: str, stream: bool, tool_round: Any) -> Reply:
    sdk = genai.Client(
        api_key=who.key, http_options=genai_types.HttpOptions(base_url=relay.server.base_url)
    )
    tool = genai_types.Tool(
        function_declarations=[
            genai_types.FunctionDeclaration(name=TOOL, parameters_json_schema=SCHEMA)
        ]
    )
    config = genai_types.GenerateContentConfig(
        tools=[tool],
        automatic_function_calling=genai_types.AutomaticFunctionCallingConfig(disable=True),
    )
    contents: list[Any] = [
        genai_types.Content(role="user", parts=[genai_types.Part(text=QUESTION)])
    ]
    if tool_round:
        call = genai_types.FunctionCall(id=tool_round[0], name=tool_round[1], args=ARGUMENTS)
        answer = genai_types.FunctionResponse(
            id=tool_round[0], name=tool_round[1], response={"result": RESULT}
        )
        contents += [
            genai_types.Content(role="model", parts=[genai_types.Part(function_call=call)]),
            genai_types.Content(role="user", parts=[genai_types.Part(function_response=answer)]),
        ]
    if stream:
        chunks = list(
            sdk.models.generate_content_stream(model=model, contents=contents, config=config)
        )
    else:
        chunks = [sdk.models.generate_content(model=model, contents=contents, config=config)]
    reply = Reply()
    for chunk in chunks:
        content = chunk.candidates[0].content if chunk.candidates else None
        for part in (content.parts or []) if content else []:
            if part.text and not part.thought:
                reply.text += part.text
            if part.function_call:
                call = part.function_call
                reply.calls.append((call.id or "", call.name or "", dict(call.args or {})))
    return reply


_ASK = {"chat": _chat, "responses": _responses, "messages": _messages, "gemini": _gemini}


# ---------------------------------------------------------------- what the channel saw


def upstream_path(client: str, channel: str, model: str, stream: bool) -> str:
    """Where the relay sends `client`'s request on a `channel` channel."""
    if channel == "gemini":
        return f"/v1beta/models/{model}:" + (
            "streamGenerateContent" if stream else "generateContent"
        )
    if channel == "anthropic":
        return "/v1/messages"
    if channel == "openai" and client == "responses":
        return "/v1/responses"
    return "/v1/chat/completions"


def _cost(row: Any) -> int:
    """1 USD in (0.1 cache read, 1.25 cache write), 2 USD out per million tokens."""
    uncached = row["prompt_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]
    tenths = (10 * uncached + row["cached_tokens"] + 12.5 * row["cache_write_tokens"]
              + 20 * row["completion_tokens"])  # fmt: skip
    return int(-(-tenths * 500_000 // 10_000_000))


def _charged(
    relay: Relay, who: Customer, start: int, client: str, channel: str, requests: int = 1
) -> None:
    rows = settled(relay, who, requests)
    for row in rows:
        assert (row["client_format"], row["channel_format"]) == (client, channel)
        assert row["status"] == 200 and row["usage_source"] == "upstream"
        assert row["quota"] == _cost(row)
    assert start - balance(relay, who).quota == sum(r["quota"] for r in rows)
    consistent(relay)


PAIRS = [(client, channel) for client in CLIENTS for channel in CHANNELS]


@pytest.mark.parametrize(("client", "channel"), PAIRS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_text_answer_on_every_channel(
    relay: Relay, client: str, channel: str, stream: bool
) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    model = FORMAT_MODELS[channel]
    reply = ask(relay, who, client, model, stream=stream)
    assert (reply.text, reply.calls) == (ANSWER, [])
    [sent] = relay.upstream.requests_to(upstream_path(client, channel, model, stream))[-1:]
    assert UPSTREAM_KEY in " ".join(v for _, v in sent.headers)
    assert who.key not in " ".join(v for _, v in sent.headers) + sent.query
    _charged(relay, who, start, client, channel)


@pytest.mark.parametrize(("client", "channel"), PAIRS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_tool_round_trip_keeps_the_call_id(
    relay: Relay, client: str, channel: str, stream: bool
) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    model = FORMAT_MODELS[channel]
    path = upstream_path(client, channel, model, stream)
    relay.upstream.script(tool_call=True, path=path, times=1)
    first = ask(relay, who, client, model, stream=stream)
    [(call_id, name, arguments)] = first.calls
    # Gemini's own calls carry no id (google-genai and Gemini CLI pair them by name).
    assert (name, arguments) == (TOOL, ARGUMENTS) and (call_id or channel == client == "gemini")
    second = ask(relay, who, client, model, stream=stream, tool_round=(call_id, name))
    assert second.text == ANSWER
    sent = relay.upstream.requests_to(path)[-1].body
    assert RESULT.encode() in sent  # the tool's result reached the channel
    if channel != "gemini":  # Gemini's wire has no call ids; the others must carry ours
        assert call_id.encode() in sent or _native(client, channel)
    _charged(relay, who, start, client, channel, requests=2)


def _native(client: str, channel: str) -> bool:
    return (client, channel) in {
        ("chat", "openai"), ("chat", "openai-chat"), ("responses", "openai"),
        ("messages", "anthropic"), ("gemini", "gemini"),
    }  # fmt: skip


@pytest.mark.parametrize(("client", "channel"), PAIRS)
def test_an_upstream_error_reaches_the_sdk_with_its_status(
    relay: Relay, client: str, channel: str
) -> None:
    who = customer(relay)
    start = balance(relay, who).quota
    model = FORMAT_MODELS[channel]
    relay.upstream.script(status=400, path=upstream_path(client, channel, model, False), times=1)
    failures = (openai.BadRequestError, anthropic.BadRequestError, genai_errors.ClientError)
    with pytest.raises(failures) as raised:
        ask(relay, who, client, model)
    status = getattr(raised.value, "status_code", None) or getattr(raised.value, "code", None)
    assert status == 400
    assert balance(relay, who).quota == start  # refused upstream: nothing charged
    assert [r["status"] for r in log_rows(relay, who)] == [400]
    consistent(relay)
