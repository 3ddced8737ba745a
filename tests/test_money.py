"""Quota and USD: integers in, exact truncated decimals out."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quotaledger.money import MAX_QUOTA, format_usd, parse_usd, usd_to_quota


def test_the_reference_page_example() -> None:
    assert format_usd(24_997_909) == "49.99"


@given(
    quota=st.integers(min_value=-MAX_QUOTA, max_value=MAX_QUOTA),
    unit=st.sampled_from([500_000, 1_000_000, 7]),
    places=st.integers(min_value=0, max_value=6),
)
def test_format_usd_truncates_toward_zero_exactly(quota: int, unit: int, places: int) -> None:
    exact = Decimal(quota) / Decimal(unit)
    expected = exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    if expected == 0:
        expected = abs(expected)  # never "-0.00"
    assert format_usd(quota, unit, places) == str(expected)


def test_a_grant_rounds_down_and_a_cost_rounds_up() -> None:
    assert usd_to_quota(Decimal("0.0000031")) == 1
    assert usd_to_quota(Decimal("0.0000031"), round_up=True) == 2


@pytest.mark.parametrize("text", ["abc", "-1", "nan", "inf", "1e999999999"])
def test_bad_usd_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_usd(text)


def test_a_dollar_sign_is_accepted() -> None:
    assert parse_usd("$12.50") == Decimal("12.50")
