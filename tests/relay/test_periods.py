"""Periods reset exactly at the UTC day or month boundary."""

from __future__ import annotations

from datetime import UTC, datetime

from quotaledger.periods import next_period_start, period_start


def _t(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_a_day_starts_at_utc_midnight() -> None:
    assert period_start(_t(2026, 11, 30, 23, 59, 59), "day") == _t(2026, 11, 30)
    assert period_start(_t(2026, 12, 1), "day") == _t(2026, 12, 1)
    assert next_period_start(_t(2026, 11, 30, 23, 59, 59), "day") == _t(2026, 12, 1)


def test_a_month_starts_on_the_first_and_the_year_rolls_over() -> None:
    assert period_start(_t(2026, 12, 31, 23, 59, 59), "month") == _t(2026, 12, 1)
    assert period_start(_t(2027, 1, 1), "month") == _t(2027, 1, 1)
    assert next_period_start(_t(2026, 12, 15), "month") == _t(2027, 1, 1)
    assert period_start(_t(2028, 2, 29, 12), "month") == _t(2028, 2, 1)
