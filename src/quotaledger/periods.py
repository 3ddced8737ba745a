"""The periods of a key's periodic limit: a UTC day or a UTC calendar month.

A period is named by the Unix time of its start. A key's usage belongs to the period that
starts at `period_start(now, period)`; when that differs from the stored start, the stored
count is from a past period and counts as zero (the reset happens at the boundary itself,
with no job that has to run at midnight).
"""

from __future__ import annotations

from datetime import UTC, datetime

PERIODS = ("day", "month")
_DAY = 86_400


def period_start(now: float, period: str) -> int:
    """Unix time of the start of the UTC day or month that contains `now`."""
    seconds = int(now // 1)
    if period == "day":
        return seconds - seconds % _DAY
    if period == "month":
        moment = datetime.fromtimestamp(seconds, UTC)
        return int(datetime(moment.year, moment.month, 1, tzinfo=UTC).timestamp())
    raise ValueError(f"unknown period {period!r}: expected day or month")


def next_period_start(now: float, period: str) -> int:
    """Unix time at which the period containing `now` ends."""
    if period == "day":
        return period_start(now, period) + _DAY
    moment = datetime.fromtimestamp(period_start(now, period), UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp())
