"""The audit trail of admin actions (SPEC §13): who did what, when, from which address.

Every write of the operator console and the admin API is recorded here after it succeeds
(`record`), with a JSON detail that never holds a secret (keys, passwords and codes are
left out by the callers: only hints). Read newest first, with filters (`trail_page`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, insert, or_, select

from quotaledger.store.database import Database, now
from quotaledger.store.tables import admin_audit


@dataclass(frozen=True)
class Actor:
    """Who acted and from where: an account (`id`), or the CLI (`id` None, address "cli")."""

    id: int | None
    name: str
    address: str


def record(database: Database, actor: Actor, action: str, target: str = "", **detail: Any) -> None:
    """Add one entry: `action` such as "channel.add", on `target` (a name or an id)."""
    values = {
        "created_at": now(),
        "actor_id": actor.id,
        "actor": actor.name[:64],
        "address": actor.address[:64],
        "action": action[:64],
        "target": str(target)[:200],
        "detail": json.dumps(detail, sort_keys=True, default=str),
    }
    with database.write() as connection:
        connection.execute(insert(admin_audit).values(**values))


def _conditions(actor: str | None, action: str | None, keyword: str | None) -> list[Any]:
    found: list[ColumnElement[bool]] = []
    if actor:
        found.append(admin_audit.c.actor == actor)
    if action:
        found.append(admin_audit.c.action.startswith(action, autoescape=True))
    if keyword:
        pattern = f"%{keyword}%"
        found.append(or_(admin_audit.c.target.like(pattern), admin_audit.c.detail.like(pattern)))
    return found


def trail_page(
    database: Database, page: int, page_size: int, *, actor: str | None = None,
    action: str | None = None, keyword: str | None = None,
) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """One page of entries, newest first, and how many match. `action` matches a prefix
    ("user." finds every user action); `keyword` a part of the target or the detail."""
    conditions = _conditions(actor, action, keyword)
    with database.read() as connection:
        total = connection.execute(
            select(func.count()).select_from(admin_audit).where(*conditions)
        ).scalar_one()
        rows = connection.execute(
            select(admin_audit)
            .where(*conditions)
            .order_by(admin_audit.c.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        ).all()
    items = [
        {**{str(k): v for k, v in row._asdict().items()}, "detail": json.loads(row.detail)}
        for row in rows
    ]
    return items, int(total)
