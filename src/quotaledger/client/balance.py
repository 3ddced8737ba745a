"""`Balance`: one provider's answer, in one shape for every provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MIN_EMIN, ROUND_DOWN, Context, Decimal, InvalidOperation
from typing import Any

_SYMBOLS = {"USD": "$", "CNY": "¥"}
_CENT = Decimal("0.01")
# Formatting works on any finite amount a provider can send, not only on the 28 digits of the
# default context (a quota of 10**40 is 2E+34 USD: 37 digits with its cents).
_WIDE = Context(prec=1000, Emax=MAX_EMAX, Emin=MIN_EMIN)


@dataclass(frozen=True)
class Balance:
    """What is left on an account, in `currency`, plus what the provider adds.

    `amount` is exact (no rounding): for one-api style servers it is
    `quota / quota_per_unit`. Fields a provider does not report are `None`.
    """

    provider: str
    amount: Decimal
    currency: str
    quota: int | None = None
    used_quota: int | None = None
    request_count: int | None = None
    group: str | None = None
    used_amount: Decimal | None = None
    quota_per_unit: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def usd(self) -> Decimal | None:
        """`amount` when it is in USD, else `None` (we never guess an exchange rate)."""
        return self.amount if self.currency == "USD" else None

    @property
    def used_usd(self) -> Decimal | None:
        return self.used_amount if self.currency == "USD" else None

    def format_amount(self) -> str:
        """`amount` for people: `$49.99`, `¥110.00`, `-$0.50`; truncated to cents."""
        return format_money(self.amount, self.currency)

    def format_used(self) -> str | None:
        return None if self.used_amount is None else format_money(self.used_amount, self.currency)


def truncate_cents(amount: Decimal) -> Decimal:
    """Two decimals, truncated toward zero as `quotaledger.money.format_usd` does; an
    `InvalidOperation` only for amounts beyond 10**997 or not finite."""
    return amount.quantize(_CENT, rounding=ROUND_DOWN, context=_WIDE)


def format_money(amount: Decimal, currency: str) -> str:
    try:
        if not amount.is_finite():
            raise InvalidOperation
        cents = truncate_cents(amount)
    except InvalidOperation:  # not finite, or too long to write out: say it as it is
        return f"{amount:E} {currency}"
    sign = "-" if cents < 0 else ""
    symbol = _SYMBOLS.get(currency)
    if symbol is None:
        return f"{sign}{cents.copy_abs():,} {currency}"
    return f"{sign}{symbol}{cents.copy_abs():,}"
