"""What a conversion costs (SPEC §11, issue 21): CPU per request of the relay's own wire work,
in process, native against converted, measured side by side in one run.

- **whole**: a chat request with a 20-turn history and two tools, and its answer. Native:
  the request checked (`prepare_chat`) and the answer's usage read. Converted to an
  Anthropic channel: the request decoded into the conversation shape and encoded as
  Messages, the Anthropic answer decoded and encoded back as a chat completion.
- **stream**: a 200-event answer. Native: an OpenAI chat stream through the chat tracker.
  Converted: an Anthropic stream turned event by event into chat chunks.

    PYTHONPATH=src .venv/bin/python benchmarks/conversion_cpu.py

Prints the best of 5 rounds (process time) in microseconds, and converted / native.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from relay_event_cpu import chat_events, messages_events

from quotaledger.wire import conversions
from quotaledger.wire.openai_chat import ChatStream, completion_usage, prepare_chat
from quotaledger.wire.sse import SSEParser

TOOLS = [
    {"type": "function", "function": {"name": name, "description": "Run it. " * 20,
     "parameters": {"type": "object", "properties": {"arg": {"type": "string"}}}}}
    for name in ("read_file", "run_shell")
]  # fmt: skip
HISTORY = [
    {"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i}: " + "words " * 60}
    for i in range(20)
]
CHAT_REQUEST = {"model": "bench", "messages": HISTORY, "tools": TOOLS, "max_tokens": 1024}
CHAT_ANSWER = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1764460000, "model": "bench",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "An answer. " * 40}}],
    "usage": {"prompt_tokens": 1500, "completion_tokens": 120, "total_tokens": 1620},
}  # fmt: skip
ANTHROPIC_ANSWER = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "bench",
    "content": [{"type": "text", "text": "An answer. " * 40}], "stop_reason": "end_turn",
    "usage": {"input_tokens": 1500, "output_tokens": 120},
}  # fmt: skip


def best_us(work: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(repeat):
            work()
        best = min(best, time.process_time() - started)
    return best / repeat * 1e6


def native_whole() -> None:
    body = orjson.loads(orjson.dumps(CHAT_REQUEST))
    orjson.dumps(prepare_chat(body, default_max_tokens=None).body)
    completion_usage(orjson.loads(orjson.dumps(CHAT_ANSWER)), prompt_tokens=1500)


CHAT_ON_ANTHROPIC = conversions.conversion("chat", "anthropic")
ANTHROPIC_ON_CHAT = conversions.conversion("messages", "openai-chat")


def converted_whole() -> None:
    assert CHAT_ON_ANTHROPIC is not None
    body = orjson.loads(orjson.dumps(CHAT_REQUEST))
    sent, _ = CHAT_ON_ANTHROPIC.encode(CHAT_ON_ANTHROPIC.decode(body), model="bench")
    orjson.dumps(sent)
    CHAT_ON_ANTHROPIC.answer(orjson.loads(orjson.dumps(ANTHROPIC_ANSWER)))


def _stream(events: list[bytes], tracker: Callable[[], Any]) -> Callable[[], None]:
    def one() -> None:
        parser, track = SSEParser(), tracker()
        for chunk in events:
            b"".join([track.relay(event) for event in parser.feed(chunk)])
        track.usage()

    return one


def main() -> None:
    assert CHAT_ON_ANTHROPIC is not None
    conversion = CHAT_ON_ANTHROPIC
    rows = [
        ("whole request + answer", best_us(native_whole, 300), best_us(converted_whole, 300)),
        (
            "200-event stream",
            best_us(_stream(chat_events(), lambda: ChatStream(client_wants_usage=False,
                                                              prompt_tokens=10)), 30),
            best_us(_stream(messages_events(), lambda: conversion.stream(prompt_tokens=10)), 30),
        ),
    ]  # fmt: skip
    print(f"{'':<24}{'native µs':>12}{'converted µs':>14}{'ratio':>8}")
    for name, native, converted in rows:
        print(f"{name:<24}{native:>12.1f}{converted:>14.1f}{converted / native:>7.2f}x")


if __name__ == "__main__":
    main()
