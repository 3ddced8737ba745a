"""A Gemini client's request (generateContent, streamGenerateContent) as a conversation: what a
google-genai SDK app or Gemini CLI sends, decoded for a channel of another format.

The pipeline puts the path's model and streaming into the body as `model` and `stream`
before this reads it. Fields the other formats have no place for (safetySettings,
cachedContent, labels, Google's own tools...) are dropped and named; a part no other format
can carry (a PDF, a Files API URI) is refused, naming the field.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import orjson

from quotaledger.wire import ir
from quotaledger.wire.codecs.common import arguments_text, list_field, object_of, stop_list
from quotaledger.wire.codecs.gemini.signatures import (
    PLACEHOLDER_SIGNATURES,
    standard_base64,
    unpack_reasoning,
)
from quotaledger.wire.errors import InvalidRequest

_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto"}
_LEVELS = {"MINIMAL": "minimal", "LOW": "low", "MEDIUM": "medium", "HIGH": "high", "XHIGH": "high"}
# The top-level fields a request may carry that this shape has a place for.
_CARRIED = {
    "model",
    "stream",
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
}
_GENERATION_CARRIED = {
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "stopSequences",
    "candidateCount",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "thinkingConfig",
}
FILES_API_HOST = "generativelanguage.googleapis.com"


# ================================================================ field names
# Google's API reads a field by its JSON name (`inlineData`) or its proto name
# (`inline_data`): the SDKs send the first, Google's own curl examples the second.


@lru_cache(maxsize=256)
def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda m: "_" + m.group().lower(), name)


@lru_cache(maxsize=256)
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def _field(obj: dict[str, Any], name: str) -> Any:
    value = obj.get(name)
    return obj.get(_snake(name)) if value is None else value


def _object(obj: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = _field(obj, name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}{name} must be an object", where + name)
    return value


def _number(obj: dict[str, Any], name: str, where: str) -> float | None:
    value = _field(obj, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{where}{name} must be a number", where + name)
    return float(value)


def _count(obj: dict[str, Any], name: str, where: str) -> int | None:
    value = _field(obj, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(f"{where}{name} must be a positive integer", where + name)
    return value


def _enum(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{field} must be a string", field)
    return value.upper()


class _Calls:
    """The function calls of the latest model turn not answered yet, to pair each
    functionResponse with its call: by id, else by name in order."""

    def __init__(self) -> None:
        self.open: list[tuple[str, str]] = []  # (id, name)

    def answer(self, call_id: str, name: str, where: str) -> str:
        by_id = [i for i, call in enumerate(self.open) if call_id and call[0] == call_id]
        by_name = [i for i, call in enumerate(self.open) if call[1] == name]
        for position in by_id[:1] or by_name[:1]:
            return self.open.pop(position)[0]
        raise InvalidRequest(
            f"{where}: functionResponse {name!r} answers no functionCall of the model turn before",
            where,
        )


def decode_request(body: Any) -> ir.Conversation:
    body = object_of(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required (in the path: models/{model}:generateContent)")
    if body.get("stream") not in (None, True, False):
        raise InvalidRequest("stream must be a boolean", "stream")
    conversation = ir.Conversation(model=model, messages=[], stream=body.get("stream") is True)
    dropped = conversation.dropped
    conversation.system = _system(_field(body, "systemInstruction"), dropped)
    calls = _Calls()
    for turn, content in enumerate(list_field(body, "contents", required=True)):
        message = _content(content, turn, calls, dropped)
        if message.parts:
            conversation.messages.append(message)
    if not conversation.messages:
        raise InvalidRequest("contents must hold at least one part", "contents")
    for index, tool in enumerate(list_field(body, "tools")):
        conversation.tools += _tools(tool, f"tools[{index}]", dropped)
    _decode_tool_config(conversation, _object(body, "toolConfig", ""))
    _decode_generation(conversation, _object(body, "generationConfig", ""))
    # safetySettings, cachedContent, labels...
    dropped += [_camel(k) for k, v in body.items() if v is not None and _camel(k) not in _CARRIED]
    conversation.dropped = list(dict.fromkeys(dropped))  # each field named once
    return conversation


def _system(value: Any, dropped: list[str]) -> list[ir.Text]:
    if value is None:
        return []
    if isinstance(value, str):  # the SDKs take a string; the API itself takes a Content
        return [ir.Text(value)] if value else []
    if not isinstance(value, dict) or not isinstance(value.get("parts"), list):
        raise InvalidRequest("systemInstruction must be a Content with parts", "systemInstruction")
    texts = []
    for part in value["parts"]:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            if part["text"]:
                texts.append(ir.Text(part["text"]))
        elif "systemInstruction.parts" not in dropped:
            dropped.append("systemInstruction.parts")  # an image in the system prompt
    return texts


def _content(content: Any, turn: int, calls: _Calls, dropped: list[str]) -> ir.Message:
    where = f"contents[{turn}]"
    if not isinstance(content, dict):
        raise InvalidRequest(f"{where} must be an object", where)
    role = content.get("role") or "user"
    if role not in ("user", "model"):
        raise InvalidRequest(f"{where}.role must be user or model", f"{where}.role")
    parts = content.get("parts")
    if not isinstance(parts, list):
        raise InvalidRequest(f"{where}.parts must be an array", f"{where}.parts")
    if role == "model":
        calls.open = []
    decoded: list[ir.Part] = []
    packed: list[ir.Reasoning] = []
    for number, part in enumerate(parts):
        part_where = f"{where}.parts[{number}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"{part_where} must be an object", part_where)
        packed += _signature(part, part_where, dropped)
        found = _part(part, part_where, role, dropped)
        if isinstance(found, ir.ToolCall):
            if not found.id:
                found = ir.ToolCall(f"call_{turn}_{number}", found.name, found.arguments)
            calls.open.append((found.id, found.name))
        elif isinstance(found, ir.ToolResult):
            call_id = calls.answer(found.call_id, found.name or "", part_where)
            found = ir.ToolResult(call_id, found.content, found.is_error, found.name)
        if found is not None:
            decoded.append(found)
    if packed:  # our pack holds the thought parts' text exactly, with their signatures
        decoded = [*packed, *(p for p in decoded if not isinstance(p, ir.Reasoning))]
    return ir.Message("assistant" if role == "model" else "user", tuple(decoded))


def _signature(part: dict[str, Any], where: str, dropped: list[str]) -> list[ir.Reasoning]:
    """The reasoning our answer packed into this part's thoughtSignature. Gemini's own
    signatures mean nothing to another provider: dropped, and named."""
    signature = _field(part, "thoughtSignature")
    if signature is None:
        return []
    if not isinstance(signature, str):
        raise InvalidRequest(f"{where}.thoughtSignature must be a base64 string", where)
    unpacked = unpack_reasoning(signature)
    if unpacked is None and signature not in PLACEHOLDER_SIGNATURES:
        if "thoughtSignature" not in dropped:
            dropped.append("thoughtSignature")
        return []
    return unpacked or []


def _part(part: dict[str, Any], where: str, role: str, dropped: list[str]) -> ir.Part | None:
    text = part.get("text")
    if isinstance(text, str):
        if part.get("thought") is True:
            return ir.Reasoning(text) if text else None
        return ir.Text(text) if text else None
    if (inline := _field(part, "inlineData")) is not None:
        return _inline_image(inline, f"{where}.inlineData")
    if (file := _field(part, "fileData")) is not None:
        return _file_image(file, f"{where}.fileData")
    if (call := _field(part, "functionCall")) is not None:
        if role != "model":
            raise InvalidRequest(f"{where}: functionCall parts belong to model turns", where)
        return _function_call(call, f"{where}.functionCall")
    if (response := _field(part, "functionResponse")) is not None:
        if role != "user":
            raise InvalidRequest(f"{where}: functionResponse parts belong to user turns", where)
        return _function_response(response, f"{where}.functionResponse")
    for kind in ("executableCode", "codeExecutionResult", "videoMetadata"):
        if _field(part, kind) is not None:
            dropped.append(kind)
            return None
    if _field(part, "thoughtSignature") is not None or "thought" in part:
        return None  # a signature alone (Gemini's last streamed part)
    raise InvalidRequest(
        f"{where} needs text, inlineData, fileData, functionCall or functionResponse", where
    )


def _inline_image(blob: Any, where: str) -> ir.Image:
    blob = blob if isinstance(blob, dict) else {}
    media_type, data = _field(blob, "mimeType"), blob.get("data")
    if not isinstance(media_type, str) or not isinstance(data, str) or not data:
        raise InvalidRequest(f"{where} needs mimeType and data (base64)", where)
    if not media_type.startswith("image/"):
        raise InvalidRequest(
            f"{where}: {media_type} cannot be converted for this channel (images only)", where
        )
    # The Python SDK writes bytes in base64url; the other providers read standard base64.
    return ir.Image(media_type, standard_base64(data) or data)


def _file_image(file: Any, where: str) -> ir.Image:
    file = file if isinstance(file, dict) else {}
    uri, media_type = _field(file, "fileUri"), _field(file, "mimeType")
    if not isinstance(uri, str) or not uri:
        raise InvalidRequest(f"{where}.fileUri is required", where)
    if media_type is not None and not str(media_type).startswith("image/"):
        raise InvalidRequest(
            f"{where}: {media_type} cannot be converted for this channel (images only)", where
        )
    address = urlsplit(uri)
    if address.scheme != "https" or address.hostname == FILES_API_HOST:
        raise InvalidRequest(
            f"{where}: {uri.split('?')[0]} can be read only by Gemini (a public https URL "
            "or inlineData works on this channel)",
            where,
        )
    return ir.Image(media_type=str(media_type) if media_type else None, url=uri)


def _function_call(call: Any, where: str) -> ir.ToolCall:
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise InvalidRequest(f"{where}.name is required", f"{where}.name")
    args = call.get("args")
    if args is not None and not isinstance(args, dict):
        raise InvalidRequest(f"{where}.args must be an object", f"{where}.args")
    call_id = call.get("id")
    return ir.ToolCall(
        call_id if isinstance(call_id, str) else "", call["name"], arguments_text(args)
    )


def _function_response(response: Any, where: str) -> ir.ToolResult:
    if not isinstance(response, dict) or not isinstance(response.get("name"), str):
        raise InvalidRequest(f"{where}.name is required", f"{where}.name")
    result = response.get("response")
    if result is not None and not isinstance(result, dict):
        raise InvalidRequest(f"{where}.response must be an object", f"{where}.response")
    result = result or {}
    is_error = set(result) == {"error"}
    if set(result) in ({"output"}, {"error"}) and isinstance(next(iter(result.values())), str):
        content: list[ir.Text | ir.Image] = [ir.Text(next(iter(result.values())))]
    else:
        content = [ir.Text(orjson.dumps(result).decode())] if result else []
    for number, part in enumerate(response.get("parts") or []):  # Gemini 3's multimodal results
        part = part if isinstance(part, dict) else {}
        if (file := _field(part, "fileData")) is not None:
            content.append(_file_image(file, f"{where}.parts[{number}].fileData"))
        else:
            inline = _field(part, "inlineData")
            content.append(_inline_image(inline, f"{where}.parts[{number}].inlineData"))
    call_id = response.get("id")
    return ir.ToolResult(
        call_id if isinstance(call_id, str) else "", tuple(content), is_error, response["name"]
    )


def _tools(tool: Any, where: str, dropped: list[str]) -> list[ir.Tool]:
    if not isinstance(tool, dict):
        raise InvalidRequest(f"{where} must be an object", where)
    found: list[ir.Tool] = []
    for key, value in tool.items():
        if value is None:
            continue
        if _camel(key) != "functionDeclarations":
            dropped.append(f"{where}.{_camel(key)}")  # googleSearch, codeExecution, urlContext...
            continue
        if not isinstance(value, list):
            raise InvalidRequest(f"{where}.functionDeclarations must be an array", where)
        found += [
            _declaration(d, f"{where}.functionDeclarations[{i}]") for i, d in enumerate(value)
        ]
    return found


def _declaration(declaration: Any, where: str) -> ir.Tool:
    if not isinstance(declaration, dict) or not isinstance(declaration.get("name"), str):
        raise InvalidRequest(f"{where}.name is required", f"{where}.name")
    schema = _field(declaration, "parametersJsonSchema")
    if not isinstance(schema, dict):
        parameters = declaration.get("parameters")
        schema = json_schema(parameters) if isinstance(parameters, dict) else None
    description = declaration.get("description")
    return ir.Tool(
        declaration["name"],
        description if isinstance(description, str) else None,
        schema if isinstance(schema, dict) else {"type": "object", "properties": {}},
    )


_INTEGER_KEYWORDS = (
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
)


def json_schema(schema: Any) -> Any:
    """Gemini's `Schema` (OpenAPI's subset: upper-case types, `nullable`) as JSON Schema,
    which the other providers' tools and structured outputs take."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        key = _camel(key)
        if key == "type" and isinstance(value, str):
            if value.upper() != "TYPE_UNSPECIFIED":
                out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: json_schema(inner) for name, inner in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = json_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out["anyOf"] = [json_schema(inner) for inner in value]
        elif key in _INTEGER_KEYWORDS and isinstance(value, str):
            out[key] = int(value) if value.isdecimal() else value  # int64 is a string in JSON
        elif key not in ("nullable", "propertyOrdering", "example"):
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _decode_tool_config(conversation: ir.Conversation, config: dict[str, Any]) -> None:
    where = "toolConfig.functionCallingConfig"
    calling = _object(config, "functionCallingConfig", "toolConfig.")
    conversation.dropped += [
        f"toolConfig.{_camel(k)}"
        for k, v in config.items()
        if v is not None and _camel(k) != "functionCallingConfig"
    ]
    mode = _enum(calling.get("mode"), f"{where}.mode")
    names = _field(calling, "allowedFunctionNames")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise InvalidRequest(f"{where}.allowedFunctionNames must be an array of names", where)
    if mode is None or mode == "MODE_UNSPECIFIED":
        return
    if mode not in _MODES:
        raise InvalidRequest(f"{where}.mode must be AUTO, ANY, NONE or VALIDATED", f"{where}.mode")
    if mode == "ANY" and names and len(names) == 1:
        conversation.tool_choice = ir.ToolChoice("named", names[0])
        return
    conversation.tool_choice = ir.ToolChoice(_MODES[mode])  # type: ignore[arg-type]
    if mode == "VALIDATED":
        conversation.dropped.append(f"{where}.mode")
    if names:
        conversation.dropped.append(f"{where}.allowedFunctionNames")


