"""What an admin does to accounts besides creating them (SPEC §13), and a user's own
password change: find them by page or search, change the role, reset or change the
password (ending sessions), delete an account with no history.

Shared by the admin API, the console and the CLI: one implementation of each rule.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import ColumnElement, Connection, delete, exists, func, or_, select, update

from quotaledger import passwords
from quotaledger.errors import AlreadyExists, InvalidInput, PermissionDenied
from quotaledger.identity.accounts import (
    ACCOUNT_COLUMNS,
    ROLES,
    Account,
    account_from_row,
    get_account_in,
    validate_password,
    verify_account_password,
)
from quotaledger.store.database import Database
from quotaledger.store.tables import (
    alert_settings,
    alert_states,
    api_keys,
    grants,
    redemptions,
    sessions,
    usage,
    users,
)


def account_page(
    database: Database, page: int, page_size: int, keyword: str | None = None
) -> tuple[list[Account], int]:
    """One page of accounts by id, and how many match; `keyword` matches a part of the
    username or display name, or the id itself (new-api's user search)."""
    conditions: list[ColumnElement[bool]] = []
    if keyword:
        pattern = f"%{keyword.strip()}%"
        matches: list[ColumnElement[bool]] = [
            users.c.username.like(pattern),
            users.c.display_name.like(pattern),
        ]
        if keyword.strip().isdecimal():
            matches.append(users.c.id == int(keyword.strip()))
        conditions.append(or_(*matches))
    with database.read() as connection:
        total = connection.execute(
            select(func.count()).select_from(users).where(*conditions)
        ).scalar_one()
        rows = connection.execute(
            select(*ACCOUNT_COLUMNS)
            .where(*conditions)
            .order_by(users.c.id)
            .limit(page_size)
            .offset((page - 1) * page_size)
        ).all()
    return [account_from_row(row) for row in rows], int(total)


def get_account(database: Database, user_id: int) -> Account:
    with database.read() as connection:
        return get_account_in(connection, user_id)


def set_role(database: Database, user_id: int, role: str, *, by: int | None = None) -> Account:
    """Give the account `role` (user or admin). An admin cannot demote themselves (`by`):
    the last admin could otherwise lock everyone out of the console."""
    if role not in ROLES:
        raise InvalidInput("role", f"must be one of {', '.join(ROLES)}")
    if by == user_id and role != "admin":
        raise PermissionDenied("you cannot take the admin role from yourself")
    with database.write() as connection:
        get_account_in(connection, user_id)
        connection.execute(update(users).where(users.c.id == user_id).values(role=role))
        return get_account_in(connection, user_id)


def _end_sessions_in(connection: Connection, user_id: int, keep: str | None = None) -> int:
    statement = delete(sessions).where(sessions.c.user_id == user_id)
    if keep:
        statement = statement.where(sessions.c.id_hash != _digest(keep))
    return int(connection.execute(statement).rowcount)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()  # as sessions.py keeps it


def _store_password(connection: Connection, user_id: int, password: str) -> None:
    password_hash = passwords.hash_password(validate_password(password))
    connection.execute(
        update(users).where(users.c.id == user_id).values(password_hash=password_hash)
    )


def reset_password(database: Database, user_id: int) -> str:
    """A new random password for the account, returned once (never stored in clear); every
    browser session of the account ends. Its system token and API keys keep working."""
    password = passwords.random_password()
    with database.write() as connection:
        get_account_in(connection, user_id)
        _store_password(connection, user_id, password)
        _end_sessions_in(connection, user_id)
    return password


def change_password(
    database: Database, account: Account, current: str, new: str, *, keep_session: str | None
) -> int:
    """The user's own change: `current` must be right (`AuthenticationFailed`); every
    other session of the account ends (`keep_session`, the one asking, stays). Returns how
    many sessions ended."""
    verify_account_password(database, account, current)
    if new == current:
        raise InvalidInput("new_password", "must differ from the current password")
    with database.write() as connection:
        _store_password(connection, account.id, new)
        return _end_sessions_in(connection, account.id, keep_session)


def delete_account(database: Database, user_id: int, *, by: int | None = None) -> None:
    """Delete an account that has no ledger history. One that was ever granted quota, made a
    request or holds keys is refused (`AlreadyExists`): the ledger needs it, disable it."""
    if by == user_id:
        raise PermissionDenied("you cannot delete your own account")
    with database.write() as connection:
        get_account_in(connection, user_id)
        history = [
            select(grants.c.id).where(grants.c.user_id == user_id),
            select(usage.c.id).where(usage.c.user_id == user_id),
            select(api_keys.c.id).where(api_keys.c.user_id == user_id),
            select(redemptions.c.id).where(redemptions.c.redeemed_by == user_id),
        ]
        if any(connection.execute(select(exists(query))).scalar() for query in history):
            raise AlreadyExists(
                "this account has ledger history (grants, requests or keys): disable it instead"
            )
        _end_sessions_in(connection, user_id)
        for table in (alert_settings, alert_states):
            connection.execute(delete(table).where(table.c.user_id == user_id))
        connection.execute(delete(users).where(users.c.id == user_id))
