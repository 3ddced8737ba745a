"""The Responses codec (SPEC §11): a Codex or OpenAI SDK request converted for a channel of
another format, and the channel's answer and stream converted back into what the OpenAI
SDK's own types validate and its stream accumulator turns into the final Response."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from wire_samples import (
    ANTHROPIC_ERROR_EVENT,
    ANTHROPIC_STREAM,
    ANTHROPIC_TOOL_AND_THINKING_STREAM,
    OPENAI_CHAT_STREAM,
    OPENAI_CHAT_TOOL_STREAM,
)
from wire_support import client_events, relay_stream

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import ir
from quotaledger.wire.codecs import responses
from quotaledger.wire.conversions import Conversion, conversion
from quotaledger.wire.errors import InvalidRequest

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)

PATCH = (
    "*** Begin Patch\n*** Update File: src/calc.py\n@@ def add(a, b):\n"
    "-    return a + b + 1\n+    return a + b\n*** End Patch\n"
)
GRAMMAR = (
    'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
    'end_patch: "*** End Patch" LF?\n'
)
EXEC_COMMAND = {
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command in a PTY, returning output or a session ID for ongoing "
    "interaction.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {
            "cmd": {"type": "string", "description": "Shell command to execute."},
            "workdir": {"type": "string", "description": "The working directory."},
            "yield_time_ms": {"type": "number"},
        },
        "required": ["cmd"],
        "additionalProperties": False,
    },
}
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the `apply_patch` tool to edit files. This is a FREEFORM tool, so do "
    "not wrap the patch in JSON.",
    "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR},
}
DOCS_SEARCH = {
    "type": "namespace",
    "name": "mcp__docs__",
    "description": "Tools of the docs MCP server.",
    "tools": [
        {
            "type": "function",
            "name": "search",
            "description": "Search the docs.",
            "strict": False,
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        }
    ],
}
EXEC_ARGUMENTS = '{"cmd":"pytest -q tests/test_calc.py","workdir":"/home/dev/calc"}'
EXEC_OUTPUT = (
    "Chunk ID: 4e1f\nWall time: 0.8 seconds\nProcess exited with code 1\nOutput:\n"
    "FAILED tests/test_calc.py::test_add - assert 3 == 2\n"
)


def codex_request(*history: dict[str, Any]) -> dict[str, Any]:
    """A request as Codex CLI 0.171 sends it (recorded, its long texts shortened), its
    history followed by `history`."""
    return {
        "model": "gpt-5.1-codex",
        "instructions": "You are Codex, based on GPT-5. You are running as a coding agent in "
        "the Codex CLI on a user's computer.",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [
                    {
                        "type": "input_text",
                        "text": "<permissions instructions>Filesystem sandboxing: "
                        "workspace-write.</permissions instructions>",
                    }
                ],
            },
            {
                "type": "message",
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": "# AGENTS.md instructions for /home/dev/calc\n\n"
                        "<INSTRUCTIONS>Run the tests with pytest.</INSTRUCTIONS>",
                    },
                    {
                        "type": "input_text",
                        "text": "<environment_context>\n  <cwd>/home/dev/calc</cwd>\n  "
                        "<shell>bash</shell>\n</environment_context>",
                    },
                ],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Fix the failing test."}],
            },
            *history,
        ],
        "tools": [EXEC_COMMAND, APPLY_PATCH, {"type": "web_search"}, DOCS_SEARCH],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a5c4-5b2e-7d31-9a0c-6f1e2d3c4b5a",
        "text": {"verbosity": "low"},
    }


# A tool round Codex had on an OpenAI channel: its reasoning carries OpenAI's encryption.
OPENAI_ROUND = (
    {
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "**Running the failing test**"}],
        "content": None,
        "encrypted_content": "gAAAAABo9x2Qk3c1EXAMPLEopenaiencryptedreasoning==",
    },
    {
        "type": "function_call",
        "name": "exec_command",
        "arguments": EXEC_ARGUMENTS,
        "call_id": "call_Yk3h2mV8pQ1rT6sW9xZ0aB4c",
    },
    {
        "type": "function_call_output",
        "call_id": "call_Yk3h2mV8pQ1rT6sW9xZ0aB4c",
        "output": EXEC_OUTPUT,
    },
    {
        "type": "custom_tool_call",
        "status": "completed",
        "call_id": "call_P4tch9sE7vN2mK5jH8gF1dS3",
        "name": "apply_patch",
        "input": PATCH,
    },
    {
        "type": "custom_tool_call_output",
        "call_id": "call_P4tch9sE7vN2mK5jH8gF1dS3",
        "output": "Success. Updated the following files:\nM src/calc.py\n",
    },
)


def decoded(body: dict[str, Any]) -> ir.Conversation:
    return responses.CLIENT.decode_request(body)


# ---------------------------------------------------------------- the request


def test_a_codex_request_becomes_its_system_prompt_turns_and_tools() -> None:
    conversation = decoded(codex_request(*OPENAI_ROUND))
    assert [t.text for t in conversation.system] == [
        codex_request()["instructions"],
        "<permissions instructions>Filesystem sandboxing: workspace-write."
        "</permissions instructions>",
    ]
    roles = [m.role for m in conversation.messages]
    assert roles == ["user", "user", "assistant", "user", "assistant", "user"]
    context = conversation.messages[0].parts
    assert len(context) == 2 and all(isinstance(p, ir.Text) for p in context)
    reasoning, call = conversation.messages[2].parts
    # OpenAI's encrypted reasoning is of no use elsewhere: its summary stays, unsigned.
    assert reasoning == ir.Reasoning("**Running the failing test**")
    assert call == ir.ToolCall("call_Yk3h2mV8pQ1rT6sW9xZ0aB4c", "exec_command", EXEC_ARGUMENTS)
    assert conversation.messages[3].parts == (
        ir.ToolResult("call_Yk3h2mV8pQ1rT6sW9xZ0aB4c", (ir.Text(EXEC_OUTPUT),)),
    )
    (patch_call,) = conversation.messages[4].parts
    assert isinstance(patch_call, ir.ToolCall) and patch_call.name == "apply_patch"
    assert json.loads(patch_call.arguments) == {"input": PATCH}


def test_a_codex_request_names_what_it_drops() -> None:
    conversation = decoded(codex_request(*OPENAI_ROUND))
    assert conversation.dropped == [
        "reasoning.encrypted_content",
        "tools[2]:web_search",
        "text.verbosity",
        "store",
        "include",
        "prompt_cache_key",
    ]
    assert conversation.stream and conversation.parallel_tool_calls is False
    assert conversation.reasoning == ir.ReasoningConfig(effort="medium", include_thoughts=True)


def test_freeform_and_namespaced_tools_become_functions() -> None:
    tools = decoded(codex_request()).tools
    assert [t.name for t in tools] == ["exec_command", "apply_patch", "mcp__docs__search"]
    assert tools[0] == ir.Tool(
        "exec_command", EXEC_COMMAND["description"], EXEC_COMMAND["parameters"]
    )
    patch = tools[1]
    assert isinstance(patch, responses.ResponsesTool) and patch.freeform
    assert patch.parameters["required"] == ["input"]
    told = patch.parameters["properties"]["input"]["description"]
    assert "not JSON" in told and GRAMMAR in told  # the model is told the patch grammar
    search = tools[2]
    assert isinstance(search, responses.ResponsesTool) and not search.freeform
    assert (search.namespace, search.local_name) == ("mcp__docs__", "search")


def test_an_sdk_request_carries_its_settings() -> None:
    pixel = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJ"
        "RU5ErkJggg=="
    )
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    conversation = decoded(
        {
            "model": "gpt-4.1",
            "instructions": "Answer in JSON.",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Where is this?"},
                        {
                            "type": "input_image",
                            "image_url": f"data:image/png;base64,{pixel}",
                            "detail": "auto",
                        },
                        {"type": "input_image", "image_url": "https://example.com/tower.jpg"},
                    ],
                },
                {"role": "assistant", "content": "Paris?"},
                {"role": "user", "content": "Say it as JSON."},
            ],
            "tools": [{"type": "function", "name": "lookup", "parameters": None, "strict": True}],
            "tool_choice": {"type": "function", "name": "lookup"},
            "max_output_tokens": 300,
            "temperature": 0.2,
            "top_p": 0.9,
            "text": {
                "format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}
            },
            "reasoning": {"effort": "none"},
            "metadata": {"app": "atlas"},
            "user": "u-1",
            "safety_identifier": "s-1",
            "service_tier": "auto",
            "truncation": "auto",
            "previous_response_id": None,
        }
    )
    assert [t.text for t in conversation.system] == ["Answer in JSON."]
    question = conversation.messages[0].parts
    assert question[1] == ir.Image("image/png", pixel)
    assert question[2] == ir.Image(url="https://example.com/tower.jpg")
    assert [m.role for m in conversation.messages] == ["user", "assistant", "user"]
    assert conversation.tools == [ir.Tool("lookup", None, {"type": "object", "properties": {}})]
    assert conversation.tool_choice == ir.ToolChoice("named", "lookup")
    assert (conversation.max_output_tokens, conversation.temperature, conversation.top_p) == (
        300,
        0.2,
        0.9,
    )
    assert conversation.response_format == ir.ResponseFormat("json_schema", "place", schema, True)
    assert conversation.reasoning == ir.ReasoningConfig(enabled=False)
    assert not conversation.stream
    assert conversation.dropped == [
        "metadata",
        "user",
        "safety_identifier",
        "service_tier",
        "truncation",
    ]


def test_a_string_input_is_one_user_turn_and_xhigh_effort_is_high() -> None:
    conversation = decoded({"model": "m", "input": "Hi", "reasoning": {"effort": "xhigh"}})
    assert conversation.messages == [ir.Message("user", (ir.Text("Hi"),))]
    assert conversation.reasoning == ir.ReasoningConfig(effort="high", include_thoughts=False)


def test_allowed_tools_narrow_the_tools_offered() -> None:
    body = codex_request()
    body["tool_choice"] = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "custom", "name": "apply_patch"}],
    }
    conversation = decoded(body)
    assert [t.name for t in conversation.tools] == ["apply_patch"]
    assert conversation.tool_choice == ir.ToolChoice("required")


_ITEM = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}


def items(*given: Any) -> dict[str, Any]:
    return {"model": "m", "input": list(given)}


def said(*parts: dict[str, Any]) -> dict[str, Any]:
    return items({"role": "user", "content": list(parts)})


def hi(**settings: Any) -> dict[str, Any]:
    return {"model": "m", "input": "Hi", **settings}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": "Hi"}, "model"),
        ({"model": "m"}, "input"),
        (items(), "input"),
        (hi(instructions=["x"]), "instructions"),
        (items(3), "input[0]"),
        (items({**_ITEM, "call_id": None}), "input[0].call_id"),
        (items({**_ITEM, "name": ""}), "input[0].name"),
        (items({"type": "function_call_output", "call_id": "c1"}), "input[0].output"),
        (
            items({"type": "custom_tool_call", "call_id": "c", "name": "p", "input": 1}),
            "input[0].input",
        ),
        (items({"role": "tool", "content": "x"}), "input[0].role"),
        (items({"role": "user", "content": 5}), "input[0].content"),
        (said({"type": "input_file", "file_id": "f"}), "input[0].content[0]"),
        (said({"type": "input_image", "file_id": "f"}), "input[0].content[0]"),
        (said({"type": "input_text"}), "input[0].content[0]"),
        (items({"type": "item_reference", "id": "msg_1"}), "input[0]"),
        (hi(previous_response_id="resp_1"), "previous_response_id"),
        (hi(conversation="conv_1"), "conversation"),
        (hi(background=True), "background"),
        (hi(stream="yes"), "stream"),
        (hi(max_output_tokens=0), "max_output_tokens"),
        (hi(temperature="hot"), "temperature"),
        (hi(parallel_tool_calls="no"), "parallel_tool_calls"),
        (hi(reasoning={"effort": "extreme"}), "reasoning.effort"),
        (hi(tool_choice={"type": "web_search_preview"}), "tool_choice"),
        (hi(text={"format": {"type": "json_schema"}}), "text.format"),
        (hi(tools=[{"type": "function"}]), "tools[0].name"),
        (hi(tools={"type": "function"}), "tools"),
    ],
)
def test_a_malformed_request_names_its_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        decoded(body)
    assert raised.value.param == field


def test_a_previous_response_id_is_refused_saying_why() -> None:
    with pytest.raises(InvalidRequest, match="stores no responses"):
        conversion("responses", "anthropic").decode(
            {"model": "m", "input": "Hi", "previous_response_id": "resp_1"}
        )


def test_a_responses_request_is_native_on_an_openai_channel() -> None:
    assert conversion("responses", "openai") is None
    assert conversion("responses", "openai-chat") is not None


# ---------------------------------------------------------------- the answer


def bound(body: dict[str, Any], channel: str = "anthropic") -> Conversion:
    """The conversion of `body` for a `channel` channel, its request encoded."""
    found = conversion("responses", channel)
    assert found is not None
    found.encode(found.decode(body), model="upstream-model")
    return found


def answer_of(conv: Conversion, upstream: dict[str, Any]) -> Response:
    raw, _ = conv.answer(upstream)
    return Response.model_validate(orjson.loads(raw))


ANTHROPIC_PATCH_ANSWER = {
    "id": "msg_01PatchAnswer",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "The +1 is the bug.", "signature": "EqgBCkYIBxgCKkD1"},
        {"type": "text", "text": "Fixing the off-by-one."},
        {
            "type": "tool_use",
            "id": "toolu_01Patch",
            "name": "apply_patch",
            "input": {"input": PATCH},
        },
        {
            "type": "tool_use",
            "id": "toolu_01Search",
            "name": "mcp__docs__search",
            "input": {"query": "add"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 120,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 4000,
        "output_tokens": 95,
        "output_tokens_details": {"thinking_tokens": 12},
    },
}


def test_an_answer_is_a_response_the_sdk_validates() -> None:
    response = answer_of(bound(codex_request()), ANTHROPIC_PATCH_ANSWER)
    assert response.object == "response" and response.status == "completed"
    reasoning, message, patch, search = response.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "The +1 is the bug."
    assert (reasoning.encrypted_content or "").startswith("quotaledger.reasoning.v1:")
    assert message.type == "message" and response.output_text == "Fixing the off-by-one."
    # The freeform tool's call comes back as Codex's patch, whole.
    assert patch.type == "custom_tool_call"
    assert (patch.call_id, patch.name, patch.input) == ("toolu_01Patch", "apply_patch", PATCH)
    assert search.type == "function_call" and search.namespace == "mcp__docs__"
    assert (search.name, json.loads(search.arguments)) == ("search", {"query": "add"})
    assert search.id and search.id.startswith("fc_") and search.call_id == "toolu_01Search"
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (4150, 4000)
    assert (usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (95, 12)
    assert usage.total_tokens == 4245 and response.parallel_tool_calls is False


@pytest.mark.parametrize(
    ("stop_reason", "reason"), [("max_tokens", "max_output_tokens"), ("refusal", "content_filter")]
)
def test_a_cut_or_refused_answer_is_incomplete(stop_reason: str, reason: str) -> None:
    upstream = {**ANTHROPIC_PATCH_ANSWER, "stop_reason": stop_reason}
    upstream["content"] = [{"type": "text", "text": "Half"}]
    response = answer_of(bound({"model": "m", "input": "Hi"}), upstream)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == reason


def test_a_freeform_call_the_model_wrote_as_text_keeps_its_text() -> None:
    assert responses.freeform_input(PATCH) == PATCH
    assert responses.freeform_input(json.dumps({"patch": PATCH})) == PATCH
    assert responses.freeform_input(json.dumps({"input": PATCH, "x": 1})) == PATCH
    assert responses.freeform_input("{}") == ""


def test_an_openai_issued_or_mangled_seal_is_not_ours() -> None:
    signed = ir.Reasoning("thought", "sig")
    sealed = responses.seal(signed)
    assert sealed is not None and responses.unseal(sealed) == signed
    assert responses.unseal(sealed[:-3] + "!!!") is None
    assert responses.unseal("gAAAAABo9x2Q") is None
    assert responses.seal(ir.Reasoning("unsigned")) is None
    redacted = ir.Reasoning(redacted="EmwKAhgBEgy3va3pzix")
    assert responses.unseal(responses.seal(redacted) or "") == redacted


# ---------------------------------------------------------------- round trips


def next_turn(body: dict[str, Any], response: Response, *outputs: dict[str, Any]) -> dict[str, Any]:
    """Codex's next request: the answer's items, then the tools' outputs, appended."""
    items = [
        item.model_dump(exclude_none=True, exclude={"id", "status"}) for item in response.output
    ]
    return {**body, "input": [*body["input"], *items, *outputs]}


