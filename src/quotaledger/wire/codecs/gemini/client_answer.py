"""A conversation's answer in the Gemini client's grammar: a GenerateContentResponse whole,
or streamed as its chunks (SSE, or a JSON array without `?alt=sse`)."""

from __future__ import annotations

from typing import Any

import orjson

from quotaledger.wire import ir
from quotaledger.wire.codecs.common import arguments_object
from quotaledger.wire.codecs.gemini.signatures import pack_reasoning
from quotaledger.wire.codecs.gemini.usage import usage_metadata
from quotaledger.wire.errors import gemini_error

_FINISH_REASON = {
    ir.StopReason.END: "STOP",
    ir.StopReason.STOP_SEQUENCE: "STOP",
    ir.StopReason.MAX_TOKENS: "MAX_TOKENS",
    ir.StopReason.TOOL_USE: "STOP",  # a function-call answer ends with STOP in Gemini
    ir.StopReason.CONTENT_FILTER: "SAFETY",
    ir.StopReason.ERROR: "OTHER",
}


def encode_answer(answer: ir.Answer) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": _answer_parts(answer.parts)},
        "finishReason": _FINISH_REASON[answer.stop],
        "index": 0,
    }
    done: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": answer.model,
        "responseId": answer.id,
    }
    if answer.usage is not None:
        done["usageMetadata"] = usage_metadata(answer.usage)
    return done


def _answer_parts(parts: list[ir.Text | ir.Reasoning | ir.ToolCall]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, ir.Reasoning):
            if part.text:
                out.append({"text": part.text, "thought": True})
        elif isinstance(part, ir.Text):
            if part.text:
                out.append({"text": part.text})
        else:
            out.append(_call_part(part))
    reasoning = [p for p in parts if isinstance(p, ir.Reasoning)]
    if reasoning:
        _carry_pack(out, pack_reasoning(reasoning))
    return out


def _carry_pack(parts: list[dict[str, Any]], pack: str) -> None:
    """The pack goes where Gemini puts a signature: the first functionCall, else the last part."""
    calls = [p for p in parts if "functionCall" in p]
    if calls:
        calls[0]["thoughtSignature"] = pack
    elif parts:
        parts[-1]["thoughtSignature"] = pack
    else:
        parts.append({"text": "", "thoughtSignature": pack})


def _call_part(call: ir.ToolCall) -> dict[str, Any]:
    function = {"id": call.id, "name": call.name, "args": arguments_object(call.arguments)}
    return {"functionCall": function}


class StreamEncoder:
    """`StreamEvent`s as streamGenerateContent chunks: each a partial GenerateContentResponse
    (text and thought deltas as they come, a function call whole once its arguments are
    complete, the finish reason and usage in the last one); SSE (`data: ...\\r\\n\\r\\n`, as
    Google writes it) or, without `?alt=sse`, one JSON array."""

    def __init__(self, *, sse: bool) -> None:
        self.sse = sse
        self.head: dict[str, Any] = {}
        self.chunks = 0
        self.done = False
        self.reasoning: dict[int, list[Any]] = {}  # part index -> [text pieces, signature, data]
        self.calls: dict[int, list[Any]] = {}  # part index -> [id, name, argument pieces]
        self.packed = False

    def encode(self, event: ir.StreamEvent) -> bytes:
        if isinstance(event, ir.Started):
            self.head = {"modelVersion": event.model, "responseId": event.id}
        elif isinstance(event, ir.TextDelta) and event.text:
            return self._chunk([{"text": event.text}])
        elif isinstance(event, ir.ReasoningDelta):
            return self._reasoning(event)
        elif isinstance(event, ir.ToolCallStarted):
            self.calls[event.index] = [event.id, event.name, []]
        elif isinstance(event, ir.ToolCallDelta) and event.index in self.calls:
            self.calls[event.index][2].append(event.arguments)
        elif isinstance(event, ir.PartDone) and event.index in self.calls:
            return self._chunk([self._call(self.calls.pop(event.index))])
        elif isinstance(event, ir.Finished):
            return self._finish(event)
        elif isinstance(event, ir.Failed):
            return self.fail(event.message, event.status)
        return b""

    def _reasoning(self, event: ir.ReasoningDelta) -> bytes:
        entry = self.reasoning.setdefault(event.index, [[], None, None])
        if event.text:
            entry[0].append(event.text)
        if event.signature:
            entry[1] = event.signature
        if event.redacted is not None:
            entry[2] = event.redacted
        return self._chunk([{"text": event.text, "thought": True}]) if event.text else b""

    def _pack(self) -> str | None:
        if self.packed or not self.reasoning:
            return None
        self.packed = True
        return pack_reasoning(
            [ir.Reasoning("".join(e[0]), e[1], e[2]) for e in self.reasoning.values()]
        )

    def _call(self, pending: list[Any]) -> dict[str, Any]:
        part = _call_part(ir.ToolCall(pending[0], pending[1], "".join(pending[2])))
        if (pack := self._pack()) is not None:
            part["thoughtSignature"] = pack
        return part

    def _finish(self, event: ir.Finished) -> bytes:
        parts = [self._call(pending) for pending in self.calls.values()]
        self.calls.clear()
        if (pack := self._pack()) is not None:
            parts.append({"text": "", "thoughtSignature": pack})
        candidate: dict[str, Any] = {"finishReason": _FINISH_REASON[event.stop], "index": 0}
        extra = {"usageMetadata": usage_metadata(event.usage)} if event.usage else {}
        return self._chunk(parts, candidate, extra)

    def _chunk(
        self,
        parts: list[dict[str, Any]],
        candidate: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bytes:
        candidate = dict(candidate or {"index": 0})
        if parts:
            candidate["content"] = {"role": "model", "parts": parts}
        return self._write({"candidates": [candidate], **(extra or {}), **self.head})

    def _write(self, chunk: dict[str, Any]) -> bytes:
        data = orjson.dumps(chunk)
        self.chunks += 1
        if self.sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self.chunks == 1 else b"\n,") + data

    def fail(self, message: str, status: int = 502) -> bytes:
        if self.done:
            return b""
        out = self._write(gemini_error(status, message))
        self.done = True
        return out if self.sse else out + b"]"

    def close(self) -> bytes:
        if self.done:
            return b""
        self.done = True
        if self.sse:
            return b""
        return b"]" if self.chunks else b"[]"
