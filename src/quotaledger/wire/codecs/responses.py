"""OpenAI Responses as a client's format (SPEC §11): Codex CLI and the OpenAI SDK's
`responses.create` / `responses.stream` on an `openai-chat`, `anthropic` or `gemini`
channel. (An `openai` channel serves Responses natively: there is no channel side.)

The request: `instructions` and developer or system messages become the system prompt; the
`input` items become turns, consecutive model items (reasoning, assistant messages, function
and custom tool calls) one assistant turn, consecutive tool outputs one user turn. The relay
stores no responses, so what names a stored one (`previous_response_id`, `conversation`,
`prompt`, `background`, `item_reference` items) is refused by name.

Three things the other formats have no place for ride in Responses' own:
- **thinking signatures** (Anthropic's, Gemini's thoughtSignature), in a reasoning item's
  `encrypted_content`, sealed together with the thinking text they sign (`_SEALED`, then
  base64url JSON), so that the next turn gives back exactly what was signed even if a client
  rewrites the summary; an OpenAI-issued `encrypted_content` is of no use on another channel
  and is dropped and named;
- **freeform tools** (`custom`, as Codex's `apply_patch`): sent as a function taking one
  string, `input` (its grammar told in the parameter's description), whose calls come back
  as `custom_tool_call` items carrying that string;
- **namespaced tools** (Codex's MCP tools): each function sent as `namespace__name`, its calls
  answered with their namespace and name again.
The last two need the request to answer it, so `wire.conversions` binds the client side to
the request it sent (`ClientSide.for_request`).

Tools only OpenAI's servers run (web_search, file_search, local_shell, computer_use, mcp,
image_generation...) are dropped and named, as is every setting with no equivalent.

A stream is Responses' event grammar, every event numbered by `sequence_number`. A failure
is an `error` event, then `response.failed`, whose `error.code` decides whether Codex retries:
`invalid_prompt` for a client error (shown, not retried), `rate_limit_exceeded` for a 429,
`server_error` otherwise (retried, as an upstream's failure should be).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import ir
from quotaledger.wire.codecs.common import (
    arguments_object,
    arguments_text,
    effort,
    list_field,
    new_id,
    number,
    object_of,
    positive_int,
    split_data_url,
    sse,
)
from quotaledger.wire.errors import InvalidRequest
from quotaledger.wire.openai_responses import as_responses_usage

# The settings a request may carry that are read here; every other top-level field is
# named on the log row as dropped when the request is converted.
_READ = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "reasoning",
        "stream",
        "background",
    }
)
# What names something OpenAI stored, which no other channel has.
_STORED = ("previous_response_id", "conversation", "prompt")
_SEALED = "quotaledger.reasoning.v1:"
_ENCRYPTED = "reasoning.encrypted_content"


@dataclass(frozen=True, slots=True)
class ResponsesTool(ir.Tool):
    """A tool whose calls the client must get back otherwise than as sent: a `custom` tool
    (`freeform`: its input is one string) or a namespaced one (`name` is then
    `namespace__local_name`)."""

    local_name: str = ""
    namespace: str | None = None
    freeform: bool = False


def upstream_name(namespace: str | None, name: str) -> str:
    """A namespaced tool's name as a function elsewhere (`mcp__github__` + `get_issue`:
    `mcp__github__get_issue`)."""
    return f"{namespace.rstrip('_')}__{name}" if namespace else name


def _client_name(tool: ir.Tool) -> str:
    return tool.local_name if isinstance(tool, ResponsesTool) else tool.name


# ================================================================ the request


def decode_request(body: Any) -> ir.Conversation:
    body = object_of(body)
    _refuse_stored(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model is required (a string)", "model")
    conversation = ir.Conversation(model=model, messages=[])
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("instructions must be a string", "instructions")
    if instructions:
        conversation.system.append(ir.Text(instructions))
    _decode_input(conversation, body.get("input"))
    conversation.tools = _decode_tools(list_field(body, "tools"), conversation.dropped)
    conversation.tool_choice = _decode_tool_choice(body.get("tool_choice"), conversation)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidRequest("parallel_tool_calls must be a boolean", "parallel_tool_calls")
    conversation.parallel_tool_calls = parallel
    conversation.max_output_tokens = positive_int(body, "max_output_tokens")
    conversation.temperature = number(body, "temperature")
    conversation.top_p = number(body, "top_p")
    conversation.response_format = _decode_text(body.get("text"), conversation.dropped)
    conversation.reasoning = _decode_reasoning(body.get("reasoning"), conversation.dropped)
    if body.get("stream") not in (None, True, False):
        raise InvalidRequest("stream must be a boolean", "stream")
    conversation.stream = body.get("stream") is True
    conversation.dropped += [n for n, v in body.items() if n not in _READ and v is not None]
    return conversation


def _refuse_stored(body: dict[str, Any]) -> None:
    for name in _STORED:
        if body.get(name) is not None:
            raise InvalidRequest(
                f"{name} cannot be served on this model's channel: it names something "
                "stored by OpenAI, and the relay stores no responses; send the whole "
                "conversation in input instead",
                name,
            )
    if body.get("background") is True:
        raise InvalidRequest(
            "background responses cannot be served on this model's channel (the relay "
            "stores no responses); stream the response instead",
            "background",
        )


class _Turns:
    """Input items gathered into turns: consecutive model items make one assistant turn,
    consecutive tool outputs one user turn; each user message is a turn of its own."""

    def __init__(self) -> None:
        self.turns: list[tuple[ir.Role, list[ir.Part]]] = []

    def add(self, role: ir.Role, parts: list[ir.Part], *, join: bool) -> None:
        if not parts:
            return
        last = self.turns[-1] if self.turns else None
        if join and last is not None and last[0] == role and self._takes_more(last):
            last[1].extend(parts)
        else:
            self.turns.append((role, list(parts)))

    @staticmethod
    def _takes_more(turn: tuple[ir.Role, list[ir.Part]]) -> bool:
        """An assistant turn takes the next model item; a user turn takes a tool output
        only when it holds tool outputs alone."""
        return turn[0] == "assistant" or all(isinstance(p, ir.ToolResult) for p in turn[1])

    def messages(self) -> list[ir.Message]:
        return [ir.Message(role, tuple(parts)) for role, parts in self.turns]


def _decode_input(conversation: ir.Conversation, value: Any) -> None:
    if isinstance(value, str) and value:
        conversation.messages.append(ir.Message("user", (ir.Text(value),)))
        return
    if not isinstance(value, list) or not value:
        raise InvalidRequest("input is required: a string or a non-empty array of items", "input")
    turns = _Turns()
    for index, item in enumerate(value):
        _decode_item(conversation, turns, item, f"input[{index}]")
    conversation.messages += turns.messages()


def _decode_item(conversation: ir.Conversation, turns: _Turns, item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object", where)
    kind = item.get("type") or "message"  # an "easy" input message has no type
    if kind == "message":
        _decode_message(conversation, turns, item, where)
    elif kind == "reasoning":
        turns.add("assistant", [*_decode_reasoning_item(item, conversation.dropped)], join=True)
    elif kind in ("function_call", "custom_tool_call"):
        turns.add("assistant", [_decode_call(item, kind, where)], join=True)
    elif kind in ("function_call_output", "custom_tool_call_output"):
        turns.add("user", [_decode_output(item, where, conversation.dropped)], join=True)
    elif kind == "item_reference":
        raise InvalidRequest(
            f"{where}: an item_reference names an item stored by OpenAI, and the relay "
            "stores none on this model's channel; send the item itself",
            where,
        )
    else:  # a hosted tool's call or output (web_search_call, local_shell_call...)
        conversation.dropped.append(f"{where}:{kind}")


def _decode_message(
    conversation: ir.Conversation, turns: _Turns, item: dict[str, Any], where: str
) -> None:
    role = item.get("role")
    parts = _content(item.get("content"), f"{where}.content", conversation.dropped)
    if role in ("system", "developer"):
        conversation.system += [p for p in parts if isinstance(p, ir.Text)]
        if any(isinstance(p, ir.Image) for p in parts):
            conversation.dropped.append(f"{where}.content:input_image")
    elif role == "user":
        turns.add("user", [*parts], join=False)
    elif role == "assistant":
        turns.add("assistant", [p for p in parts if isinstance(p, ir.Text)], join=True)
    else:
        raise InvalidRequest(
            f"{where}.role must be user, assistant, system or developer", f"{where}.role"
        )


def _content(content: Any, where: str, dropped: list[str]) -> list[ir.Text | ir.Image]:
    """A message's content, or a tool output's: a string or an array of parts."""
    if isinstance(content, str):
        return [ir.Text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array", where)
    parts: list[ir.Text | ir.Image] = []
    for index, part in enumerate(content):
        parts.append(_content_part(part, f"{where}[{index}]"))
        marked = isinstance(part, dict) and part.get("prompt_cache_breakpoint") is not None
        if marked and "prompt_cache_breakpoint" not in dropped:
            dropped.append("prompt_cache_breakpoint")
    return parts


def _content_part(part: Any, where: str) -> ir.Text | ir.Image:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text", "refusal"):
        text = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(text, str):
            raise InvalidRequest(f"{where}.text must be a string", where)
        return ir.Text(text)
    if kind == "input_image":
        url = part.get("image_url")
        if isinstance(url, str) and url:
            inline = split_data_url(url)
            return ir.Image(*inline) if inline else ir.Image(url=url)
        raise InvalidRequest(
            f"{where}: an image needs an image_url (a data: URL or an address); one by "
            "file_id names a file stored by OpenAI, which this model's channel cannot read",
            where,
        )
    raise InvalidRequest(f"{where}: content of type {kind!r} cannot be converted", where)


def _decode_reasoning_item(item: dict[str, Any], dropped: list[str]) -> list[ir.Reasoning]:
    """A reasoning item: ours (its sealed signature and text), else its text unsigned; an
    `encrypted_content` another server issued cannot be used and is named."""
    sealed = item.get("encrypted_content")
    if isinstance(sealed, str) and sealed:
        ours = unseal(sealed)
        if ours is not None:
            return [ours]
        if _ENCRYPTED not in dropped:
            dropped.append(_ENCRYPTED)
    texts = [
        str(part.get("text") or "")
        for name in ("content", "summary")
        for part in (item.get(name) or [])
        if isinstance(part, dict)
    ]
    text = "\n\n".join(t for t in texts if t)
    return [ir.Reasoning(text)] if text else []


def _required_string(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{where}.{name} is required (a string)", f"{where}.{name}")
    return value


def _decode_call(item: dict[str, Any], kind: str, where: str) -> ir.ToolCall:
    call_id = _required_string(item, "call_id", where)
    name = _required_string(item, "name", where)
    namespace = item.get("namespace") if isinstance(item.get("namespace"), str) else None
    if kind == "custom_tool_call":
        given = item.get("input")
        if not isinstance(given, str):
            raise InvalidRequest(f"{where}.input must be a string", f"{where}.input")
        arguments = orjson.dumps({"input": given}).decode()
    else:
        arguments = arguments_text(item.get("arguments"))
    return ir.ToolCall(call_id, upstream_name(namespace, name), arguments)


def _decode_output(item: dict[str, Any], where: str, dropped: list[str]) -> ir.ToolResult:
    call_id = _required_string(item, "call_id", where)
    output = item.get("output")
    if output is None:
        raise InvalidRequest(f"{where}.output is required", f"{where}.output")
    return ir.ToolResult(call_id, tuple(_content(output, f"{where}.output", dropped)))


def _decode_tools(tools: list[Any], dropped: list[str]) -> list[ir.Tool]:
    decoded: list[ir.Tool] = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"{where} must be an object", where)
        if tool.get("type") == "namespace":
            namespace = _required_string(tool, "name", where)
            for inner, member in enumerate(list_field(tool, "tools")):
                found = _decode_tool(member, f"{where}.tools[{inner}]", namespace)
                if found is None:
                    dropped.append(f"{where}.tools[{inner}]:{member.get('type')}")
                else:
                    decoded.append(found)
            continue
        found = _decode_tool(tool, where, None)
        if found is None:
            dropped.append(f"{where}:{tool.get('type')}")
        else:
            decoded.append(found)
    return decoded


def _decode_tool(tool: Any, where: str, namespace: str | None) -> ir.Tool | None:
    """A function or custom tool; None for a tool only OpenAI's servers run."""
    if not isinstance(tool, dict):
        raise InvalidRequest(f"{where} must be an object", where)
    kind = tool.get("type")
    if kind not in ("function", "custom"):
        return None
    name = _required_string(tool, "name", where)
    description = tool.get("description") if isinstance(tool.get("description"), str) else None
    if kind == "custom":
        freeform = _freeform_parameters(tool.get("format"))
        flat = upstream_name(namespace, name)
        return ResponsesTool(flat, description, freeform, name, namespace, freeform=True)
    given = tool.get("parameters")
    parameters = given if isinstance(given, dict) else {"type": "object", "properties": {}}
    if namespace is None:
        return ir.Tool(name, description, parameters)
    return ResponsesTool(upstream_name(namespace, name), description, parameters, name, namespace)


