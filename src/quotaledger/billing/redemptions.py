"""Redemption codes (SPEC §9): prepaid quota handed out as a code that any account may redeem
once (new-api's redemption codes, `POST /api/user/topup`).

A code is `qlr-` + 32 random base62 characters + a checksum (the token format, `tokens.py`):
a mistyped code is refused without a database read. Only its SHA-256 and a hint are stored;
the codes are printed once, when made. Redeeming is one guarded `UPDATE ... WHERE
redeemed_at IS NULL` and the grant (`ledger.grant_in`) in the same transaction: of two
attempts at the same moment, on one instance or two, exactly one finds the row unredeemed
(PostgreSQL re-checks the condition after the first commits; SQLite serialises writers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update

from quotaledger import tokens
from quotaledger.billing.ledger import grant_in
from quotaledger.errors import AlreadyExists, InvalidInput, NotFound
from quotaledger.money import MAX_QUOTA
from quotaledger.store.database import Database
from quotaledger.store.tables import redemptions, users

CODE_PREFIX = "qlr-"
MAX_COUNT = 1000
Clock = Callable[[], float]


@dataclass(frozen=True)
class Redemption:
    """A code as the admin sees it: never the code, nor its hash."""

    id: int
    name: str
    hint: str
    quota: int
    status: str  # enabled | disabled
    created_at: int
    expires_at: int | None
    redeemed_at: int | None
    redeemed_by: str | None  # the username

    def state(self, now: float) -> str:
        """unused, redeemed, disabled or expired."""
        if self.redeemed_at is not None:
            return "redeemed"
        if self.status != "enabled":
            return "disabled"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "unused"

    def as_json(self, now: float) -> dict[str, Any]:
        return {**self.__dict__, "state": self.state(now)}


_COLUMNS = (
    redemptions.c.id, redemptions.c.name, redemptions.c.code_hint, redemptions.c.quota,
    redemptions.c.status, redemptions.c.created_at, redemptions.c.expires_at,
    redemptions.c.redeemed_at, users.c.username,
)  # fmt: skip


def _select() -> Any:
    return select(*_COLUMNS).join_from(
        redemptions, users, users.c.id == redemptions.c.redeemed_by, isouter=True
    )


def create_codes(
    database: Database, quota: int, count: int = 1, *, name: str = "",
    expires_at: int | None = None, clock: Clock = time.time,
) -> list[tuple[Redemption, str]]:  # fmt: skip
    """`count` new codes worth `quota` each; returns them with the codes themselves, which
    are never seen again."""
    created_at = int(clock())
    if not 0 < quota <= MAX_QUOTA:
        raise InvalidInput("quota", "must be a positive whole number of quota")
    if not 1 <= count <= MAX_COUNT:
        raise InvalidInput("count", f"must be between 1 and {MAX_COUNT}")
    if len(name) > 64:
        raise InvalidInput("name", "must be at most 64 characters")
    if expires_at is not None and expires_at <= created_at:
        raise InvalidInput("expires", "must be in the future")
    made = []
    with database.write() as connection:
        for _ in range(count):
            raw = tokens.generate_token(CODE_PREFIX)
            values = {
                "name": name.strip(), "code_hash": tokens.hash_token(raw),
                "code_hint": tokens.token_hint(raw), "quota": quota, "created_at": created_at,
                "expires_at": expires_at,
            }  # fmt: skip
            code_id = connection.execute(
                insert(redemptions).values(**values).returning(redemptions.c.id)
            ).scalar_one()
            row = connection.execute(_select().where(redemptions.c.id == code_id)).one()
            made.append((Redemption(*row), raw))
    return made


def list_codes(database: Database) -> list[Redemption]:
    """Every code, oldest first."""
    with database.read() as connection:
        rows = connection.execute(_select().order_by(redemptions.c.id))
        return [Redemption(*row) for row in rows]


def disable_code(database: Database, code_id: int) -> Redemption:
    """A code that can no longer be redeemed (one already redeemed stays as it was)."""
    with database.write() as connection:
        changed = connection.execute(
            update(redemptions)
            .where(redemptions.c.id == code_id, redemptions.c.redeemed_at.is_(None))
            .values(status="disabled")
        ).rowcount
        row = connection.execute(_select().where(redemptions.c.id == code_id)).first()
    if row is None:
        raise NotFound(f"no redemption code with id {code_id}")
    if changed != 1:
        raise AlreadyExists(f"redemption code {code_id} was already redeemed")
    return Redemption(*row)


def is_well_formed(code: str) -> bool:
    return tokens.is_well_formed(code.strip(), CODE_PREFIX)


def redeem(database: Database, user_id: int, code: str, *, clock: Clock = time.time) -> int:
    """Redeem `code` for `user_id`: its quota is granted (in the ledger) and the code used
    up, in one transaction. Returns the quota added. Raises `InvalidInput` (not a code,
    expired, disabled), `NotFound` (no such code) or `AlreadyExists` (already redeemed)."""
    code = code.strip()
    if not is_well_formed(code):
        raise InvalidInput("key", "not a redemption code: expected qlr- and 38 characters")
    digest, now = tokens.hash_token(code), int(clock())
    with database.write() as connection:
        found = connection.execute(
            update(redemptions)
            .where(
                redemptions.c.code_hash == digest,
                redemptions.c.redeemed_at.is_(None),
                redemptions.c.status == "enabled",
                redemptions.c.expires_at.is_(None) | (redemptions.c.expires_at > now),
            )
            .values(redeemed_at=now, redeemed_by=user_id)
            .returning(redemptions.c.id, redemptions.c.quota)
        ).first()
        if found is None:
            row = connection.execute(_select().where(redemptions.c.code_hash == digest)).first()
            raise _why_not(Redemption(*row) if row else None, now)
        code_id, quota = int(found[0]), int(found[1])
        grant_in(connection, user_id, quota, f"redemption code {code_id}")
    return quota


def _why_not(code: Redemption | None, now: int) -> Exception:
    if code is None:
        return NotFound("no such redemption code")
    state = code.state(now)
    if state == "redeemed":
        return AlreadyExists("this redemption code was already redeemed")
    return InvalidInput("key", f"this redemption code is {state}")