def test_tool_ids_and_the_thinking_signature_survive_two_turns_on_anthropic() -> None:
    first = codex_request()
    conv = bound(first)
    response = answer_of(conv, ANTHROPIC_PATCH_ANSWER)
    second = next_turn(
        first,
        response,
        {"type": "custom_tool_call_output", "call_id": "toolu_01Patch", "output": "Success."},
        {"type": "function_call_output", "call_id": "toolu_01Search", "output": "add(a, b)"},
    )
    again = conversion("responses", "anthropic")
    assert again is not None
    upstream, _ = again.encode(again.decode(second), model="claude-sonnet-4-5")
    assistant, results = upstream["messages"][-2:]
    assert assistant["content"][0] == {
        "type": "thinking",
        "thinking": "The +1 is the bug.",
        "signature": "EqgBCkYIBxgCKkD1",
    }
    assert assistant["content"][2] == {
        "type": "tool_use",
        "id": "toolu_01Patch",
        "name": "apply_patch",
        "input": {"input": PATCH},
    }
    assert [r["tool_use_id"] for r in results["content"]] == ["toolu_01Patch", "toolu_01Search"]
    # A second tool turn: both turns' signatures go back as they were signed.
    second_answer = {
        **ANTHROPIC_PATCH_ANSWER,
        "content": [
            {"type": "thinking", "thinking": "Now run the tests.", "signature": "EpoCCkYIBxgC2"},
            {
                "type": "tool_use",
                "id": "toolu_02Exec",
                "name": "exec_command",
                "input": {"cmd": "pytest -q"},
            },
        ],
    }
    again.encode(again.decode(second), model="claude-sonnet-4-5")
    third = next_turn(
        second,
        answer_of(again, second_answer),
        {"type": "function_call_output", "call_id": "toolu_02Exec", "output": "1 passed"},
    )
    last = conversion("responses", "anthropic")
    assert last is not None
    upstream, dropped = last.encode(last.decode(third), model="claude-sonnet-4-5")
    signed = [
        (b["thinking"], b["signature"])
        for m in upstream["messages"]
        for b in m["content"]
        if b["type"] == "thinking"
    ]
    assert signed == [
        ("The +1 is the bug.", "EqgBCkYIBxgCKkD1"),
        ("Now run the tests.", "EpoCCkYIBxgC2"),
    ]
    assert "reasoning.encrypted_content" not in dropped
    assert upstream["tools"][1]["name"] == "apply_patch"
    assert upstream["tools"][1]["input_schema"]["required"] == ["input"]
    assert "web_search" not in {t["name"] for t in upstream["tools"]}