def _freeform_parameters(given: Any) -> dict[str, Any]:
    """A freeform tool as a function's parameters: one string, its grammar told."""
    form = given if isinstance(given, dict) else {}
    told = "The tool's whole input, as one string of plain text (not JSON)"
    definition = form.get("definition")
    if form.get("type") == "grammar" and isinstance(definition, str):
        told += f", in this {form.get('syntax') or 'lark'} grammar:\n{definition}"
    return {
        "type": "object",
        "properties": {"input": {"type": "string", "description": told}},
        "required": ["input"],
    }


def _decode_tool_choice(choice: Any, conversation: ir.Conversation) -> ir.ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ir.ToolChoice(choice)
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in ("function", "custom") and isinstance(choice.get("name"), str):
        named = [t.name for t in conversation.tools if _client_name(t) == choice["name"]]
        return ir.ToolChoice("named", named[0] if named else choice["name"])
    if kind == "allowed_tools" and choice.get("mode") in ("auto", "required"):
        # The tools offered, narrowed to those allowed: what the choice says, exactly.
        allowed = {t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)}
        conversation.tools = [t for t in conversation.tools if _client_name(t) in allowed]
        return ir.ToolChoice(choice["mode"])
    raise InvalidRequest(
        "tool_choice must be auto, none, required, allowed_tools or a function or custom "
        "tool by name (a tool that runs on OpenAI's servers cannot be required here)",
        "tool_choice",
    )


