"""Model prices and what a request costs.

A model is priced either per call (`ModelFixedPrice`, USD per call) or per million input
and output tokens; a user's group may carry a multiplier. The cost is computed exactly in
`Decimal` and rounded up to whole quota once, at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from quotaledger.errors import InvalidInput, NotFound
from quotaledger.money import parse_usd, usd_to_quota
from quotaledger.store.database import Database, now
from quotaledger.store.tables import groups, prices

_MTOK = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    model: str
    per_call_usd: Decimal | None = None
    input_usd_per_mtok: Decimal | None = None
    output_usd_per_mtok: Decimal | None = None

    def as_row(self) -> dict[str, str | None]:
        """The price with exact decimal strings: as stored, listed and published."""
        return {
            "model": self.model,
            "per_call_usd": _text(self.per_call_usd),
            "input_usd_per_mtok": _text(self.input_usd_per_mtok),
            "output_usd_per_mtok": _text(self.output_usd_per_mtok),
        }

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
) -> Price:
    """A validated price: per call, or per token (input and output both given)."""
    if not model or len(model) > 128:
        raise InvalidInput("model", "must be 1-128 characters")
    per_token = (input_usd_per_mtok, output_usd_per_mtok)
    if per_call_usd is not None and any(v is not None for v in per_token):
        raise InvalidInput("price", "give a per-call price or per-token prices, not both")
    if per_call_usd is None and None in per_token:
        raise InvalidInput("price", "give a per-call price, or both input and output prices")
    return Price(
        model,
        _usd("per_call_usd", per_call_usd),
        _usd("input_usd_per_mtok", input_usd_per_mtok),
        _usd("output_usd_per_mtok", output_usd_per_mtok),
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
    values = {**price.as_row(), "updated_at": now()}
    with database.write() as connection:
        _upsert(connection, prices, values, "model")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def price_from_columns(row: Any) -> Price:
    """A `Price` from a row with the `prices` table's columns."""
    values = (row.per_call_usd, row.input_usd_per_mtok, row.output_usd_per_mtok)
    return Price(str(row.model), *(None if v is None else Decimal(v) for v in values))


_PRICE_COLUMNS = (
    prices.c.model,
    prices.c.per_call_usd,
    prices.c.input_usd_per_mtok,
    prices.c.output_usd_per_mtok,
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
