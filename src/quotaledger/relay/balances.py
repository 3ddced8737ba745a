"""Upstream balances (SPEC §12 ★): a channel whose provider has a balance API is watched.

A watch names one of the client's balance providers (§6: `newapi-key` for a new-api or
one-api relay's `sk-` key, `openrouter`, `deepseek`, `siliconflow`, `moonshot`), optionally
its site root (the provider's default otherwise), the USD level under which the operator is
alerted (`alert_usd`) and whether an empty channel is disabled (`disable_at_zero`). The
poller (`server.balance_watch`) asks the balance with the channel's own key through the
client, stores it here, and moves the alert level with the monitor's rules.

Several instances share the work through the database: a poll is *claimed* (`next_poll_at`
moved on by one conditional UPDATE), and so is each crossing of the alert level (`level`
from the level the claimer saw), so one instance sends one message per crossing; a message
is due while `level` differs from `announced`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Select, delete, insert, select, update

from quotaledger.errors import InvalidInput
from quotaledger.store.database import Database
from quotaledger.store.tables import channel_balances, channels

OK = "OK"


@dataclass(frozen=True)
class Watch:
    channel_id: int
    channel: str  # its name
    provider: str
    base_url: str | None
    alert_usd: Decimal | None
    disable_at_zero: bool
    amount: Decimal | None  # None: never read
    currency: str | None
    checked_at: int | None
    error: str | None
    level: str
    announced: str
    next_poll_at: int

    @property
    def usd(self) -> Decimal | None:
        return self.amount if self.currency == "USD" else None


_COLUMNS = (
    channel_balances.c.channel_id, channels.c.name, channel_balances.c.provider,
    channel_balances.c.base_url, channel_balances.c.alert_usd,
    channel_balances.c.disable_at_zero, channel_balances.c.amount, channel_balances.c.currency,
    channel_balances.c.checked_at, channel_balances.c.error, channel_balances.c.level,
    channel_balances.c.announced, channel_balances.c.next_poll_at,
)  # fmt: skip


def _from_row(row: Any) -> Watch:
    values = list(row)
    values[4] = None if values[4] is None else Decimal(values[4])
    values[5] = bool(values[5])
    values[6] = None if values[6] is None else Decimal(values[6])
    return Watch(*values)


def _select() -> Select[Any]:
    return select(*_COLUMNS).join_from(
        channel_balances, channels, channels.c.id == channel_balances.c.channel_id
    )


def usd_amount(text: str | None, name: str = "alert_usd") -> Decimal | None:
    if text is None:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(name, "must be an amount in USD such as 5 or 12.50") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidInput(name, "must be an amount of 0 or more")
    return amount


def watch(
    database: Database, channel_id: int, provider: str, *, base_url: str | None = None,
    alert_usd: Decimal | None = None, disable_at_zero: bool = False,
) -> None:  # fmt: skip
    """Watch (or re-configure the watch of) a channel's upstream balance; polled at once."""
    values = {
        "provider": provider, "base_url": base_url,
        "alert_usd": None if alert_usd is None else str(alert_usd),
        "disable_at_zero": disable_at_zero, "next_poll_at": 0,
    }  # fmt: skip
    with database.write() as connection:
        changed = connection.execute(
            update(channel_balances)
            .where(channel_balances.c.channel_id == channel_id)
            .values(**values)
        ).rowcount
        if changed == 0:
            connection.execute(insert(channel_balances).values(channel_id=channel_id, **values))


def unwatch(database: Database, channel_id: int) -> None:
    with database.write() as connection:
        connection.execute(
            delete(channel_balances).where(channel_balances.c.channel_id == channel_id)
        )


def watches(database: Database) -> list[Watch]:
    with database.read() as connection:
        rows = connection.execute(_select()).all()
    return [_from_row(row) for row in rows]


def get_watch(database: Database, channel_id: int) -> Watch | None:
    with database.read() as connection:
        row = connection.execute(
            _select().where(channel_balances.c.channel_id == channel_id)
        ).first()
    return None if row is None else _from_row(row)


def claim_poll(database: Database, found: Watch, next_poll_at: int) -> bool:
    """Take the poll of `found` (as read): False if another instance took it first."""
    with database.write() as connection:
        return bool(
            connection.execute(
                update(channel_balances)
                .where(channel_balances.c.channel_id == found.channel_id)
                .where(channel_balances.c.next_poll_at == found.next_poll_at)
                .values(next_poll_at=next_poll_at)
            ).rowcount
            == 1
        )


def record(
    database: Database, channel_id: int, amount: Decimal | None, currency: str | None,
    error: str | None, now: int,
) -> None:  # fmt: skip
    """The poll's result: a balance, or the error (the last balance is kept)."""
    values: dict[str, object] = {"checked_at": now, "error": None if error is None else error[:300]}
    if amount is not None:
        values |= {"amount": str(amount), "currency": currency}
    with database.write() as connection:
        connection.execute(
            update(channel_balances)
            .where(channel_balances.c.channel_id == channel_id)
            .values(**values)
        )


def claim_level(database: Database, channel_id: int, seen: str, level: str) -> bool:
    """Move the alert level from `seen` to `level`; True on the one instance that did."""
    with database.write() as connection:
        return bool(
            connection.execute(
                update(channel_balances)
                .where(channel_balances.c.channel_id == channel_id)
                .where(channel_balances.c.level == seen)
                .values(level=level)
            ).rowcount
            == 1
        )


def announced(database: Database, channel_id: int, level: str) -> None:
    """A message telling `level` was delivered."""
    with database.write() as connection:
        connection.execute(
            update(channel_balances)
            .where(channel_balances.c.channel_id == channel_id)
            .values(announced=level)
        )
