"""Accounts: creation, passwords, status, and the system token.

Functions here take a `Database` and run their own transaction; `*_in(connection, ...)`
variants let a caller compose several steps in one transaction. Password hashing is slow
on purpose: async callers run these functions in a worker thread.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from quotaledger import passwords, tokens
from quotaledger.billing.ledger import grant_in
from quotaledger.errors import (
    AlreadyExists,
    AuthenticationFailed,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from quotaledger.money import format_usd
from quotaledger.store.compiled import CompiledStatement
from quotaledger.store.database import Database, now
from quotaledger.store.tables import sessions, users
from quotaledger.text import check_text

MALFORMED_REFUSAL = "malformed token: expected a ql_ system token"
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ROLES = ("user", "admin")
# new-api's integers for role and status, which the HTTP API answers with (SPEC §1, §9) so
# that new-api tooling reads them; new-api's root (100) has no counterpart here.
NEW_API_ROLES = {"user": 1, "admin": 10}
NEW_API_STATUSES = {"enabled": 1, "disabled": 2}


class Account(NamedTuple):
    """A user as every adapter sees it: no password hash, no token hash. (A named tuple: made
    straight from a row, hashed and compared in C; balance answers are cached by account.)"""

    id: int
    username: str
    display_name: str
    group: str
    role: str
    status: str
    quota: int
    used_quota: int
    request_count: int
    granted_total: int
    token_hint: str | None
    token_created_at: int | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_enabled(self) -> bool:
        return self.status == "enabled"

    def as_json(self, fixed_prices: dict[str, str] | None = None) -> dict[str, Any]:
        """The account as the API and `--json` show it: never a password hash, never a
        token. `fixed_prices` (the balance answer's `ModelFixedPrice`) when given."""
        data: dict[str, Any] = {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "group": self.group,
            "role": self.role,
            "status": self.status,
            "quota": self.quota,
            "used_quota": self.used_quota,
            "request_count": self.request_count,
            "quota_usd": format_usd(self.quota),
            "used_quota_usd": format_usd(self.used_quota),
            "token_hint": self.token_hint,
            "token_created_at": self.token_created_at,
        }
        if fixed_prices is not None:
            data["ModelFixedPrice"] = fixed_prices
        return data

    def as_api_json(self, fixed_prices: dict[str, str] | None = None) -> dict[str, Any]:
        """`as_json` with role and status as new-api's integers (role 1 user, 10 admin;
        status 1 enabled, 2 disabled): the HTTP API's account."""
        return {
            **self.as_json(fixed_prices),
            "role": NEW_API_ROLES[self.role],
            "status": NEW_API_STATUSES[self.status],
        }


ACCOUNT_COLUMNS = tuple(users.c[name] for name in Account._fields)


def account_from_row(row: Any) -> Account:
    return Account(*row[: len(ACCOUNT_COLUMNS)])


def validate_username(username: str) -> str:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInput(
            "username",
            "1-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit",
        )
    return username


def validate_password(password: str) -> str:
    reason = passwords.check_password_rules(password)
    if reason:
        raise InvalidInput("password", reason)
    return password


def create_account(
    database: Database,
    username: str,
    password: str,
    *,
    group: str = "default",
    role: str = "user",
    quota: int = 0,
) -> Account:
    """A new enabled account; an initial `quota` is recorded as a grant."""
    validate_username(username)
    validate_password(password)
    if role not in ROLES:
        raise InvalidInput("role", f"must be one of {', '.join(ROLES)}")
    if not group or len(group) > 64:
        raise InvalidInput("group", "must be 1-64 characters")
    password_hash = passwords.hash_password(password)
    try:
        with database.write() as connection:
            user_id = connection.execute(
                insert(users)
                .values(
                    username=username,
                    display_name=username,
                    password_hash=password_hash,
                    group=group,
                    role=role,
                    created_at=now(),
                )
                .returning(users.c.id)
            ).scalar_one()
            if quota:
                grant_in(connection, user_id, quota, note="initial quota")
            return get_account_in(connection, user_id)
    except IntegrityError:
        raise AlreadyExists(f"user {username!r} already exists") from None


def _account_where(connection: Connection, condition: Any, missing: str) -> Account:
    row = connection.execute(select(*ACCOUNT_COLUMNS).where(condition)).first()
    if row is None:
        raise NotFound(missing)
    return account_from_row(row)


def get_account_in(connection: Connection, user_id: int) -> Account:
    return _account_where(connection, users.c.id == user_id, f"no user with id {user_id}")


def find_account(database: Database, username: str) -> Account:
    with database.read() as connection:
        return find_account_in(connection, username)


def find_account_in(connection: Connection, username: str) -> Account:
    return _account_where(connection, users.c.username == username, f"no user named {username!r}")


def list_accounts(database: Database) -> list[Account]:
    with database.read() as connection:
        rows = connection.execute(select(*ACCOUNT_COLUMNS).order_by(users.c.id)).all()
    return [account_from_row(row) for row in rows]


def count_accounts(database: Database) -> int:
    with database.read() as connection:
        return int(connection.execute(select(func.count()).select_from(users)).scalar_one())


def set_status(database: Database, username: str, status: str) -> Account:
    """Enable or disable an account. Disabling also ends its browser sessions: while the
    account is disabled they are kept, so that they are refused with 403 "this account is
    disabled" rather than a puzzling "session expired"; enabling it again deletes them, so
    they never come back."""
    with database.write() as connection:
        account = find_account_in(connection, username)
        connection.execute(update(users).where(users.c.id == account.id).values(status=status))
        if status == "enabled" and not account.is_enabled:
            connection.execute(delete(sessions).where(sessions.c.user_id == account.id))
        return get_account_in(connection, account.id)


def authenticate(database: Database, username: str, password: str) -> Account:
    """The account if the password is right and the account enabled.

    Raises `AuthenticationFailed` for an unknown user or a wrong password (same message,
    same work: a dummy hash is verified for unknown users) and `PermissionDenied` for a
    disabled account (only after the password proved who is asking).
    """
    check_text("username", username)
    with database.read() as connection:
        row = connection.execute(
            select(*ACCOUNT_COLUMNS, users.c.password_hash).where(users.c.username == username)
        ).first()
    password_hash = row.password_hash if row is not None else None
    if not passwords.verify_password(password_hash, password) or row is None:
        raise AuthenticationFailed("wrong username or password")
    account = account_from_row(row)
    if not account.is_enabled:
        raise PermissionDenied("this account is disabled")
    return account


def verify_account_password(database: Database, account: Account, password: str) -> None:
    """Re-verification before a sensitive action (issuing a system token)."""
    with database.read() as connection:
        password_hash = connection.execute(
            select(users.c.password_hash).where(users.c.id == account.id)
        ).scalar_one_or_none()
    if not passwords.verify_password(password_hash, password):
        raise AuthenticationFailed("wrong password")


def issue_token(database: Database, account: Account, password: str) -> str:
    """Verify the password again, then issue a new system token, replacing the old one.

    Only the token columns are written (never a re-save of the whole row, which could
    overwrite a concurrent charge). The old token stops working when this commits, on
    every instance, because every check reads the hash from the database.
    """
    verify_account_password(database, account, password)
    if not account.is_enabled:
        raise PermissionDenied("this account is disabled")
    return replace_token(database, account.id)


def replace_token(database: Database, user_id: int) -> str:
    token = tokens.generate_token()
    with database.write() as connection:
        connection.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(
                token_hash=tokens.hash_token(token),
                token_hint=tokens.token_hint(token),
                token_created_at=now(),
            )
        )
    return token


