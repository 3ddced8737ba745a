"""Model prices and what a request costs.

A model is priced either per call (`ModelFixedPrice`, USD per call) or per million input
and output tokens; a user's group may carry a multiplier. The cost is computed exactly in
`Decimal` and rounded up to whole quota once, at the end.

A per-token price may also price prompt caching (SPEC §8a): cache reads, 5-minute and
1-hour cache writes. Unset, they default to Anthropic's ratios of the input price (0.1x,
1.25x, 2x) on `anthropic` channels and to the input price elsewhere. `relay_cost` charges
the relay's token classes (`token_usage.TokenUsage`) with exact rational arithmetic, done in
integers (`QuotaRates`, cached per price, format and ratio) on the relay's hot path.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from quotaledger.errors import InvalidInput, NotFound
from quotaledger.money import MAX_QUOTA, QUOTA_PER_USD, parse_usd, usd_to_quota
from quotaledger.relay.providers import PROVIDERS
from quotaledger.relay.providers.base import FULL_PRICE
from quotaledger.store.database import Database, now
from quotaledger.store.tables import groups, prices
from quotaledger.token_usage import TokenUsage

_MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    model: str
    per_call_usd: Decimal | None = None
    input_usd_per_mtok: Decimal | None = None
    output_usd_per_mtok: Decimal | None = None
    cache_read_usd_per_mtok: Decimal | None = None
    cache_write_usd_per_mtok: Decimal | None = None
    cache_write_1h_usd_per_mtok: Decimal | None = None

    def as_row(self) -> dict[str, str | None]:
        """The price with exact decimal strings: as listed and published (cache prices
        only where set, so a price without them reads as it always did)."""
        row = {
            "model": self.model,
            "per_call_usd": _text(self.per_call_usd),
            "input_usd_per_mtok": _text(self.input_usd_per_mtok),
            "output_usd_per_mtok": _text(self.output_usd_per_mtok),
        }
        cache = {column: _text(getattr(self, column)) for column in CACHE_COLUMNS}
        return row | {column: value for column, value in cache.items() if value is not None}

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        if self.per_call_usd is not None:
            return self.per_call_usd
        input_price = self.input_usd_per_mtok or Decimal(0)
        output_price = self.output_usd_per_mtok or Decimal(0)
        return (prompt_tokens * input_price + completion_tokens * output_price) / _MTOK


def cost_in_quota(price: Price, prompt_tokens: int, completion_tokens: int, ratio: Decimal) -> int:
    """Whole quota for one request, rounded up (a fraction of a unit is still charged)."""
    try:
        return usd_to_quota(price.cost_usd(prompt_tokens, completion_tokens) * ratio, round_up=True)
    except (ValueError, ArithmeticError):
        raise InvalidInput("tokens", "this request would cost more than any balance") from None


def make_price(
    model: str,
    *,
    per_call_usd: str | Decimal | None = None,
    input_usd_per_mtok: str | Decimal | None = None,
    output_usd_per_mtok: str | Decimal | None = None,
    **cache_usd_per_mtok: str | Decimal | None,
) -> Price:
    """A validated price: per call, or per token (input and output both given, and
    optionally `cache_read_usd_per_mtok`, `cache_write_usd_per_mtok`,
    `cache_write_1h_usd_per_mtok`)."""
    if not model or len(model) > 128:
        raise InvalidInput("model", "must be 1-128 characters")
    unknown = set(cache_usd_per_mtok) - set(CACHE_COLUMNS)
    if unknown:
        raise TypeError(f"unknown price fields: {', '.join(sorted(unknown))}")
    cache = {k: v for k, v in cache_usd_per_mtok.items() if v is not None}
    per_token = (input_usd_per_mtok, output_usd_per_mtok)
    if per_call_usd is not None and any(v is not None for v in (*per_token, *cache.values())):
        raise InvalidInput("price", "give a per-call price or per-token prices, not both")
    if per_call_usd is None and None in per_token:
        raise InvalidInput("price", "give a per-call price, or both input and output prices")
    return Price(
        model,
        _usd("per_call_usd", per_call_usd),
        _usd("input_usd_per_mtok", input_usd_per_mtok),
        _usd("output_usd_per_mtok", output_usd_per_mtok),
        **{column: _usd(column, value) for column, value in cache.items()},
    )


def _usd(field: str, value: str | Decimal | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = parse_usd(value)
    except ValueError as exc:
        raise InvalidInput(field, str(exc)) from None
    if amount > 1_000_000 or len(str(amount)) > 40:
        raise InvalidInput(field, "must be at most 1,000,000 USD, with at most 30 decimals")
    return amount


def _upsert(connection: Connection, table: Table, values: Mapping[str, Any], key: str) -> None:
    insert = sqlite_insert if connection.dialect.name == "sqlite" else postgresql_insert
    statement = insert(table).values(**values)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[key], set_={k: v for k, v in values.items() if k != key}
        )
    )


def set_price(database: Database, price: Price) -> None:
    cache = {column: _text(getattr(price, column)) for column in CACHE_COLUMNS}
    values = {**price.as_row(), **cache, "updated_at": now()}  # unset cache prices cleared
    with database.write() as connection:
        _upsert(connection, prices, values, "model")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def price_from_columns(row: Any) -> Price:
    """A `Price` from a row with the `prices` table's columns."""
    values = (row.per_call_usd, row.input_usd_per_mtok, row.output_usd_per_mtok)
    # Rows read by queries that predate cache prices (the admin charge) lack their columns.
    values += tuple(getattr(row, column, None) for column in CACHE_COLUMNS)
    return Price(str(row.model), *(None if v is None else Decimal(v) for v in values))


