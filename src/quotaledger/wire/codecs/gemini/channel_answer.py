"""A `gemini` channel's answer read as the conversation's: whole (GenerateContentResponse) or
streamed (its SSE chunks), the call signatures put into the tool-call ids."""

from __future__ import annotations

from typing import Any

import orjson

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import ir
from quotaledger.wire.codecs.common import arguments_text, as_dict, new_id, object_of
from quotaledger.wire.codecs.gemini.signatures import call_id_with
from quotaledger.wire.codecs.gemini.usage import parse_usage
from quotaledger.wire.sse import SSEEvent

_STOP = {
    "STOP": ir.StopReason.END,
    "FINISH_REASON_UNSPECIFIED": ir.StopReason.END,
    "MAX_TOKENS": ir.StopReason.MAX_TOKENS,
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
            "MODEL_ARMOR",
        ),
        ir.StopReason.CONTENT_FILTER,
    ),
}


def decode_answer(body: Any) -> ir.Answer:
    body = object_of(body)
    reader = _AnswerReader()
    candidate = _candidate(body)
    for part in _candidate_parts(candidate):
        reader.read(part)
    usage = parse_usage(body.get("usageMetadata"))
    if usage is not None and usage.output == 0 and reader.parts:
        usage = None  # a usage claiming no output for an answer with output
    return ir.Answer(
        id=str(body.get("responseId") or new_id("gen-")),
        model=str(body.get("modelVersion") or ""),
        parts=reader.parts,
        stop=_stop(candidate, body, called=reader.called),
        usage=usage,
    )


def _candidate(chunk: dict[str, Any]) -> dict[str, Any]:
    candidates = chunk.get("candidates")
    return as_dict(candidates[0]) if isinstance(candidates, list) and candidates else {}


def _candidate_parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    parts = as_dict(candidate.get("content")).get("parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _stop(candidate: dict[str, Any], chunk: dict[str, Any], *, called: bool) -> ir.StopReason:
    if as_dict(chunk.get("promptFeedback")).get("blockReason"):
        return ir.StopReason.CONTENT_FILTER  # the prompt was refused: no candidates
    reason = candidate.get("finishReason")
    stop = _STOP.get(str(reason), ir.StopReason.ERROR) if reason else ir.StopReason.END
    return ir.StopReason.TOOL_USE if called and stop is ir.StopReason.END else stop


def _call_id(call: dict[str, Any], signature: str | None) -> str:
    given = call.get("id")
    call_id = given if isinstance(given, str) and given else new_id("call_")
    return call_id_with(call_id, signature) if signature else call_id


class _AnswerReader:
    """A whole answer's parts: thoughts as reasoning (signed when Gemini signed them), text,
    function calls with their signature in the id; a text part's signature as a signed
    reasoning part of no text after it."""

    def __init__(self) -> None:
        self.parts: list[ir.Text | ir.Reasoning | ir.ToolCall] = []
        self.called = False
        self.thought_signature: str | None = None  # a thought's, for a first call without one

    def read(self, part: dict[str, Any]) -> None:
        signature = part.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        text = part.get("text")
        if isinstance(part.get("functionCall"), dict):
            if not self.called:
                signature = signature or self.thought_signature
            self.called = True
            call = part["functionCall"]
            self.parts.append(
                ir.ToolCall(
                    _call_id(call, signature),
                    str(call.get("name")),
                    arguments_text(call.get("args")),
                )
            )
        elif isinstance(text, str) and part.get("thought") is True:
            self.parts.append(ir.Reasoning(text, signature))
            self.thought_signature = self.thought_signature or signature
        elif isinstance(text, str):
            if text:
                self.parts.append(ir.Text(text))
            if signature:
                self.parts.append(ir.Reasoning("", signature))


class StreamDecoder:
    """streamGenerateContent's SSE chunks as `StreamEvent`s. Parts are numbered as they
    start: consecutive text deltas (and thought deltas) continue one part; each function
    call, which Gemini sends whole, is a part of its own. The finish reason and usage of the
    last chunk are held until the body ends (Gemini sends no end marker)."""

    def __init__(self) -> None:
        self.started = False
        self.next_index = 0
        self.open: tuple[str, int] | None = None  # ("text" | "thought", part index)
        self.called = False
        self.thought_signature: str | None = None
        self.stop: ir.StopReason | None = None
        self.usage: TokenUsage | None = None
        self.finished = False

    def feed(self, event: SSEEvent) -> list[ir.StreamEvent]:
        if not event.has_data or self.finished:
            return []
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            return self._failed(as_dict(chunk["error"]))
        out: list[ir.StreamEvent] = []
        if not self.started:
            self.started = True
            chunk_id = str(chunk.get("responseId") or new_id("gen-"))
            out.append(ir.Started(chunk_id, str(chunk.get("modelVersion") or "")))
        candidate = _candidate(chunk)
        for part in _candidate_parts(candidate):
            out += self._part(part)
        if candidate.get("finishReason") or as_dict(chunk.get("promptFeedback")).get("blockReason"):
            self.stop = _stop(candidate, chunk, called=self.called)
        self.usage = parse_usage(chunk.get("usageMetadata")) or self.usage
        return out

    def _failed(self, error: dict[str, Any]) -> list[ir.StreamEvent]:
        self.finished = True
        code = error.get("code")
        status = code if isinstance(code, int) and 400 <= code <= 599 else 502
        return [ir.Failed(str(error.get("message") or "upstream error"), status)]

    def _begin(self, kind: str) -> tuple[list[ir.StreamEvent], int]:
        """The part a delta of `kind` continues, or a new one (the open one done)."""
        if self.open is not None and self.open[0] == kind:
            return [], self.open[1]
        done: list[ir.StreamEvent] = [ir.PartDone(self.open[1])] if self.open else []
        index, self.next_index = self.next_index, self.next_index + 1
        self.open = (kind, index) if kind != "call" else None
        return done, index

    def _part(self, part: dict[str, Any]) -> list[ir.StreamEvent]:
        signature = part.get("thoughtSignature")
        signature = signature if isinstance(signature, str) and signature else None
        text = part.get("text")
        if isinstance(part.get("functionCall"), dict):
            return self._call(part["functionCall"], signature)
        if not isinstance(text, str):
            return []
        if part.get("thought") is True:
            out, index = self._begin("thought")
            if text:
                out.append(ir.ReasoningDelta(index, text))
            if signature:
                self.thought_signature = self.thought_signature or signature
                out.append(ir.ReasoningDelta(index, signature=signature))
            return out
        out = []
        if text:
            out, index = self._begin("text")
            out.append(ir.TextDelta(index, text))
        if signature:  # a text part's signature: a signed reasoning part of its own
            done, index = self._begin("signature")
            out += [*done, ir.ReasoningDelta(index, signature=signature)]
        return out

    def _call(self, call: dict[str, Any], signature: str | None) -> list[ir.StreamEvent]:
        if not self.called:
            signature = signature or self.thought_signature
        self.called = True
        out, index = self._begin("call")
        out.append(ir.ToolCallStarted(index, _call_id(call, signature), str(call.get("name"))))
        out += [ir.ToolCallDelta(index, arguments_text(call.get("args"))), ir.PartDone(index)]
        return out

    def end(self) -> list[ir.StreamEvent]:
        if self.finished or self.stop is None:
            return []  # without a finish reason, the answer is not complete
        self.finished = True
        out: list[ir.StreamEvent] = [ir.PartDone(self.open[1])] if self.open else []
        return [*out, ir.Finished(self.stop, self.usage)]
