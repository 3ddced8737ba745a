"""Browser sessions: a random cookie value, kept in the database only as its SHA-256, so
that every instance sees a session at once and a stolen database yields no live session.

Each session has its CSRF token (double-submit: a script-readable cookie that must come
back in the `X-CSRF-Token` header), bound to the session by its stored hash.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, insert, select

from quotaledger.errors import PermissionDenied
from quotaledger.identity.accounts import ACCOUNT_COLUMNS, Account, account_from_row
from quotaledger.store.database import Database, now
from quotaledger.store.tables import sessions, users


@dataclass(frozen=True)
class NewSession:
    session_id: str
    csrf_token: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def start_session(database: Database, account: Account, max_age: int) -> NewSession:
    new = NewSession(secrets.token_urlsafe(32), secrets.token_urlsafe(24))
    with database.write() as connection:
        connection.execute(delete(sessions).where(sessions.c.expires_at < now()))
        connection.execute(
            insert(sessions).values(
                id_hash=_digest(new.session_id),
                user_id=account.id,
                csrf_hash=_digest(new.csrf_token),
                expires_at=now() + max_age,
            )
        )
    return new


def account_for_session(database: Database, session_id: str) -> tuple[Account, str] | None:
    """The session's account and its CSRF token hash, or None if unknown or expired;
    `PermissionDenied` if the account is disabled (its sessions ended with it)."""
    if not session_id or len(session_id) > 100:
        return None
    with database.read() as connection:
        row = connection.execute(
            select(*ACCOUNT_COLUMNS, sessions.c.csrf_hash)
            .join(sessions, sessions.c.user_id == users.c.id)
            .where(sessions.c.id_hash == _digest(session_id), sessions.c.expires_at > now())
        ).first()
    if row is None:
        return None
    account = account_from_row(row)
    if not account.is_enabled:
        raise PermissionDenied("this account is disabled")
    return account, row.csrf_hash


def csrf_matches(csrf_hash: str, presented: str | None) -> bool:
    return bool(presented) and secrets.compare_digest(csrf_hash, _digest(presented or ""))


def end_session(database: Database, session_id: str) -> None:
    with database.write() as connection:
        connection.execute(delete(sessions).where(sessions.c.id_hash == _digest(session_id)))
