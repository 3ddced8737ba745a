"""Believable usage (SPEC §8b, `billing.believable`): hostile reports (negative, huge, NaN,
strings, missing, above the cap, prompt 0) never charge more than the rule allows, and the
charge of each is checked against the rule's own figure."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quotaledger.billing.believable import PROMPT_CEILING_SLACK, Bounds, judge
from quotaledger.billing.pricing import make_price, relay_cost
from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import anthropic_messages, openai_chat, openai_responses

GPT = make_price("gpt-4o", input_usd_per_mtok="2.5", output_usd_per_mtok="10")
BOUNDS = Bounds(output_cap=1000, choices=1, prompt_estimate=400)
LOCAL = TokenUsage(input=400, output=12, reasoning=0, source=UsageSource.LOCAL)


def _local() -> TokenUsage:
    return LOCAL


def test_a_plausible_report_is_charged_as_it_came() -> None:
    reported = TokenUsage(input=380, cache_read=40, output=900)
    assert judge(reported, BOUNDS, _local, delivered=True) == (reported, None)


def test_output_above_the_cap_sent_is_counted_locally() -> None:
    reported = TokenUsage(input=400, output=1_000_000_000)
    judged = judge(reported, BOUNDS, _local, delivered=True)
    assert judged.note == "output_above_cap"
    assert (judged.usage.output, judged.usage.input, judged.usage.source) == (12, 400, "local")


def test_the_cap_counts_once_per_choice() -> None:
    reported = TokenUsage(input=400, output=2500)
    assert (
        judge(reported, Bounds(1000, choices=3, prompt_estimate=400), _local, delivered=True).note
        is None
    )
    assert judge(
        reported, Bounds(1000, choices=2, prompt_estimate=400), _local, delivered=True
    ).note


def test_output_counted_locally_is_never_above_the_cap() -> None:
    huge = TokenUsage(input=400, output=50_000, reasoning=40_000, source=UsageSource.LOCAL)
    judged = judge(None, BOUNDS, lambda: huge, delivered=True)
    assert (judged.usage.output, judged.usage.reasoning, judged.note) == (
        1000,
        1000,
        "usage_missing",
    )


def test_a_prompt_under_half_the_estimate_is_the_estimate() -> None:
    judged = judge(TokenUsage(input=0, output=10), BOUNDS, _local, delivered=True)
    assert (judged.usage.prompt_tokens, judged.note) == (400, "prompt_below_estimate")
    cached = judge(TokenUsage(input=0, cache_read=150, output=10), BOUNDS, _local, delivered=True)
    assert (cached.usage.input, cached.usage.cache_read) == (250, 150)
    kept = judge(TokenUsage(input=200, output=10), BOUNDS, _local, delivered=True)
    assert kept.note is None  # half is believed


def test_a_prompt_no_request_could_have_earned_is_lowered_to_the_ceiling() -> None:
    reported = TokenUsage(input=10**9, cache_write_1h=10**6, output=10)
    judged = judge(reported, BOUNDS, _local, delivered=True)
    assert judged.note == "prompt_above_estimate"
    assert judged.usage.prompt_tokens == 8 * 400 + PROMPT_CEILING_SLACK
    assert judged.usage.cache_write_1h == 0  # the dearest class goes first


def test_no_output_for_a_delivered_answer_is_counted_locally() -> None:
    judged = judge(TokenUsage(input=400, output=0), BOUNDS, _local, delivered=True)
    assert (judged.usage.output, judged.note) == (12, "output_zero")
    assert judge(TokenUsage(input=400, output=0), BOUNDS, _local, delivered=False).note is None


def test_web_searches_above_those_seen_are_not_charged() -> None:
    bounds = Bounds(1000, prompt_estimate=400, web_searches_seen=2)
    judged = judge(TokenUsage(input=400, output=10, web_search=500), bounds, _local, delivered=True)
    assert (judged.usage.web_search, judged.note) == (2, "web_search_above_seen")


def test_the_local_count_is_not_made_when_the_report_is_believed() -> None:
    def never() -> TokenUsage:
        raise AssertionError("counted")

    judge(TokenUsage(input=400, output=10), BOUNDS, never, delivered=True)


def test_a_usage_built_with_bad_counts_is_not_believed() -> None:
    bad = TokenUsage(input=-5, output=10)
    assert judge(bad, BOUNDS, _local, delivered=True) == (LOCAL, "usage_invalid")


# ------------------------------------------------ hostile reports through the wire parsers

_HOSTILE = [-1, 10**30, float("nan"), float("inf"), 1.5, "100", None, True, [], {}]


@pytest.mark.parametrize("value", _HOSTILE, ids=repr)
def test_hostile_counts_in_every_format_charge_at_most_the_rule(value: object) -> None:
    reports = [
        openai_chat.reported_usage({"usage": {"prompt_tokens": value, "completion_tokens": value}}),
        openai_responses.reported_usage({"usage": {"input_tokens": value, "output_tokens": value}}),
        anthropic_messages.reported_usage(
            {"usage": {"input_tokens": value, "output_tokens": value}}
        ),
    ]
    # The most the rule allows: the prompt ceiling and the cap, at this price.
    most = relay_cost(
        GPT, TokenUsage(input=8 * 400 + PROMPT_CEILING_SLACK, output=1000), Decimal(1)
    )
    for reported in reports:
        judged = judge(reported, BOUNDS, _local, delivered=True)
        assert relay_cost(GPT, judged.usage, Decimal(1)) <= most
        if reported is None:
            assert judged == (LOCAL, "usage_missing")


_counts = st.integers(-(10**12), 10**15)


@given(_counts, _counts, _counts, _counts, _counts, st.integers(0, 10**6), st.integers(1, 8))
def test_no_report_charges_more_than_the_ceiling_and_the_cap(
    i: int, read: int, write: int, out: int, searches: int, estimate: int, n: int
) -> None:
    bounds = Bounds(output_cap=4096, choices=n, prompt_estimate=estimate, web_searches_seen=3)
    usage = TokenUsage(
        input=i, cache_read=read, cache_write_1h=write, output=out, web_search=searches
    )
    judged = judge(usage, bounds, _local, delivered=True)
    assert 0 <= judged.usage.output <= 4096 * n
    assert 0 <= judged.usage.prompt_tokens <= max(bounds.prompt_ceiling, LOCAL.prompt_tokens)
    assert 0 <= judged.usage.web_search <= 3
    assert 2 * judged.usage.prompt_tokens >= estimate or judged.note == "usage_invalid"