_TOKEN_LOOKUP = CompiledStatement(
    select(*ACCOUNT_COLUMNS).where(users.c.token_hash == bindparam("digest"))
)


def account_for_token_digest(database: Database, digest: str) -> Account:
    """The account whose token has this SHA-256 digest (`AuthenticationFailed` if none):
    one indexed lookup."""
    return _token_owner(database.fetch_one(_TOKEN_LOOKUP, {"digest": digest}))


async def account_for_token_digest_async(database: Database, digest: str) -> Account:
    """`account_for_token_digest` for code on the event loop (a request's hot path)."""
    row = await database.fetch_one_async(_TOKEN_LOOKUP, {"digest": digest})
    if row is None:
        raise AuthenticationFailed(UNKNOWN_REFUSAL)
    return account_from_row(row)


UNKNOWN_REFUSAL = "unknown or replaced token"


def _token_owner(row: Any) -> Account:
    if row is None:
        raise AuthenticationFailed(UNKNOWN_REFUSAL)
    return account_from_row(row)


def account_for_token(database: Database, token: str) -> Account:
    """The account a system token belongs to; `AuthenticationFailed` otherwise.

    A malformed token (bad prefix, length or checksum) is refused without a database read.
    The lookup is one indexed equality on the SHA-256 digest: a timing side channel on
    the index would only reveal digests, not tokens.
    """
    if not tokens.is_well_formed(token):
        raise AuthenticationFailed(MALFORMED_REFUSAL)
    return account_for_token_digest(database, tokens.hash_token(token))
