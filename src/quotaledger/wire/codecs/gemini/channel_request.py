"""A conversation as a `gemini` channel's request (generateContent): contents of roles user
and model, each tool result named after its call, call signatures restored from the ids,
tools as JSON Schema, reasoning as thinkingConfig."""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import urlsplit

import orjson

from quotaledger.wire import ir
from quotaledger.wire.codecs.common import arguments_object, budget_for, effort_for
from quotaledger.wire.codecs.gemini.signatures import SYNTHETIC_SIGNATURE, split_call_id
from quotaledger.wire.errors import InvalidRequest

# Gemini takes at most five stop sequences; its thinking budgets stop at 24,576 on Flash.
MAX_STOP_SEQUENCES = 5
MAX_THINKING_BUDGET = 24576


def encode_request(conversation: ir.Conversation, *, model: str) -> dict[str, Any]:
    dropped = conversation.dropped
    body: dict[str, Any] = {
        "model": model,  # the pipeline moves it (and streaming) into the URL
        "contents": _contents(conversation.messages, dropped),
    }
    if conversation.system:
        body["systemInstruction"] = {"parts": [{"text": t.text} for t in conversation.system]}
        if any(t.cache_control for t in conversation.system):
            _name(dropped, "cache_control")
    if conversation.tools:
        body["tools"] = [{"functionDeclarations": [_declare(t) for t in conversation.tools]}]
        calling = _tool_config(conversation)
        if calling is not None:
            body["toolConfig"] = {"functionCallingConfig": calling}
    generation = _generation(conversation, model)
    if generation:
        body["generationConfig"] = generation
    return body


def error_message(body: bytes) -> str | None:
    """Google's `{"error": {"message"}}`, or the same as a one-element array (the JSON
    array stream's way)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(parsed, list) and parsed:
        parsed = parsed[0]
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return None


def _name(dropped: list[str], field: str) -> None:
    if field not in dropped:
        dropped.append(field)


def _contents(messages: list[ir.Message], dropped: list[str]) -> list[dict[str, Any]]:
    """Gemini's contents: roles user and model, consecutive turns of one role merged, each
    tool result named after its call, the active loop's calls signed."""
    names = {p.id: p.name for m in messages for p in m.parts if isinstance(p, ir.ToolCall)}
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant":
            role, parts = "model", _model_parts(message.parts, dropped)
        else:
            role, parts = "user", _user_parts(message.parts, names, dropped)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"] += parts
        else:
            contents.append({"role": role, "parts": parts})
    _sign_active_loop(contents)
    return contents


def _model_parts(parts: tuple[ir.Part, ...], dropped: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    loose: list[str] = []  # signatures that came on a text part, for the part next to them
    for part in parts:
        if isinstance(part, ir.Text) and part.text:
            out.append({"text": part.text})
        elif isinstance(part, ir.Image):
            out.append(_image(part))
        elif isinstance(part, ir.ToolCall):
            _, signature = split_call_id(part.id)  # the id itself never goes upstream
            call: dict[str, Any] = {
                "functionCall": {"name": part.name, "args": arguments_object(part.arguments)}
            }
            if signature:
                call["thoughtSignature"] = signature
            out.append(call)
        elif isinstance(part, ir.Reasoning):
            if not part.signature:
                if part.text or part.redacted:
                    _name(dropped, "reasoning_content")  # unsigned: another provider's
            elif part.text:
                out.append({"text": part.text, "thought": True, "thoughtSignature": part.signature})
            else:
                loose.append(part.signature)
                _place(out, loose)
    _place(out, loose)
    return out


def _place(parts: list[dict[str, Any]], loose: list[str]) -> None:
    """A text part's signature goes back on the last text part before it that has none."""
    while loose:
        bare = [p for p in parts if "text" in p and "thoughtSignature" not in p]
        if not bare:
            return
        bare[-1]["thoughtSignature"] = loose.pop(0)


def _user_parts(
    parts: tuple[ir.Part, ...], names: dict[str, str], dropped: list[str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ir.Text):
            if part.text:
                out.append({"text": part.text})
            if part.cache_control is not None:
                _name(dropped, "cache_control")  # Gemini caches implicitly
        elif isinstance(part, ir.Image):
            out.append(_image(part))
        elif isinstance(part, ir.ToolResult):
            out += _tool_result(part, names)
    return out


def _tool_result(result: ir.ToolResult, names: dict[str, str]) -> list[dict[str, Any]]:
    """A functionResponse named after its call, its images as parts beside it."""
    name = names.get(result.call_id) or result.name
    if name is None:
        raise InvalidRequest(
            f"the tool result for {result.call_id!r} answers no tool call of the history",
            "messages",
        )
    text = "".join(p.text for p in result.content if isinstance(p, ir.Text))
    response = {"error" if result.is_error else "output": text}
    images = [_image(p) for p in result.content if isinstance(p, ir.Image)]
    return [{"functionResponse": {"name": name, "response": response}}, *images]


def _image(image: ir.Image) -> dict[str, Any]:
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data}}
    url = image.url or ""
    if urlsplit(url).scheme not in ("https", "gs"):
        raise InvalidRequest(
            f"image URL {url[:64]!r}: Gemini fetches only https:// and gs:// URLs; send the "
            "image as base64 data",
            "messages",
        )
    file: dict[str, Any] = {"fileUri": url}
    media_type = image.media_type or mimetypes.guess_type(urlsplit(url).path)[0]
    if media_type:
        file["mimeType"] = media_type
    return {"fileData": file}