def _decode_text(value: Any, dropped: list[str]) -> ir.ResponseFormat | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("text must be an object", "text")
    dropped += [f"text.{n}" for n, v in value.items() if n != "format" and v is not None]
    form = value.get("format")
    if form is None:
        return None
    kind = form.get("type") if isinstance(form, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ir.ResponseFormat("json_object")
    if kind == "json_schema":
        schema = form.get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest("text.format.schema is required (an object)", "text.format")
        strict = form.get("strict")
        name = form.get("name")
        return ir.ResponseFormat(
            "json_schema",
            name if isinstance(name, str) else None,
            schema,
            strict if isinstance(strict, bool) else None,
        )
    raise InvalidRequest("text.format.type must be text, json_object or json_schema", "text.format")


def _decode_reasoning(value: Any, dropped: list[str]) -> ir.ReasoningConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("reasoning must be an object", "reasoning")
    read = ("effort", "summary", "generate_summary")
    dropped += [f"reasoning.{n}" for n, v in value.items() if n not in read and v is not None]
    level = value.get("effort")
    if level == "none":
        return ir.ReasoningConfig(enabled=False)
    if level == "xhigh":  # the highest effort the other formats have is high
        level = "high"
    if level is not None and level not in ("minimal", "low", "medium", "high"):
        raise InvalidRequest(
            "reasoning.effort must be none, minimal, low, medium, high or xhigh",
            "reasoning.effort",
        )
    summary = value.get("summary") or value.get("generate_summary")
    return ir.ReasoningConfig(
        effort=effort(level, "reasoning.effort"), include_thoughts=summary is not None
    )


# ================================================================ thinking signatures


def seal(reasoning: ir.Reasoning) -> str | None:
    """The `encrypted_content` carrying a signed (or redacted) thinking block; None for
    reasoning without a signature, which needs none."""
    if reasoning.redacted is not None:
        payload: dict[str, str] = {"redacted": reasoning.redacted}
    elif reasoning.signature:
        payload = {"thinking": reasoning.text, "signature": reasoning.signature}
    else:
        return None
    return _SEALED + base64.urlsafe_b64encode(orjson.dumps(payload)).decode()


def unseal(value: str) -> ir.Reasoning | None:
    """The thinking block `seal` carried; None when `value` is not one of ours."""
    if not value.startswith(_SEALED):
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(value[len(_SEALED) :]))
    except ValueError:  # not base64, or not JSON: a client mangled it
        return None
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("redacted"), str):
        return ir.Reasoning(redacted=payload["redacted"])
    thinking, signature = payload.get("thinking"), payload.get("signature")
    if isinstance(thinking, str) and isinstance(signature, str) and signature:
        return ir.Reasoning(thinking, signature)
    return None


