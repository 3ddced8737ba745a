"""Helpers for the browser tests: a tab on the live server, people, usage, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from playwright.sync_api import Page

from quotaledger.billing import ledger, redemptions
from quotaledger.identity import accounts, keys
from quotaledger.store.database import Database
from quotaledger.store.tables import usage
from support import LiveServer


@dataclass
class Person:
    username: str
    password: str


@dataclass
class Visit:
    """A browser tab on the live server."""

    page: Page
    server: LiveServer

    def log_in(self, person: Person) -> None:
        self.page.goto("/login")
        self.page.get_by_label("Username").fill(person.username)
        self.page.get_by_label("Password").fill(person.password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url("**/account")


def create_user(server: LiveServer, name: str, quota: int) -> Person:
    """A user with `quota`, written straight to the server's database (what the CLI's
    `user create` does, without a process start for every test)."""
    password = f"{name}-password-123"
    with _database(server) as database:
        accounts.create_account(database, name, password, quota=quota)
    return Person(name, password)


def balance_with(server: LiveServer, token: str) -> httpx.Response:
    """`GET /api/user/self` with `Authorization: <token>`, as the reference page shows."""
    return httpx.get(f"{server.base_url}/api/user/self", headers={"Authorization": token})


def charge(server: LiveServer, username: str, model: str, *request_ids: str) -> None:
    """Usage as the operator's gateway reports it, written to the server's database."""
    with _database(server) as database:
        for request_id in request_ids:
            ledger.charge(database, ledger.UsageRequest(username, model, request_id))


@contextmanager
def _database(server: LiveServer) -> Iterator[Database]:
    database = Database(server.database_url)
    try:
        yield database
    finally:
        database.dispose()


def log_rows(server: LiveServer, username: str, rows: list[dict[str, object]]) -> None:
    """Log rows (model, quota, created_at, key_name...) straight into the server's usage
    table, at the times given (the relay would stamp them with the present)."""
    with _database(server) as database:
        account = accounts.find_account(database, username)
        base = {"user_id": account.id, "prompt_tokens": 3, "completion_tokens": 4,
                "quota_after": 0, "key_name": None}  # fmt: skip
        with database.write() as connection:
            connection.execute(
                usage.insert(),
                [{**base, "request_id": f"req-{n}", **row} for n, row in enumerate(rows)],
            )


def redemption_code(server: LiveServer, quota: int) -> str:
    """A new code worth `quota` (what `quotaledger redeem create` makes)."""
    with _database(server) as database:
        [(_, code)] = redemptions.create_codes(database, quota)
    return code


def api_key(server: LiveServer, username: str, name: str) -> str:
    """A new unlimited API key for `username`; returns the key itself."""
    with _database(server) as database:
        account = accounts.find_account(database, username)
        _, raw = keys.create_key(database, account.id, name, keys.KeyLimits())
    return raw
