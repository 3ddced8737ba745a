# ruff: noqa: E501 - recorded wire samples keep one event per line, as on the wire
"""The Gemini codec, both sides (SPEC §11, §11.1): a google-genai SDK app or Gemini CLI on a
channel of another format, and chat / messages clients on a `gemini` channel.

Requests are the SDK's own (sent by `google.genai` to a loopback server that records them) or
Gemini CLI's shape; answers and stream chunks are read back by the SDKs' own models and
parsers (`GenerateContentResponse`, the OpenAI and Anthropic SDKs' stream accumulators).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
import openai
import orjson
import pytest
from aiohttp import web
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from wire_samples import (
    ANTHROPIC_TOOL_AND_THINKING_STREAM,
    OPENAI_CHAT_STREAM,
    OPENAI_CHAT_TOOL_STREAM,
)
from wire_support import relay_stream, serve_app

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import ir
from quotaledger.wire.codecs import anthropic as anthropic_codec
from quotaledger.wire.codecs import chat as chat_codec
from quotaledger.wire.codecs import gemini as gemini_codec
from quotaledger.wire.codecs.gemini.signatures import SYNTHETIC_SIGNATURE, split_call_id
from quotaledger.wire.codecs.gemini.usage import parse_usage
from quotaledger.wire.conversions import conversion
from quotaledger.wire.errors import InvalidRequest

genai = pytest.importorskip("google.genai", reason="google-genai is in the test extra")
from google.genai import errors as genai_errors  # noqa: E402
from google.genai import types as genai_types  # noqa: E402

MODEL = "gemini-2.5-flash"
TOOL = "get_weather"
SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string"}},
    "required": ["location"],
}
# Gemini's signatures are opaque bytes, written in standard base64 (with + and /).
GEMINI_SIGNATURE = base64.b64encode(bytes(range(180, 252))).decode()
TEXT_SIGNATURE = base64.b64encode(bytes(range(10, 70))).decode()
USAGE = (
    '{"promptTokenCount": 1200, "candidatesTokenCount": 15, "totalTokenCount": 1275,'
    ' "cachedContentTokenCount": 1024, "thoughtsTokenCount": 60,'
    ' "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}],'
    ' "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1024}]}'
)
# streamGenerateContent?alt=sse as Google writes it: a thought, then the function call whole
# with its signature, the finish reason and the usage in the last chunk.
GEMINI_TOOL_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "I need the weather.", "thought": true}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 1200, "totalTokenCount": 1260, "cachedContentTokenCount": 1024, "thoughtsTokenCount": 60}, "modelVersion": "gemini-2.5-flash", "responseId": "Xr5eaPqHN9ax1e8P"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}, "thoughtSignature": "'
    + GEMINI_SIGNATURE.encode()
    + b'"}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": '
    + USAGE.encode()
    + b', "modelVersion": "gemini-2.5-flash", "responseId": "Xr5eaPqHN9ax1e8P"}\r\n\r\n'
)
GEMINI_TEXT_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Hello"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " world!"}], "role": "model"}, "index": 0}], "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": "", "thoughtSignature": "'
    + TEXT_SIGNATURE.encode()
    + b'"}], "role": "model"}, "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 3, "totalTokenCount": 11}, "modelVersion": "gemini-2.5-flash", "responseId": "r1"}\r\n\r\n'
)
GEMINI_ANSWER = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"text": "I need the weather.", "thought": True},
                    {
                        "functionCall": {"name": TOOL, "args": {"location": "Paris"}},
                        "thoughtSignature": GEMINI_SIGNATURE,
                    },
                ],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": orjson.loads(USAGE),
    "modelVersion": "gemini-2.5-flash",
    "responseId": "Xr5eaPqHN9ax1e8P",
}
ANTHROPIC_THINKING_ANSWER = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "I need the weather.", "signature": "EqQBCgIYAhIM+/x="},
        {"type": "tool_use", "id": "toolu_01A", "name": TOOL, "input": {"location": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 40, "cache_read_input_tokens": 400, "output_tokens": 90},
}


# ---------------------------------------------------------------- a loopback "Gemini"


@dataclass
class FakeGemini:
    """Records what the google-genai SDK sends and answers what the test set, so that the
    SDK's own request builder and response parser are the ones under test."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    reply: bytes = b"{}"
    status: int = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        streamed = request.query.get("alt") == "sse"
        kind = "text/event-stream" if streamed else "application/json"
        return web.Response(body=self.reply, status=self.status, content_type=kind)

    def client(self) -> Any:
        options = genai_types.HttpOptions(base_url=self.url)
        return genai.Client(api_key="test-key", http_options=options)

    def sent(self, *, stream: bool = False) -> dict[str, Any]:
        """The last request, with the path's model and streaming put in as the pipeline does."""
        return {**self.bodies[-1], "model": MODEL, "stream": stream}


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeGemini]:
    fake = FakeGemini()
    app = web.Application()
    app.router.add_post("/{path:.*}", fake.handle)
    with serve_app(app) as url:
        fake.url = url
        yield fake