# ================================================================ the answer


def freeform_input(arguments: str) -> str:
    """A freeform tool's input from the function call the model made: its `input`, else
    the one string it gave under another name, else the arguments' text as they came."""
    value = arguments_object(arguments)
    given = value.get("input")
    if isinstance(given, str):
        return given
    strings = [v for v in value.values() if isinstance(v, str)]
    if len(value) == 1 and strings:
        return strings[0]
    return arguments if value else ""  # `{}`: a call with no input


def _outcome(stop: ir.StopReason) -> tuple[str, dict[str, str] | None]:
    """A response's status and `incomplete_details` for the answer's stop reason."""
    if stop is ir.StopReason.MAX_TOKENS:
        return "incomplete", {"reason": "max_output_tokens"}
    if stop is ir.StopReason.CONTENT_FILTER:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _failure_code(status: int) -> str:
    """`response.failed`'s `error.code` for our status: what Codex reads to retry or not."""
    if status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= status < 500 else "server_error"


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [_text_part(text)],
    }


def _reasoning_item(item_id: str, reasoning: ir.Reasoning) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": reasoning.text}] if reasoning.text else []
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": summary}
    sealed = seal(reasoning)
    if sealed is not None:
        item["encrypted_content"] = sealed
    return item


@dataclass(frozen=True)
class _Request:
    """What the answer needs of the request: its tools' names as the client gave them and
    the settings a Response echoes."""

    tools: dict[str, ResponsesTool] = field(default_factory=dict)
    echo: dict[str, Any] = field(
        default_factory=lambda: {"tools": [], "tool_choice": "auto", "parallel_tool_calls": True}
    )

    @classmethod
    def of(cls, conversation: ir.Conversation) -> _Request:
        tools = {t.name: t for t in conversation.tools if isinstance(t, ResponsesTool)}
        choice: Any = "auto"
        if conversation.tool_choice is not None:
            choice = conversation.tool_choice.mode
            if choice == "named":
                named = tools.get(conversation.tool_choice.name or "")
                kind = "custom" if named is not None and named.freeform else "function"
                name = _client_name(named) if named else conversation.tool_choice.name
                choice = {"type": kind, "name": name}
        echo = {
            "tools": [],  # not echoed: the relay keeps them only as they go upstream
            "tool_choice": choice,
            "parallel_tool_calls": conversation.parallel_tool_calls is not False,
            "temperature": conversation.temperature,
            "top_p": conversation.top_p,
            "max_output_tokens": conversation.max_output_tokens,
        }
        return cls(tools, echo)

    def call_item(self, item_id: str, call_id: str, name: str, arguments: str) -> dict[str, Any]:
        """A call the model made, as the client knows its tool: a function or custom call,
        with its namespace."""
        tool = self.tools.get(name)
        known = _client_name(tool) if tool is not None else name
        item: dict[str, Any] = {"id": item_id}
        if tool is not None and tool.freeform:
            item.update(type="custom_tool_call", call_id=call_id, name=known)
            item["input"] = freeform_input(arguments)
        else:
            item.update(type="function_call", call_id=call_id, name=known)
            item.update(arguments=arguments, status="completed")
        if tool is not None and tool.namespace:
            item["namespace"] = tool.namespace
        return item

    def freeform(self, name: str) -> bool:
        tool = self.tools.get(name)
        return tool is not None and tool.freeform

    def response(
        self,
        response_id: str,
        model: str,
        status: str,
        output: list[dict[str, Any]],
        usage: TokenUsage | None,
        created_at: int | None = None,
    ) -> dict[str, Any]:
        return {
            "id": response_id,
            "object": "response",
            "created_at": created_at or int(time.time()),
            "status": status,
            "error": None,
            "incomplete_details": None,
            "model": model,
            "output": output,
            "usage": as_responses_usage(usage) if usage is not None else None,
            **self.echo,
        }


