"""The ledger's extended invariant (SPEC §8), checked over the whole database: what tests
assert after every sequence of operations, and what an operator can run on a live copy.

For every user:
    granted_total - sum(usage.quota) - open reservations == quota >= 0
    used_quota == sum(usage.quota),  request_count == rows answered 2xx
For every key:
    used_quota == sum(its usage.quota),  request_count == its rows answered 2xx
    limited keys: granted_quota - used_quota - its open reservations == remain_quota >= 0
    keys with a period: 0 <= period_used <= period_quota
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, and_, func, select

from quotaledger.store.database import Database
from quotaledger.store.tables import api_keys, grants, reservations, usage, users

_ANSWERED = and_(usage.c.status >= 200, usage.c.status < 300)


def check_invariant(database: Database) -> list[str]:
    """Every violation, as a sentence; an empty list when the ledger is consistent. Runs in
    one snapshot (the same committed state for every query, on both databases)."""
    with database.snapshot() as connection:
        return _users(connection) + _keys(connection)


def _totals(connection: Connection, group_by: Any, *extra: Any) -> dict[Any, tuple[int, ...]]:
    rows = connection.execute(
        select(
            group_by,
            func.coalesce(func.sum(usage.c.quota), 0),
            func.count().filter(_ANSWERED),
            *extra,
        ).group_by(group_by)
    ).all()
    return {row[0]: tuple(int(v) for v in row[1:]) for row in rows}


def _open(connection: Connection, group_by: Any, *conditions: Any) -> dict[Any, int]:
    statement = select(group_by, func.sum(reservations.c.amount)).group_by(group_by)
    if conditions:
        statement = statement.where(*conditions)
    return {row[0]: int(row[1]) for row in connection.execute(statement)}


def _users(connection: Connection) -> list[str]:
    charged = _totals(connection, usage.c.user_id)
    held = _open(connection, reservations.c.user_id)
    granted: dict[Any, int] = defaultdict(int)
    for user_id, amount in connection.execute(
        select(grants.c.user_id, func.sum(grants.c.quota)).group_by(grants.c.user_id)
    ):
        granted[user_id] = int(amount)
    problems = []
    for row in connection.execute(
        select(users.c.id, users.c.username, users.c.quota, users.c.used_quota,
               users.c.request_count, users.c.granted_total)
    ):  # fmt: skip
        spent, answered = charged.get(row.id, (0, 0))
        expected = row.granted_total - spent - held.get(row.id, 0)
        name = f"user {row.username!r}"
        problems += _compare(name, [
            ("quota", row.quota, expected), ("granted_total", row.granted_total, granted[row.id]),
            ("used_quota", row.used_quota, spent), ("request_count", row.request_count, answered),
        ])  # fmt: skip
        if row.quota < 0:
            problems.append(f"{name}: quota {row.quota} is below zero")
    return problems


def _keys(connection: Connection) -> list[str]:
    charged = _totals(connection, usage.c.key_id)
    held = _open(connection, reservations.c.key_id, reservations.c.key_funded.is_(True))
    problems = []
    for row in connection.execute(
        select(api_keys.c.id, api_keys.c.unlimited, api_keys.c.remain_quota,
               api_keys.c.granted_quota, api_keys.c.used_quota, api_keys.c.request_count,
               api_keys.c.period_quota, api_keys.c.period_used)
    ):  # fmt: skip
        spent, answered = charged.get(row.id, (0, 0))
        name = f"API key {row.id}"
        checks = [("used_quota", row.used_quota, spent),
                  ("request_count", row.request_count, answered)]  # fmt: skip
        if not row.unlimited:
            expected = row.granted_quota - row.used_quota - held.get(row.id, 0)
            checks.append(("remain_quota", row.remain_quota, expected))
        problems += _compare(name, checks)
        if row.remain_quota < 0 or row.period_used < 0:
            problems.append(f"{name}: a counter is below zero")
        if row.period_quota is not None and row.period_used > row.period_quota:
            problems.append(f"{name}: period_used {row.period_used} > {row.period_quota}")
    return problems


def _compare(name: str, checks: list[tuple[str, int, int]]) -> list[str]:
    return [
        f"{name}: {field} is {actual}, expected {expected}"
        for field, actual, expected in checks
        if actual != expected
    ]
