"""Parsers for config values: each returns the typed value or raises `ValueError(reason)`."""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from quotaledger.monitor.durations import parse_duration

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_USER_ID = re.compile(r"[0-9]{1,19}")


def unknown_key_reason(key: str, known: tuple[str, ...]) -> str:
    if key == "token":
        return "unknown key 'token': the token never sits in the file; use token_env or token_file"
    close = difflib.get_close_matches(key, known, n=1)
    return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("expected a table, written [defaults]")
    return value


def array_of_tables(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("accounts are written as [[account]] tables")
    return value


def interval(value: Any) -> timedelta:
    delta = parse_duration(value)
    if delta < timedelta(seconds=60):
        raise ValueError(f"{value!r} is under 60 s (poll at most once a minute, as the API asks)")
    return delta


def timeout(value: Any) -> timedelta:
    delta = parse_duration(value)
    if delta <= timedelta(0):
        raise ValueError("must be more than 0 s")
    return delta


def optional_duration(value: Any) -> timedelta | None:
    """A duration, or `"off"`/`false` for never (reminders switched off)."""
    if value is False or (isinstance(value, str) and value.strip().lower() in {"off", "never"}):
        return None
    delta = parse_duration(value)
    if delta < timedelta(seconds=60):
        raise ValueError(f'{value!r} is under 60 s; use "off" to switch reminders off')
    return delta


KEEP_AT_LEAST = timedelta(days=7)
"""The shortest history one may keep: the forecast reads the last week of polls."""


def retention(value: Any) -> timedelta | None:
    """How long polls are kept: `"forever"` (None), or a duration of a week or more."""
    if value is False or (isinstance(value, str) and value.strip().lower() in {"forever", "off"}):
        return None
    delta = parse_duration(value)
    if delta < KEEP_AT_LEAST:
        raise ValueError(
            f"{value!r} is under 7 days: the forecast reads the last week of polls; "
            'write "forever" to keep every poll'
        )
    return delta


def url_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(url, str) for url in value):
        raise ValueError('expected a list of Apprise URLs, e.g. ["json://host/path"]')
    return list(value)


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return value


def non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number of at least 0, got {value!r}")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def fraction(value: Any) -> Decimal:
    """`"10%"` or `0.1` as `Decimal("0.1")`, between 0 and 1."""
    try:
        if isinstance(value, str) and value.strip().endswith("%"):
            result = Decimal(value.strip()[:-1]) / 100
        elif isinstance(value, int | Decimal) and not isinstance(value, bool):
            result = Decimal(value)
        else:
            raise InvalidOperation
    except InvalidOperation:
        raise ValueError(f'expected a percentage such as "10%" or 0.1, got {value!r}') from None
    if not 0 <= result <= 1:
        raise ValueError(f"expected between 0% and 100%, got {value!r}")
    return result


def amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"expected a number such as 20 or 5.50, got {value!r}")
    result = Decimal(value)
    if not result.is_finite() or result < 0:
        raise ValueError(f"expected an amount of at least 0, got {value!r}")
    return result


def name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty name")
    return value.strip()


def provider(value: Any) -> str:
    from quotaledger.client import PROVIDERS

    if not isinstance(value, str) or value not in PROVIDERS:
        raise ValueError(f"unknown provider {value!r} (known: {', '.join(sorted(PROVIDERS))})")
    return value


def base_url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"expected an http:// or https:// URL (the site root), got {value!r}")
    return value.rstrip("/")


def env_name(value: Any) -> str:
    # The value is not echoed: someone may have pasted the token itself here.
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise ValueError(
            "expected the NAME of an upper-case environment variable such as PROD_TOKEN"
            " (the token itself must not sit in the file)"
        )
    return value


def path(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a file path")
    return Path(value).expanduser()


def user_id(value: Any) -> str | int:
    """new-api's numeric user id: `42` or `"42"` (sent as the `New-Api-User` header)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    if isinstance(value, str) and _USER_ID.fullmatch(value.strip()):
        return value.strip()
    raise ValueError(f"expected the numeric user id (digits only, e.g. 42), got {value!r}")


def currency(value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value.upper()):
        raise ValueError(f'expected a currency code such as "CNY", got {value!r}')
    return value.upper()
