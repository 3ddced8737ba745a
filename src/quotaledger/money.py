"""Quota and its USD value.

Money is integer quota everywhere; USD exists only at the edges, as `Decimal`.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, Decimal, InvalidOperation

QUOTA_PER_USD = 500_000
"""The constant of one-api / new-api relays: 500,000 quota = 1.00 USD."""

MAX_QUOTA = 2**63 - 1
"""Quota columns are signed 64-bit integers."""

_CENT = Decimal("0.01")


def quota_to_usd(quota: int, quota_per_unit: int = QUOTA_PER_USD) -> Decimal:
    """The exact USD value of `quota` (no rounding)."""
    return Decimal(quota) / Decimal(quota_per_unit)


def format_usd(quota: int, quota_per_unit: int = QUOTA_PER_USD, places: int = 2) -> str:
    """USD as a string with `places` decimals, truncated toward zero, never rounded up.

    >>> format_usd(24_997_909)
    '49.99'
    """
    # Integer arithmetic (exact, and cheap on the hot path): truncate |quota| to whole
    # units of 10^-places USD, then put the sign back.
    scale = 10**places
    units = abs(quota) * scale // quota_per_unit
    whole, fraction = divmod(units, scale)
    sign = "-" if quota < 0 and units else ""
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def parse_usd(text: str | Decimal | int) -> Decimal:
    """A non-negative USD amount from user input; `ValueError` with a clear reason."""
    try:
        amount = Decimal(str(text).strip().lstrip("$"))
    except InvalidOperation:
        raise ValueError(f"not a USD amount: {text!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"USD amount must be a finite number >= 0, got {text!r}")
    if amount.adjusted() > 15:  # $10^15: past any balance, and cheap to refuse here
        raise ValueError(f"USD amount too large: {text!r}")
    return amount


def usd_to_quota(usd: Decimal, *, round_up: bool = False) -> int:
    """Quota worth `usd`. Grants round down (never give more than paid for); costs round up."""
    rounding = ROUND_CEILING if round_up else ROUND_DOWN
    try:
        quota = int((usd * QUOTA_PER_USD).to_integral_value(rounding=rounding))
    except ArithmeticError:  # past the decimal context: far past MAX_QUOTA anyway
        raise ValueError("amount too large") from None
    if quota > MAX_QUOTA:
        raise ValueError("amount too large")
    return quota