def sdk_request(fake: FakeGemini, contents: Any, **config: Any) -> dict[str, Any]:
    fake.reply = orjson.dumps(
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}}]}
    )
    with fake.client() as client:
        client.models.generate_content(
            model=MODEL, contents=contents, config=genai_types.GenerateContentConfig(**config)
        )
    return fake.sent()


# ================================================================ the client's side: requests


def test_an_sdk_request_decodes_with_its_system_prompt_tools_and_settings(
    fake_gemini: FakeGemini,
) -> None:
    image = genai_types.Part.from_bytes(data=b"\xff\xfe\xfd\x00", mime_type="image/png")
    body = sdk_request(
        fake_gemini,
        [
            genai_types.Content(
                role="user", parts=[genai_types.Part.from_text(text="Weather?"), image]
            )
        ],
        system_instruction="Be brief.",
        max_output_tokens=512,
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END"],
        tools=[
            genai_types.Tool(
                function_declarations=[
                    genai_types.FunctionDeclaration(
                        name=TOOL,
                        description="Weather by city",
                        parameters=genai_types.Schema(
                            type="OBJECT",
                            properties={
                                "location": genai_types.Schema(type="STRING", nullable=True)
                            },
                            required=["location"],
                        ),
                    )
                ]
            ),
            genai_types.Tool(google_search=genai_types.GoogleSearch()),
        ],
        tool_config=genai_types.ToolConfig(
            function_calling_config=genai_types.FunctionCallingConfig(
                mode="ANY", allowed_function_names=[TOOL]
            )
        ),
        thinking_config=genai_types.ThinkingConfig(thinking_budget=2048, include_thoughts=True),
        safety_settings=[
            genai_types.SafetySetting(category="HARM_CATEGORY_HATE_SPEECH", threshold="BLOCK_NONE")
        ],
        seed=7,
    )
    conversation = gemini_codec.CLIENT.decode_request(body)
    assert conversation.model == MODEL and conversation.stream is False
    assert conversation.system == [ir.Text("Be brief.")]
    (message,) = conversation.messages
    # The SDK writes bytes in base64url; the conversation holds standard base64.
    assert message.parts == (
        ir.Text("Weather?"),
        ir.Image("image/png", base64.b64encode(b"\xff\xfe\xfd\x00").decode()),
    )
    (tool,) = conversation.tools
    assert tool.name == TOOL and tool.description == "Weather by city"
    assert tool.parameters == {
        "type": "object",
        "properties": {"location": {"type": ["string", "null"]}},
        "required": ["location"],
    }
    assert conversation.tool_choice == ir.ToolChoice("named", TOOL)
    assert (conversation.max_output_tokens, conversation.temperature) == (512, 0.3)
    assert (conversation.top_p, conversation.top_k, conversation.stop) == (0.9, 40, ["END"])
    assert conversation.reasoning == ir.ReasoningConfig(budget_tokens=2048, include_thoughts=True)
    assert set(conversation.dropped) == {
        f"tools[{[*map(str, body['tools'])].index(str({'googleSearch': {}}))}].googleSearch",
        "safetySettings",
        "generationConfig.seed",
    }


def test_json_output_with_a_schema_becomes_a_json_schema_format(fake_gemini: FakeGemini) -> None:
    body = sdk_request(
        fake_gemini,
        "List two cities.",
        response_mime_type="application/json",
        response_schema=genai_types.Schema(
            type="ARRAY", items=genai_types.Schema(type="STRING"), min_items=2
        ),
    )
    conversation = gemini_codec.CLIENT.decode_request(body)
    assert conversation.response_format == ir.ResponseFormat(
        "json_schema", schema={"type": "array", "items": {"type": "string"}, "minItems": 2}
    )
    only_json = {**body, "generationConfig": {"responseMimeType": "application/json"}}
    decoded = gemini_codec.CLIENT.decode_request(only_json)
    assert decoded.response_format == ir.ResponseFormat("json_object")


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        ({"thinkingBudget": -1, "includeThoughts": True}, ir.ReasoningConfig()),
        ({"thinkingBudget": 0}, ir.ReasoningConfig(enabled=False)),
        ({"thinkingLevel": "HIGH"}, ir.ReasoningConfig(effort="high", include_thoughts=False)),
        ({"thinking_level": "low", "include_thoughts": True}, ir.ReasoningConfig(effort="low")),
        ({"includeThoughts": False}, None),
    ],
)
def test_thinking_config_maps_to_the_one_reasoning_shape(
    thinking: dict[str, Any], expected: ir.ReasoningConfig | None
) -> None:
    body = {**_cli_request(), "generationConfig": {"thinkingConfig": thinking}}
    assert gemini_codec.CLIENT.decode_request(body).reasoning == expected