CACHE_COLUMNS = (
    "cache_read_usd_per_mtok",
    "cache_write_usd_per_mtok",
    "cache_write_1h_usd_per_mtok",
)
_PRICE_COLUMNS = (
    prices.c.model,
    prices.c.per_call_usd,
    prices.c.input_usd_per_mtok,
    prices.c.output_usd_per_mtok,
    *(prices.c[column] for column in CACHE_COLUMNS),
)


def list_prices(database: Database) -> list[Price]:
    with database.read() as connection:
        rows = connection.execute(select(*_PRICE_COLUMNS).order_by(prices.c.model)).all()
    return [price_from_columns(row) for row in rows]


def delete_price(database: Database, model: str) -> None:
    with database.write() as connection:
        if connection.execute(delete(prices).where(prices.c.model == model)).rowcount == 0:
            raise NotFound(f"no price is set for model {model!r}")


def fixed_prices(price_list: list[Price]) -> dict[str, str]:
    """The `ModelFixedPrice` map: per-call models and their USD price per call."""
    return {p.model: str(p.per_call_usd) for p in price_list if p.per_call_usd is not None}


def set_group_ratio(database: Database, group: str, ratio: str | Decimal) -> Decimal:
    if not group or len(group) > 64:
        raise InvalidInput("group", "must be 1-64 characters")
    try:
        value = Decimal(str(ratio))
    except ArithmeticError:
        raise InvalidInput("ratio", f"not a number: {ratio!r}") from None
    if not value.is_finite() or value < 0 or value > 1000:
        raise InvalidInput("ratio", "must be a number between 0 and 1000")
    with database.write() as connection:
        _upsert(connection, groups, {"name": group, "ratio": str(value)}, "name")
    return value


def list_group_ratios(database: Database) -> dict[str, Decimal]:
    with database.read() as connection:
        rows = connection.execute(select(groups.c.name, groups.c.ratio).order_by(groups.c.name))
        return {name: Decimal(ratio) for name, ratio in rows}


# ------------------------------------------------------------------ the relay's cost (SPEC §8, §8a)

_QUOTA_PER_TOKEN_AT_ONE_USD_PER_MTOK = Fraction(QUOTA_PER_USD, 1_000_000)


@dataclass(frozen=True)
class TokenRates:
    """USD per million tokens of each class, defaults resolved, as exact fractions."""

    input: Fraction
    cache_read: Fraction
    cache_write: Fraction
    cache_write_1h: Fraction
    output: Fraction

    @property
    def highest_input(self) -> Fraction:
        """The dearest input-side rate: what a prompt estimate is reserved at."""
        return max(self.input, self.cache_read, self.cache_write, self.cache_write_1h)


def token_rates(price: Price, price_format: str = "openai") -> TokenRates:
    """The five rates of a per-token `price`; unset cache rates take the defaults of
    `price_format` (`anthropic`: 0.1x, 1.25x, 2x the input rate; otherwise the input rate)."""
    if price.per_call_usd is not None:
        raise ValueError(f"{price.model} is priced per call")
    base = Fraction(price.input_usd_per_mtok or 0)
    ratios = _cache_ratios(price_format)
    given = (getattr(price, column) for column in CACHE_COLUMNS)
    read, write, write_1h = (
        base * ratio if value is None else Fraction(value)
        for value, ratio in zip(given, ratios, strict=True)
    )
    return TokenRates(base, read, write, write_1h, Fraction(price.output_usd_per_mtok or 0))


