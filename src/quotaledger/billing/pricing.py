"""Model prices and what a request costs.

A model is priced either per call (`ModelFixedPrice`, USD per call) or per million input
and output tokens; a user's group may carry a multiplier. The cost is computed exactly in
`Decimal` and rounded up to whole quota once, at the end.

A per-token price may also price prompt caching (SPEC §8a): cache reads, 5-minute and
1-hour cache writes. Unset, they default to Anthropic's ratios of the input price (0.1x,
1.25x, 2x) on `anthropic` channels and to the input price elsewhere. `relay_cost` charges
the relay's token classes (`token_usage.TokenUsage`) with exact rational arithmetic, done in
integers (`QuotaRates`, cached per price, format, ratio and tier) on the relay's hot path.

Unset cache reads on an OpenAI-format channel default to the model's published cached-input
ratio (`known_models.cached_input_ratio`: 0.5x for a model not listed), not the full input
price: those providers bill cached input at a discount, and a client should not pay more
through the relay than at the provider.

Priced extras (SPEC §8b): a per-token price may carry a long-context tier, an input-token
threshold past which every token of the request is priced at the tier's own input, output
and cache prices (Anthropic's and Gemini's "> 200k"; unset tier cache prices take the same
ratios of the tier's input price), and a web-search price in USD per 1,000 calls, charged
per `TokenUsage.web_search`. A price may also say its model's maximum output
(`max_output_tokens`), which sizes an uncapped request's reservation (`billing.sizing`).
An input-only per-token price (embeddings) charges nothing for output.
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

from quotaledger.billing import known_models
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
    # The long-context tier: past `long_context_threshold` prompt tokens, these prices.
    long_context_threshold: int | None = None
    long_input_usd_per_mtok: Decimal | None = None
    long_output_usd_per_mtok: Decimal | None = None
    long_cache_read_usd_per_mtok: Decimal | None = None
    long_cache_write_usd_per_mtok: Decimal | None = None
    long_cache_write_1h_usd_per_mtok: Decimal | None = None
    web_search_usd_per_kcall: Decimal | None = None  # USD per 1,000 web searches
    max_output_tokens: int | None = None  # the model's own maximum output per answer

    def as_row(self) -> dict[str, str | int | None]:
        """The price with exact decimal strings: as listed and published (the optional
        fields only where set, so a price without them reads as it always did)."""
        row: dict[str, str | int | None] = {
            "model": self.model,
            "per_call_usd": _text(self.per_call_usd),
            "input_usd_per_mtok": _text(self.input_usd_per_mtok),
            "output_usd_per_mtok": _text(self.output_usd_per_mtok),
        }
        for column, value in self.optional_columns().items():
            if value is not None:
                row[column] = value
        return row

    def optional_columns(self) -> dict[str, str | int | None]:
        """Every optional column's stored value (None where unset)."""
        values: dict[str, str | int | None] = {
            column: _text(getattr(self, column)) for column in DECIMAL_COLUMNS
        }
        values |= {column: getattr(self, column) for column in INTEGER_COLUMNS}
        return values

    @property
    def has_long_context_tier(self) -> bool:
        return self.long_context_threshold is not None

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
    max_output_tokens: int | None = None,
    long_context_threshold: int | None = None,
    **optional_usd: str | Decimal | None,
) -> Price:
    """A validated price: per call, or per token (an input price, and an output price
    unless the model only reads, as embeddings do), optionally with cache prices
    (`cache_read_usd_per_mtok`, ...), a long-context tier (`long_context_threshold` with
    at least `long_input_usd_per_mtok`; `long_output_usd_per_mtok`, `long_cache_*`), a
    `web_search_usd_per_kcall`, and the model's `max_output_tokens` (either kind)."""
    if not model or len(model) > 128:
        raise InvalidInput("model", "must be 1-128 characters")
    unknown = set(optional_usd) - set(_PER_TOKEN_EXTRAS)
    if unknown:
        raise TypeError(f"unknown price fields: {', '.join(sorted(unknown))}")
    extras = {k: v for k, v in optional_usd.items() if v is not None}
    per_token = (input_usd_per_mtok, output_usd_per_mtok)
    tiered = long_context_threshold is not None
    if per_call_usd is not None and (any(v is not None for v in per_token) or extras or tiered):
        raise InvalidInput("price", "give a per-call price or per-token prices, not both")
    if per_call_usd is None and input_usd_per_mtok is None:
        raise InvalidInput("price", "give a per-call price, or input (and output) prices")
    _check_tier(long_context_threshold, extras)
    return Price(
        model,
        _usd("per_call_usd", per_call_usd),
        _usd("input_usd_per_mtok", input_usd_per_mtok),
        _usd("output_usd_per_mtok", output_usd_per_mtok),
        long_context_threshold=_tokens("long_context_threshold", long_context_threshold),
        max_output_tokens=_tokens("max_output_tokens", max_output_tokens),
        **{column: _usd(column, value) for column, value in extras.items()},
    )