def _response_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("resp_") else "resp_" + upstream_id


def _answer_items(request: _Request, answer: ir.Answer) -> list[dict[str, Any]]:
    """The answer's parts as output items: consecutive texts one message."""
    items: list[dict[str, Any]] = []
    texts: list[str] = []
    for part in [*answer.parts, None]:
        if isinstance(part, ir.Text):
            texts.append(part.text)
            continue
        if any(texts):
            items.append(_message_item(new_id("msg_"), "".join(texts), "completed"))
        texts = []
        if isinstance(part, ir.Reasoning):
            items.append(_reasoning_item(new_id("rs_"), part))
        elif isinstance(part, ir.ToolCall):
            prefix = "ctc_" if request.freeform(part.name) else "fc_"
            items.append(request.call_item(new_id(prefix), part.id, part.name, part.arguments))
    return items


def _encode_answer(request: _Request, answer: ir.Answer) -> dict[str, Any]:
    status, details = _outcome(answer.stop)
    items = _answer_items(request, answer)
    if status == "incomplete" and items and items[-1]["type"] == "message":
        items[-1]["status"] = "incomplete"
    response = request.response(_response_id(answer.id), answer.model, status, items, answer.usage)
    response["incomplete_details"] = details
    return response


# ================================================================ the stream


ItemKind = Literal["message", "reasoning", "function_call", "custom_tool_call"]