def _cache_ratios(price_format: str) -> tuple[Fraction, Fraction, Fraction]:
    """What unset cache prices default to on a channel of `price_format`: its provider's
    ratios of the input price (a format no longer known: the input price itself)."""
    known = PROVIDERS.get(price_format)
    return FULL_PRICE if known is None else known.cache_ratios


@dataclass(frozen=True)
class QuotaRates:
    """A per-token price at one group ratio as whole numbers: a token of each class costs
    `numerator / denominator` quota, exactly (the rate x 500,000 / 1e6 x the ratio over
    one common denominator). Costs are then integer sums and one ceiling division, with the
    very rounding of the rational formula (SPEC §8a) at a fraction of its cost."""

    input: int
    cache_read: int
    cache_write: int
    cache_write_1h: int
    output: int
    highest_input: int
    denominator: int

    def ceil(self, numerator: int) -> int:
        """ceil(numerator / denominator) as whole quota; `InvalidInput` past the largest."""
        whole = -(-numerator // self.denominator)
        if whole > MAX_QUOTA:
            raise InvalidInput("tokens", "this request would cost more than any balance")
        return whole


@functools.lru_cache(maxsize=4096)
def quota_rates(price: Price, price_format: str, ratio: Decimal) -> QuotaRates:
    """`price`'s rates in quota per token at `ratio` (cached: prices and ratios are few)."""
    rates = token_rates(price, price_format)
    scale = _QUOTA_PER_TOKEN_AT_ONE_USD_PER_MTOK * Fraction(ratio)
    exact = [rate * scale for rate in (*_rate_tuple(rates), rates.highest_input)]
    denominator = math.lcm(*(q.denominator for q in exact))
    i, read, write, write_1h, out, highest = (int(q * denominator) for q in exact)
    return QuotaRates(i, read, write, write_1h, out, highest, denominator)


def relay_cost(
    price: Price, usage: TokenUsage, ratio: Decimal, price_format: str = "openai"
) -> int:
    """Whole quota for one relayed request answered 2xx (SPEC §8a):
    `ceil((uncached*in + cache_read*cr + write_5m*w5 + write_1h*w1 + out*o) / 1e6 x
    500,000 x ratio)`, or a per-call price x 500,000 x ratio. Exact (`QuotaRates`), rounded
    up once, so any non-zero price charges at least 1; `InvalidInput` past the largest
    amount."""
    if price.per_call_usd is not None:
        return _ceil_quota(Fraction(price.per_call_usd) * QUOTA_PER_USD * Fraction(ratio))
    q = quota_rates(price, price_format, ratio)
    i, read, write, write_1h, out = usage.classes()
    return q.ceil(
        i * q.input + read * q.cache_read + write * q.cache_write
        + write_1h * q.cache_write_1h + out * q.output
    )  # fmt: skip


def reservation_cost(
    price: Price, prompt_tokens: int, output_tokens: int, ratio: Decimal,
    price_format: str = "openai",
) -> int:  # fmt: skip
    """What to reserve for a prompt estimate and an output cap: the prompt at the dearest
    input-side rate (it may all turn out to be cache writes), the cap at the output rate."""
    if price.per_call_usd is not None:
        return relay_cost(price, TokenUsage(), ratio)
    q = quota_rates(price, price_format, ratio)
    return q.ceil(prompt_tokens * q.highest_input + output_tokens * q.output)


def affordable_output_tokens(
    price: Price, prompt_tokens: int, amount: int, ratio: Decimal, price_format: str = "openai"
) -> int | None:
    """The largest output cap whose `reservation_cost` with this prompt fits in `amount`
    quota; None when output costs nothing (per-call price, zero output rate or ratio), and
    a negative number when the prompt alone does not fit."""
    if price.per_call_usd is not None:
        return None
    q = quota_rates(price, price_format, ratio)
    if q.output == 0:
        return None
    # ceil(x) <= amount  <=>  x <= amount, for a whole `amount`.
    return (amount * q.denominator - prompt_tokens * q.highest_input) // q.output


def _rate_tuple(rates: TokenRates) -> tuple[Fraction, ...]:
    return (rates.input, rates.cache_read, rates.cache_write, rates.cache_write_1h, rates.output)


def _ceil_quota(quota: Fraction) -> int:
    whole = math.ceil(quota)
    if whole > MAX_QUOTA:
        raise InvalidInput("tokens", "this request would cost more than any balance")
    return whole