def _check_tier(threshold: int | None, extras: Mapping[str, object]) -> None:
    tier_prices = [column for column in LONG_COLUMNS if column in extras]
    if threshold is None and tier_prices:
        raise InvalidInput("long_context_threshold", "a long-context price needs a threshold")
    if threshold is not None and "long_input_usd_per_mtok" not in extras:
        raise InvalidInput("long_input_usd_per_mtok", "a long-context tier needs its input price")


def _tokens(field: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000_000:
        raise InvalidInput(field, "must be a whole number of tokens, 1 to 100,000,000")
    return value


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
    # Every optional column written, unset ones as NULL: a price set again is the new one.
    values = {**price.as_row(), **price.optional_columns(), "updated_at": now()}
    with database.write() as connection:
        _upsert(connection, prices, values, "model")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def price_from_columns(row: Any) -> Price:
    """A `Price` from a row with the `prices` table's columns (rows read by queries that
    predate the optional columns, as the admin charge's, lack them: unset)."""
    values: dict[str, Any] = {}
    for column in ("per_call_usd", "input_usd_per_mtok", "output_usd_per_mtok", *DECIMAL_COLUMNS):
        value = getattr(row, column, None)
        values[column] = None if value is None else Decimal(value)
    for column in INTEGER_COLUMNS:
        value = getattr(row, column, None)
        values[column] = None if value is None else int(value)
    return Price(str(row.model), **values)


CACHE_COLUMNS = (
    "cache_read_usd_per_mtok",
    "cache_write_usd_per_mtok",
    "cache_write_1h_usd_per_mtok",
)
LONG_COLUMNS = (
    "long_input_usd_per_mtok",
    "long_output_usd_per_mtok",
    "long_cache_read_usd_per_mtok",
    "long_cache_write_usd_per_mtok",
    "long_cache_write_1h_usd_per_mtok",
)
_PER_TOKEN_EXTRAS = (*CACHE_COLUMNS, *LONG_COLUMNS, "web_search_usd_per_kcall")
DECIMAL_COLUMNS = _PER_TOKEN_EXTRAS  # stored as exact decimal strings
INTEGER_COLUMNS = ("long_context_threshold", "max_output_tokens")
OPTIONAL_COLUMNS = (*DECIMAL_COLUMNS, *INTEGER_COLUMNS)
_PRICE_COLUMNS = (
    prices.c.model,
    prices.c.per_call_usd,
    prices.c.input_usd_per_mtok,
    prices.c.output_usd_per_mtok,
    *(prices.c[column] for column in OPTIONAL_COLUMNS),
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


# ---------------------------------------------------------- the relay's cost (SPEC §8, §8a, §8b)

_QUOTA_PER_TOKEN_AT_ONE_USD_PER_MTOK = Fraction(QUOTA_PER_USD, 1_000_000)
# USD per 1,000 calls -> quota per call: x 500,000 / 1,000.
_QUOTA_PER_CALL_AT_ONE_USD_PER_KCALL = Fraction(QUOTA_PER_USD, 1_000)
_OPENAI_FORMATS = frozenset({"openai", "openai-chat"})


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


def token_rates(price: Price, price_format: str = "openai", *, long: bool = False) -> TokenRates:
    """The five rates of a per-token `price` (of its long-context tier when `long`); unset
    cache rates take the defaults of `price_format`: `anthropic` 0.1x, 1.25x, 2x the input
    rate; `openai` and `openai-chat` a cache read at the model's cached-input ratio
    (`known_models`), writes at the input rate; any other its provider's ratios."""
    if price.per_call_usd is not None:
        raise ValueError(f"{price.model} is priced per call")
    prefix = "long_" if long and price.has_long_context_tier else ""
    base = Fraction(getattr(price, f"{prefix}input_usd_per_mtok") or 0)
    # A tier without its own output price keeps the base one.
    output = Fraction((prefix and price.long_output_usd_per_mtok) or price.output_usd_per_mtok or 0)
    ratios = _cache_ratios(price, price_format)
    given = (getattr(price, prefix + column) for column in CACHE_COLUMNS)
    read, write, write_1h = (
        base * ratio if value is None else Fraction(value)
        for value, ratio in zip(given, ratios, strict=True)
    )
    return TokenRates(base, read, write, write_1h, output)


def _cache_ratios(price: Price, price_format: str) -> tuple[Fraction, Fraction, Fraction]:
    """What unset cache prices default to on a channel of `price_format`: its provider's
    ratios of the input price (a format no longer known: the input price itself); a cache
    read on an OpenAI-format channel at the model's published ratio."""
    if price_format in _OPENAI_FORMATS:
        return (known_models.cached_input_ratio(price.model), FULL_PRICE[1], FULL_PRICE[2])
    known = PROVIDERS.get(price_format)
    return FULL_PRICE if known is None else known.cache_ratios


@dataclass(frozen=True)
class QuotaRates:
    """A per-token price at one group ratio as whole numbers: a token of each class costs
    `numerator / denominator` quota, exactly (the rate x 500,000 / 1e6 x the ratio over
    one common denominator), and so does a web search. Costs are then integer sums and one
    ceiling division, with the very rounding of the rational formula (SPEC §8a) at a
    fraction of its cost."""

    input: int
    cache_read: int
    cache_write: int
    cache_write_1h: int
    output: int
    highest_input: int
    denominator: int
    web_search: int = 0

    def ceil(self, numerator: int) -> int:
        """ceil(numerator / denominator) as whole quota; `InvalidInput` past the largest."""
        whole = -(-numerator // self.denominator)
        if whole > MAX_QUOTA:
            raise InvalidInput("tokens", "this request would cost more than any balance")
        return whole


@functools.lru_cache(maxsize=4096)
def quota_rates(price: Price, price_format: str, ratio: Decimal, long: bool = False) -> QuotaRates:
    """`price`'s rates in quota per token at `ratio` (its long-context tier's when `long`;
    cached: prices and ratios are few)."""
    rates = token_rates(price, price_format, long=long)
    scale = _QUOTA_PER_TOKEN_AT_ONE_USD_PER_MTOK * Fraction(ratio)
    search = Fraction(price.web_search_usd_per_kcall or 0)
    search *= _QUOTA_PER_CALL_AT_ONE_USD_PER_KCALL * Fraction(ratio)
    exact = [rate * scale for rate in (*_rate_tuple(rates), rates.highest_input)] + [search]
    denominator = math.lcm(*(q.denominator for q in exact))
    i, read, write, write_1h, out, highest, per_search = (int(q * denominator) for q in exact)
    return QuotaRates(i, read, write, write_1h, out, highest, denominator, per_search)


def long_context(price: Price, prompt_tokens: int) -> bool:
    """Whether a request of `prompt_tokens` input (every class: cached, written, uncached)
    is priced at `price`'s long-context tier: past its threshold, strictly."""
    threshold = price.long_context_threshold
    return threshold is not None and prompt_tokens > threshold


def price_tier(price: Price, usage: TokenUsage) -> str | None:
    """The tier a usage is charged at, for the log row: "long", or None (the base prices)."""
    return "long" if long_context(price, usage.prompt_tokens) else None


def relay_cost(
    price: Price, usage: TokenUsage, ratio: Decimal, price_format: str = "openai"
) -> int:
    """Whole quota for one relayed request answered 2xx (SPEC §8a, §8b):
    `ceil((uncached*in + cache_read*cr + write_5m*w5 + write_1h*w1 + out*o) / 1e6 x
    500,000 x ratio + web_search x usd_per_kcall / 1,000 x 500,000 x ratio)`, at the
    long-context tier's rates when the usage's whole prompt is past its threshold; or a
    per-call price x 500,000 x ratio. Exact (`QuotaRates`), rounded up once, so any
    non-zero price charges at least 1; `InvalidInput` past the largest amount."""
    if price.per_call_usd is not None:
        return _ceil_quota(Fraction(price.per_call_usd) * QUOTA_PER_USD * Fraction(ratio))
    q = quota_rates(price, price_format, ratio, long_context(price, usage.prompt_tokens))
    i, read, write, write_1h, out = usage.classes()
    return q.ceil(
        i * q.input + read * q.cache_read + write * q.cache_write
        + write_1h * q.cache_write_1h + out * q.output + usage.web_search * q.web_search
    )  # fmt: skip


def reservation_cost(
    price: Price, prompt_tokens: int, output_tokens: int, ratio: Decimal,
    price_format: str = "openai", warm_tokens: int = 0,
) -> int:  # fmt: skip
    """What to reserve for a prompt estimate and an output cap: the prompt at the dearest
    input-side rate (it may all turn out to be cache writes) but for its `warm_tokens`, a
    prefix the upstream holds cached (`relay.warm_prefixes`), at the cache-read rate; the
    cap at the output rate; all of the long-context tier when the estimate is past it."""
    if price.per_call_usd is not None:
        return relay_cost(price, TokenUsage(), ratio)
    q = quota_rates(price, price_format, ratio, long_context(price, prompt_tokens))
    return q.ceil(_prompt_numerator(q, prompt_tokens, warm_tokens) + output_tokens * q.output)


def affordable_output_tokens(
    price: Price, prompt_tokens: int, amount: int, ratio: Decimal,
    price_format: str = "openai", warm_tokens: int = 0,
) -> int | None:  # fmt: skip
    """The largest output cap whose `reservation_cost` with this prompt fits in `amount`
    quota; None when output costs nothing (per-call price, zero output rate or ratio), and
    a negative number when the prompt alone does not fit."""
    if price.per_call_usd is not None:
        return None
    q = quota_rates(price, price_format, ratio, long_context(price, prompt_tokens))
    if q.output == 0:
        return None
    # ceil(x) <= amount  <=>  x <= amount, for a whole `amount`.
    prompt = _prompt_numerator(q, prompt_tokens, warm_tokens)
    return (amount * q.denominator - prompt) // q.output


def _prompt_numerator(q: QuotaRates, prompt_tokens: int, warm_tokens: int) -> int:
    warm = max(0, min(warm_tokens, prompt_tokens))
    return (prompt_tokens - warm) * q.highest_input + warm * q.cache_read


def max_output_tokens(price: Price | None, model: str) -> int:
    """`model`'s largest output per answer: its price's setting, else the published
    figure (`known_models`), else `known_models.FALLBACK_MAX_OUTPUT_TOKENS`."""
    if price is not None and price.max_output_tokens is not None:
        return price.max_output_tokens
    found = known_models.known_model(model)
    return known_models.FALLBACK_MAX_OUTPUT_TOKENS if found is None else found.max_output_tokens


def _rate_tuple(rates: TokenRates) -> tuple[Fraction, ...]:
    return (rates.input, rates.cache_read, rates.cache_write, rates.cache_write_1h, rates.output)


def _ceil_quota(quota: Fraction) -> int:
    whole = math.ceil(quota)
    if whole > MAX_QUOTA:
        raise InvalidInput("tokens", "this request would cost more than any balance")
    return whole