def _cli_request() -> dict[str, Any]:
    """A Gemini CLI turn (its geminiChat's shape): the system prompt as a user Content, tools
    with parametersJsonSchema, a history whose function call came back without an id (the
    CLI's own call id on the response), the placeholder signature it adds, thoughts stripped."""
    return {
        "model": "gemini-3-pro-preview",
        "stream": True,
        "contents": [
            {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]},
            {
                "role": "model",
                "parts": [
                    {"text": "Let me look."},
                    {
                        "functionCall": {"name": TOOL, "args": {"location": "Paris"}},
                        "thoughtSignature": SYNTHETIC_SIGNATURE,
                    },
                    {"functionCall": {"name": "read_file", "args": {"path": "a.txt"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": "read_file-1723456789-9f3a",
                            "name": "read_file",
                            "response": {"output": "contents of a"},
                        }
                    },
                    {
                        "functionResponse": {
                            "id": "get_weather-1723456789-1b2c",
                            "name": TOOL,
                            "response": {"error": "service down"},
                        }
                    },
                ],
            },
        ],
        "systemInstruction": {"role": "user", "parts": [{"text": "You are an agent."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {"name": TOOL, "description": "Weather", "parametersJsonSchema": SCHEMA},
                    {"name": "read_file", "parametersJsonSchema": {"type": "object"}},
                ]
            }
        ],
        "generationConfig": {
            "temperature": 1,
            "topP": 0.95,
            "topK": 64,
            "thinkingConfig": {"includeThoughts": True, "thinkingLevel": "HIGH"},
        },
    }


def test_a_gemini_cli_request_pairs_responses_with_calls_by_name_in_order() -> None:
    conversation = gemini_codec.CLIENT.decode_request(_cli_request())
    assert conversation.stream is True and conversation.system == [ir.Text("You are an agent.")]
    _, model_turn, results = conversation.messages
    calls = [p for p in model_turn.parts if isinstance(p, ir.ToolCall)]
    # Ids for calls Gemini gave none: stable across requests, so prompt caches keep matching.
    assert [(c.id, c.name) for c in calls] == [("call_1_1", TOOL), ("call_1_2", "read_file")]
    assert calls == [
        p for p in gemini_codec.CLIENT.decode_request(_cli_request()).messages[1].parts
        if isinstance(p, ir.ToolCall)
    ]  # fmt: skip
    assert results.parts == (
        ir.ToolResult("call_1_2", (ir.Text("contents of a"),), False, "read_file"),
        ir.ToolResult("call_1_1", (ir.Text("service down"),), True, TOOL),
    )
    assert conversation.tools[0].parameters == SCHEMA
    assert conversation.reasoning == ir.ReasoningConfig(effort="high")
    assert conversation.dropped == []  # the CLI's placeholder signature is no loss


def test_a_response_matches_its_call_by_id_before_name() -> None:
    body = _cli_request()
    body["contents"][1]["parts"][1]["functionCall"]["id"] = "toolu_01A"
    body["contents"][1]["parts"].append(
        {"functionCall": {"id": "toolu_01B", "name": TOOL, "args": {"location": "Rome"}}}
    )
    body["contents"][2]["parts"] = [
        {"functionResponse": {"id": "toolu_01B", "name": TOOL, "response": {"output": "Rome"}}},
        {"functionResponse": {"name": TOOL, "response": {"temperature": 18}}},
        {"functionResponse": {"name": "read_file", "response": {"output": "a"}}},
    ]
    results = gemini_codec.CLIENT.decode_request(body).messages[2].parts
    assert [(r.call_id, r.content) for r in results if isinstance(r, ir.ToolResult)] == [
        ("toolu_01B", (ir.Text("Rome"),)),
        ("toolu_01A", (ir.Text('{"temperature":18}'),)),
        ("call_1_2", (ir.Text("a"),)),
    ]


def test_snake_case_fields_as_in_googles_curl_examples_are_read() -> None:
    body = {
        "model": MODEL,
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"parts": [{"inline_data": {"mime_type": "image/jpeg", "data": "/9j/4AAQ"}}]}],
        "generation_config": {"max_output_tokens": 64, "stop_sequences": ["x"]},
        "tool_config": {"function_calling_config": {"mode": "NONE"}},
    }
    conversation = gemini_codec.CLIENT.decode_request(body)
    assert conversation.system == [ir.Text("Be brief.")]
    assert conversation.messages == [ir.Message("user", (ir.Image("image/jpeg", "/9j/4AAQ"),))]
    assert (conversation.max_output_tokens, conversation.stop) == (64, ["x"])
    assert conversation.tool_choice == ir.ToolChoice("none") and conversation.dropped == []


