"""OpenAI Chat Completions, both sides: as the client's format (an OpenAI SDK app on a
channel of another format) and as a channel's (`openai`, `openai-chat`: what a request of
another format is sent as).

Reasoning travels as `reasoning_content` (DeepSeek, vLLM; `reasoning` from OpenRouter) and,
with its signature, as OpenRouter's `reasoning_details` (`reasoning.text` with `signature`,
`reasoning.encrypted` for redacted thinking): a chat client on an Anthropic channel gets its
thinking signatures back and returns them in the next turn's history, so that thinking keeps
working across tool calls.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import ir
from quotaledger.wire.codecs.common import (
    arguments_text,
    as_dict,
    data_url,
    effort,
    effort_for,
    list_field,
    new_id,
    number,
    object_of,
    positive_int,
    split_data_url,
    sse,
    stop_list,
)
from quotaledger.wire.errors import DONE, InvalidRequest, openai_error
from quotaledger.wire.openai_chat import openai_usage, parse_usage
from quotaledger.wire.sse import SSEEvent

# Fields a chat request may carry that the conversation shape has no place for: named on
# the log row when the request is converted.
_UNCARRIED = (
    "logprobs",
    "top_logprobs",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "metadata",
    "store",
    "modalities",
    "audio",
    "prediction",
    "service_tier",
    "web_search_options",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
)
_FINISH = {
    ir.StopReason.END: "stop",
    ir.StopReason.STOP_SEQUENCE: "stop",
    ir.StopReason.MAX_TOKENS: "length",
    ir.StopReason.TOOL_USE: "tool_calls",
    ir.StopReason.CONTENT_FILTER: "content_filter",
    ir.StopReason.ERROR: "stop",
}
_STOP = {
    "stop": ir.StopReason.END,
    "length": ir.StopReason.MAX_TOKENS,
    "tool_calls": ir.StopReason.TOOL_USE,
    "function_call": ir.StopReason.TOOL_USE,
    "content_filter": ir.StopReason.CONTENT_FILTER,
}
# OpenAI's reasoning models take only `max_completion_tokens`.
_REASONING_MODELS = ("o1", "o3", "o4", "gpt-5")


# ================================================================ the client's side


def decode_request(body: Any) -> ir.Conversation:
    body = object_of(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required (a string)", "model")
    messages = list_field(body, "messages", required=True)
    if not messages:
        raise InvalidRequest("messages must be a non-empty array", "messages")
    conversation = ir.Conversation(model=model, messages=[])
    for index, message in enumerate(messages):
        _decode_message(conversation, message, f"messages[{index}]")
    conversation.tools = [
        _decode_tool(t, f"tools[{i}]") for i, t in enumerate(list_field(body, "tools"))
    ]
    conversation.tool_choice = _decode_tool_choice(body.get("tool_choice"))
    if isinstance(body.get("parallel_tool_calls"), bool):
        conversation.parallel_tool_calls = body["parallel_tool_calls"]
    conversation.max_output_tokens = positive_int(body, "max_completion_tokens") or positive_int(
        body, "max_tokens"
    )
    conversation.temperature = number(body, "temperature")
    conversation.top_p = number(body, "top_p")
    conversation.stop = stop_list(body.get("stop"), "stop")
    conversation.response_format = _decode_format(body.get("response_format"))
    chosen = effort(body.get("reasoning_effort"), "reasoning_effort")
    if body.get("reasoning_effort") == "none":
        conversation.reasoning = ir.ReasoningConfig(enabled=False)
    elif chosen is not None:
        conversation.reasoning = ir.ReasoningConfig(effort=chosen)
    if body.get("stream") not in (None, True, False):
        raise InvalidRequest("stream must be a boolean", "stream")
    conversation.stream = body.get("stream") is True
    options = body.get("stream_options")
    conversation.stream_usage = isinstance(options, dict) and options.get("include_usage") is True
    if (positive_int(body, "n") or 1) > 1:
        conversation.dropped.append("n")
    conversation.dropped += [name for name in _UNCARRIED if body.get(name) is not None]
    return conversation


def _decode_message(conversation: ir.Conversation, message: Any, where: str) -> None:
    if not isinstance(message, dict):
        raise InvalidRequest(f"{where} must be an object", where)
    role = message.get("role")
    content = message.get("content")
    if role in ("system", "developer"):
        conversation.system += [p for p in _parts(content, where) if isinstance(p, ir.Text)]
        return
    if role == "user":
        conversation.messages.append(ir.Message("user", tuple(_parts(content, where))))
        return
    if role == "assistant":
        parts: list[ir.Part] = [*_reasoning_of(message)]
        parts += [p for p in _parts(content, where) if isinstance(p, ir.Text)]
        for i, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(call.get("id"), str):
                raise InvalidRequest(f"{where}.tool_calls[{i}] needs an id and a function", where)
            name = function.get("name")
            arguments = arguments_text(function.get("arguments"))
            parts.append(ir.ToolCall(call["id"], str(name), arguments))
        conversation.messages.append(ir.Message("assistant", tuple(parts)))
        return
    if role == "tool":
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise InvalidRequest(f"{where}.tool_call_id is required", f"{where}.tool_call_id")
        content_parts = tuple(
            p for p in _parts(content, where) if isinstance(p, ir.Text | ir.Image)
        )
        result = ir.ToolResult(call_id, content_parts)
        last = conversation.messages[-1] if conversation.messages else None
        if (
            last is not None
            and last.role == "user"
            and all(isinstance(p, ir.ToolResult) for p in last.parts)
        ):
            conversation.messages[-1] = ir.Message("user", (*last.parts, result))
        else:
            conversation.messages.append(ir.Message("user", (result,)))
        return
    raise InvalidRequest(f"{where}.role must be system, developer, user, assistant or tool", where)


def _parts(content: Any, where: str) -> list[ir.Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [ir.Text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or an array", f"{where}.content")
    parts: list[ir.Part] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
            parts.append(ir.Text(part["text"]))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise InvalidRequest(f"{where}: image_url.url is required", f"{where}.content")
            inline = split_data_url(url)
            parts.append(ir.Image(*inline) if inline else ir.Image(url=url))
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append(ir.Text(part["refusal"]))
        else:
            raise InvalidRequest(f"{where}: content part {kind!r} cannot be converted", where)
    return parts


def _reasoning_of(message: dict[str, Any]) -> list[ir.Reasoning]:
    details = message.get("reasoning_details")
    if isinstance(details, list) and details:
        found = []
        for detail in details:
            if not isinstance(detail, dict):
                continue
            if detail.get("type") == "reasoning.encrypted":
                found.append(ir.Reasoning(redacted=str(detail.get("data", ""))))
            else:
                signature = detail.get("signature")
                found.append(
                    ir.Reasoning(str(detail.get("text") or ""), signature if signature else None)
                )
        return found
    for name in ("reasoning_content", "reasoning"):
        if isinstance(message.get(name), str) and message[name]:
            return [ir.Reasoning(message[name])]
    return []


def _decode_tool(tool: Any, where: str) -> ir.Tool:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"{where}: only function tools with a name can be converted", where)
    parameters = function.get("parameters")
    return ir.Tool(
        function["name"],
        function.get("description"),
        parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}},
    )


def _decode_tool_choice(choice: Any) -> ir.ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ir.ToolChoice(choice)
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return ir.ToolChoice("named", function["name"])
    raise InvalidRequest("tool_choice must be auto, none, required or a function", "tool_choice")


def _decode_format(value: Any) -> ir.ResponseFormat | None:
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind == "json_object":
        return ir.ResponseFormat("json_object")
    if kind == "json_schema" and isinstance(value.get("json_schema"), dict):
        schema = value["json_schema"]
        return ir.ResponseFormat(
            "json_schema", schema.get("name"), schema.get("schema"), schema.get("strict")
        )
    return None


def encode_answer(answer: ir.Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    texts = [p.text for p in answer.parts if isinstance(p, ir.Text)]
    if texts:
        message["content"] = "".join(texts)
    reasoning = [p for p in answer.parts if isinstance(p, ir.Reasoning)]
    if reasoning:
        message["reasoning_content"] = "".join(r.text for r in reasoning)
        message["reasoning_details"] = [_detail(r) for r in reasoning]
    calls = [p for p in answer.parts if isinstance(p, ir.ToolCall)]
    if calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    done: dict[str, Any] = {
        "id": answer.id if answer.id.startswith("chatcmpl") else "chatcmpl-" + answer.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": _FINISH[answer.stop],
                "logprobs": None,
            }
        ],
    }
    if answer.usage is not None:
        done["usage"] = openai_usage(answer.usage)
    return done


def _detail(reasoning: ir.Reasoning) -> dict[str, Any]:
    if reasoning.redacted is not None:
        return {"type": "reasoning.encrypted", "data": reasoning.redacted}
    detail: dict[str, Any] = {"type": "reasoning.text", "text": reasoning.text}
    if reasoning.signature:
        detail["signature"] = reasoning.signature
    return detail


class StreamEncoder:
    """`StreamEvent`s as Chat Completions chunks: the role in the first delta, content,
    reasoning and tool-call argument deltas (each call numbered from 0), the finish reason,
    the usage chunk when the client asked for it, then `data: [DONE]`."""

    def __init__(self, *, usage: bool) -> None:
        self.usage = usage
        self.head: dict[str, Any] = {}
        self.calls: dict[int, int] = {}  # part index -> tool call index
        self.done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return sse({**self.head, "object": "chat.completion.chunk", "choices": [choice]})

    def encode(self, event: ir.StreamEvent) -> bytes:
        if isinstance(event, ir.Started):
            chunk_id = event.id if event.id.startswith("chatcmpl") else "chatcmpl-" + event.id
            self.head = {"id": chunk_id, "created": int(time.time()), "model": event.model}
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, ir.TextDelta):
            return self._chunk({"content": event.text}) if event.text else b""
        if isinstance(event, ir.ReasoningDelta):
            return self._reasoning(event)
        if isinstance(event, ir.ToolCallStarted):
            self.calls[event.index] = len(self.calls)
            call = {
                "index": self.calls[event.index],
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            return self._chunk({"tool_calls": [call]})
        if isinstance(event, ir.ToolCallDelta):
            call = {
                "index": self.calls.get(event.index, 0),
                "function": {"arguments": event.arguments},
            }
            return self._chunk({"tool_calls": [call]}) if event.arguments else b""
        if isinstance(event, ir.Finished):
            out = self._chunk({}, _FINISH[event.stop])
            if self.usage and event.usage is not None:
                usage = {**self.head, "object": "chat.completion.chunk", "choices": []}
                out += sse({**usage, "usage": openai_usage(event.usage)})
            return out
        if isinstance(event, ir.Failed):
            return self.fail(event.message, event.status)
        return b""

    def _reasoning(self, event: ir.ReasoningDelta) -> bytes:
        delta: dict[str, Any] = {}
        if event.text:
            delta["reasoning_content"] = event.text
        if event.signature or event.redacted:
            detail = _detail(ir.Reasoning(event.text, event.signature, event.redacted))
            delta["reasoning_details"] = [detail]
        elif event.text:
            delta["reasoning_details"] = [{"type": "reasoning.text", "text": event.text}]
        return self._chunk(delta) if delta else b""

    def fail(self, message: str, status: int = 502) -> bytes:
        self.done = True
        return b"data: " + orjson.dumps(openai_error(status, message)) + b"\n\n" + DONE

    def close(self) -> bytes:
        if self.done:
            return b""
        self.done = True
        return DONE


class ClientSide:
    decode_request = staticmethod(decode_request)
    encode_answer = staticmethod(encode_answer)

    def stream_encoder(self, *, sse: bool = True, usage: bool = False) -> StreamEncoder:
        return StreamEncoder(usage=usage)


CLIENT = ClientSide()


# ================================================================ a channel's side


class ChannelSide:
    """What a converted request becomes on an `openai` or `openai-chat` channel.
    `reasoning_history`: whether earlier turns' reasoning goes back as `reasoning_content`
    (DeepSeek's thinking mode needs it on tool-call turns; OpenAI's own API refuses it)."""

    def __init__(self, *, reasoning_history: bool) -> None:
        self.reasoning_history = reasoning_history

    def encode_request(self, conversation: ir.Conversation, *, model: str) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if conversation.system:
            messages.append(
                {"role": "system", "content": "".join(t.text for t in conversation.system)}
            )
        for message in conversation.messages:
            messages += self._messages(message, conversation.dropped)
        body: dict[str, Any] = {"model": model, "messages": messages}
        if conversation.tools:
            body["tools"] = [_tool(t) for t in conversation.tools]
        if conversation.tool_choice is not None:
            body["tool_choice"] = _tool_choice(conversation.tool_choice)
        if conversation.parallel_tool_calls is not None and conversation.tools:
            body["parallel_tool_calls"] = conversation.parallel_tool_calls
        if conversation.max_output_tokens is not None:
            field = "max_completion_tokens" if model.startswith(_REASONING_MODELS) else "max_tokens"
            body[field] = conversation.max_output_tokens
        for name in ("temperature", "top_p"):
            if getattr(conversation, name) is not None:
                body[name] = getattr(conversation, name)
        if conversation.top_k is not None:
            conversation.dropped.append("top_k")
        if conversation.stop:
            body["stop"] = conversation.stop[:4]
        if conversation.response_format is not None:
            body["response_format"] = _response_format(conversation.response_format)
        if conversation.reasoning is not None:
            chosen = effort_for(conversation.reasoning)
            if chosen is not None:
                body["reasoning_effort"] = chosen
        if conversation.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _messages(self, message: ir.Message, dropped: list[str]) -> list[dict[str, Any]]:
        if message.role == "assistant":
            return [self._assistant(message)]
        out: list[dict[str, Any]] = []
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, ir.ToolResult):
                text = "".join(p.text for p in part.content if isinstance(p, ir.Text))
                if any(isinstance(p, ir.Image) for p in part.content):
                    dropped.append("tool_result.image")
                out.append({"role": "tool", "tool_call_id": part.call_id, "content": text})
            elif isinstance(part, ir.Text):
                content.append({"type": "text", "text": part.text})
                if part.cache_control is not None and "cache_control" not in dropped:
                    dropped.append("cache_control")  # OpenAI-format servers cache by themselves
            elif isinstance(part, ir.Image):
                url = part.url or data_url(part.media_type or "image/png", part.data or "")
                content.append({"type": "image_url", "image_url": {"url": url}})
        if content:
            simple = len(content) == 1 and content[0]["type"] == "text"
            out.append({"role": "user", "content": content[0]["text"] if simple else content})
        return out

    def _assistant(self, message: ir.Message) -> dict[str, Any]:
        out: dict[str, Any] = {"role": "assistant"}
        texts = [p.text for p in message.parts if isinstance(p, ir.Text)]
        out["content"] = "".join(texts) if texts else None
        calls = [p for p in message.parts if isinstance(p, ir.ToolCall)]
        if calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
        thinking = "".join(p.text for p in message.parts if isinstance(p, ir.Reasoning))
        if thinking and self.reasoning_history:
            out["reasoning_content"] = thinking
        return out

    def decode_answer(self, body: Any) -> ir.Answer:
        body = object_of(body)
        choices = body.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else {}
        message = choice.get("message") if isinstance(choice, dict) else None
        message = as_dict(message)
        parts: list[ir.Text | ir.Reasoning | ir.ToolCall] = [*_reasoning_of(message)]
        if isinstance(message.get("content"), str) and message["content"]:
            parts.append(ir.Text(message["content"]))
        for call in message.get("tool_calls") or []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                call_id = call.get("id") or new_id("call_")
                parts.append(
                    ir.ToolCall(
                        str(call_id),
                        str(function.get("name")),
                        arguments_text(function.get("arguments")),
                    )
                )
        stop = _STOP.get(str(choice.get("finish_reason")), ir.StopReason.END)
        return ir.Answer(
            id=str(body.get("id") or new_id("chatcmpl-")),
            model=str(body.get("model") or ""),
            parts=parts,
            stop=stop,
            usage=_believed(parse_usage(body.get("usage")), parts),
        )

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder()

    def error_message(self, body: bytes) -> str | None:
        return error_message(body)


def error_message(body: bytes) -> str | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return None


def _believed(usage: TokenUsage | None, parts: list[Any]) -> TokenUsage | None:
    """A usage claiming no output for an answer with output is not believed."""
    if usage is None or (usage.output == 0 and parts):
        return None
    return usage


def _tool(tool: ir.Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _tool_choice(choice: ir.ToolChoice) -> Any:
    if choice.mode == "named":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def _response_format(value: ir.ResponseFormat) -> dict[str, Any]:
    if value.kind == "json_schema":
        schema: dict[str, Any] = {"name": value.name or "answer", "schema": value.schema or {}}
        if value.strict is not None:
            schema["strict"] = value.strict
        return {"type": "json_schema", "json_schema": schema}
    return {"type": value.kind}


class StreamDecoder:
    """Chat Completions chunks as `StreamEvent`s. Parts are numbered as they start:
    reasoning, text, then each tool call (by its `index`)."""

    def __init__(self) -> None:
        self.started = False
        self.next_index = 0
        self.text_index: int | None = None
        self.reasoning_index: int | None = None
        self.calls: dict[int, int] = {}  # tool call index -> part index
        self.stop: ir.StopReason | None = None
        self.usage: TokenUsage | None = None
        self.finished = False

    def _part(self) -> int:
        index, self.next_index = self.next_index, self.next_index + 1
        return index

    def feed(self, event: SSEEvent) -> list[ir.StreamEvent]:
        if event.data == "[DONE]":
            return self.end()
        if not event.has_data:
            return []
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            self.finished = True
            return [ir.Failed(str(message or "upstream error"))]
        out: list[ir.StreamEvent] = []
        if not self.started:
            self.started = True
            out.append(
                ir.Started(
                    str(chunk.get("id") or new_id("chatcmpl-")), str(chunk.get("model") or "")
                )
            )
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict):
                out += self._choice(choice)
        if isinstance(chunk.get("usage"), dict):
            self.usage = parse_usage(chunk["usage"]) or self.usage
        return out

    def _choice(self, choice: dict[str, Any]) -> list[ir.StreamEvent]:
        out: list[ir.StreamEvent] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for name in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(name), str) and delta[name]:
                    if self.reasoning_index is None:
                        self.reasoning_index = self._part()
                    out.append(ir.ReasoningDelta(self.reasoning_index, delta[name]))
                    break
            for detail in delta.get("reasoning_details") or []:
                if isinstance(detail, dict) and detail.get("signature"):
                    if self.reasoning_index is None:
                        self.reasoning_index = self._part()
                    out.append(
                        ir.ReasoningDelta(self.reasoning_index, signature=str(detail["signature"]))
                    )
            if isinstance(delta.get("content"), str) and delta["content"]:
                if self.text_index is None:
                    self.text_index = self._part()
                out.append(ir.TextDelta(self.text_index, delta["content"]))
            for call in delta.get("tool_calls") or []:
                out += self._call(call)
        if choice.get("finish_reason"):
            self.stop = _STOP.get(str(choice["finish_reason"]), ir.StopReason.END)
        return out

    def _call(self, call: Any) -> list[ir.StreamEvent]:
        if not isinstance(call, dict):
            return []
        number = call.get("index", 0)
        function = as_dict(call.get("function"))
        out: list[ir.StreamEvent] = []
        if number not in self.calls:
            self.calls[number] = self._part()
            call_id = call.get("id") or new_id("call_")
            out.append(
                ir.ToolCallStarted(
                    self.calls[number], str(call_id), str(function.get("name") or "")
                )
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(ir.ToolCallDelta(self.calls[number], arguments))
        return out

    def end(self) -> list[ir.StreamEvent]:
        if self.finished or self.stop is None:
            return []
        self.finished = True
        return [ir.Finished(self.stop, self.usage)]


CHANNEL = ChannelSide(reasoning_history=False)
CHAT_ONLY_CHANNEL = ChannelSide(reasoning_history=True)
