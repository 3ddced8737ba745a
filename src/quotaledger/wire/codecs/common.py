"""What every codec needs: ids, tool arguments as JSON text, reasoning's one mapping, and
the checks that name the field a malformed request got wrong."""

from __future__ import annotations

import os
from typing import Any

import orjson

from quotaledger.wire.errors import InvalidRequest
from quotaledger.wire.ir import Effort, ReasoningConfig

# Reasoning's one mapping (SPEC §11: effort <-> thinking budget <-> thinkingConfig). The
# budgets are what Anthropic's documentation suggests per level of effort, the smallest
# Anthropic accepts being 1,024; a budget maps back to the smallest effort whose budget
# covers it.
EFFORT_BUDGETS: dict[Effort, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
MIN_THINKING_BUDGET = 1024


def budget_for(reasoning: ReasoningConfig) -> int | None:
    """The thinking budget a request asks for (None: thinking off or unsaid)."""
    if not reasoning.enabled:
        return None
    if reasoning.budget_tokens is not None:
        return max(MIN_THINKING_BUDGET, reasoning.budget_tokens)
    if reasoning.effort is not None:
        return EFFORT_BUDGETS[reasoning.effort]
    return EFFORT_BUDGETS["medium"]


def effort_for(reasoning: ReasoningConfig) -> Effort | None:
    if not reasoning.enabled:
        return None
    if reasoning.effort is not None:
        return reasoning.effort
    budget = reasoning.budget_tokens or EFFORT_BUDGETS["medium"]
    for effort, covers in EFFORT_BUDGETS.items():
        if budget <= covers:
            return effort
    return "high"


def effort(value: Any, field: str) -> Effort | None:
    if value is None:
        return None
    if value == "none":
        return None
    if value not in EFFORT_BUDGETS:
        raise InvalidRequest(f"{field} must be one of minimal, low, medium, high", field)
    chosen: Effort = value
    return chosen


def new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


def arguments_text(value: Any) -> str:
    """Tool-call arguments as JSON text (Anthropic's `input` and Gemini's `args` are
    objects; OpenAI's are text already)."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value if value is not None else {}).decode()


def arguments_object(text: str) -> Any:
    """Arguments as an object, for formats that carry one. Text that is not a JSON object
    (a model's broken output) is kept whole under `_raw` rather than lost."""
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def as_dict(value: Any) -> dict[str, Any]:
    """`value` when it is an object, else an empty one (a provider's malformed field)."""
    return value if isinstance(value, dict) else {}


def object_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def list_field(body: dict[str, Any], name: str, *, required: bool = False) -> list[Any]:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name} is required (an array)", name)
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{name} must be an array", name)
    return value


def number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} must be a number", name)
    return float(value)


def positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(f"{name} must be a positive integer", name)
    return value


def stop_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    raise InvalidRequest(f"{name} must be a string or an array of strings", name)


def sse(data: Any, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def data_url(media_type: str, data: str) -> str:
    return f"data:{media_type};base64,{data}"


def split_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:` URL, or None for another URL."""
    if not url.startswith("data:"):
        return None
    head, _, data = url[5:].partition(",")
    media_type, _, encoding = head.partition(";")
    if encoding != "base64" or not data:
        return None
    return media_type or "application/octet-stream", data
