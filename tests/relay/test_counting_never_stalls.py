"""Counting never stalls the event loop (SPEC §8b, issue 22): a 20 MB answer with no usage is
counted while a concurrent coroutine measures the loop's lag (< 50 ms of the loop's own time
between two of its wake-ups), streams keep a bounded amount of text, and the bounded counts
stay close to the exact ones. `benchmarks/counting.py` gives the wall-clock stalls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from quotaledger.wire import anthropic_messages, counting, openai_chat, openai_responses
from quotaledger.wire.sse import SSEParser

# Prose and code, about 4 characters a token: 20 MB of it is ~5 million tokens.
_LINE = "The relay counts what it delivered; def f(x): return x * 2  # and some code\n"
TWENTY_MB = _LINE * (20 * 1024 * 1024 // len(_LINE))
MAX_LAG = 0.050
# Loaded once per process (~0.1 s), by the first prompt a server estimates: before any answer.
counting.encoding()


async def _worst_lag(work: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    """Run `work` while a coroutine that wakes every millisecond records how long the loop
    kept it waiting: the loop thread's own CPU time between two of its wake-ups (what the
    loop spent running something else). CPU time, not wall time, so that the verdict does
    not depend on the machine's load: a descheduled loop burns no CPU, a stalled one does."""
    worst = 0.0
    done = False

    async def watch() -> None:
        nonlocal worst
        while not done:
            before = time.thread_time()
            await asyncio.sleep(0.001)
            worst = max(worst, time.thread_time() - before)

    watcher = asyncio.ensure_future(watch())
    await asyncio.sleep(0.01)  # the watcher is running
    try:
        result = await work()
    finally:
        done = True
        await watcher
    return result, worst


async def _on_the_loop(function: Callable[[], Any]) -> Any:
    await asyncio.sleep(0)
    return function()


def test_a_whole_20_mb_answer_without_usage_is_counted_without_holding_the_loop() -> None:
    answer = {"choices": [{"message": {"role": "assistant", "content": TWENTY_MB}}]}
    usage, lag = asyncio.run(
        _worst_lag(
            lambda: _on_the_loop(lambda: openai_chat.completion_usage(answer, prompt_tokens=9))
        )
    )
    assert lag < MAX_LAG
    exact_per_line = counting.count_text(_LINE)
    expected = exact_per_line * (len(TWENTY_MB) // len(_LINE))
    assert abs(usage.output - expected) <= expected * 0.05


def test_counting_exactly_off_the_loop_leaves_it_free() -> None:
    pieces = [TWENTY_MB[i : i + 4000] for i in range(0, len(TWENTY_MB), 4000)]
    exact, lag = asyncio.run(_worst_lag(lambda: counting.count_exact_async(pieces)))
    assert lag < MAX_LAG
    per_line = counting.count_text(_LINE)
    assert (
        abs(exact - per_line * (len(TWENTY_MB) // len(_LINE)))
        <= len(TWENTY_MB) // counting.EXACT_PIECE + 1
    )


def _chat_events(text: str, size: int) -> list[bytes]:
    def event(content: str) -> bytes:
        chunk = {"choices": [{"index": 0, "delta": {"content": content}}]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    return [event(text[i : i + size]) for i in range(0, len(text), size)]


def test_a_stream_of_big_events_without_usage_keeps_a_bounded_text_and_never_stalls() -> None:
    # 20 x ~500 KB events (a hostile stream) and then thousands of small ones.
    events = _chat_events(TWENTY_MB[: 10 * 1024 * 1024], 500 * 1024)
    events += _chat_events(TWENTY_MB[: 2 * 1024 * 1024], 200)
    tracker = openai_chat.ChatStream(client_wants_usage=True, prompt_tokens=9)
    parser = SSEParser()

    async def relay_all() -> bytes:
        out = b""
        for raw in events:
            for event in parser.feed(raw):
                out = tracker.relay(event)
            await asyncio.sleep(0)  # as the pipeline does between reads
        tracker.relay(next(iter(parser.feed(b"data: [DONE]\n\n"))))
        return out

    _, lag = asyncio.run(_worst_lag(relay_all))
    assert lag < MAX_LAG
    assert tracker._output.kept_chars <= counting.KEEP_CHARS + 500 * 1024
    assert tracker._output.kept_chars + tracker._output.dropped_chars == 12 * 1024 * 1024
    usage, lag = asyncio.run(_worst_lag(lambda: _on_the_loop(tracker.usage)))
    assert lag < MAX_LAG
    delivered = 12 * 1024 * 1024
    expected = counting.count_text(_LINE) * delivered / len(_LINE)
    assert abs(usage.output - expected) <= expected * 0.05


def test_every_native_tracker_keeps_a_bounded_text() -> None:
    piece = "x" * 1000 + " "
    trackers: list[Any] = [
        openai_chat.ChatStream(client_wants_usage=False, prompt_tokens=1),
        openai_responses.ResponsesStream(prompt_tokens=1),
        anthropic_messages.MessagesStream(prompt_tokens=1),
    ]
    events = [
        b'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n' % piece.encode(),
        b'data: {"type":"response.output_text.delta","delta":"%s"}\n\n' % piece.encode(),
        b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":'
        b'{"type":"text_delta","text":"%s"}}\n\n' % piece.encode(),
    ]
    for tracker, raw in zip(trackers, events, strict=True):
        parser = SSEParser()
        (event,) = parser.feed(raw)
        for _ in range(3000):  # 3 MB
            tracker.relay(event)
        assert tracker.delivered
        assert tracker._output.kept_chars <= counting.KEEP_CHARS + len(piece)
        assert tracker._output.kept_chars + tracker._output.dropped_chars == 3000 * len(piece)
        assert tracker.local_usage().output > 0


def test_a_short_answer_is_still_counted_exactly() -> None:
    tally = counting.TextTally()
    for word in ("Hello", ",", " world", "!"):
        tally.add(word)
    assert tally.tokens() == counting.count_text("Hello, world!")
    assert asyncio.run(tally.tokens_exact()) == counting.count_text("Hello, world!")


def test_sampled_pieces_estimate_as_the_joined_text_does() -> None:
    text = TWENTY_MB[:500_000]
    pieces = [text[i : i + 37] for i in range(0, len(text), 37)]
    assert counting.estimate_texts(pieces) == counting.estimate_text(text)


def test_past_the_bound_a_tally_keeps_only_a_short_tail_of_tiny_deltas() -> None:
    tally = counting.TextTally()
    for _ in range(counting.KEEP_CHARS // 4 + 300_000):
        tally.add("abcd")
    assert tally.dropped_chars == 1_200_000
    assert counting.SAMPLE_SIZE <= tally._tail_chars < counting.SAMPLE_SIZE + 4
    assert tally._tail_chars == sum(map(len, tally._tail))
    assert tally.tokens() == tally.kept_chars // 4 + 300_000  # "abcd" is one cl100k token