def test_fields_no_other_format_carries_are_named() -> None:
    body = {
        **_cli_request(),
        "cachedContent": "cachedContents/abc",
        "labels": {"team": "a"},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "tools": [{"codeExecution": {}, "urlContext": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED"}, "retrievalConfig": {}},
        "generationConfig": {"candidateCount": 2, "presencePenalty": 0.5},
    }
    body["contents"][0]["parts"].append({"executableCode": {"language": "PYTHON", "code": "1"}})
    assert set(gemini_codec.CLIENT.decode_request(body).dropped) == {
        "cachedContent",
        "labels",
        "safetySettings",
        "tools[0].codeExecution",
        "tools[0].urlContext",
        "toolConfig.retrievalConfig",
        "toolConfig.functionCallingConfig.mode",
        "generationConfig.candidateCount",
        "generationConfig.presencePenalty",
        "executableCode",
    }


def _with(path: str, value: Any) -> dict[str, Any]:
    """A Gemini CLI request with the value at `path` (dots and [n]) replaced."""
    body = json.loads(json.dumps(_cli_request()))
    keys = [
        int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")
    ]
    target = body
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "contents"),
        ({"model": MODEL, "contents": []}, "contents"),
        (_with("contents[0].role", "assistant"), "contents[0].role"),
        (_with("contents[0].parts", "hi"), "contents[0].parts"),
        (_with("contents[0].parts[0]", {"thumbnail": 1}), "contents[0].parts[0]"),
        (
            _with(
                "contents[0].parts[0]",
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
            ),
            "contents[0].parts[0].inlineData",
        ),
        (
            _with("contents[0].parts[0]", {"fileData": {"fileUri": "gs://bucket/cat.png"}}),
            "contents[0].parts[0].fileData",
        ),
        (
            _with(
                "contents[0].parts[0]",
                {
                    "fileData": {
                        "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"
                    }
                },
            ),
            "contents[0].parts[0].fileData",
        ),
        (
            _with("contents[1].parts[1].functionCall.args", "x"),
            "contents[1].parts[1].functionCall.args",
        ),
        (_with("contents[2].parts[0].functionResponse.name", "delete_all"), "contents[2].parts[0]"),
        (_with("contents[0].parts[0]", {"functionCall": {"name": TOOL}}), "contents[0].parts[0]"),
        (
            _with("tools[0].functionDeclarations[0].name", None),
            "tools[0].functionDeclarations[0].name",
        ),
        (
            _with("toolConfig", {"functionCallingConfig": {"mode": "SOMETIMES"}}),
            "toolConfig.functionCallingConfig.mode",
        ),
        (_with("generationConfig.maxOutputTokens", "many"), "generationConfig.maxOutputTokens"),
        (_with("generationConfig.temperature", "hot"), "generationConfig.temperature"),
        (
            _with("generationConfig.thinkingConfig.thinkingLevel", "ULTRA"),
            "generationConfig.thinkingConfig.thinkingLevel",
        ),
        (_with("stream", "yes"), "stream"),
    ],
)
def test_a_malformed_request_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        gemini_codec.CLIENT.decode_request(body)
    assert refused.value.param == param
    assert param.split(".")[-1].split("[")[0] in refused.value.message


def test_a_public_image_url_is_carried_as_a_url() -> None:
    body = _with(
        "contents[0].parts[0]",
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
    )
    (image,) = gemini_codec.CLIENT.decode_request(body).messages[0].parts
    assert image == ir.Image("image/png", url="https://example.com/cat.png")


# ================================================================ the client's side: answers


def test_an_answer_reads_back_in_the_sdk_with_ids_thoughts_and_usage() -> None:
    answer = anthropic_codec.CHANNEL.decode_answer(ANTHROPIC_THINKING_ANSWER)
    response = genai_types.GenerateContentResponse.model_validate(
        gemini_codec.CLIENT.encode_answer(answer)
    )
    (call,) = response.function_calls or []
    assert (call.id, call.name, call.args) == ("toolu_01A", TOOL, {"location": "Paris"})
    assert response.candidates and response.candidates[0].finish_reason == "STOP"
    thought = response.candidates[0].content.parts[0]
    assert thought.thought is True and thought.text == "I need the weather."
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (440, 400)
    assert (usage.candidates_token_count, usage.total_token_count) == (90, 530)


def test_reasoning_usage_splits_into_candidates_and_thoughts() -> None:
    answer = ir.Answer(
        "r", "m", [ir.Text("hi")], usage=TokenUsage(input=10, cache_read=5, output=50, reasoning=30)
    )
    metadata = gemini_codec.CLIENT.encode_answer(answer)["usageMetadata"]
    assert metadata == {
        "promptTokenCount": 15,
        "cachedContentTokenCount": 5,
        "candidatesTokenCount": 20,
        "thoughtsTokenCount": 30,
        "totalTokenCount": 65,
    }
    assert parse_usage(metadata) == answer.usage  # the same counts, read back


@pytest.mark.parametrize("strip_thoughts", [True, False], ids=["gemini-cli", "python-sdk-chat"])
def test_thinking_comes_back_with_its_signature_though_the_cli_strips_thoughts(
    strip_thoughts: bool,
) -> None:
    """Anthropic refuses a tool turn with thinking on whose assistant turn lost its signed
    thinking: the pack on the function call brings it back, once, whether the client kept
    the thought parts (the SDK's chat history) or dropped them (Gemini CLI)."""
    answer = anthropic_codec.CHANNEL.decode_answer(ANTHROPIC_THINKING_ANSWER)
    response = genai_types.GenerateContentResponse.model_validate(
        gemini_codec.CLIENT.encode_answer(answer)
    )
    content = response.candidates[0].content
    assert content is not None and content.parts is not None
    # The Python SDK re-encodes the signature's bytes in base64url when it dumps the history.
    parts = [p for p in content.parts if not (strip_thoughts and p.thought)]
    history = genai_types.Content(role="model", parts=parts).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    result = {"functionResponse": {"id": "toolu_01A", "name": TOOL, "response": {"output": "18C"}}}
    body = {
        "model": MODEL,
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            history,
            {"role": "user", "parts": [result]},
        ],
    }
    conversation = gemini_codec.CLIENT.decode_request(body)
    upstream = anthropic_codec.CHANNEL.encode_request(conversation, model="claude-sonnet-4-5")
    assistant = upstream["messages"][1]["content"]
    assert assistant == [
        {"type": "thinking", "thinking": "I need the weather.", "signature": "EqQBCgIYAhIM+/x="},
        {"type": "tool_use", "id": "toolu_01A", "name": TOOL, "input": {"location": "Paris"}},
    ]
    assert upstream["messages"][2]["content"][0]["tool_use_id"] == "toolu_01A"
    assert conversation.dropped == []


