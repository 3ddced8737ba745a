"""Anthropic Messages, both sides: as the client's format (Claude Code, the Anthropic SDKs
on a channel of another format) and as a channel's (`anthropic`).

Thinking blocks keep their signatures both ways (a thinking block without one cannot be
sent to Anthropic, so reasoning text from another provider is dropped from the history and
named); `cache_control` marks stay on text, system and tool blocks, so that caching keeps
working when a Messages client is converted onto an Anthropic channel. A thinking budget is
kept valid: at least 1,024 tokens and below `max_tokens`, else thinking is turned off.
"""

from __future__ import annotations

from typing import Any

import orjson

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import ir
from quotaledger.wire.anthropic_messages import parse_usage
from quotaledger.wire.codecs.common import (
    MIN_THINKING_BUDGET,
    arguments_object,
    arguments_text,
    as_dict,
    budget_for,
    list_field,
    new_id,
    number,
    object_of,
    positive_int,
    sse,
    stop_list,
)
from quotaledger.wire.errors import InvalidRequest, anthropic_error
from quotaledger.wire.sse import SSEEvent

DEFAULT_MAX_TOKENS = 4096  # when a converted request names no cap (Anthropic requires one)
_STOP = {
    "end_turn": ir.StopReason.END,
    "max_tokens": ir.StopReason.MAX_TOKENS,
    "stop_sequence": ir.StopReason.STOP_SEQUENCE,
    "tool_use": ir.StopReason.TOOL_USE,
    "refusal": ir.StopReason.CONTENT_FILTER,
    "pause_turn": ir.StopReason.END,
    "model_context_window_exceeded": ir.StopReason.MAX_TOKENS,
}
_STOP_REASON = {
    ir.StopReason.END: "end_turn",
    ir.StopReason.MAX_TOKENS: "max_tokens",
    ir.StopReason.STOP_SEQUENCE: "stop_sequence",
    ir.StopReason.TOOL_USE: "tool_use",
    ir.StopReason.CONTENT_FILTER: "refusal",
    ir.StopReason.ERROR: "end_turn",
}


# ================================================================ the client's side


def decode_request(body: Any) -> ir.Conversation:
    body = object_of(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required", "model")
    conversation = ir.Conversation(model=model, messages=[])
    conversation.system = _system(body.get("system"))
    for index, message in enumerate(list_field(body, "messages", required=True)):
        where = f"messages[{index}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":  # Claude Code sends reminders as system turns among the others
            texts = _blocks(message.get("content"), where, conversation.dropped)
            conversation.system += [p for p in texts if isinstance(p, ir.Text)]
            continue
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"{where}.role must be user, assistant or system", where)
        parts = tuple(_blocks(message.get("content"), where, conversation.dropped))
        conversation.messages.append(ir.Message(role, parts))
    for index, tool in enumerate(list_field(body, "tools")):
        decoded = _decode_tool(tool, f"tools[{index}]")
        if decoded is None:
            conversation.dropped.append(f"tools[{index}]:{tool.get('type')}")
        else:
            conversation.tools.append(decoded)
    _decode_tool_choice(conversation, body.get("tool_choice"))
    conversation.max_output_tokens = positive_int(body, "max_tokens")
    if conversation.max_output_tokens is None:
        raise InvalidRequest("max_tokens: a positive integer is required", "max_tokens")
    conversation.temperature = number(body, "temperature")
    conversation.top_p = number(body, "top_p")
    top_k = positive_int(body, "top_k")
    conversation.top_k = top_k
    conversation.stop = stop_list(body.get("stop_sequences"), "stop_sequences")
    conversation.reasoning = _decode_thinking(body.get("thinking"), body.get("output_config"))
    if body.get("stream") not in (None, True, False):
        raise InvalidRequest("stream: Input should be a valid boolean", "stream")
    conversation.stream = body.get("stream") is True
    uncarried = ("metadata", "service_tier", "container", "mcp_servers", "context_management")
    conversation.dropped += [n for n in uncarried if body.get(n) is not None]
    return conversation


def _system(value: Any) -> list[ir.Text]:
    if value is None:
        return []
    if isinstance(value, str):
        return [ir.Text(value)] if value else []
    if isinstance(value, list):
        return [
            ir.Text(b["text"], b.get("cache_control"))
            for b in value
            if isinstance(b, dict) and isinstance(b.get("text"), str)
        ]
    raise InvalidRequest("system: a string or an array of text blocks", "system")