def _sign_active_loop(contents: list[dict[str, Any]]) -> None:
    """Gemini 3 refuses the current turn's function calls without a signature: the first call
    of each model turn since the user's last prompt gets the placeholder Google documents
    for calls it did not sign (a history from another model or provider)."""
    start = None
    for position in range(len(contents) - 1, -1, -1):
        parts = contents[position]["parts"]
        prompt = any("text" in p for p in parts) and not any("functionResponse" in p for p in parts)
        if contents[position]["role"] == "user" and prompt:
            start = position
            break
    for content in contents[start or 0 :]:
        calls = [p for p in content["parts"] if "functionCall" in p]
        if content["role"] == "model" and calls and "thoughtSignature" not in calls[0]:
            calls[0]["thoughtSignature"] = SYNTHETIC_SIGNATURE


def _declare(tool: ir.Tool) -> dict[str, Any]:
    # parametersJsonSchema takes JSON Schema as the other formats write it; `parameters`
    # refuses what OpenAPI's subset lacks (const, $ref, additionalProperties on old models).
    declaration: dict[str, Any] = {"name": tool.name, "parametersJsonSchema": tool.parameters}
    if tool.description:
        declaration["description"] = tool.description
    return declaration


def _tool_config(conversation: ir.Conversation) -> dict[str, Any] | None:
    if conversation.parallel_tool_calls is False:
        _name(conversation.dropped, "parallel_tool_calls")  # Gemini has no such switch
    choice = conversation.tool_choice
    if choice is None:
        return None
    if choice.mode == "named":
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice.mode]}


def _generation(conversation: ir.Conversation, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, field in (
        ("maxOutputTokens", "max_output_tokens"),
        ("temperature", "temperature"),
        ("topP", "top_p"),
        ("topK", "top_k"),
    ):
        if getattr(conversation, field) is not None:
            config[name] = getattr(conversation, field)
    if conversation.stop:
        config["stopSequences"] = conversation.stop[:MAX_STOP_SEQUENCES]
        if len(conversation.stop) > MAX_STOP_SEQUENCES:
            _name(conversation.dropped, "stop")
    response_format = conversation.response_format
    if response_format is not None and response_format.kind != "text":
        config["responseMimeType"] = "application/json"
        if response_format.kind == "json_schema" and response_format.schema:
            config["responseJsonSchema"] = response_format.schema
    if conversation.reasoning is not None:
        thinking = _thinking(conversation.reasoning, model, conversation.dropped)
        if thinking:
            config["thinkingConfig"] = thinking
    return config


def _thinking(reasoning: ir.ReasoningConfig, model: str, dropped: list[str]) -> dict[str, Any]:
    """Reasoning as thinkingConfig: Gemini 3 takes a level (Pro: low or high only), earlier
    models a budget. Pro models always think: "off" cannot be said to them, so it is named."""
    name = model.removeprefix("models/")
    third, always_thinks = name.startswith("gemini-3"), "-pro" in name
    if not reasoning.enabled:
        if always_thinks:
            _name(dropped, "reasoning")
            return {}
        return {"thinkingLevel": "minimal"} if third else {"thinkingBudget": 0}
    config: dict[str, Any] = {"includeThoughts": reasoning.include_thoughts}
    dynamic = reasoning.effort is None and reasoning.budget_tokens is None  # adaptive thinking
    if third and not dynamic:
        level = effort_for(reasoning) or "high"
        if always_thinks:
            level = "low" if level in ("minimal", "low") else "high"
        config["thinkingLevel"] = level
    elif not third:
        budget = budget_for(reasoning) or MAX_THINKING_BUDGET
        config["thinkingBudget"] = -1 if dynamic else min(budget, MAX_THINKING_BUDGET)
    return config
