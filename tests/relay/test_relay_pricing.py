"""The relay's cost (SPEC §8, §8a) against hand-computed examples: token classes, cache
price defaults per channel format, group ratios, rounding up, per-call prices, and what
a reservation may afford."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from fractions import Fraction

import pytest

from quotaledger.billing import pricing
from quotaledger.billing.pricing import make_price, relay_cost, reservation_cost
from quotaledger.errors import InvalidInput
from quotaledger.money import QUOTA_PER_USD
from quotaledger.relay import providers
from quotaledger.store.database import Database
from quotaledger.token_usage import TokenUsage

GPT = make_price("gpt-4o", input_usd_per_mtok="2.5", output_usd_per_mtok="10")
CLAUDE = make_price("claude", input_usd_per_mtok="3", output_usd_per_mtok="15")
ONE = Decimal(1)


def test_openai_cached_input_costs_the_models_cached_ratio_unless_priced() -> None:
    usage = TokenUsage(input=1000, cache_read=200, output=500)
    # gpt-4o's cached input is half its input price (issue 22 item 6):
    # (1000*2.5 + 200*1.25 + 500*10) / 1e6 USD = $0.00775 = 3875 quota
    assert relay_cost(GPT, usage, ONE) == 3875
    dearer = make_price(
        "gpt-4o", input_usd_per_mtok="2.5", output_usd_per_mtok="10",
        cache_read_usd_per_mtok="2.5",
    )  # fmt: skip
    # A cache-read price set is the price: (2500 + 200*2.5 + 5000) / 2 = 4000
    assert relay_cost(dearer, usage, ONE) == 4000


def test_anthropic_cache_classes_default_to_anthropics_ratios_and_the_group_ratio_applies() -> None:
    usage = TokenUsage(
        input=100, cache_read=10_000, cache_write_5m=2000,
        cache_write_1h=1000, output=300,
    )  # fmt: skip
    # rates 3, 0.3, 3.75, 6, 15: 300 + 3000 + 7500 + 6000 + 4500 = 21300 -> /2 = 10650
    assert relay_cost(CLAUDE, usage, ONE, "anthropic") == 10650
    assert relay_cost(CLAUDE, usage, Decimal("0.8"), "anthropic") == 8520
    # The same usage on an openai channel: cache writes at the input price 3, cache reads
    # at the documented default of an unknown model (`claude` is not a known name), 0.5x:
    # 300 + 15000 + 6000 + 3000 + 4500 = 28800 -> 14400
    assert relay_cost(CLAUDE, usage, ONE, "openai") == 14400
    assert usage.prompt_tokens == 13_100


def test_a_fraction_of_a_quota_unit_is_charged_as_one_and_free_is_free() -> None:
    mini = make_price("mini", input_usd_per_mtok="0.15", output_usd_per_mtok="0.6")

    assert relay_cost(mini, TokenUsage(input=1), ONE) == 1  # 0.075 -> 1
    assert relay_cost(mini, TokenUsage(input=7, output=3), ONE) == 2  # 1.425
    assert relay_cost(mini, TokenUsage(), ONE) == 0
    assert relay_cost(mini, TokenUsage(input=10**6), Decimal(0)) == 0


def test_the_cost_is_exact_past_decimal_precision() -> None:
    price = make_price(
        "m", input_usd_per_mtok="2.000000000000000000000000000002", output_usd_per_mtok="0"
    )
    # 10^12 tokens: 2e12 + 2e-18 USD-per-Mtok units / 2 = 10^12 + 10^-18 quota, so one
    # more unit; 28-digit Decimal arithmetic (or a float) would lose the tail and say 10^12.
    assert relay_cost(price, TokenUsage(input=10**12), ONE) == 10**12 + 1
    # 2 tokens at 0.000001 USD/Mtok: exactly 10^-12 USD, still one quota unit
    tiny = make_price("t", input_usd_per_mtok="0.000001", output_usd_per_mtok="0")
    assert relay_cost(tiny, TokenUsage(input=2), ONE) == 1


def test_a_per_call_price_ignores_tokens_and_takes_the_ratio() -> None:
    dalle = make_price("dall-e-3", per_call_usd="0.04")

    assert relay_cost(dalle, TokenUsage(output=10**9), Decimal("1.5")) == 30_000
    assert reservation_cost(dalle, 10**6, 10**6, ONE) == 20_000
    assert pricing.affordable_output_tokens(dalle, 10, 5, ONE) is None


def test_a_reservation_prices_the_prompt_at_the_dearest_input_rate() -> None:
    # claude on anthropic: the 1-hour cache write (6) is the dearest input-side rate.
    # 1000*6 + 4096*15 = 67440 -> 33720
    assert reservation_cost(CLAUDE, 1000, 4096, ONE, "anthropic") == 33_720
    assert reservation_cost(GPT, 1000, 4096, ONE) == (2500 + 40960) // 2


def test_the_affordable_output_cap_is_the_largest_that_fits() -> None:
    afford = pricing.affordable_output_tokens

    assert afford(CLAUDE, 1000, 33_720, ONE, "anthropic") == 4096
    assert afford(CLAUDE, 1000, 33_719, ONE, "anthropic") == 4095
    assert reservation_cost(CLAUDE, 1000, 4095, ONE, "anthropic") <= 33_719
    assert afford(CLAUDE, 1000, 2999, ONE, "anthropic") is not None
    assert afford(CLAUDE, 1000, 2999, ONE, "anthropic") < 0  # type: ignore[operator]
    assert afford(CLAUDE, 1000, 100, Decimal(0), "anthropic") is None


def test_a_cost_past_the_largest_amount_is_refused() -> None:
    big = make_price("big", input_usd_per_mtok="1000000", output_usd_per_mtok="1000000")

    with pytest.raises(InvalidInput):
        relay_cost(big, TokenUsage(output=10**15), ONE)


def test_cache_prices_are_per_token_only() -> None:
    with pytest.raises(InvalidInput, match="not both"):
        make_price("x", per_call_usd="1", cache_read_usd_per_mtok="0.1")
    with pytest.raises(InvalidInput, match="cache_write_usd_per_mtok"):
        make_price(
            "x", input_usd_per_mtok="1", output_usd_per_mtok="1", cache_write_usd_per_mtok="-1"
        )


def test_cache_prices_are_stored_listed_and_cleared(database: Database) -> None:
    pricing.set_price(
        database,
        make_price(
            "claude", input_usd_per_mtok="3", output_usd_per_mtok="15",
            cache_read_usd_per_mtok="0.3", cache_write_1h_usd_per_mtok="6",
        ),
    )  # fmt: skip
    [stored] = pricing.list_prices(database)
    assert stored.cache_read_usd_per_mtok == Decimal("0.3")
    assert stored.as_row()["cache_write_1h_usd_per_mtok"] == "6"
    assert "cache_write_usd_per_mtok" not in stored.as_row()

    pricing.set_price(database, CLAUDE)
    [stored] = pricing.list_prices(database)
    assert stored.cache_read_usd_per_mtok is None
    assert stored.as_row() == {
        "model": "claude", "per_call_usd": None, "input_usd_per_mtok": "3",
        "output_usd_per_mtok": "15",
    }  # fmt: skip


def _rational_cost(rates: tuple[Fraction, ...], counts: tuple[int, ...], ratio: Decimal) -> int:
    """SPEC §8a's formula in exact rationals, as written: the reference."""
    usd_mtok = sum((n * r for n, r in zip(counts, rates, strict=True)), Fraction(0))
    return math.ceil(usd_mtok * Fraction(QUOTA_PER_USD, 10**6) * Fraction(ratio))