def test_a_gemini_signature_in_the_history_is_dropped_and_named() -> None:
    body = _with("contents[1].parts[1].thoughtSignature", GEMINI_SIGNATURE)
    assert gemini_codec.CLIENT.decode_request(body).dropped == ["thoughtSignature"]


# ---------------------------------------------------------------- streams, as the SDK reads them


def _converted(client: str, channel: str, upstream: bytes, **options: Any) -> bytes:
    pair = conversion(client, channel)
    assert pair is not None
    return relay_stream(pair.stream(prompt_tokens=100, **options), upstream)


def _sdk_stream(fake: FakeGemini, sent: bytes) -> list[genai_types.GenerateContentResponse]:
    fake.reply = sent
    with fake.client() as client:
        return list(client.models.generate_content_stream(model=MODEL, contents="Weather?"))


def test_an_anthropic_stream_reaches_the_sdk_as_gemini_chunks(fake_gemini: FakeGemini) -> None:
    sent = _converted("gemini", "anthropic", ANTHROPIC_TOOL_AND_THINKING_STREAM)
    assert sent.startswith(b"data: {") and sent.endswith(b"}\r\n\r\n")
    chunks = _sdk_stream(fake_gemini, sent)
    for chunk in chunks:  # every chunk is a valid GenerateContentResponse, strictly
        genai_types.GenerateContentResponse.model_validate(chunk.model_dump())
    parts = [
        p for c in chunks if c.candidates[0].content for p in c.candidates[0].content.parts or []
    ]
    thoughts = [p.text for p in parts if p.thought]
    assert thoughts == ["I need the weather."]
    calls = [call for c in chunks for call in c.function_calls or []]
    assert [(c.id, c.name, c.args) for c in calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", TOOL, {"location": "San Francisco, CA"})
    ]
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == "STOP"
    assert last.usage_metadata is not None
    assert (last.usage_metadata.prompt_token_count, last.usage_metadata.total_token_count) == (
        472,
        561,
    )
    assert (last.model_version, last.response_id) == ("claude-sonnet-4-5", "msg_02")


def test_a_streamed_call_carries_the_thinking_for_the_next_turn(fake_gemini: FakeGemini) -> None:
    chunks = _sdk_stream(
        fake_gemini, _converted("gemini", "anthropic", ANTHROPIC_TOOL_AND_THINKING_STREAM)
    )
    call_part = next(
        p
        for c in chunks if c.candidates[0].content
        for p in c.candidates[0].content.parts or [] if p.function_call
    )  # fmt: skip
    history = genai_types.Content(role="model", parts=[call_part]).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    body = {"model": MODEL, "contents": [{"parts": [{"text": "Weather?"}]}, history]}
    (reasoning, _call) = gemini_codec.CLIENT.decode_request(body).messages[1].parts
    assert reasoning == ir.Reasoning("I need the weather.", "EqQBCgIYAhIM")


def test_a_chat_stream_becomes_a_json_array_without_alt_sse() -> None:
    sent = _converted("gemini", "openai", OPENAI_CHAT_STREAM, sse=False)
    assert sent.startswith(b"[{") and b"}\n,{" in sent and sent.endswith(b"}]")
    chunks = [genai_types.GenerateContentResponse.model_validate(c) for c in json.loads(sent)]
    assert "".join(c.text or "" for c in chunks) == "Hello world!"
    # A chat stream's call is whole only at its finish: it goes in the last chunk.
    sent = _converted("gemini", "openai", OPENAI_CHAT_TOOL_STREAM, sse=False)
    chunks = [genai_types.GenerateContentResponse.model_validate(c) for c in json.loads(sent)]
    (call,) = [call for c in chunks for call in c.function_calls or []]
    assert (call.id, call.args) == ("call_abc", {"location": "Paris"})
    assert chunks[-1].candidates[0].finish_reason == "STOP"


def test_a_chat_text_stream_reaches_the_sdk_with_cached_and_thought_tokens(
    fake_gemini: FakeGemini,
) -> None:
    chunks = _sdk_stream(fake_gemini, _converted("gemini", "openai", OPENAI_CHAT_STREAM))
    assert "".join(c.text or "" for c in chunks) == "Hello world!"
    usage = chunks[-1].usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.cached_content_token_count) == (1200, 1024)
    assert (usage.candidates_token_count, usage.thoughts_token_count) == (12, 5)


