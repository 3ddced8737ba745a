"""Prompt-cache breakpoints (`wire.cache_prefixes`), the memory of warm prefixes
(`relay.warm_prefixes`) and reservations that expect them read (`billing.sizing`, SPEC §8b)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from quotaledger.billing import pricing, sizing
from quotaledger.billing.pricing import Price
from quotaledger.relay.warm_prefixes import WarmPrefixes
from quotaledger.token_usage import TokenUsage
from quotaledger.wire.cache_prefixes import messages_breakpoints

EPHEMERAL = {"type": "ephemeral"}
TOOLS = [{"name": f"tool_{i}", "description": "x" * 2000, "input_schema": {}} for i in range(3)]
SYSTEM = [{"type": "text", "text": "You are Claude Code. " * 400, "cache_control": EPHEMERAL}]
SONNET = Price(model="claude-sonnet", input_usd_per_mtok="3", output_usd_per_mtok="15")


def _turn(*questions: str, marked: int | None = -1) -> dict[str, Any]:
    """A Claude-Code-like body: the system prompt marked, and the turn at `marked`."""
    messages: list[dict[str, Any]] = []
    for index, question in enumerate(questions):
        block: dict[str, Any] = {"type": "text", "text": question}
        if marked is not None and index == len(questions) + marked:
            block["cache_control"] = EPHEMERAL
        messages.append({"role": "user", "content": [block]})
    return {"model": "claude-sonnet", "tools": TOOLS, "system": SYSTEM, "messages": messages}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CACHE_READ = TokenUsage(input=10, cache_read=5000, output=3)


def test_a_body_without_marks_has_no_breakpoints() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "system": "be brief"}
    assert messages_breakpoints(body) == []


def test_each_mark_is_a_breakpoint_in_prefix_order_with_a_growing_share() -> None:
    points = [
        p for p in messages_breakpoints(_turn("first question", "second question")) if p.marked
    ]
    assert [p.ttl for p in points] == [300, 300]
    system, last = points
    assert system.prefix_bytes < last.prefix_bytes == last.total_bytes
    assert 0 < system.tokens(10_000) < last.tokens(10_000) == 10_000


def test_a_moved_mark_still_names_the_earlier_prefix() -> None:
    """Claude Code marks its latest turn: the next request's marks move on, and the prefix
    the last request cached must still be found under the same digest."""
    first = [p for p in messages_breakpoints(_turn("first question")) if p.marked]
    second = messages_breakpoints(_turn("first question", "second question"))
    assert first[-1].digest in {p.digest for p in second if not p.marked}
    # The system prompt's breakpoint is the same prefix in both.
    assert first[0].digest in {p.digest for p in second if p.marked}
    warm = WarmPrefixes(clock=Clock())
    warm.answered(first, CACHE_READ)
    assert warm.warm_tokens(second, 1000) == first[-1].prefix_bytes * 1000 // second[-1].total_bytes


def test_the_model_and_the_content_are_in_the_digest() -> None:
    base = messages_breakpoints(_turn("q"))[-1].digest
    assert messages_breakpoints({**_turn("q"), "model": "claude-opus"})[-1].digest != base
    other_system = [{**SYSTEM[0], "text": "Another prompt."}]
    assert messages_breakpoints({**_turn("q"), "system": other_system})[-1].digest != base


def test_an_hour_long_mark_lives_an_hour() -> None:
    body = _turn("q", marked=None)
    body["system"] = [{**SYSTEM[0], "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    assert [p.ttl for p in messages_breakpoints(body) if p.marked] == [3600]


def test_an_image_weighs_its_tokens_not_its_base64() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "A" * 4_000_000}}  # fmt: skip
    body = _turn("q")
    body["messages"][0]["content"].insert(0, image)
    last = messages_breakpoints(body)[-1]
    assert last.total_bytes < 200_000  # not the 4 MB of base64


def test_a_prefix_is_warm_after_an_answer_read_or_wrote_it_until_its_ttl() -> None:
    clock = Clock()
    warm = WarmPrefixes(clock=clock)
    points = messages_breakpoints(_turn("first question"))
    assert warm.warm_tokens(points, 20_000) == 0
    warm.answered(points, TokenUsage(input=20_000, output=5))  # no cache use reported
    assert warm.warm_tokens(points, 20_000) == 0
    warm.answered(points, CACHE_READ)
    assert warm.warm_tokens(points, 20_000) == 20_000  # the whole prompt was its prefix
    clock.now += 299
    assert warm.warm_tokens(points, 20_000) == 20_000
    clock.now += 2
    assert warm.warm_tokens(points, 20_000) == 0


def test_the_next_turn_expects_the_longest_warm_prefix() -> None:
    warm = WarmPrefixes(clock=Clock())
    warm.answered(messages_breakpoints(_turn("first question")), CACHE_READ)
    following = messages_breakpoints(_turn("first question", "a much longer second question"))
    expected = warm.warm_tokens(following, 10_000)
    assert 0 < expected < 10_000  # the system prompt and first turn; not the new question


def test_the_memory_is_bounded() -> None:
    warm = WarmPrefixes(capacity=3, clock=Clock())
    bodies = [_turn(f"question {i}") for i in range(5)]
    for body in bodies:
        warm.answered(messages_breakpoints(body), CACHE_READ)
    assert warm.warm_tokens(messages_breakpoints(bodies[-1]), 100) == 100
    assert len(warm._until) == 3


def test_a_warm_prefix_is_reserved_at_the_cache_read_price() -> None:
    """33,000 prompt tokens at Sonnet prices: reserved cold at the dearest input rate (a
    cache write may be what they become); warm, 30,000 of them at the cache-read rate."""
    ask = sizing.SizingRequest(
        price=SONNET, ratio=Decimal(1), price_format="anthropic", prompt_tokens=33_000,
        client_cap=32_000, model_max=64_000,
    )  # fmt: skip
    warm = sizing.SizingRequest(**{**ask.__dict__, "warm_prompt_tokens": 30_000})
    assert sizing.size(ask, covered=25_000).fits is False
    sized = sizing.size(warm, covered=25_000)
    assert sized.fits and sized.cap_sent is not None and 1024 <= sized.cap_sent < 32_000
    assert sized.amount <= 25_000
    # 3,000 at 2 x $3 (a 1-hour write, the dearest), 30,000 at $0.30, the cap at $15.
    micro = 3_000 * 6 + 30_000 * 3 // 10 + sized.cap_sent * 15
    assert sized.amount == -(-micro * 500_000 // 1_000_000)
    assert pricing.reservation_cost(SONNET, 35_000, 0, Decimal(1), "anthropic", 99_999) == (
        pricing.reservation_cost(SONNET, 35_000, 0, Decimal(1), "anthropic", 35_000)
    )  # never more warm tokens than the prompt has
