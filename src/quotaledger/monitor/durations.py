"""Durations as people write them in a config file: `"90s"`, `"5m"`, `"6h"`, `"1h30m"`, `"7d"`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
DAY, HOUR = 86_400, 3_600
_UNITS = {"d": DAY, "h": HOUR, "m": 60, "s": 1}


def parse_duration(value: object) -> timedelta:
    """A `timedelta` from `"5m"`-style text or a number of seconds; `ValueError` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f'expected a duration such as "5m", got {value!r}')
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError(f'expected a duration such as "5m", got {value!r}')
    text = value.strip().lower().replace(" ", "")
    if text.isdecimal():
        return timedelta(seconds=int(text))
    position, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f'expected a duration such as "90s", "5m", "6h" or "7d", got {value!r}')
    return timedelta(seconds=seconds)


def humanize(delta: timedelta) -> str:
    """A short English duration: `"45 minutes"`, `"5 hours"`, `"3 days"`."""
    seconds = delta.total_seconds()
    if seconds >= 2 * DAY:
        return plural(round(seconds / DAY), "day")
    if seconds >= 2 * HOUR:
        return plural(round(seconds / HOUR), "hour")
    return plural(max(1, round(seconds / 60)), "minute")


def plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"