def test_the_integer_arithmetic_rounds_exactly_as_the_rational_formula() -> None:
    # Prices with many decimals, odd ratios and counts: the cached integer rates
    # (`quota_rates`) give the rational formula's ceiling every time, and the affordable
    # cap is the largest whose reservation fits.
    rng = random.Random(15)
    for _ in range(400):
        digits = [rng.choice(("0.000001", "0.3", "7", "2.123456789", "0.07", "1e-9"))]
        cache = [str(Decimal(rng.choice(digits)) * rng.randint(1, 9)) for _ in range(3)]
        price = make_price(
            "m", input_usd_per_mtok=str(Decimal(rng.choice(digits)) * rng.randint(1, 99)),
            output_usd_per_mtok=str(Decimal(rng.choice(digits)) * rng.randint(0, 99)),
            cache_read_usd_per_mtok=cache[0] if rng.random() < 0.5 else None,
            cache_write_usd_per_mtok=cache[1] if rng.random() < 0.5 else None,
            cache_write_1h_usd_per_mtok=cache[2] if rng.random() < 0.5 else None,
        )  # fmt: skip
        ratio = Decimal(rng.choice(("1", "0.8", "1.333", "0", "2.5", "0.0001")))
        fmt = rng.choice(providers.FORMATS)
        counts = tuple(rng.choice((0, 1, 7, 999, 123_457, 10**9)) for _ in range(5))
        rates = pricing.token_rates(price, fmt)
        ordered = (rates.input, rates.cache_read, rates.cache_write, rates.cache_write_1h,
                   rates.output)  # fmt: skip
        assert relay_cost(price, TokenUsage(*counts), ratio, fmt) == _rational_cost(
            ordered, counts, ratio
        )
        prompt, output = counts[0], counts[4]
        reference = _rational_cost((rates.highest_input, rates.output), (prompt, output), ratio)
        assert reservation_cost(price, prompt, output, ratio, fmt) == reference
        cap = pricing.affordable_output_tokens(price, prompt, reference, ratio, fmt)
        if cap is not None:
            assert cap >= output
            fits = _rational_cost((rates.highest_input, rates.output), (prompt, cap), ratio)
            beyond = (prompt, cap + 1)
            assert fits <= reference
            assert _rational_cost((rates.highest_input, rates.output), beyond, ratio) > reference