def _decode_generation(conversation: ir.Conversation, config: dict[str, Any]) -> None:
    where = "generationConfig."
    conversation.max_output_tokens = _count(config, "maxOutputTokens", where)
    conversation.temperature = _number(config, "temperature", where)
    conversation.top_p = _number(config, "topP", where)
    top_k = _number(config, "topK", where)
    conversation.top_k = int(top_k) if top_k is not None and top_k >= 1 else None
    stops = _field(config, "stopSequences")
    conversation.stop = stop_list(stops, where + "stopSequences")
    if (_count(config, "candidateCount", where) or 1) > 1:
        conversation.dropped.append(where + "candidateCount")
    conversation.response_format = _response_format(config, conversation.dropped)
    conversation.reasoning = _reasoning(_object(config, "thinkingConfig", where))
    conversation.dropped += [
        where + _camel(k)
        for k, v in config.items()
        if v is not None and _camel(k) not in _GENERATION_CARRIED
    ]


def _response_format(config: dict[str, Any], dropped: list[str]) -> ir.ResponseFormat | None:
    media_type = _field(config, "responseMimeType")
    if media_type in (None, "text/plain"):
        return None
    if media_type != "application/json":
        dropped.append("generationConfig.responseMimeType")  # text/x.enum
        return None
    schema = _field(config, "responseJsonSchema")
    if not isinstance(schema, dict):
        schema = json_schema(_field(config, "responseSchema"))
    if isinstance(schema, dict):
        return ir.ResponseFormat("json_schema", schema=schema)
    return ir.ResponseFormat("json_object")


def _reasoning(config: dict[str, Any]) -> ir.ReasoningConfig | None:
    """thinkingConfig: a budget (-1 dynamic, 0 off), a level (Gemini 3), includeThoughts."""
    where = "generationConfig.thinkingConfig."
    budget = _field(config, "thinkingBudget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise InvalidRequest(f"{where}thinkingBudget must be an integer", where + "thinkingBudget")
    level = _enum(_field(config, "thinkingLevel"), where + "thinkingLevel")
    if level is not None and level != "THINKING_LEVEL_UNSPECIFIED" and level not in _LEVELS:
        raise InvalidRequest(
            f"{where}thinkingLevel must be MINIMAL, LOW, MEDIUM or HIGH", where + "thinkingLevel"
        )
    include = _field(config, "includeThoughts") is True
    if budget == 0:
        return ir.ReasoningConfig(enabled=False)
    if budget is None and level in (None, "THINKING_LEVEL_UNSPECIFIED") and not include:
        return None
    return ir.ReasoningConfig(
        effort=_LEVELS.get(level or ""),  # type: ignore[arg-type]
        budget_tokens=budget if budget is not None and budget > 0 else None,
        include_thoughts=include,
    )