def test_a_patch_round_trips_through_a_chat_channel() -> None:
    first = codex_request()
    conv = bound(first, "openai-chat")
    upstream, _ = conv.encode(conv.decode(first), model="deepseek-chat")
    sent = {t["function"]["name"]: t["function"] for t in upstream["tools"]}
    assert set(sent) == {"exec_command", "apply_patch", "mcp__docs__search"}
    assert sent["apply_patch"]["parameters"]["properties"]["input"]["type"] == "string"
    call = {"input": PATCH}
    chat_answer = {
        "id": "chatcmpl-77",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-chat",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "Patch the add function.",
                    "tool_calls": [
                        {
                            "id": "call_00_Pz9",
                            "type": "function",
                            "function": {"name": "apply_patch", "arguments": json.dumps(call)},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 900,
            "completion_tokens": 60,
            "total_tokens": 960,
            "prompt_tokens_details": {"cached_tokens": 512},
        },
    }
    response = answer_of(conv, chat_answer)
    reasoning, patch = response.output
    assert reasoning.type == "reasoning" and reasoning.encrypted_content is None
    assert patch.type == "custom_tool_call" and patch.input == PATCH
    second = next_turn(
        first,
        response,
        {"type": "custom_tool_call_output", "call_id": "call_00_Pz9", "output": "Done"},
    )
    again = conversion("responses", "openai-chat")
    assert again is not None
    upstream, _ = again.encode(again.decode(second), model="deepseek-chat")
    assistant, result = upstream["messages"][-2:]
    assert assistant["reasoning_content"] == "Patch the add function."
    (sent_call,) = assistant["tool_calls"]
    assert sent_call["id"] == "call_00_Pz9"
    assert json.loads(sent_call["function"]["arguments"]) == call
    assert result == {"role": "tool", "tool_call_id": "call_00_Pz9", "content": "Done"}


# ---------------------------------------------------------------- streams


def sdk_stream(sent: bytes) -> tuple[list[Any], Any]:
    """Every event validated by the SDK's own model, then run through its accumulator:
    (the events, the final Response it accumulated, or None)."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    events, final = [], None
    for data in client_events(sent):
        event = EVENTS.validate_python(data)
        events.append(event)
        for fired in state.handle_event(event):
            if fired.type == "response.completed":
                final = fired.response
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    return events, final


def converted(channel: str, body: dict[str, Any], stream: bytes, prompt: int = 10) -> bytes:
    conv = bound(body, channel)
    return relay_stream(conv.stream(prompt_tokens=prompt), stream)


def test_an_anthropic_stream_accumulates_into_the_final_response() -> None:
    events, final = sdk_stream(
        converted("anthropic", {"model": "m", "input": "Hi"}, ANTHROPIC_STREAM)
    )
    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "Hello!" and final.status == "completed"
    assert final.usage.input_tokens == 32025  # uncached, cache writes and cache reads
    assert final.usage.input_tokens_details.cached_tokens == 30000
    assert final.usage.output_tokens == 15


def test_anthropic_thinking_and_a_tool_call_stream_as_reasoning_and_a_function_call() -> None:
    sent = converted("anthropic", codex_request(), ANTHROPIC_TOOL_AND_THINKING_STREAM)
    events, final = sdk_stream(sent)
    kinds = [e.type for e in events]
    assert "response.reasoning_summary_part.added" in kinds
    assert "response.reasoning_summary_text.done" in kinds
    assert kinds.count("response.function_call_arguments.delta") == 2
    reasoning, call = final.output
    assert reasoning.summary[0].text == "I need the weather."
    assert responses.unseal(reasoning.encrypted_content) == ir.Reasoning(
        "I need the weather.", "EqQBCgIYAhIM"
    )
    assert (call.call_id, call.name) == ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather")
    assert json.loads(call.arguments) == {"location": "San Francisco, CA"}
    assert final.usage.output_tokens == 89
    assert final.usage.output_tokens_details.reasoning_tokens == 40


def test_a_chat_stream_accumulates_with_cached_and_reasoning_tokens() -> None:
    _, final = sdk_stream(
        converted("openai-chat", {"model": "m", "input": "Hi"}, OPENAI_CHAT_STREAM)
    )
    assert final.output_text == "Hello world!"
    assert (final.usage.input_tokens, final.usage.input_tokens_details.cached_tokens) == (
        1200,
        1024,
    )
    assert final.usage.output_tokens_details.reasoning_tokens == 5
    assert final.usage.total_tokens == 1217


def test_a_chat_tool_stream_accumulates_the_call_arguments() -> None:
    _, final = sdk_stream(
        converted("openai-chat", {"model": "m", "input": "Hi"}, OPENAI_CHAT_TOOL_STREAM, prompt=20)
    )
    (call,) = final.output
    assert (call.type, call.call_id, call.name) == ("function_call", "call_abc", "get_weather")
    assert json.loads(call.arguments) == {"location": "Paris"}
    assert final.usage.input_tokens == 20  # no usage chunk: the relay's own count


def chat_chunks(*deltas: dict[str, Any], finish: str) -> bytes:
    head = {"id": "chatcmpl-5", "object": "chat.completion.chunk", "created": 1, "model": "glm-4.6"}
    chunks = [
        {**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    usage = {"prompt_tokens": 700, "completion_tokens": 80, "total_tokens": 780}
    chunks.append({**head, "choices": [], "usage": usage})
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def test_a_streamed_patch_reaches_codex_as_a_custom_tool_call() -> None:
    arguments = json.dumps({"input": PATCH})
    stream = chat_chunks(
        {"role": "assistant", "content": "Patching."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_P",
                    "type": "function",
                    "function": {"name": "apply_patch", "arguments": arguments[:20]},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[20:]}}]},
        finish="tool_calls",
    )
    events, final = sdk_stream(converted("openai-chat", codex_request(), stream))
    inputs = [e for e in events if e.type == "response.custom_tool_call_input.done"]
    assert [e.input for e in inputs] == [PATCH]
    message, patch = final.output
    assert message.content[0].text == "Patching."
    assert (patch.type, patch.call_id, patch.name, patch.input) == (
        "custom_tool_call",
        "call_P",
        "apply_patch",
        PATCH,
    )


def test_a_stream_cut_at_the_cap_ends_incomplete() -> None:
    stream = chat_chunks({"role": "assistant", "content": "Half an ans"}, finish="length")
    events, final = sdk_stream(converted("openai-chat", {"model": "m", "input": "Hi"}, stream))
    assert final is None  # the SDK completes only a `response.completed`
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output[0].status == "incomplete"


def test_an_upstream_error_mid_stream_is_a_failed_response_codex_retries() -> None:
    cut = ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: content_block_stop")]
    events, _ = sdk_stream(
        converted("anthropic", {"model": "m", "input": "Hi"}, cut + ANTHROPIC_ERROR_EVENT)
    )
    error, failed = events[-2:]
    assert (error.type, error.code, error.message) == ("error", "server_error", "Overloaded")
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error.code == "server_error"  # retried by Codex, as a 5xx is


def test_our_client_error_before_any_event_is_one_codex_does_not_retry() -> None:
    conv = bound({"model": "m", "input": "Hi"})
    tracker = conv.stream(prompt_tokens=5)
    events, _ = sdk_stream(tracker.fail("The request is too large for this key.", status=400))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress", "error", "response.failed"]
    failed = events[-1].response
    assert failed.error.code == "invalid_prompt"  # Codex: InvalidRequest, shown, not retried
    assert failed.error.message == "The request is too large for this key."


def test_a_stream_ended_early_fails_after_the_items_done() -> None:
    cut = ANTHROPIC_TOOL_AND_THINKING_STREAM[
        : ANTHROPIC_TOOL_AND_THINKING_STREAM.index(b"event: message_delta")
    ]
    events, _ = sdk_stream(converted("anthropic", codex_request(), cut))
    failed = events[-1]
    assert failed.type == "response.failed"
    assert [item.type for item in failed.response.output] == ["reasoning", "function_call"]


def test_usage_sent_in_a_response_counts_cache_writes_as_input() -> None:
    usage = TokenUsage(input=10, cache_read=5, cache_write_5m=3, cache_write_1h=2, output=7)
    conv = bound({"model": "m", "input": "Hi"})
    answer = ir.Answer("msg_1", "m", [ir.Text("ok")], usage=usage)
    response = Response.model_validate(conv._answering().encode_answer(answer))
    assert response.usage is not None
    assert response.usage.input_tokens == 20 and response.usage.total_tokens == 27
    assert response.usage.input_tokens_details.cache_write_tokens == 5


def anthropic_events(*events: dict[str, Any]) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def test_a_thinking_block_with_only_its_signature_still_goes_back_signed() -> None:
    message = {"id": "msg_03", "type": "message", "role": "assistant", "content": [],
               "model": "claude-opus-4-6", "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": 50, "output_tokens": 1}}  # fmt: skip
    patch_json = json.dumps({"input": PATCH})
    patch_call = {"type": "tool_use", "id": "toolu_03", "name": "apply_patch", "input": {}}
    stream = anthropic_events(
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "signature_delta", "signature": "EuYBCkQIBxgC"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": patch_call},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": patch_json[:9]}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": patch_json[9:]}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 70}},
        {"type": "message_stop"},
    )  # fmt: skip
    _, final = sdk_stream(converted("anthropic", codex_request(), stream))
    reasoning, patch = final.output
    assert reasoning.summary == []
    assert responses.unseal(reasoning.encrypted_content) == ir.Reasoning("", "EuYBCkQIBxgC")
    assert (patch.type, patch.call_id, patch.input) == ("custom_tool_call", "toolu_03", PATCH)
