"""Sizing a reservation (SPEC §8b, `billing.sizing`): the cap in effect, lowered to what the
balance covers and then sent, the floor below which the request is refused, and a thinking
budget kept valid; as examples, then as properties over any price, prompt, cap and balance."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from quotaledger.billing import known_models, pricing, sizing
from quotaledger.billing.pricing import make_price, reservation_cost
from quotaledger.billing.sizing import SizingRequest, size

SONNET = make_price("claude-sonnet-4-5", input_usd_per_mtok="3", output_usd_per_mtok="15")
ONE = Decimal(1)


def _ask(**given: object) -> SizingRequest:
    values: dict[str, object] = {
        "price": SONNET, "ratio": ONE, "price_format": "anthropic", "prompt_tokens": 20_000,
        "client_cap": 32_000, "model_max": 64_000,
    }  # fmt: skip
    return SizingRequest(**(values | given))  # type: ignore[arg-type]


def test_a_balance_that_covers_the_cap_reserves_it_in_full_and_sends_no_cap() -> None:
    ask = _ask()
    full = reservation_cost(SONNET, 20_000, 32_000, ONE, "anthropic")
    sized = size(ask, covered=full)
    assert (sized.amount, sized.output_cap, sized.cap_sent, sized.fits) == (
        full,
        32_000,
        None,
        True,
    )


def test_claude_code_on_a_small_balance_gets_a_lowered_cap_not_a_refusal() -> None:
    # Claude Code's max_tokens 32000 at Sonnet prices: 2,000 prompt tokens reserved at the
    # dearest input rate ($6, 1-hour cache writes: 3 quota a token) and 32,000 output tokens
    # at $15 (7.5 quota a token) is 246,000 quota; a $0.05 key covers 25,000.
    ask = _ask(prompt_tokens=2000)
    assert size(ask).amount == 246_000
    sized = size(ask, covered=25_000)
    assert sized.fits and sized.lowered
    assert sized.cap_sent == sized.output_cap == 2533  # (25,000 - 6,000) / 7.5
    assert sized.amount == reservation_cost(SONNET, 2000, 2533, ONE, "anthropic") <= 25_000


def test_below_the_floor_of_prompt_plus_the_minimum_output_the_request_is_refused() -> None:
    ask = _ask(min_output=1024)
    floor = reservation_cost(SONNET, 20_000, 1024, ONE, "anthropic")
    assert size(ask).floor == floor
    assert size(ask, covered=floor).fits
    assert size(ask, covered=floor).output_cap == 1024
    assert not size(ask, covered=floor - 1).fits


def test_no_cap_from_the_client_reserves_the_models_maximum_and_sends_nothing() -> None:
    gpt5 = make_price("gpt-5", input_usd_per_mtok="1.25", output_usd_per_mtok="10")
    model_max = pricing.max_output_tokens(gpt5, "gpt-5")
    ask = _ask(price=gpt5, price_format="openai", client_cap=None, model_max=model_max)
    sized = size(ask, covered=10**9)
    assert model_max == 128_000
    assert (sized.output_cap, sized.cap_sent) == (128_000, None)


def test_a_client_cap_above_the_models_maximum_reserves_the_maximum() -> None:
    ask = _ask(client_cap=200_000, model_max=64_000)
    sized = size(ask, covered=10**9)
    assert (sized.output_cap, sized.cap_sent) == (64_000, None)
    # Nothing was sent: the upstream works under the client's own cap.
    assert sizing.upstream_cap(ask, sized) == 200_000


def test_the_upstream_works_under_the_cap_sent_else_the_clients_else_the_models() -> None:
    lowered = _ask(prompt_tokens=2000)
    assert sizing.upstream_cap(lowered, size(lowered, covered=25_000)) == 2533
    uncapped = _ask(client_cap=None)
    assert sizing.upstream_cap(uncapped, size(uncapped)) == 64_000


def test_n_choices_reserve_the_cap_for_each_and_lower_it_for_each() -> None:
    gpt = make_price("gpt-4o", input_usd_per_mtok="2.5", output_usd_per_mtok="10")
    ask = _ask(price=gpt, price_format="openai", prompt_tokens=100, client_cap=4000, choices=3)
    assert size(ask).amount == reservation_cost(gpt, 100, 12_000, ONE)
    sized = size(ask, covered=30_000)
    # 30,000 quota = 60,000 USD-micro units: (60,000 - 250) // 10 = 5,975 tokens, 1,991 each
    assert sized.cap_sent == 1991 and sized.amount <= 30_000


def test_a_cap_smaller_than_the_minimum_output_is_its_own_floor() -> None:
    ask = _ask(client_cap=100, min_output=1024)
    assert (
        size(ask).floor
        == size(ask).amount
        == reservation_cost(SONNET, 20_000, 100, ONE, "anthropic")
    )


def test_a_per_call_price_reserves_the_call_and_has_no_cap_to_size() -> None:
    dalle = make_price("dall-e-3", per_call_usd="0.04")
    sized = size(_ask(price=dalle), covered=20_000)
    assert (sized.amount, sized.floor, sized.cap_sent, sized.fits) == (20_000, 20_000, None, True)
    assert not size(_ask(price=dalle), covered=19_999).fits


def test_free_output_is_never_lowered() -> None:
    embed = make_price("text-embedding-3-small", input_usd_per_mtok="0.02")
    sized = size(_ask(price=embed, price_format="openai", prompt_tokens=1000), covered=10)
    assert sized.fits and sized.cap_sent is None


def test_the_thinking_budget_is_lowered_with_the_cap_and_stays_valid_for_anthropic() -> None:
    ask = _ask(prompt_tokens=2000, thinking_budget=31_999)
    sized = size(ask, covered=25_000)
    assert sized.cap_sent is not None and sized.thinking_budget is not None
    assert 1024 <= sized.thinking_budget < sized.cap_sent
    assert sized.thinking_budget == max(1024, sized.cap_sent // 2)  # half kept for the answer
    assert not sized.thinking_off


def test_thinking_goes_off_when_no_valid_budget_fits_the_lowered_cap() -> None:
    assert sizing.lowered_thinking(8000, 1024) == (None, True)
    assert sizing.lowered_thinking(8000, 1025) == (1024, False)
    assert sizing.lowered_thinking(8000, 1800) == (1024, False)
    assert sizing.lowered_thinking(8000, 10_000) == (5000, False)
    assert sizing.lowered_thinking(2000, 10_000) == (None, False)  # already fits: unchanged
    assert sizing.lowered_thinking(-1, 500) == (None, False)  # Gemini's dynamic budget
    assert sizing.lowered_thinking(None, 500) == (None, False)


def test_the_models_maximum_comes_from_the_setting_then_the_known_list_then_a_fallback() -> None:
    set_max = make_price(
        "gpt-5", input_usd_per_mtok="1", output_usd_per_mtok="2", max_output_tokens=777
    )
    plain = make_price("gpt-5", input_usd_per_mtok="1", output_usd_per_mtok="2")
    assert pricing.max_output_tokens(set_max, "gpt-5") == 777
    assert pricing.max_output_tokens(plain, "gpt-5-mini-2025-08-07") == 128_000
    assert pricing.max_output_tokens(plain, "anthropic/claude-opus-4-1") == 32_000
    assert pricing.max_output_tokens(plain, "claude-opus-4-5-20251101") == 64_000
    assert (
        pricing.max_output_tokens(None, "my-local-llama") == known_models.FALLBACK_MAX_OUTPUT_TOKENS
    )
    assert known_models.known_model("o10-preview") is None  # prefixes end at a separator


# ---------------------------------------------------------------- properties

_usd = st.decimals(min_value="0", max_value="200", places=3, allow_nan=False)


@st.composite
def _requests(draw: st.DrawFn) -> SizingRequest:
    per_call = draw(st.booleans()) and draw(st.booleans())
    if per_call:
        price = make_price("m", per_call_usd=draw(_usd))
    else:
        price = make_price("m", input_usd_per_mtok=draw(_usd), output_usd_per_mtok=draw(_usd))
    return SizingRequest(
        price=price,
        ratio=draw(st.decimals(min_value="0", max_value="5", places=2)),
        price_format=draw(st.sampled_from(["openai", "anthropic", "gemini"])),
        prompt_tokens=draw(st.integers(0, 2_000_000)),
        client_cap=draw(st.none() | st.integers(1, 300_000)),
        model_max=draw(st.integers(1, 200_000)),
        choices=draw(st.integers(1, 8)),
        min_output=draw(st.integers(1, 8192)),
        thinking_budget=draw(st.none() | st.integers(-1, 200_000)),
    )


@given(_requests(), st.integers(0, 10**9))
def test_the_reservation_never_exceeds_what_the_balance_covers(
    ask: SizingRequest, covered: int
) -> None:
    sized = size(ask, covered)
    if sized.fits:
        assert sized.amount <= covered


@given(_requests(), st.integers(0, 10**9))
def test_the_cap_never_exceeds_the_clients_or_the_models(ask: SizingRequest, covered: int) -> None:
    sized = size(ask, covered)
    assert sized.output_cap <= ask.model_max
    if ask.client_cap is not None:
        assert sized.output_cap <= ask.client_cap
    if sized.cap_sent is not None:
        assert sized.cap_sent == sized.output_cap < ask.cap_in_effect


@given(_requests(), st.integers(0, 10**9))
def test_never_refused_at_or_above_the_floor(ask: SizingRequest, covered: int) -> None:
    sized = size(ask, covered)
    assert sized.fits == (covered >= sized.floor)
    if sized.fits:
        assert sized.output_cap >= ask.least_output


@given(_requests(), st.integers(0, 10**9))
def test_a_lowered_thinking_budget_is_valid_for_anthropic(ask: SizingRequest, covered: int) -> None:
    sized = size(ask, covered)
    if sized.thinking_budget is not None:
        assert sized.cap_sent is not None
        assert 1024 <= sized.thinking_budget < sized.cap_sent
    if sized.thinking_off:
        assert sized.cap_sent is not None and sized.cap_sent <= 1024