def _blocks(content: Any, where: str, dropped: list[str]) -> list[ir.Part]:
    if isinstance(content, str):
        return [ir.Text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content: a string or an array", f"{where}.content")
    parts: list[ir.Part] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(ir.Text(block["text"], block.get("cache_control")))
        elif kind == "image":
            parts.append(_image(block.get("source"), where))
        elif kind == "tool_use":
            parts.append(
                ir.ToolCall(
                    str(block.get("id")), str(block.get("name")), arguments_text(block.get("input"))
                )
            )
        elif kind == "tool_result":
            inner = block.get("content")
            results = _blocks(inner, where, dropped) if inner is not None else []
            kept = tuple(p for p in results if isinstance(p, ir.Text | ir.Image))
            parts.append(
                ir.ToolResult(str(block.get("tool_use_id")), kept, bool(block.get("is_error")))
            )
        elif kind == "thinking":
            parts.append(ir.Reasoning(str(block.get("thinking", "")), block.get("signature")))
        elif kind == "redacted_thinking":
            parts.append(ir.Reasoning(redacted=str(block.get("data", ""))))
        elif kind == "document":
            raise InvalidRequest(f"{where}: document blocks cannot be converted", where)
        else:
            dropped.append(f"content:{kind}")
    return parts


def _image(source: Any, where: str) -> ir.Image:
    if isinstance(source, dict) and source.get("type") == "base64":
        return ir.Image(str(source.get("media_type")), str(source.get("data")))
    if isinstance(source, dict) and source.get("type") == "url":
        return ir.Image(url=str(source.get("url")))
    raise InvalidRequest(f"{where}: an image needs a base64 or url source", where)


def _decode_tool(tool: Any, where: str) -> ir.Tool | None:
    if not isinstance(tool, dict):
        raise InvalidRequest(f"{where} must be an object", where)
    if tool.get("type") not in (None, "custom"):  # a server tool (web_search, bash...)
        return None
    if not isinstance(tool.get("name"), str):
        raise InvalidRequest(f"{where}.name is required", where)
    schema = tool.get("input_schema")
    return ir.Tool(
        tool["name"],
        tool.get("description"),
        schema if isinstance(schema, dict) else {"type": "object"},
    )


def _decode_tool_choice(conversation: ir.Conversation, choice: Any) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise InvalidRequest("tool_choice must be an object", "tool_choice")
    kind = choice.get("type")
    modes = {"auto": "auto", "any": "required", "none": "none"}
    if kind in modes:
        conversation.tool_choice = ir.ToolChoice(modes[kind])  # type: ignore[arg-type]
    elif kind == "tool" and isinstance(choice.get("name"), str):
        conversation.tool_choice = ir.ToolChoice("named", choice["name"])
    else:
        raise InvalidRequest("tool_choice.type must be auto, any, tool or none", "tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        conversation.parallel_tool_calls = False


def _decode_thinking(thinking: Any, output_config: Any) -> ir.ReasoningConfig | None:
    """`thinking` (enabled with a budget, adaptive, disabled) and `output_config.effort`."""
    level = as_dict(output_config).get("effort")
    chosen = level if level in ("low", "medium", "high") else None
    if not isinstance(thinking, dict):
        return ir.ReasoningConfig(effort=chosen) if chosen else None
    if thinking.get("type") == "disabled":
        return ir.ReasoningConfig(enabled=False)
    budget = thinking.get("budget_tokens")
    return ir.ReasoningConfig(
        effort=chosen, budget_tokens=budget if isinstance(budget, int) else None
    )


def encode_answer(answer: ir.Answer) -> dict[str, Any]:
    usage = answer.usage or TokenUsage()
    return {
        "id": answer.id if answer.id.startswith("msg_") else "msg_" + answer.id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": [_block(p) for p in answer.parts],
        "stop_reason": _STOP_REASON[answer.stop],
        "stop_sequence": answer.stop_sequence,
        "usage": _usage(usage),
    }


def _block(part: ir.Text | ir.Reasoning | ir.ToolCall) -> dict[str, Any]:
    if isinstance(part, ir.Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, ir.ToolCall):
        return {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            "input": arguments_object(part.arguments),
        }
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}


def _usage(usage: TokenUsage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input,
        "cache_creation_input_tokens": usage.cache_write_5m + usage.cache_write_1h,
        "cache_read_input_tokens": usage.cache_read,
        "output_tokens": usage.output,
    }


class StreamEncoder:
    """`StreamEvent`s as Anthropic's event grammar: `message_start`, then for each part a
    `content_block_start`, its deltas and `content_block_stop` (blocks numbered from 0 in
    the order they start), `message_delta` with the stop reason and usage, `message_stop`."""

    def __init__(self) -> None:
        self.blocks: dict[int, int] = {}  # part index -> block number
        self.open: int | None = None  # the part whose block is open
        self.done = False
        self.started = False

    def encode(self, event: ir.StreamEvent) -> bytes:
        if isinstance(event, ir.Started):
            return self._start(event)
        if isinstance(event, ir.TextDelta):
            return self._delta(
                event.index,
                {"type": "text", "text": ""},
                {"type": "text_delta", "text": event.text},
            )
        if isinstance(event, ir.ReasoningDelta):
            return self._reasoning(event)
        if isinstance(event, ir.ToolCallStarted):
            block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            return self._open(event.index, block)
        if isinstance(event, ir.ToolCallDelta):
            return self._delta(
                event.index, None, {"type": "input_json_delta", "partial_json": event.arguments}
            )
        if isinstance(event, ir.PartDone):
            return self._close() if self.open == event.index else b""
        if isinstance(event, ir.Finished):
            return self._finish(event)
        if isinstance(event, ir.Failed):
            return self.fail(event.message, event.status)
        return b""

    def _start(self, event: ir.Started) -> bytes:
        self.started = True
        usage = _usage(event.usage or TokenUsage())
        message: dict[str, Any] = {
            "id": event.id if event.id.startswith("msg_") else "msg_" + event.id,
            "type": "message",
            "role": "assistant",
            "model": event.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return sse({"type": "message_start", "message": message}, "message_start")

    def _open(self, index: int, block: dict[str, Any]) -> bytes:
        out = self._close() if self.open is not None and self.open != index else b""
        if index not in self.blocks:
            self.blocks[index] = len(self.blocks)
            number = self.blocks[index]
            out += sse(
                {"type": "content_block_start", "index": number, "content_block": block},
                "content_block_start",
            )
        self.open = index
        return out

    def _delta(self, index: int, block: dict[str, Any] | None, delta: dict[str, Any]) -> bytes:
        out = b""
        if self.open != index:
            out = self._open(index, block or {"type": "text", "text": ""})
        number = self.blocks[index]
        return out + sse(
            {"type": "content_block_delta", "index": number, "delta": delta}, "content_block_delta"
        )

    def _reasoning(self, event: ir.ReasoningDelta) -> bytes:
        if event.redacted is not None:
            return self._open(event.index, {"type": "redacted_thinking", "data": event.redacted})
        block = {"type": "thinking", "thinking": "", "signature": ""}
        out = b""
        if event.text:
            out += self._delta(
                event.index, block, {"type": "thinking_delta", "thinking": event.text}
            )
        if event.signature:
            out += self._delta(
                event.index, block, {"type": "signature_delta", "signature": event.signature}
            )
        return out

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        number, self.open = self.blocks[self.open], None
        return sse({"type": "content_block_stop", "index": number}, "content_block_stop")

    def _finish(self, event: ir.Finished) -> bytes:
        out = self._close()
        usage = _usage(event.usage or TokenUsage())
        delta = {"stop_reason": _STOP_REASON[event.stop], "stop_sequence": event.stop_sequence}
        out += sse({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
        out += sse({"type": "message_stop"}, "message_stop")
        self.done = True
        return out

    def fail(self, message: str, status: int = 502) -> bytes:
        self.done = True
        return sse(anthropic_error(status, message), "error")

    def close(self) -> bytes:
        return b""


class ClientSide:
    decode_request = staticmethod(decode_request)
    encode_answer = staticmethod(encode_answer)

    def stream_encoder(self, *, sse: bool = True, usage: bool = False) -> StreamEncoder:
        return StreamEncoder()


CLIENT = ClientSide()


# ================================================================ a channel's side


class ChannelSide:
    def encode_request(self, conversation: ir.Conversation, *, model: str) -> dict[str, Any]:
        dropped = conversation.dropped
        cap = conversation.max_output_tokens or DEFAULT_MAX_TOKENS
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": cap,
            "messages": _messages(conversation.messages, dropped),
        }
        if conversation.system:
            body["system"] = [_text(t) for t in conversation.system]
        if conversation.tools:
            body["tools"] = [
                {
                    "name": t.name,
                    "input_schema": t.parameters,
                    **({"description": t.description} if t.description else {}),
                }
                for t in conversation.tools
            ]
        choice = _tool_choice(conversation)
        if choice is not None and conversation.tools:
            body["tool_choice"] = choice
        thinking = _thinking(conversation, cap)
        if thinking is not None:
            body["thinking"] = thinking
        for name in ("temperature", "top_p", "top_k"):
            value = getattr(conversation, name)
            if value is None:
                continue
            if thinking is not None and thinking["type"] == "enabled" and name != "top_p":
                dropped.append(name)  # Anthropic refuses it with thinking on
            else:
                body[name] = value
        if conversation.stop:
            body["stop_sequences"] = conversation.stop
        if conversation.response_format is not None and conversation.response_format.kind != "text":
            dropped.append("response_format")
        if conversation.stream:
            body["stream"] = True
        return body

    def decode_answer(self, body: Any) -> ir.Answer:
        body = object_of(body)
        parts: list[ir.Text | ir.Reasoning | ir.ToolCall] = []
        for block in body.get("content") or []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                parts.append(ir.Text(str(block.get("text", ""))))
            elif kind == "tool_use":
                parts.append(
                    ir.ToolCall(
                        str(block.get("id")),
                        str(block.get("name")),
                        arguments_text(block.get("input")),
                    )
                )
            elif kind == "thinking":
                parts.append(ir.Reasoning(str(block.get("thinking", "")), block.get("signature")))
            elif kind == "redacted_thinking":
                parts.append(ir.Reasoning(redacted=str(block.get("data", ""))))
        usage = parse_usage(body.get("usage"))
        if usage is not None and usage.output == 0 and parts:
            usage = None
        return ir.Answer(
            id=str(body.get("id") or new_id("msg_")),
            model=str(body.get("model") or ""),
            parts=parts,
            stop=_STOP.get(str(body.get("stop_reason")), ir.StopReason.END),
            stop_sequence=body.get("stop_sequence"),
            usage=usage,
        )

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder()

    def error_message(self, body: bytes) -> str | None:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        return str(error["message"]) if isinstance(error, dict) and "message" in error else None


def _text(part: ir.Text) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache_control is not None:
        block["cache_control"] = part.cache_control
    return block


def _messages(messages: list[ir.Message], dropped: list[str]) -> list[dict[str, Any]]:
    """Anthropic's turns: alternating, starting with the user's (consecutive turns of one
    role merged; a history opening with the assistant gets an empty user turn first)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        blocks = [b for p in message.parts if (b := _part(p, dropped)) is not None]
        if not blocks:
            continue
        if out and out[-1]["role"] == message.role:
            out[-1]["content"] += blocks
        else:
            out.append({"role": message.role, "content": blocks})
    if out and out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": "..."}]})
    return out


def _part(part: ir.Part, dropped: list[str]) -> dict[str, Any] | None:
    if isinstance(part, ir.Text):
        return _text(part) if part.text else None
    if isinstance(part, ir.Image):
        if part.data is not None:
            source = {
                "type": "base64",
                "media_type": part.media_type or "image/png",
                "data": part.data,
            }
        else:
            source = {"type": "url", "url": part.url or ""}
        return {"type": "image", "source": source}
    if isinstance(part, ir.ToolCall):
        return {
            "type": "tool_use",
            "id": part.id,
            "name": part.name,
            "input": arguments_object(part.arguments),
        }
    if isinstance(part, ir.ToolResult):
        content = [b for p in part.content if (b := _part(p, dropped)) is not None]
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": part.call_id,
            "content": content or "",
        }
        if part.is_error:
            result["is_error"] = True
        return result
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    if part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if part.text and "reasoning_content" not in dropped:
        dropped.append("reasoning_content")  # unsigned reasoning cannot go to Anthropic
    return None


def _tool_choice(conversation: ir.Conversation) -> dict[str, Any] | None:
    choice = conversation.tool_choice
    if choice is None and conversation.parallel_tool_calls is not False:
        return None
    kind = {"auto": "auto", "required": "any", "none": "none", "named": "tool"}[
        choice.mode if choice else "auto"
    ]
    out: dict[str, Any] = {"type": kind}
    if choice is not None and choice.mode == "named":
        out["name"] = choice.name
    if conversation.parallel_tool_calls is False and kind != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _thinking(conversation: ir.Conversation, cap: int) -> dict[str, Any] | None:
    reasoning = conversation.reasoning
    if reasoning is None:
        return None
    if not reasoning.enabled:
        return {"type": "disabled"}
    budget = budget_for(reasoning)
    if budget is None:
        return None
    budget = min(budget, cap - 1)
    if budget < MIN_THINKING_BUDGET:  # the cap leaves no valid budget: no thinking
        conversation.dropped.append("reasoning")
        return None
    return {"type": "enabled", "budget_tokens": budget}


class StreamDecoder:
    """Anthropic's stream as `StreamEvent`s. Usage starts from `message_start` and each
    field is overwritten by any later non-zero `message_delta` value (cumulative counts)."""

    def __init__(self) -> None:
        self.usage: dict[str, Any] = {}
        self.kinds: dict[int, str] = {}
        self.stop = ir.StopReason.END
        self.stop_sequence: str | None = None
        self.finished = False

    def feed(self, event: SSEEvent) -> list[ir.StreamEvent]:
        if not event.has_data:
            return []
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return []
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "message_start":
            message = as_dict(data.get("message"))
            self._merge(message.get("usage"))
            started = parse_usage(self.usage)
            return [
                ir.Started(
                    str(message.get("id") or new_id("msg_")),
                    str(message.get("model") or ""),
                    started,
                )
            ]
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_stop":
            return [ir.PartDone(int(data.get("index", 0)))]
        if kind == "message_delta":
            delta = as_dict(data.get("delta"))
            if delta.get("stop_reason"):
                self.stop = _STOP.get(str(delta["stop_reason"]), ir.StopReason.END)
            self.stop_sequence = delta.get("stop_sequence")
            self._merge(data.get("usage"))
            return []
        if kind == "message_stop":
            return self._finished()
        if kind == "error":
            error = as_dict(data.get("error"))
            self.finished = True
            return [ir.Failed(str(error.get("message") or "upstream error"))]
        return []

    def _merge(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for name, value in usage.items():
            if isinstance(value, dict):
                inner = self.usage.setdefault(name, {})
                if isinstance(inner, dict):
                    inner.update({k: v for k, v in value.items() if v or k not in inner})
            elif value or name not in self.usage:
                self.usage[name] = value

    def _block_start(self, data: dict[str, Any]) -> list[ir.StreamEvent]:
        index = int(data.get("index", 0))
        block = as_dict(data.get("content_block"))
        kind = str(block.get("type"))
        self.kinds[index] = kind
        if kind == "tool_use":
            return [ir.ToolCallStarted(index, str(block.get("id")), str(block.get("name")))]
        if kind == "redacted_thinking":
            return [ir.ReasoningDelta(index, redacted=str(block.get("data", "")))]
        if kind == "text" and block.get("text"):
            return [ir.TextDelta(index, str(block["text"]))]
        return []

    def _delta(self, data: dict[str, Any]) -> list[ir.StreamEvent]:
        index = int(data.get("index", 0))
        delta = as_dict(data.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta":
            return [ir.TextDelta(index, str(delta.get("text", "")))]
        if kind == "input_json_delta":
            return [ir.ToolCallDelta(index, str(delta.get("partial_json", "")))]
        if kind == "thinking_delta":
            return [ir.ReasoningDelta(index, str(delta.get("thinking", "")))]
        if kind == "signature_delta":
            return [ir.ReasoningDelta(index, signature=str(delta.get("signature", "")))]
        return []

    def _finished(self) -> list[ir.StreamEvent]:
        if self.finished:
            return []
        self.finished = True
        return [ir.Finished(self.stop, parse_usage(self.usage), self.stop_sequence)]

    def end(self) -> list[ir.StreamEvent]:
        return []  # without its message_stop, the answer is not complete


CHANNEL = ChannelSide()