@dataclass(slots=True)
class _Item:
    """One output item being streamed: the part it carries and what it said so far."""

    part: int
    output_index: int
    kind: ItemKind
    id: str
    pieces: list[str] = field(default_factory=list)  # its text, reasoning or arguments
    call_id: str = ""
    name: str = ""
    signature: str | None = None
    redacted: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def where(self) -> dict[str, Any]:
        return {"item_id": self.id, "output_index": self.output_index}


class StreamEncoder:
    """`StreamEvent`s as Responses' events. Text and reasoning items stream one at a time (a
    part starting closes the one open: Codex adds text deltas to the message it shows); tool
    calls stay open until their part is done or the answer finishes, so that calls whose
    deltas interleave each get theirs. A freeform call's input is given whole when the call
    is done: the model writes it as JSON, which can be decoded only then."""

    def __init__(self, request: _Request) -> None:
        self.request = request
        self.sequence = 0
        self.response_id = ""
        self.model = ""
        self.created_at = 0
        self.flow: _Item | None = None  # the text or reasoning item open
        self.calls: dict[int, _Item] = {}  # part index -> its tool call item, open
        self.output: dict[int, dict[str, Any]] = {}  # output index -> the item, done
        self.items = 0  # output items started
        self.closed: set[int] = set()  # the parts whose items are done
        self.done = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse(data, kind)

    def _response(self, status: str, usage: TokenUsage | None = None) -> dict[str, Any]:
        output = [self.output[i] for i in sorted(self.output)]
        return self.request.response(
            self.response_id, self.model, status, output, usage, self.created_at
        )

    def encode(self, event: ir.StreamEvent) -> bytes:
        if isinstance(event, ir.Started):
            return self._start(_response_id(event.id), event.model)
        if isinstance(event, ir.TextDelta):
            return self._text(event)
        if isinstance(event, ir.ReasoningDelta):
            return self._reasoning(event)
        if isinstance(event, ir.ToolCallStarted):
            return self._call_started(event)
        if isinstance(event, ir.ToolCallDelta):
            return self._call_delta(event)
        if isinstance(event, ir.PartDone):
            return self._part_done(event.index)
        if isinstance(event, ir.Finished):
            return self._finish(event)
        if isinstance(event, ir.Failed):
            return self.fail(event.message, event.status)
        return b""

    def _start(self, response_id: str, model: str) -> bytes:
        self.response_id, self.model = response_id, model
        self.created_at = int(time.time())
        started = self._response("in_progress")
        created = self._event("response.created", response=started)
        return created + self._event("response.in_progress", response=started)

    def _open(self, part: int, kind: ItemKind, added: dict[str, Any]) -> tuple[_Item, bytes]:
        item = _Item(part, self.items, kind, str(added["id"]))
        self.items += 1
        event = self._event(
            "response.output_item.added", output_index=item.output_index, item=added
        )
        return item, event

    def _flow(self, part: int, kind: ItemKind) -> tuple[_Item, bytes]:
        """The open text or reasoning item of `part`, else one opened for it."""
        if self.flow is not None and self.flow.part == part and self.flow.kind == kind:
            return self.flow, b""
        out = self._close_flow()
        if kind == "message":
            message = _message_item(new_id("msg_"), "", "in_progress")
            item, added = self._open(part, kind, {**message, "content": []})
            added += self._event(
                "response.content_part.added", **item.where, content_index=0,
                part=_text_part(""),
            )  # fmt: skip
        else:
            item, added = self._open(part, kind, {"id": new_id("rs_"), "type": kind, "summary": []})
        self.flow = item
        return item, out + added

    def _text(self, event: ir.TextDelta) -> bytes:
        if not event.text:
            return b""
        item, out = self._flow(event.index, "message")
        item.pieces.append(event.text)
        return out + self._event(
            "response.output_text.delta", **item.where, content_index=0, delta=event.text,
            logprobs=[],
        )  # fmt: skip

    def _reasoning(self, event: ir.ReasoningDelta) -> bytes:
        said = event.text or event.signature or event.redacted is not None
        open_here = self.flow is not None and self.flow.part == event.index
        if not said or (not event.text and not open_here and event.index in self.closed):
            return b""  # a signature for a block already done: its item cannot take it now
        item, out = self._flow(event.index, "reasoning")
        item.signature = event.signature or item.signature
        item.redacted = event.redacted if event.redacted is not None else item.redacted
        if not event.text:
            return out
        if not item.pieces:
            out += self._event(
                "response.reasoning_summary_part.added", **item.where, summary_index=0,
                part={"type": "summary_text", "text": ""},
            )  # fmt: skip
        item.pieces.append(event.text)
        return out + self._event(
            "response.reasoning_summary_text.delta", **item.where, summary_index=0,
            delta=event.text,
        )  # fmt: skip

    def _call_started(self, event: ir.ToolCallStarted) -> bytes:
        out = self._close_flow()
        freeform = self.request.freeform(event.name)
        item_id = new_id("ctc_" if freeform else "fc_")
        added = self.request.call_item(item_id, event.id, event.name, "")
        if not freeform:
            added["status"] = "in_progress"
        item, opened = self._open(
            event.index, "custom_tool_call" if freeform else "function_call", added
        )
        item.call_id, item.name = event.id, event.name
        self.calls[event.index] = item
        return out + opened

    def _call_delta(self, event: ir.ToolCallDelta) -> bytes:
        item = self.calls.get(event.index)
        if item is None or not event.arguments:
            return b""
        item.pieces.append(event.arguments)
        if item.kind == "custom_tool_call":
            return b""  # given whole when done (see the class's docstring)
        return self._event(
            "response.function_call_arguments.delta", **item.where, delta=event.arguments
        )

    def _part_done(self, part: int) -> bytes:
        if self.flow is not None and self.flow.part == part:
            return self._close_flow()
        call = self.calls.pop(part, None)
        return self._close_call(call) if call is not None else b""

    def _close_flow(self, status: str = "completed") -> bytes:
        item, self.flow = self.flow, None
        if item is None:
            return b""
        if item.kind == "message":
            return self._close_message(item, status)
        return self._close_reasoning(item)

    def _close_message(self, item: _Item, status: str) -> bytes:
        text = item.text
        out = self._event(
            "response.output_text.done", **item.where, content_index=0, text=text, logprobs=[]
        )
        out += self._event(
            "response.content_part.done", **item.where, content_index=0, part=_text_part(text)
        )
        return out + self._item_done(item, _message_item(item.id, text, status))

    def _close_reasoning(self, item: _Item) -> bytes:
        text, out = item.text, b""
        if text:
            out += self._event(
                "response.reasoning_summary_text.done", **item.where, summary_index=0, text=text
            )
            out += self._event(
                "response.reasoning_summary_part.done", **item.where, summary_index=0,
                part={"type": "summary_text", "text": text},
            )  # fmt: skip
        reasoning = ir.Reasoning(text, item.signature, item.redacted)
        return out + self._item_done(item, _reasoning_item(item.id, reasoning))

    def _close_call(self, item: _Item) -> bytes:
        done = self.request.call_item(item.id, item.call_id, item.name, item.text)
        if item.kind == "custom_tool_call":
            given = str(done["input"])
            out = self._event("response.custom_tool_call_input.delta", **item.where, delta=given)
            out += self._event("response.custom_tool_call_input.done", **item.where, input=given)
        else:
            out = self._event(
                "response.function_call_arguments.done", **item.where, arguments=item.text
            )
        return out + self._item_done(item, done)

    def _item_done(self, item: _Item, done: dict[str, Any]) -> bytes:
        self.output[item.output_index] = done
        self.closed.add(item.part)
        return self._event("response.output_item.done", output_index=item.output_index, item=done)

    def _close_all(self, status: str = "completed") -> bytes:
        out = self._close_flow(status)
        for part in sorted(self.calls, key=lambda p: self.calls[p].output_index):
            out += self._close_call(self.calls[part])
        self.calls.clear()
        return out

    def _finish(self, event: ir.Finished) -> bytes:
        status, details = _outcome(event.stop)
        out = b"" if self.response_id else self._start(new_id("resp_"), "")
        out += self._close_all("incomplete" if status == "incomplete" else "completed")
        response = self._response(status, event.usage)
        response["incomplete_details"] = details
        self.done = True
        return out + self._event(f"response.{status}", response=response)

    def fail(self, message: str, status: int = 502) -> bytes:
        """An `error` event, then `response.failed` with the items finished so far."""
        out = b"" if self.response_id else self._start(new_id("resp_"), "")
        code = _failure_code(status)
        out += self._event("error", code=code, message=message, param=None)
        response = self._response("failed")
        response["error"] = {"code": code, "message": message}
        self.done = True
        return out + self._event("response.failed", response=response)

    def close(self) -> bytes:
        return b""  # a Responses stream has no `[DONE]`


# ================================================================ the client's side


class ClientSide:
    """The Responses client side; `for_request` binds it to one request (its tools' names
    as the client knows them, the settings a Response echoes)."""

    def __init__(self, request: _Request | None = None) -> None:
        self.request = request or _Request()

    decode_request = staticmethod(decode_request)

    def for_request(self, conversation: ir.Conversation) -> ClientSide:
        return ClientSide(_Request.of(conversation))

    def encode_answer(self, answer: ir.Answer) -> dict[str, Any]:
        return _encode_answer(self.request, answer)

    def stream_encoder(self, *, sse: bool = True, usage: bool = False) -> StreamEncoder:
        return StreamEncoder(self.request)


CLIENT = ClientSide()
