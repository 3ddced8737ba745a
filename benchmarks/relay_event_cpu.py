"""CPU per streamed event of the relay's own parsing and tracking, in process: the SSE parser
and the stream tracker over a 200-event OpenAI chat stream and a 200-event Anthropic
Messages stream (each event fed as its own chunk, as a paced upstream sends them), the
tracker's `usage()` at the end included.

    PYTHONPATH=src .venv/bin/python benchmarks/relay_event_cpu.py
    PYTHONPATH=/tmp/old/src .venv/bin/python benchmarks/relay_event_cpu.py   # an older tree

Prints the best of 5 runs (process time), in microseconds per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from quotaledger.wire.anthropic_messages import MessagesStream
from quotaledger.wire.openai_chat import ChatStream
from quotaledger.wire.sse import SSEParser

HEAD = {
    "id": "chatcmpl-abc123def456",
    "created": 1764460000,
    "model": "bench-gpt",
    "object": "chat.completion.chunk",
    "system_fingerprint": "fp_fake0upstream",
}


def _chat_chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return b"data: " + orjson.dumps({**HEAD, "choices": [choice], "usage": None}) + b"\n\n"


def chat_events() -> list[bytes]:
    usage = {"prompt_tokens": 10, "completion_tokens": 196, "total_tokens": 206}
    return [
        _chat_chunk({"role": "assistant", "content": "", "refusal": None}),
        *(_chat_chunk({"content": "word "}) for _ in range(196)),
        _chat_chunk({}, "stop"),
        b"data: " + orjson.dumps({**HEAD, "choices": [], "usage": usage}) + b"\n\n",
        b"data: [DONE]\n\n",
    ]


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def messages_events() -> list[bytes]:
    usage = {"input_tokens": 10, "output_tokens": 1}
    message = {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
               "model": "bench-claude", "stop_reason": None, "usage": usage}  # fmt: skip
    delta = {"index": 0, "delta": {"type": "text_delta", "text": "word "}}
    return [
        _event("message_start", {"message": message}),
        _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        *(_event("content_block_delta", delta) for _ in range(194)),
        _event("content_block_stop", {"index": 0}),
        _event(
            "message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 194}}
        ),
        _event("message_stop", {}),
    ]


def per_event_us(events: list[bytes], tracker: Callable[[], Any], streams: int = 200) -> float:
    def one() -> None:
        parser, track = SSEParser(), tracker()
        for chunk in events:
            b"".join([track.relay(event) for event in parser.feed(chunk)])
        track.usage()

    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(streams):
            one()
        best = min(best, time.process_time() - started)
    return best / streams / len(events) * 1e6


def main() -> None:
    chat = per_event_us(
        chat_events(), lambda: ChatStream(client_wants_usage=False, prompt_tokens=10)
    )
    messages = per_event_us(messages_events(), lambda: MessagesStream(prompt_tokens=10))
    print(f"openai chat: {chat:.2f} us/event; anthropic messages: {messages:.2f} us/event")


if __name__ == "__main__":
    main()