def test_a_failed_stream_raises_the_sdks_error_with_the_status(fake_gemini: FakeGemini) -> None:
    pair = conversion("gemini", "anthropic")
    assert pair is not None
    tracker = pair.stream(prompt_tokens=10)
    sent = relay_stream(tracker, ANTHROPIC_TOOL_AND_THINKING_STREAM[:300], finish=False)
    sent += tracker.fail("The upstream stream ended before the answer was complete.", status=502)
    with pytest.raises(genai_errors.ServerError) as raised:
        _sdk_stream(fake_gemini, sent)
    assert raised.value.code == 502 and raised.value.status == "UNAVAILABLE"
    array = pair.stream(prompt_tokens=10, sse=False)
    failed = json.loads(array.fail("cut short", status=504))
    assert failed == [
        {"error": {"code": 504, "message": "cut short", "status": "DEADLINE_EXCEEDED"}}
    ]


def test_an_upstream_error_reaches_the_sdk_in_googles_shape(fake_gemini: FakeGemini) -> None:
    pair = conversion("gemini", "openai")
    assert pair is not None
    fake_gemini.reply = pair.error(
        429, b'{"error": {"message": "Rate limit reached", "type": "requests"}}'
    )
    fake_gemini.status = 429
    try:
        with fake_gemini.client() as client, pytest.raises(genai_errors.ClientError) as raised:
            client.models.generate_content(model=MODEL, contents="hi")
    finally:
        fake_gemini.status = 200
    assert (raised.value.code, raised.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert raised.value.message == "Rate limit reached"


# ================================================================ a gemini channel


def _chat_request(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
        "tools": [{"type": "function", "function": {"name": TOOL, "parameters": SCHEMA}}],
        **extra,
    }


def _upstream(body: dict[str, Any]) -> dict[str, Any]:
    """The channel's request checked field by field with the SDK's strict models."""
    for content in body["contents"]:
        genai_types.Content.model_validate(content)
    for name, model in (
        ("systemInstruction", genai_types.Content),
        ("generationConfig", genai_types.GenerationConfig),
        ("toolConfig", genai_types.ToolConfig),
    ):
        if name in body:
            model.model_validate(body[name])
    for tool in body.get("tools", []):
        genai_types.Tool.model_validate(tool)
    assert set(body) <= {
        "model",
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "generationConfig",
    }
    return body


def _encode(request: dict[str, Any], model: str = MODEL) -> tuple[dict[str, Any], list[str]]:
    pair = conversion("chat", "gemini")
    assert pair is not None
    body, dropped = pair.encode(pair.decode(request), model=model)
    return _upstream(body), dropped


def test_a_chat_request_becomes_a_gemini_request() -> None:
    body, dropped = _encode(
        _chat_request(
            tool_choice={"type": "function", "function": {"name": TOOL}},
            parallel_tool_calls=False,
            max_completion_tokens=300,
            temperature=0.5,
            stop=["a", "b", "c", "d"],
            response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}},
            reasoning_effort="low",
        )
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}
    ]
    assert body["tools"] == [
        {"functionDeclarations": [{"name": TOOL, "parametersJsonSchema": SCHEMA}]}
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [TOOL]}
    }
    assert body["generationConfig"] == {
        "maxOutputTokens": 300,
        "temperature": 0.5,
        "stopSequences": ["a", "b", "c", "d"],
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2048},
    }
    assert dropped == ["parallel_tool_calls"]


@pytest.mark.parametrize(
    ("model", "effort", "thinking", "dropped"),
    [
        ("gemini-2.5-flash", "high", {"includeThoughts": True, "thinkingBudget": 24576}, []),
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}, []),
        ("gemini-2.5-pro", "none", None, ["reasoning"]),
        ("gemini-3-pro-preview", "medium", {"includeThoughts": True, "thinkingLevel": "high"}, []),
        ("gemini-3-pro-preview", "minimal", {"includeThoughts": True, "thinkingLevel": "low"}, []),
        (
            "gemini-3-flash-preview",
            "minimal",
            {"includeThoughts": True, "thinkingLevel": "minimal"},
            [],
        ),
        ("gemini-3-flash-preview", "none", {"thinkingLevel": "minimal"}, []),
    ],
)
def test_reasoning_effort_becomes_the_models_thinking_config(
    model: str, effort: str, thinking: dict[str, Any] | None, dropped: list[str]
) -> None:
    body, named = _encode(_chat_request(reasoning_effort=effort), model)
    assert body.get("generationConfig", {}).get("thinkingConfig") == thinking
    assert named == dropped


def test_images_go_inline_or_as_a_url_gemini_fetches() -> None:
    content = [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    body, _ = _encode({"model": MODEL, "messages": [{"role": "user", "content": content}]})
    assert body["contents"][0]["parts"][1:] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"fileUri": "https://example.com/cat.jpg", "mimeType": "image/jpeg"}},
    ]
    plain = [{"type": "image_url", "image_url": {"url": "http://intranet/cat.png"}}]
    with pytest.raises(InvalidRequest, match="https:// and gs://"):
        _encode({"model": MODEL, "messages": [{"role": "user", "content": plain}]})


