"""Priced extras (SPEC §8b): a long-context tier picked from the prompt's whole input, web
searches per 1,000 calls, input-only (embeddings) prices, cached input on OpenAI-format
channels at the model's published ratio; charged exactly, and written on the log row."""

from __future__ import annotations

from decimal import Decimal

import pytest
from relay_support import assert_consistent, funded, reserve_for
from sqlalchemy import select

from quotaledger.billing import pricing
from quotaledger.billing.pricing import make_price, relay_cost, reservation_cost
from quotaledger.billing.settlement import Outcome, settle
from quotaledger.errors import InvalidInput
from quotaledger.store.database import Database
from quotaledger.store.tables import usage
from quotaledger.token_usage import TokenUsage

ONE = Decimal(1)
# Anthropic's Sonnet 4.5: $3 / $15, and past 200k input tokens $6 / $22.50.
SONNET = make_price(
    "claude-sonnet-4-5", input_usd_per_mtok="3", output_usd_per_mtok="15",
    long_context_threshold=200_000, long_input_usd_per_mtok="6",
    long_output_usd_per_mtok="22.5",
)  # fmt: skip


def test_a_prompt_past_the_threshold_is_charged_at_the_tier_every_token() -> None:
    at = TokenUsage(input=200_000, output=1000)
    past = TokenUsage(input=150_000, cache_read=50_001, output=1000)
    # 200,000 x 3 + 1,000 x 15 = 615,000 micro-USD -> 307,500 quota
    assert relay_cost(SONNET, at, ONE, "anthropic") == 307_500
    # 150,000 x 6 + 50,001 x 0.6 (cache read 0.1x the tier's input) + 1,000 x 22.5
    # = 900,000 + 30,000.6 + 22,500 = 952,500.6 micro-USD -> 476,250.3 -> 476,251 quota
    assert relay_cost(SONNET, past, ONE, "anthropic") == 476_251
    assert pricing.price_tier(SONNET, past) == "long"
    assert pricing.price_tier(SONNET, at) is None


def test_the_reservation_takes_the_tier_of_the_prompt_estimate() -> None:
    assert reservation_cost(SONNET, 300_000, 0, ONE, "anthropic") == 300_000 * 12 // 2  # 2x $6
    assert reservation_cost(SONNET, 100_000, 0, ONE, "anthropic") == 100_000 * 6 // 2


def test_a_tier_without_its_own_output_price_keeps_the_base_one() -> None:
    tiered = make_price(
        "gemini-2.5-pro", input_usd_per_mtok="1.25", output_usd_per_mtok="10",
        long_context_threshold=200_000, long_input_usd_per_mtok="2.5",
    )  # fmt: skip
    usage = TokenUsage(input=300_000, output=1000)
    assert relay_cost(tiered, usage, ONE, "gemini") == (300_000 * 25 // 10 + 10_000) // 2


def test_web_searches_are_charged_per_thousand_calls() -> None:
    searching = make_price(
        "claude-sonnet-4-5", input_usd_per_mtok="3", output_usd_per_mtok="15",
        web_search_usd_per_kcall="10",
    )  # fmt: skip
    # $10 / 1,000 = $0.01 a search = 5,000 quota; plus (1,000 x 3 + 100 x 15) / 2 = 2,250
    usage = TokenUsage(input=1000, output=100, web_search=3)
    assert relay_cost(searching, usage, ONE, "anthropic") == 15_000 + 2250
    assert relay_cost(searching, usage, Decimal("0.5"), "anthropic") == (15_000 + 2250) // 2


def test_an_embeddings_price_needs_no_output_price() -> None:
    embed = make_price("text-embedding-3-small", input_usd_per_mtok="0.02")
    assert embed.output_usd_per_mtok is None
    assert relay_cost(embed, TokenUsage(input=1_000_000, output=50), ONE) == 10_000
    assert "output_usd_per_mtok" not in {k for k, v in embed.as_row().items() if v is not None}


def test_cached_input_on_openai_channels_takes_the_models_published_ratio() -> None:
    usage = TokenUsage(input=0, cache_read=1_000_000)
    for model, usd in [("gpt-5", "0.125"), ("gpt-4.1-mini", "0.5"), ("gpt-4o", "1.25"),
                       ("deepseek-chat", "0.2"), ("some-local-model", "1")]:  # fmt: skip
        price = make_price(model, input_usd_per_mtok="2" if model != "gpt-4o" else "2.5",
                           output_usd_per_mtok="8")  # fmt: skip
        if model == "gpt-5":
            price = make_price(model, input_usd_per_mtok="1.25", output_usd_per_mtok="10")
        expected = int(Decimal(usd) * 500_000)
        assert relay_cost(price, usage, ONE, "openai") == expected, model
        assert relay_cost(price, usage, ONE, "openai-chat") == expected, model


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"long_input_usd_per_mtok": "6"}, "long_context_threshold"),
        ({"long_context_threshold": 200_000}, "long_input_usd_per_mtok"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"long_context_threshold": -3, "long_input_usd_per_mtok": "6"}, "long_context_threshold"),
    ],
)
def test_an_incomplete_or_bad_extra_is_refused_naming_its_field(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        make_price("m", input_usd_per_mtok="1", output_usd_per_mtok="2", **fields)  # type: ignore[arg-type]
    assert refused.value.field == field


def test_the_extras_are_stored_and_read_back(database: Database) -> None:
    tiered = make_price(
        "claude-sonnet-4-5", input_usd_per_mtok="3", output_usd_per_mtok="15",
        long_context_threshold=200_000, long_input_usd_per_mtok="6",
        long_output_usd_per_mtok="22.5", long_cache_read_usd_per_mtok="0.6",
        web_search_usd_per_kcall="10", max_output_tokens=64_000,
    )  # fmt: skip
    pricing.set_price(database, tiered)
    assert pricing.list_prices(database) == [tiered]
    pricing.set_price(database, make_price("claude-sonnet-4-5", input_usd_per_mtok="3",
                                           output_usd_per_mtok="15"))  # fmt: skip
    assert pricing.list_prices(database)[0].long_context_threshold is None  # set anew: cleared


def test_the_log_row_carries_the_tier_the_web_searches_and_the_usage_note(
    database: Database,
) -> None:
    priced = make_price(
        "m", input_usd_per_mtok="2", output_usd_per_mtok="8", long_context_threshold=1000,
        long_input_usd_per_mtok="4", long_output_usd_per_mtok="16",
        web_search_usd_per_kcall="10",
    )  # fmt: skip
    pricing.set_price(database, priced)
    who = funded(database, 10_000_000)
    reserve_for(database, who, 1_000_000, request_id="r-long")
    used = TokenUsage(input=2000, output=100, web_search=2)
    outcome = Outcome(200, used, end_reason="completed", usage_note="output_above_cap")
    settled = settle(database, "r-long", who.user_id, outcome)
    # (2,000 x 4 + 100 x 16) / 2 + 2 x 5,000 = 4,800 + 10,000
    assert settled.charged == 14_800 == relay_cost(priced, used, ONE)
    with database.read() as connection:
        row = connection.execute(
            select(usage.c.price_tier, usage.c.web_search_calls, usage.c.usage_note)
        ).one()
    assert tuple(row) == ("long", 2, "output_above_cap")
    assert_consistent(database)
