"""What each watched account or key was last found at and last told of (SPEC §7's rules
on the server), shared by every instance through the database.

A subject (`account:<id>` or `key:<id>`) has a `level` (OK, WARNING, CRITICAL) and the level
`announced` by the last message delivered. A crossing is *claimed*: one conditional UPDATE
(`level` from the level the claimer saw to the new one) succeeds on one instance only, so
several instances that see the same crossing send one message. A message is due while
`level` differs from `announced`, from `retry_at` on; the instance that sends it first
*leases* it (moves `retry_at` past the time a delivery takes, again conditionally), so a
delivery that fails, or an instance that dies while sending, leaves it due for any instance
later: the alert is never lost, and a level that returns to the announced one before the
delivery sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite

from quotaledger.alerting.alerts import (
    SPENDABLE_COLUMNS,
    Thresholds,
    account_subject,
    key_subject,
    spendable,
    watched_thresholds_in,
)
from quotaledger.store.database import Database
from quotaledger.store.tables import alert_states, api_keys, users

OK = "OK"
__all__ = ["OK", "Due", "Found", "account_subject", "claim", "delivered", "due", "find",
           "key_subject", "lease"]  # fmt: skip


@dataclass(frozen=True)
class Found:
    """A subject as it stands: its thresholds, amount and stored levels."""

    subject: str
    user_id: int
    name: str  # the username, or the key's name
    thresholds: Thresholds
    amount: int  # the balance, or the key's remaining budget, in quota
    level: str  # OK when never stored
    announced: str


def find(database: Database, subject: str) -> Found | None:
    """`subject` now, or None when it has no threshold any more (or no longer exists)."""
    kind, _, number = subject.partition(":")
    with database.read() as connection:
        owner_levels = watched_thresholds_in(connection, kind, int(number))
        if owner_levels is None:
            return None
        user_id, levels = owner_levels
        row: Any
        if kind == "account":
            row = connection.execute(
                select(users.c.username, users.c.quota).where(users.c.id == user_id)
            ).one()
        else:
            key = connection.execute(
                select(api_keys.c.name, *SPENDABLE_COLUMNS).where(api_keys.c.id == int(number))
            ).one()
            row = (key[0], spendable(key[1:]))  # its budget and period (SPEC §12)
        stored = connection.execute(
            select(alert_states.c.level, alert_states.c.announced).where(
                alert_states.c.subject == subject
            )
        ).first()
    level, announced = (OK, OK) if stored is None else (stored.level, stored.announced)
    return Found(subject, user_id, row[0], levels, int(row[1]), level, announced)


def claim(database: Database, found: Found, level: str, now: int) -> bool:
    """Move `found` from the level it was read at to `level`; True on the one instance
    whose UPDATE (or first INSERT) made the move. A message becomes due at once unless
    `level` is the one announced."""
    with database.write() as connection:
        if found.level == OK and found.announced == OK:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            inserted = connection.execute(
                dialect.insert(alert_states)
                .values(subject=found.subject, user_id=found.user_id, level=level,
                        announced=OK, retry_at=None if level == OK else now, changed_at=now)
                .on_conflict_do_nothing(index_elements=["subject"])
            )  # fmt: skip
            if inserted.rowcount == 1:
                return True
        moved = connection.execute(
            update(alert_states)
            .where(alert_states.c.subject == found.subject, alert_states.c.level == found.level)
            .values(
                level=level,
                retry_at=case((alert_states.c.announced == level, None), else_=now),
                attempts=0,
                changed_at=now,
            )
        )
        return bool(moved.rowcount == 1)


@dataclass(frozen=True)
class Due:
    subject: str
    user_id: int
    level: str
    announced: str
    attempts: int
    retry_at: int


def due(database: Database, now: int, limit: int = 50) -> list[Due]:
    """Messages due at `now` (an indexed read of `retry_at`)."""
    with database.read() as connection:
        rows = connection.execute(
            select(alert_states.c.subject, alert_states.c.user_id, alert_states.c.level,
                   alert_states.c.announced, alert_states.c.attempts, alert_states.c.retry_at)
            .where(alert_states.c.retry_at <= now)
            .order_by(alert_states.c.retry_at)
            .limit(limit)
        ).all()  # fmt: skip
    return [Due(*row) for row in rows]


def lease(database: Database, item: Due, until: int) -> bool:
    """Take `item` to send until `until`; True on the one instance that got it."""
    with database.write() as connection:
        taken = connection.execute(
            update(alert_states)
            .where(
                alert_states.c.subject == item.subject,
                alert_states.c.level == item.level,
                alert_states.c.retry_at == item.retry_at,
            )
            .values(retry_at=until, attempts=alert_states.c.attempts + 1)
        )
        return bool(taken.rowcount == 1)


def delivered(database: Database, item: Due, now: int) -> None:
    """`item`'s message was delivered: its level is the announced one now. If the level
    moved meanwhile, the next message (a resolved one, say) is due at once."""
    with database.write() as connection:
        connection.execute(
            update(alert_states)
            .where(alert_states.c.subject == item.subject)
            .values(
                announced=item.level,
                retry_at=case((alert_states.c.level == item.level, None), else_=now),
                attempts=0,
            )
        )