def test_a_chat_tool_round_trip_keeps_the_id_and_gives_gemini_its_signature_back() -> None:
    pair = conversion("chat", "gemini")
    assert pair is not None
    sent, answer = pair.answer(GEMINI_ANSWER)
    completion = ChatCompletion.model_validate_json(sent)
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == TOOL
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.reasoning_content == "I need the weather."
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 1024
    assert (completion.usage.completion_tokens, completion.usage.prompt_tokens) == (75, 1200)
    # The OpenAI SDK app sends back the call (by its id) and the result; no reasoning.
    second = _chat_request()
    second["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees"},
    ]
    body, _ = _encode(second)
    model_turn, results = body["contents"][1:]
    assert model_turn == {
        "role": "model",
        "parts": [
            {
                "functionCall": {"name": TOOL, "args": {"location": "Paris"}},
                "thoughtSignature": GEMINI_SIGNATURE,
            }
        ],
    }
    assert results == {
        "role": "user",
        "parts": [{"functionResponse": {"name": TOOL, "response": {"output": "18 degrees"}}}],
    }
    assert split_call_id(call.id)[1] == GEMINI_SIGNATURE
    assert answer.stop is ir.StopReason.TOOL_USE


def test_a_signature_on_the_thought_rides_with_an_unsigned_first_call() -> None:
    """Gemini sometimes signs the thought part, not the call (Gemini CLI's stripThoughts
    says so): a chat client, which sends no reasoning back, must still return it."""
    parts = [
        {"text": "I need the weather.", "thought": True, "thoughtSignature": GEMINI_SIGNATURE},
        {"functionCall": {"name": TOOL, "args": {"location": "Paris"}}},
        {"functionCall": {"name": TOOL, "args": {"location": "Rome"}}},
    ]
    whole = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]}
    answer = gemini_codec.CHANNEL.decode_answer(whole)
    first, second = [p for p in answer.parts if isinstance(p, ir.ToolCall)]
    assert split_call_id(first.id)[1] == GEMINI_SIGNATURE and split_call_id(second.id)[1] is None
    chunk = b"data: " + orjson.dumps(whole) + b"\r\n\r\n"
    done = _openai_chunks(_converted("chat", "gemini", chunk))
    calls = [c for k in done if k.choices for c in k.choices[0].delta.tool_calls or []]
    ids = [c.id for c in calls if c.id]
    assert [split_call_id(i)[1] for i in ids] == [GEMINI_SIGNATURE, None]


def test_a_call_without_a_signature_in_the_active_loop_gets_googles_placeholder() -> None:
    second = _chat_request()
    call = {"id": "call_1", "type": "function", "function": {"name": TOOL, "arguments": "{}"}}
    second["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call, {**call, "id": "call_2"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18"},
        {"role": "tool", "tool_call_id": "call_2", "content": "19"},
    ]
    body, _ = _encode(second)
    first, other = body["contents"][1]["parts"]
    assert first["thoughtSignature"] == SYNTHETIC_SIGNATURE and "thoughtSignature" not in other
    assert [p["functionResponse"]["name"] for p in body["contents"][2]["parts"]] == [TOOL, TOOL]


def test_a_tool_result_for_no_call_is_refused() -> None:
    request = _chat_request()
    request["messages"].append({"role": "tool", "tool_call_id": "call_x", "content": "?"})
    with pytest.raises(InvalidRequest, match="call_x"):
        _encode(request)


def test_a_messages_tool_round_trip_through_a_gemini_channel() -> None:
    pair = conversion("messages", "gemini")
    assert pair is not None
    sent, _ = pair.answer(GEMINI_ANSWER)
    message = Message.model_validate_json(sent)
    thinking, tool_use = message.content
    assert thinking.type == "thinking" and thinking.thinking == "I need the weather."
    assert tool_use.type == "tool_use" and message.stop_reason == "tool_use"
    request = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": tool_use.id,
                        "content": "timed out",
                        "is_error": True,
                    }
                ],
            },
        ],
    }
    body, dropped = pair.encode(pair.decode(request), model=MODEL)
    # Gemini did not sign the thought (its summary), so it does not go back: only the call,
    # with the signature it carried.
    assert _upstream(body)["contents"][1]["parts"] == [
        {
            "functionCall": {"name": TOOL, "args": {"location": "Paris"}},
            "thoughtSignature": GEMINI_SIGNATURE,
        }
    ]
    assert dropped == ["reasoning_content"]
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": TOOL, "response": {"error": "timed out"}}}
    ]


# ---------------------------------------------------------------- gemini streams, as the SDKs read them


def _openai_chunks(sent: bytes) -> list[ChatCompletionChunk]:
    response = httpx2.Response(
        200, content=sent, headers={"content-type": "text/event-stream"},
        request=httpx2.Request("POST", "http://relay/v1/chat/completions"),
    )  # fmt: skip
    with openai.OpenAI(api_key="k", base_url="http://relay/v1") as client:
        return list(openai.Stream(cast_to=ChatCompletionChunk, response=response, client=client))


def _anthropic_message(sent: bytes) -> Message:
    response = httpx2.Response(
        200, content=sent, headers={"content-type": "text/event-stream"},
        request=httpx2.Request("POST", "http://relay/v1/messages"),
    )  # fmt: skip
    snapshot = None
    with anthropic.Anthropic(api_key="k", base_url="http://relay") as client:
        stream = anthropic.Stream(cast_to=RawMessageStreamEvent, response=response, client=client)
        for event in stream:
            snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs={})
    assert snapshot is not None
    return Message.model_validate(snapshot.model_dump())


def test_a_gemini_stream_reaches_a_chat_client_with_the_signed_call_and_usage() -> None:
    chunks = _openai_chunks(_converted("chat", "gemini", GEMINI_TOOL_STREAM, usage=True))
    state = ChatCompletionStreamState()
    for chunk in chunks:
        state.handle_chunk(chunk)
    done = state.get_final_completion()
    (call,) = done.choices[0].message.tool_calls or []
    assert (call.function.name, json.loads(call.function.arguments)) == (
        TOOL,
        {"location": "Paris"},
    )
    assert split_call_id(call.id)[1] == GEMINI_SIGNATURE
    assert done.choices[0].finish_reason == "tool_calls"
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (1200, 1024)
    assert usage.completion_tokens_details is not None
    assert (usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens) == (75, 60)
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    assert reasoning == "I need the weather."


def test_a_gemini_stream_reaches_a_messages_client() -> None:
    message = _anthropic_message(_converted("messages", "gemini", GEMINI_TOOL_STREAM))
    thinking, tool_use = message.content
    assert thinking.type == "thinking" and thinking.thinking == "I need the weather."
    assert tool_use.type == "tool_use" and tool_use.input == {"location": "Paris"}
    assert split_call_id(tool_use.id)[1] == GEMINI_SIGNATURE
    assert message.stop_reason == "tool_use"
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (
        176,
        1024,
        75,
    )


def test_a_text_answers_signature_survives_a_messages_client() -> None:
    message = _anthropic_message(_converted("messages", "gemini", GEMINI_TEXT_STREAM))
    text, signed = message.content
    assert text.type == "text" and text.text == "Hello world!"
    assert signed.type == "thinking" and signed.signature == TEXT_SIGNATURE
    assert message.stop_reason == "end_turn"
    pair = conversion("messages", "gemini")
    assert pair is not None
    request = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {"role": "user", "content": "And?"},
        ],
    }
    body, _ = pair.encode(pair.decode(request), model=MODEL)
    assert body["contents"][1] == {
        "role": "model",
        "parts": [{"text": "Hello world!", "thoughtSignature": TEXT_SIGNATURE}],
    }


def test_a_gemini_stream_cut_before_its_finish_reason_fails_in_the_clients_grammar() -> None:
    cut = GEMINI_TOOL_STREAM[: GEMINI_TOOL_STREAM.index(b"\r\n\r\n") + 4]
    with pytest.raises(openai.APIError, match="ended before the answer was complete"):
        _openai_chunks(_converted("chat", "gemini", cut))


def test_a_gemini_error_chunk_fails_the_stream_with_its_status() -> None:
    error = b'data: {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}\r\n\r\n'
    sent = _converted("messages", "gemini", GEMINI_TEXT_STREAM[:200].rsplit(b"data:", 1)[0] + error)
    with pytest.raises(anthropic.APIStatusError) as raised:
        _anthropic_message(sent)
    assert "overloaded" in str(raised.value)


def test_a_refused_prompt_is_a_content_filter_stop() -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    }
    answer = gemini_codec.CHANNEL.decode_answer(blocked)
    assert answer.stop is ir.StopReason.CONTENT_FILTER and answer.parts == []
    done = chat_codec.CLIENT.encode_answer(answer)
    assert ChatCompletion.model_validate(done).choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize(
    ("metadata", "usage"),
    [
        (orjson.loads(USAGE), TokenUsage(input=176, cache_read=1024, output=75, reasoning=60)),
        ({"promptTokenCount": 8, "totalTokenCount": 8}, TokenUsage(input=8)),
        (
            {"promptTokenCount": 50, "candidatesTokenCount": 10, "toolUsePromptTokenCount": 300},
            TokenUsage(input=350, output=10),
        ),
        ({"candidatesTokenCount": 10}, None),
        ({"promptTokenCount": 5, "cachedContentTokenCount": 9}, None),
    ],
)
def test_usage_metadata_maps_to_token_classes(
    metadata: dict[str, Any], usage: TokenUsage | None
) -> None:
    assert parse_usage(metadata) == usage


def test_an_upstream_error_message_is_read_from_googles_shape() -> None:
    body = b'{"error": {"code": 400, "message": "Function call is missing a thought_signature", "status": "INVALID_ARGUMENT"}}'
    assert (
        gemini_codec.CHANNEL.error_message(body) == "Function call is missing a thought_signature"
    )
    assert (
        gemini_codec.CHANNEL.error_message(b"[" + body + b"]")
        == "Function call is missing a thought_signature"
    )
    assert gemini_codec.CHANNEL.error_message(b"<html>") is None
